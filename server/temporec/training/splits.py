"""Leave-one-out splits over flat arrays, built once and sliced without per-event loops.

For a user with events ``s[0..n-1]`` (oldest first):

    test        target s[n-1], input s[:n-1]
    validation  target s[n-2], input s[:n-2]
    training    next-item pairs within s[:n-2]: input s[t] -> target s[t+1]

Users with fewer than 3 events have no validation target and are not evaluated.
The model is not refit on the validation events before testing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from temporec.contract.errors import allowed
from temporec.contract.types import Dataset, Event
from temporec.data import DataError
from temporec.model.recommender import EventBatch, gap_buckets

HOLDOUT = {"test": 1, "valid": 2}  # split -> how many events from the end its target is
MIN_EVENTS = 3
IGNORE = -100  # target of padding positions (cross_entropy's ignore_index)
MAX_PASSED_OVER = 64  # passed-over items kept per target (MIND's longest impressions show ~300)


@dataclass
class Sequences:
    """Every user's history as flat arrays: user ``u``'s events are rows
    ``offsets[u]:offsets[u + 1]``, oldest first."""

    users: list[str]
    items: np.ndarray  # int64 catalog index
    actions: np.ndarray  # int64 index into the action vocabulary
    timestamps: np.ndarray  # float64 Unix seconds, 0 unknown
    offsets: np.ndarray  # int64, len(users) + 1
    #: each event's passed-over items (``Event.passed_over``) as catalog indices: event ``e``'s
    #: are ``passed_items[passed_offsets[e]:passed_offsets[e + 1]]``; None when no event has any
    passed_items: np.ndarray | None = None
    passed_offsets: np.ndarray | None = None

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def positions(self) -> np.ndarray:
        """Each event's position within its user's history."""
        return np.arange(len(self.items)) - np.repeat(self.offsets[:-1], self.lengths)


def encode(dataset: Dataset, actions: Sequence[str]) -> Sequences:
    """Map a data set's item ids to catalog indices and actions to vocabulary indices
    (an empty action is the vocabulary's first, the domain default)."""
    action_index = {name: i for i, name in enumerate(actions)}
    action_index.setdefault("", 0)
    users = list(dataset.sequences)
    events = [event for user in users for event in dataset.sequences[user]]
    try:
        items = [dataset.catalog.index[e.item_id] for e in events]
    except KeyError as exc:
        raise DataError(f"{dataset.name}: item {exc.args[0]!r} is not in the catalog") from None
    try:
        action_ids = [action_index[e.action] for e in events]
    except KeyError as exc:
        raise DataError(f"{dataset.name}: action {exc.args[0]!r} is not one of {allowed(actions)}") from None
    lengths = [len(dataset.sequences[user]) for user in users]
    return Sequences(
        users,
        np.array(items, dtype=np.int64),
        np.array(action_ids, dtype=np.int64),
        np.array([e.timestamp for e in events], dtype=np.float64),
        np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64),
        *_passed_over(events, dataset.catalog.index),
    )


def _passed_over(events: list[Event], index: dict[str, int]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Every event's passed-over items as flat catalog indices and their offsets; items the
    catalog lacks (a k-core may have dropped them) are left out. (None, None) when no event has any."""
    if not any(e.passed_over for e in events):
        return None, None
    passed = [[index[item] for item in e.passed_over if item in index] for e in events]
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in passed], dtype=np.int64)]).astype(np.int64)
    return np.fromiter((i for p in passed for i in p), dtype=np.int64, count=int(offsets[-1])), offsets


def window(seqs: Sequences, users: np.ndarray, stops: np.ndarray, width: int) -> EventBatch:
    """Left-padded batch of each row's events at positions ``[stop - width, stop)`` of
    user ``users[row]`` (positions below 0 are padding)."""
    positions = stops[:, None] - width + np.arange(width)
    valid = positions >= 0
    flat = seqs.offsets[users][:, None] + np.maximum(positions, 0)
    items = np.where(valid, seqs.items[flat], 0)
    actions = np.where(valid, seqs.actions[flat], 0)
    timestamps = torch.from_numpy(np.where(valid, seqs.timestamps[flat], 0.0))
    return EventBatch(
        torch.from_numpy(items),
        torch.from_numpy(actions),
        gap_buckets(timestamps),
        torch.from_numpy(valid),
        timestamps=timestamps,
    )


def history_batch(seqs: Sequences, users: np.ndarray, stops: np.ndarray, max_len: int) -> EventBatch:
    """The last ``max_len`` events before each row's ``stop``, as narrow as the batch allows."""
    width = int(max(1, min(max_len, stops.max(initial=1))))
    return window(seqs, users, stops, width)


def history_pairs(seqs: Sequences, users: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(row, item)`` for every event before each row's ``stop``: the items to mask out."""
    rows = np.repeat(np.arange(len(users)), stops)
    starts = seqs.offsets[users]
    flat = np.repeat(starts - np.concatenate([[0], np.cumsum(stops)[:-1]]), stops) + np.arange(stops.sum())
    return rows, seqs.items[flat]


@dataclass
class EvalSplit:
    """Users evaluated on one split, where their inputs stop, and their targets."""

    users: np.ndarray
    stops: np.ndarray  # position of the target = length of the input
    targets: np.ndarray  # catalog index


def eval_split(seqs: Sequences, split: str) -> EvalSplit:
    """The leave-one-out ``split`` ("test" or "valid")."""
    if split not in HOLDOUT:
        raise ValueError(f"split {split!r}: expected one of {allowed(HOLDOUT)}")
    users = np.flatnonzero(seqs.lengths >= MIN_EVENTS)
    stops = seqs.lengths[users] - HOLDOUT[split]
    return EvalSplit(users, stops, seqs.items[seqs.offsets[users] + stops])


def prefix_counts(seqs: Sequences, split: str, n_items: int) -> torch.Tensor:
    """Item interaction counts over every user's events before the ``split`` target."""
    before = seqs.positions() < np.repeat(seqs.lengths - HOLDOUT[split], seqs.lengths)
    return torch.from_numpy(np.bincount(seqs.items[before], minlength=n_items)).float()


@dataclass
class TrainingExamples:
    """Next-item pairs of every user's training prefix, cut into windows of ``max_len``
    (the last window of a long history first), as one left-padded batch."""

    inputs: EventBatch
    targets: torch.Tensor  # (rows, max_len) long; IGNORE on padding
    target_actions: torch.Tensor  # (rows, max_len) long: each target's action (0 on padding)
    #: where the data has passed-over items: each target's row in ``seqs``' flat events (-1 on
    #: padding), and ``seqs``, to look them up a batch at a time (``passed_over``)
    target_events: np.ndarray | None = None
    seqs: Sequences | None = None

    def __len__(self) -> int:
        return self.targets.shape[0]

    def passed_over(self, index: torch.Tensor) -> torch.Tensor | None:
        """(len(index), max_len, K): the passed-over items of the targets of rows ``index``,
        -1 beyond each one's; None when the data has none. Built per batch: a grid of every
        window's would be rows x max_len x K, gigabytes for a full MIND."""
        if self.seqs is None:
            return None
        return passed_grid(self.seqs, self.target_events[index.numpy()])

    def rows(self, index: torch.Tensor) -> tuple[EventBatch, torch.Tensor]:
        return self.inputs.map(lambda t: t[index]), self.targets[index]


def training_examples(seqs: Sequences, max_len: int) -> TrainingExamples:
    """All training windows: inputs ``s[t]`` and targets ``s[t + 1]`` for ``t + 1 < n - 2``."""
    pairs = np.maximum(seqs.lengths - HOLDOUT["valid"] - 1, 0)
    per_user = -(-pairs // max_len)  # ceil
    users = np.repeat(np.arange(len(seqs.users)), per_user)
    nth = np.arange(len(users)) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    stops = pairs[users] - max_len * nth  # inputs end (exclusive); each target is one later
    inputs = window(seqs, users, stops, max_len)
    target_flat = seqs.offsets[users][:, None] + stops[:, None] - max_len + np.arange(max_len) + 1
    target_flat = np.clip(target_flat, 0, len(seqs.items) - 1)
    targets = np.where(inputs.mask.numpy(), seqs.items[target_flat], IGNORE)
    target_actions = np.where(inputs.mask.numpy(), seqs.actions[target_flat], 0)
    passed = seqs.passed_offsets is not None  # then the targets' rows, to look their passed-over items up
    target_events = np.where(inputs.mask.numpy(), target_flat, -1) if passed else None
    return TrainingExamples(
        inputs, torch.from_numpy(targets), torch.from_numpy(target_actions), target_events, seqs if passed else None
    )


def passed_grid(seqs: Sequences, events: np.ndarray) -> torch.Tensor | None:
    """The passed-over items of each event of the ``events`` grid (flat event rows, -1 for
    none) as a (*grid, K) grid padded with -1, K the most any event has (at most
    ``MAX_PASSED_OVER``; beyond it, the first ones: an impression's order is the log's)."""
    if seqs.passed_offsets is None:
        return None
    rows = np.maximum(events, 0)
    starts, counts = seqs.passed_offsets[rows], np.diff(seqs.passed_offsets)[rows]
    counts = np.where(events >= 0, np.minimum(counts, MAX_PASSED_OVER), 0)
    width = int(counts.max(initial=0))
    if width == 0:
        return None
    columns = np.arange(width)
    flat = np.minimum(starts[..., None] + columns, max(len(seqs.passed_items) - 1, 0))
    grid = np.where(columns < counts[..., None], seqs.passed_items[flat], -1)
    return torch.from_numpy(grid)
