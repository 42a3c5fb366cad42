"""The ``video`` domain: films and series, watched and rated.

Reads MovieLens (ML-100k, ML-1M, ML-10M in the GroupLens formats), RecBole atomic files
(such as ml-100k.inter/.item), ML-1M-style ``*.user_sequences.tsv`` files and plain event
files (see ``temporec.data``). Like the usual sequential-recommendation protocol, training
keeps the data's 5-core (items and users with at least 5 interactions) unless the user
chooses another ``min_interactions`` (``--min-interactions``; 0 keeps everything).
Already-watched titles are not recommended again unless the request allows repeats (the
base rule).
"""

from __future__ import annotations

from dataclasses import replace

from temporec import Dataset, Domain, TrainConfig, hookimpl
from temporec.data import load_dataset


class VideoDomain(Domain):
    name = "video"
    description = "Films and series: next title to watch from a viewing history (MovieLens-style data)."
    actions = ("watch", "rate")
    default_head = "lstm"
    min_interactions = 5

    def load_dataset(self, path: str) -> Dataset:
        """The data set at ``path`` (any layout ``temporec.data.load_dataset`` knows)."""
        return load_dataset(path)

    def training_config(self, dataset: Dataset, config: TrainConfig) -> TrainConfig:
        if config.min_interactions is None:
            return replace(config, min_interactions=self.min_interactions)
        return config


@hookimpl
def register_domains(register):
    register(VideoDomain)
