"""A/B experiments between models (docs/realtime.md): each ``[experiments.NAME]`` of the
configuration splits one domain's users between arms, each arm a model selector.

Assignment is sticky and needs no storage: the arm of a user is a function of the
experiment's salt and the user id (sha256, read as a number in [0, 1), then the arms'
cumulative shares in the order the file lists them). Only a request with a ``user_id``
for the experiment's domain is in the experiment; others are served as without one.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from temporec.contract.types import Query

DAY_SECONDS = 86_400.0
#: Outcome actions of an experiment that names none: those of these conversions that its
#: domain has (all of them for a domain whose actions come from its data).
DEFAULT_OUTCOME_ACTIONS = ("click", "cart", "purchase")
#: What time an exposure gets: "server", the server's clock (live traffic); "events", the
#: time of the last event the answer read (a replay of recorded events, whose times are the
#: data's: an exposure then falls between the user's events, as it did live).
EXPOSURE_CLOCKS = ("server", "events")


@dataclass(frozen=True)
class Arm:
    """One arm: its share of the experiment's users and the model it serves them. An
    empty selector field keeps the request's own (``model_version``: a loaded version)."""

    name: str
    share: float
    control: bool = False
    head: str = ""
    model_version: str = ""
    encoder: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    name: str
    domain: str
    arms: tuple[Arm, ...]
    salt: str = ""  # "": the experiment's name
    attribution_window_s: float = DAY_SECONDS
    outcome_actions: tuple[str, ...] = ()  # (): the domain's among DEFAULT_OUTCOME_ACTIONS, at start
    exposure_clock: str = "server"  # EXPOSURE_CLOCKS

    @property
    def control(self) -> Arm:
        return next(arm for arm in self.arms if arm.control)

    def arm_of(self, user_id: str) -> Arm:
        """The user's arm: the same for the same salt and user, on every server."""
        point = bucket(self.salt or self.name, user_id)
        total = 0.0
        for arm in self.arms:
            total += arm.share
            if point < total:
                return arm
        return self.arms[-1]  # shares sum to 1 within rounding


def bucket(salt: str, user_id: str) -> float:
    """``user_id`` hashed with ``salt`` into [0, 1), uniformly."""
    digest = hashlib.sha256(f"{salt}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(experiments: dict[str, Experiment], query: Query) -> tuple[Query, Experiment | None, Arm | None]:
    """The query as its arm serves it, with the experiment and arm; (query, None, None)
    when the query is in no experiment (no user id, or none for its domain). The arm's
    selector wins over the request's: a field the arm sets replaces the request's, its
    options are laid over the request's."""
    if not query.user_id:
        return query, None, None
    experiment = next((e for e in experiments.values() if e.domain == query.domain), None)
    if experiment is None:
        return query, None, None
    arm = experiment.arm_of(query.user_id)
    options = {**_named(query.options), **arm.options} if arm.options else query.options
    served = replace(
        query,
        head=arm.head or query.head,
        encoder=arm.encoder or query.encoder,
        model_version=arm.model_version or query.model_version,
        options=options,
    )
    return served, experiment, arm


def _named(options: Any) -> dict[str, Any]:
    """A query's options by name, whether a transport's mapping or a domain's dataclass."""
    if options is None:
        return {}
    return dict(options) if isinstance(options, Mapping) else dataclasses.asdict(options)
