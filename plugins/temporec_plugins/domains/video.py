"""The ``video`` domain: films and series, watched and rated.

Reads MovieLens (ML-100k, ML-1M, ML-10M in the GroupLens formats), RecBole atomic files
(such as ml-100k.inter/.item), ML-1M-style ``*.user_sequences.tsv`` files and plain event
files (see ``temporec.data``). Like the usual sequential-recommendation protocol, the data
is reduced to its 5-core (items and users with at least 5 interactions). Already-watched
titles are not recommended again unless the request allows repeats (the base rule).
"""

from __future__ import annotations

from temporec import Dataset, Domain, hookimpl
from temporec.data import k_core, load_dataset


class VideoDomain(Domain):
    name = "video"
    description = "Films and series: next title to watch from a viewing history (MovieLens-style data)."
    actions = ("watch", "rate")
    default_head = "lstm"
    min_interactions = 5

    def load_dataset(self, path: str) -> Dataset:
        """The data set at ``path`` (any layout ``temporec.data.load_dataset`` knows), 5-core filtered."""
        return k_core(load_dataset(path), self.min_interactions)


@hookimpl
def register_domains(register):
    register(VideoDomain)
