"""The ``events`` domain: any time-ordered events, for data that fits no field of its own.

Its action vocabulary is the data's: the actions its events name, in the order they first
appear (the first is the default for an event that names none), so a shop log with
``view``, ``addtocart`` and ``transaction`` trains as it is, or renamed by the file's
``events.toml`` (see ``temporec.data.events``). Reads every layout of
``temporec.data.load_dataset``; filters nothing. Items without text are known by their
ids (and categorical features): the text tower is used only when some item has text.
Rules: the default (items already in the history are not recommended again unless the
request allows repeats).
"""

from __future__ import annotations

from dataclasses import replace

from temporec import Dataset, Domain, TrainConfig, hookimpl
from temporec.data import load_dataset

DEFAULT_ACTION = "event"  # the one action of data whose events name none


class EventsDomain(Domain):
    name = "events"
    description = "Any time-ordered events: the actions come from the data; the default rules."
    actions = ()  # the data's: see action_vocabulary
    default_head = "lstm"

    def load_dataset(self, path: str) -> Dataset:
        return load_dataset(path)

    def action_vocabulary(self, dataset: Dataset) -> list[str]:
        named = dict.fromkeys(e.action for events in dataset.sequences.values() for e in events if e.action)
        return list(named) or [DEFAULT_ACTION]

    def training_config(self, dataset: Dataset, config: TrainConfig) -> TrainConfig:
        return replace(config, use_text=config.use_text and any(dataset.catalog.texts))


@hookimpl
def register_domains(register):
    register(EventsDomain)
