"""RecBole's models beside temporec's, on temporec's split, measured by temporec's code.

    .venv/bin/python benchmarks/peers.py --check                        # the two harnesses compared (a minute)
    .venv/bin/python benchmarks/peers.py --minutes 3 --models Pop SASRec GRU4Rec ar
    .venv/bin/python benchmarks/peers.py --set amazon-beauty --minutes 30   # every model (the full table)
    .venv/bin/python benchmarks/peers.py --set ml-1m --minutes 60 --models SASRec GRU4Rec ar hstu
    .venv/bin/python benchmarks/peers.py --set taobao-userbehavior --jobs 2   # retail: next item and next purchase

Needs the ``peers`` extra (RecBole 1.2.1; see ``pyproject.toml`` for how it installs beside
numpy 1 and torch 2.13). Flags beside the Amazon benchmarks' own (``--set``, which also takes
``ml-1m``, read as its protocol says, ``--data``, ``--minutes``, ``--jobs``, ``--out``):
``--models`` (default: all of ``PEERS``), ``--check`` (only the harness check, printed,
nothing recorded), ``--max-len`` (every row's input window: 50, ML-1M's 200) and ``--option
KEY=VALUE`` (a RecBole setting, YAML, over every RecBole row's; repeatable).

Same data: each user's events are written as RecBole atomic files (``.inter``, and ``.item``
with every catalog item and its features), tokens being temporec's own user and item
numbers. Same split: RecBole's own leave-one-out (``LS: valid_and_test``, ordered by time)
with nothing filtered; the timestamps RecBole reads are each event's position in its user's
history, so its order is temporec's exactly (the real days tie often, and RecBole keeps
times as float32). Every RecBole row's three splits are compared with temporec's, case by
case (user, target, input items), and the row stops if any differs. RecBole moves a user
with exactly 3 events to its test split without a validation case (temporec validates on
them); the 5-core sets have none.

Same measure: the peer's ``full_sort_predict`` scores RecBole's own validation and test
rows; temporec's ``rank_split`` masks each user's history and ranks the target (ties in the
target's favour), and ``summarize``/``bootstrap_interval`` turn the ranks into metrics.
RecBole's own evaluator does not mask the history for sequential models: its test NDCG@10
is a column of its own. The check (always run first; ``--check`` alone) evaluates RecBole's
``Pop`` with both harnesses: with its tied counts broken by item (a strict order), the two
must agree to 1e-6; with the ties, RecBole's (whose top-k breaks ties arbitrarily) lies
between temporec's ranks with ties for the target and against it.

Same budget: every row trains for ``--minutes`` (mid-epoch stops included), validating
after each epoch with temporec's code (NDCG@10, patience 10, the best epoch's weights kept
in memory), one torch thread, ``--jobs`` rows at once. RecBole's models keep RecBole's
defaults (``recbole/properties``: batch 2,048, lr 1e-3, CE over all items) but for the
shared settings in ``SHARED``; ``Pop`` gets exact counts (RecBole's counts an item once per
training batch it is in). temporec's rows train on ids alone: ``ar`` with its defaults, as
``sasrec-gap``'s "ar, defaults" row, and the best two rows of ``heads-amazon-*``. Each row's
NDCG@10 is also given as a ratio to the best RecBole row's. Section ``peers-<set>`` of
``benchmarks/RESULTS.md``.

Taobao (``--set taobao-userbehavior``, section ``peers-taobao``) is measured by the retail
domain's own protocol instead: each user's last event, ranked against the whole catalog
with the retail rules applied (``next_item_ranks``; the history is not masked, since a
repeat can be a hit), for next item and next purchase (histories cut after their last
purchase). temporec's rows are the retail domain's defaults (``RETAIL_HEADS``), ratios are
to "recent" as well as to the best RecBole row, and a second check (``retail_check``)
shows that RecBole's evaluator and the retail ranking agree on Pop with the history but
the target masked, and that the histories handed to RecBole score as its own test rows do.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

import results_file
from amazon import SETS, arguments, fit_ids_only, load_amazon, metric_cells, side_by_side
from domains import RETAIL_SETTINGS
from temporec.contract.registry import load_registry
from temporec.contract.types import Dataset, Event
from temporec.data import k_core
from temporec.model.artifacts import LoadedModel, load_model, read_manifest
from temporec.training import MIN_EVENTS, TrainConfig, train
from temporec.training.leave_one_out import rank_split
from temporec.training.protocols import NextItemCase, Scorer, artifact_scorer, next_item_ranks, rule_mask
from temporec.training.ranking_metrics import summarize
from temporec.training.splits import Sequences, encode, eval_split, history_pairs
from temporec_plugins.domains.events import EventsDomain
from temporec_plugins.domains.retail import RetailDomain

NAME = "temporec"  # the RecBole data set's name: its files are <work>/data/temporec/temporec.{inter,item}
MAX_LEN = TrainConfig().max_len  # the input window, temporec's and RecBole's (``--max-len``)
WINDOWS = {"ml-1m": 200}  # a set's default window where it is not MAX_LEN: ML-1M's histories are long
PATIENCE = TrainConfig().patience
K = 10
MINUTES = 10.0  # each row's default budget; a shorter run is labelled a harness check
INSTALL = "RecBole is not installed: pip install --no-deps recbole==1.2.1 && pip install -e '.[peers]' (pyproject.toml)"

#: RecBole settings every RecBole row shares (over its model's defaults): temporec's split and window.
SHARED: dict[str, Any] = {
    "USER_ID_FIELD": "user_id",
    "ITEM_ID_FIELD": "item_id",
    "TIME_FIELD": "timestamp",
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
    # Nothing filtered beyond the data's own k-core.
    "user_inter_num_interval": "[0,inf)",
    "item_inter_num_interval": "[0,inf)",
    "rm_dup_inter": None,
    "val_interval": None,
    "filter_inter_by_user_or_item": False,
    "MAX_ITEM_LIST_LENGTH": MAX_LEN,
    "train_neg_sample_args": None,  # CE over every item
    "metrics": ["Hit", "NDCG", "MRR"],
    "topk": [K],
    "valid_metric": f"NDCG@{K}",
    "metric_decimal_place": 10,
    "seed": 0,
    "reproducibility": True,
    "use_gpu": False,
    "show_progress": False,
    "save_dataset": False,
    "save_dataloaders": False,
    "epochs": 1_000_000,  # the time budget and the patience stop it
    "stopping_step": PATIENCE,
}


@dataclass(frozen=True)
class Peer:
    name: str  # the row's name: RecBole's model, or a name for one of temporec's heads
    why: str
    config: dict = field(default_factory=dict)  # RecBole settings over SHARED and the model's defaults
    features: bool = False  # reads the catalog's features as item fields (selected_features)
    head: str | None = None  # temporec's head, trained on ids alone; None: a RecBole model
    head_options: dict = field(default_factory=dict)

    @property
    def recbole(self) -> bool:
        return self.head is None


PEERS = (
    Peer("Pop", "item counts over the training prefixes (exact: RecBole's own counts batches)"),
    Peer("SASRec", "Kang & McAuley 2018: 2 blocks, 2 heads, dropout 0.5"),
    Peer("GRU4Rec", "Hidasi et al. 2016: one GRU layer of 128"),
    Peer("BERT4Rec", "Sun et al. 2019: cloze task, mask ratio 0.2"),
    Peer("RepeatNet", "Ren et al. 2019: repeat or explore"),
    Peer("FDSA", "Zhang et al. 2019: the item features in a second self-attention stream", features=True),
    Peer("SASRecF", "SASRec with the item features added to the items", features=True),
    Peer("ar", "temporec's ar head, ids only (temporec train --head ar --no-text)", head="ar"),
    # temporec's best rows in heads-amazon-office and heads-amazon-beauty:
    Peer("ar-sasrec-block", "ar, post-norm, MLP as wide as the model (--head-option norm=post mlp_ratio=1)",
         head="ar", head_options={"norm": "post", "mlp_ratio": 1}),
    Peer("hstu-positions", "temporec's hstu head without its time bias (--head-option time_buckets=0)",
         head="hstu", head_options={"time_buckets": 0}),
    Peer("hstu", "temporec's hstu head, its time bias over the events' real timestamps (--head hstu)", head="hstu"),
)  # fmt: skip

#: temporec's rows on Taobao: the retail domain's training defaults, as ``temporec train --domain retail``.
RETAIL_HEADS = (
    Peer("lstm", "temporec's retail default (temporec train --domain retail): lstm, categories, "
         "purchase-weighted targets, repeat-aware", head="lstm"),
    Peer("ar", "the same with the ar head (--head ar)", head="ar"),
    Peer("hstu", "the same with the hstu head and its time bias over the real timestamps (--head hstu)", head="hstu"),
)  # fmt: skip
RETAIL_SET = "taobao-userbehavior"
#: RecBole settings of Taobao's rows over their defaults: at batch 2,048 BERT4Rec's logits for its
#: masked positions over 64,418 items, with their gradients, would take about 16 GB.
RETAIL_CONFIG = {"BERT4Rec": {"train_batch_size": 512}}
RETAIL_TASKS = ("next item", "next purchase")


@dataclass(frozen=True)
class RetailRun:
    """One row of a retail table: a peer trained and tested on one task."""

    peer: Peer
    task: str

    @property
    def name(self) -> str:
        return f"{self.task}: {self.peer.name}"


def peers_of(set_name: str) -> tuple[Peer, ...]:
    """The rows a set's table may have: RecBole's, and temporec's for its protocol."""
    ours = RETAIL_HEADS if set_name == RETAIL_SET else [p for p in PEERS if not p.recbole]
    return (*(p for p in PEERS if p.recbole), *ours)


def shim_numpy() -> None:
    """RecBole 1.2.1 still names aliases numpy 1.24 removed (``np.float`` in its NDCG and
    MRR, ``np.long`` in its feature layers): give them back, as numpy had them."""
    for alias, value in {"float": float, "int": int, "bool": bool, "long": np.int64}.items():
        if alias not in np.__dict__:
            setattr(np, alias, value)


def recbole_modules():
    shim_numpy()
    try:
        import recbole.trainer.trainer as trainer_module
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.data.interaction import Interaction
        from recbole.utils import ModelType, get_model, get_trainer, init_seed
    except ImportError as exc:
        raise SystemExit(f"{INSTALL} ({exc})") from None
    # RecBole's trainers open a TensorBoard log under the working directory; none is needed.
    trainer_module.get_tensorboard = lambda logger: None
    warnings.filterwarnings("ignore", r"`torch\.cuda\.amp\.GradScaler", FutureWarning)  # its trainer's, on CPU
    return argparse.Namespace(
        Config=Config,
        create_dataset=create_dataset,
        data_preparation=data_preparation,
        Interaction=Interaction,
        ModelType=ModelType,
        get_model=get_model,
        get_trainer=get_trainer,
        init_seed=init_seed,
    )


def _token(value: str) -> str:
    """A catalog feature as one RecBole token: no tabs, newlines or quotes (its reader is
    pandas' CSV reader), and a token for "none" rather than an empty cell."""
    cleaned = " ".join(str(value).replace('"', " ").split())
    return cleaned or "[none]"


def write_atomic(dataset: Dataset, folder: Path) -> Sequences:
    """``dataset`` as RecBole atomic files in ``folder`` (``NAME.inter``, ``NAME.item``): user
    tokens are temporec's user numbers (``encode``'s order), item tokens catalog indices, each
    timestamp the event's position in its user's history. The encoded sequences."""
    seqs = encode(dataset, sorted({e.action for events in dataset.sequences.values() for e in events}))
    folder.mkdir(parents=True, exist_ok=True)
    users = np.repeat(np.arange(len(seqs.users)), seqs.lengths)
    with open(folder / f"{NAME}.inter", "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        f.writelines(f"{u}\t{i}\t{p}\n" for u, i, p in zip(users, seqs.items, seqs.positions()))
    features = dataset.catalog.features
    with open(folder / f"{NAME}.item", "w", encoding="utf-8") as f:
        f.write("\t".join(["item_id:token", *(f"{name}:token" for name in features)]) + "\n")
        for index in range(len(dataset.catalog)):
            f.write("\t".join([str(index), *(_token(values[index]) for values in features.values())]) + "\n")
    return seqs


@dataclass
class Prepared:
    """A RecBole data set over temporec's sequences, split by RecBole, and the maps between them."""

    config: Any
    loaders: tuple  # RecBole's (train, valid, test) data loaders
    seqs: Sequences
    users: np.ndarray  # RecBole user id -> temporec user number (-1: padding)
    items: np.ndarray  # RecBole item id -> catalog index (-1: padding)
    user_ids: np.ndarray  # temporec user number -> RecBole user id
    columns: torch.Tensor  # catalog index -> RecBole item id: ``scores[:, columns]`` is in catalog order
    sequential: bool

    def loader(self, split: str):
        return self.loaders[{"train": 0, "valid": 1, "test": 2}[split]]


def prepare(rb, model: str, dataset: Dataset, work: Path, options: dict, features: bool = False) -> Prepared:
    seqs = write_atomic(dataset, work / "data" / NAME)
    feature_names = list(dataset.catalog.features) if features else []
    settings = {
        **SHARED,
        "data_path": str(work / "data"),
        "checkpoint_dir": str(work / "saved"),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", *feature_names]},
        **({"selected_features": feature_names} if features else {}),
        **options,
    }
    with _quiet():
        config = rb.Config(model=model, dataset=NAME, config_dict=settings)
        rb.init_seed(config["seed"], config["reproducibility"])
        data = rb.create_dataset(config)
        loaders = rb.data_preparation(config, data)
    users = np.array([-1] + [int(t) for t in data.field2id_token["user_id"][1:]])
    items = np.array([-1] + [int(t) for t in data.field2id_token["item_id"][1:]])
    user_ids = np.asarray(data.token2id("user_id", [str(u) for u in range(len(seqs.users))]))
    item_ids = np.asarray(data.token2id("item_id", [str(i) for i in range(len(dataset.catalog))]))
    if len(items) != len(dataset.catalog) + 1:
        raise RuntimeError(f"RecBole has {len(items) - 1} items, the catalog {len(dataset.catalog)}")
    sequential = config["MODEL_TYPE"] == rb.ModelType.SEQUENTIAL
    return Prepared(config, loaders, seqs, users, items, user_ids, torch.from_numpy(item_ids), sequential)


@contextlib.contextmanager
def _quiet():
    """RecBole's pandas calls warn of pandas 3's copy-on-write (nothing here is affected), and
    its ``Config`` reads ``--key=value`` settings from ``sys.argv``: none of ours are for it."""
    argv = sys.argv
    sys.argv = argv[:1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        sys.argv = argv


def load_set(folder: Path) -> Dataset:
    """An Amazon set, ML-1M as its protocol reads it (the video domain's reader, 5-core;
    ``../shared/docs/evaluation-protocol.md``): its genres are its item feature, or Taobao
    as the retail domain reads it (its categories)."""
    if folder.name == RETAIL_SET:
        return RetailDomain().load_dataset(str(folder))
    if folder.name != "ml-1m":
        return load_amazon(folder)
    from temporec_plugins.domains.video import VideoDomain

    return k_core(VideoDomain().load_dataset(str(folder)), 5)


def retail_data(dataset: Dataset, task: str) -> Dataset:
    """The events a retail task trains and tests on: all of them (next item), or each
    history cut after its last purchase (next purchase, ``RetailDomain.purchase_dataset``)
    where that leaves at least 4 events: RecBole gives a user of 3 no validation case."""
    if task == "next item":
        return dataset
    cut = RetailDomain().purchase_dataset(dataset)
    kept = {user: events for user, events in cut.sequences.items() if len(events) > MIN_EVENTS}
    return Dataset(cut.name, cut.catalog, kept)


def retail_cases(dataset: Dataset, split: str) -> list[NextItemCase]:
    """The retail protocol's cases: each user's last event after the rest (``test``,
    ``RetailDomain.next_item_cases``), or the one before it (``valid``)."""
    if split == "valid":
        dataset = Dataset(dataset.name, dataset.catalog, {u: e[:-1] for u, e in dataset.sequences.items()})
    return RetailDomain().next_item_cases(dataset)


def window(config: dict) -> int:
    """The input window of a row's settings (RecBole's name for it)."""
    return config.get("MAX_ITEM_LIST_LENGTH", MAX_LEN)


def our_cases(seqs: Sequences, split: str, max_len: int = MAX_LEN) -> dict[str, np.ndarray]:
    """Temporec's cases of ``split``: each one's user, target, and input (the last ``max_len``
    events before the target, -1 past its end): the test and validation targets of
    ``eval_split``, and the training targets ``training_examples`` predicts (positions
    1 .. n - 3), by user and then position."""
    if split == "train":
        pairs = np.maximum(seqs.lengths - 3, 0)
        users = np.repeat(np.arange(len(seqs.users)), pairs)
        stops = 1 + np.arange(len(users)) - np.repeat(np.cumsum(pairs) - pairs, pairs)
    else:
        s = eval_split(seqs, split)
        users, stops = s.users, s.stops
    starts = seqs.offsets[users]
    lengths = np.minimum(stops, max_len)
    column = np.arange(max_len)
    flat = starts[:, None] + stops[:, None] - lengths[:, None] + column
    inputs = np.where(column < lengths[:, None], seqs.items[np.minimum(flat, len(seqs.items) - 1)], -1)
    return {"users": users, "targets": seqs.items[starts + stops], "inputs": inputs, "lengths": lengths}


def recbole_cases(prep: Prepared, split: str) -> dict[str, np.ndarray]:
    """RecBole's cases of ``split`` in temporec's numbers, by user (then RecBole's order, time)."""
    feat = prep.loader(split)._dataset.inter_feat
    users = prep.users[feat["user_id"].numpy()]
    order = np.argsort(users, kind="stable")
    cases = {"users": users[order], "targets": prep.items[feat["item_id"].numpy()][order]}
    if prep.sequential:
        cases["inputs"] = prep.items[feat["item_id_list"].numpy()][order]
        cases["lengths"] = feat["item_length"].numpy()[order]
    return cases


def checked_prep(rb, peer: Peer, dataset, folder: Path, name: str) -> tuple[Prepared, dict[str, int]]:
    """RecBole's data for ``peer`` and its splits' sizes, each split checked equal to
    temporec's case by case."""
    prep = prepare(rb, peer.name, dataset, folder, peer.config, peer.features)
    split = split_differences(prep)
    if any(bad for _, bad in split.values()):
        raise RuntimeError(f"{name}: RecBole's split differs from temporec's: {split}")
    return prep, {part: n for part, (n, _) in split.items()}


def split_differences(prep: Prepared) -> dict[str, tuple[int, int]]:
    """Per split, (cases, cases that differ) between RecBole's split and temporec's: for a
    sequential model its augmented cases (user, target, input), for a general one its
    interactions (user, item), where temporec trains on positions 0 .. n - 3."""
    result = {}
    for split in ("train", "valid", "test"):
        ours, theirs = our_cases(prep.seqs, split, prep.config["MAX_ITEM_LIST_LENGTH"]), recbole_cases(prep, split)
        if not prep.sequential and split == "train":
            lengths = prep.seqs.lengths
            counts = np.where(lengths >= 3, lengths - 2, 0)
            users = np.repeat(np.arange(len(lengths)), counts)
            position = np.arange(len(users)) - np.repeat(np.cumsum(counts) - counts, counts)
            ours = {"users": users, "targets": prep.seqs.items[prep.seqs.offsets[users] + position]}
        n = len(ours["users"])
        if len(theirs["users"]) != n:
            result[split] = (n, max(n, len(theirs["users"])))
            continue
        differ = np.zeros(n, dtype=bool)
        for key in theirs:
            a, b = ours[key], theirs[key]
            differ |= (a != b).reshape(n, -1).any(1) if a.shape == b.shape else True
        result[split] = (n, int(differ.sum()))
    return result


def scorer(rb, model, prep: Prepared, split: str):
    """``rank_split``'s scorer: the model's ``full_sort_predict`` over RecBole's own case of
    each user (a sequential model), or over the user (a general one), in catalog order."""
    device = prep.config["device"]
    if not prep.sequential:

        def score(users: np.ndarray, stops: np.ndarray) -> torch.Tensor:
            interaction = rb.Interaction({"user_id": torch.from_numpy(prep.user_ids[users])})
            return model.full_sort_predict(interaction.to(device)).view(len(users), -1)[:, prep.columns].cpu()

        return score
    loader = prep.loader(split)
    feat = loader._dataset.inter_feat
    row = np.full(len(prep.seqs.users), -1)
    row[prep.users[feat["user_id"].numpy()]] = np.arange(len(feat))
    lengths = feat["item_length"].numpy()

    def score(users: np.ndarray, stops: np.ndarray) -> torch.Tensor:
        rows = row[users]
        if (rows < 0).any() or (lengths[rows] != np.minimum(stops, prep.config["MAX_ITEM_LIST_LENGTH"])).any():
            raise RuntimeError(f"RecBole's {split} cases are not temporec's")
        interaction = loader.transform(loader._dataset, loader._dataset[rows])
        return model.full_sort_predict(interaction.to(device)).view(len(users), -1)[:, prep.columns].cpu()

    return score


@torch.no_grad()
def ranks(rb, model, prep: Prepared, split: str) -> torch.Tensor:
    """Temporec's rank of every ``split`` target under ``model`` (the history masked)."""
    was_training = model.training
    model.eval()
    try:
        return rank_split(scorer(rb, model, prep, split), prep.seqs, split, 256, torch.device("cpu"))
    finally:
        model.train(was_training)


@torch.no_grad()
def pessimistic_ranks(rb, model, prep: Prepared, split: str) -> torch.Tensor:
    """As ``ranks`` but with ties against the target (every item scored at least as high)."""
    model.eval()
    s = eval_split(prep.seqs, split)
    score = scorer(rb, model, prep, split)
    result = torch.empty(len(s.users), dtype=torch.long)
    for start in range(0, len(s.users), 256):
        chosen = slice(start, start + 256)
        users, stops, targets = s.users[chosen], s.stops[chosen], torch.from_numpy(s.targets[chosen])
        scores = score(users, stops).float()
        target_scores = scores.gather(1, targets[:, None])
        rows, items = history_pairs(prep.seqs, users, stops)
        scores[torch.from_numpy(rows), torch.from_numpy(items)] = float("-inf")
        scores[torch.arange(len(users)), targets] = float("-inf")  # not the target itself
        result[chosen] = (scores >= target_scores).sum(1)
    return result


@contextlib.contextmanager
def history_scorer(rb, model, prep: Prepared, catalog) -> Iterator[Scorer]:
    """The domains' kind of scorer (histories of events -> scores in catalog order) over a
    RecBole model, in eval mode without gradients: each history's last events as RecBole's
    input (item ids, padded after them, as its loaders give them); a general model (Pop)
    reads no history."""
    width, device = prep.config["MAX_ITEM_LIST_LENGTH"], prep.config["device"]
    sequential = hasattr(model, "ITEM_SEQ")

    def score(histories: list[list[Event]]) -> torch.Tensor:
        fields = {model.USER_ID: torch.zeros(len(histories), dtype=torch.long)}
        if sequential:
            items = torch.zeros(len(histories), width, dtype=torch.long)
            lengths = torch.zeros(len(histories), dtype=torch.long)
            for row, events in enumerate(histories):
                ids = prep.columns[[catalog.index[e.item_id] for e in events[-width:]]]
                items[row, : len(ids)], lengths[row] = ids, len(ids)
            fields.update({model.ITEM_SEQ: items, model.ITEM_SEQ_LEN: lengths})
        interaction = rb.Interaction(fields).to(device)
        return model.full_sort_predict(interaction).view(len(histories), -1)[:, prep.columns].cpu()

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield score
    finally:
        model.train(was_training)


def retail_masks(cases: list[NextItemCase], catalog) -> list[torch.Tensor]:
    """What the retail rules allow after each case's history (purchased items masked,
    the rest of the history kept): the retail domain's own evaluation."""
    domain = RetailDomain()
    return [rule_mask(domain, case.history, catalog) for case in cases]


class _Until:
    """A data loader cut at ``deadline`` (``time.monotonic()``): an epoch's batches until then."""

    def __init__(self, loader, deadline: float):
        self.loader, self.deadline = loader, deadline

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield batch
            if time.monotonic() >= self.deadline:
                return


def recbole_model(rb, prep: Prepared) -> tuple[Any, Any]:
    """RecBole's model of ``prep`` as initialised (its seed), and its trainer."""
    config, train = prep.config, prep.loaders[0]
    rb.init_seed(config["seed"], config["reproducibility"])
    model = rb.get_model(config["model"])(config, train._dataset).to(config["device"])
    trainer = rb.get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.eval_collector.data_collect(train)
    return model, trainer


def fit_recbole(
    rb, prep: Prepared, budget_s: float, validate: Callable[[Any], float] | None = None, exact_pop: bool = True
) -> tuple[Any, Any, dict]:
    """Train RecBole's model as temporec trains a head: RecBole's trainer runs each epoch
    (its optimiser, loss and batches), cut at the budget; after each, ``validate(model)``
    (default: temporec's validation NDCG@10, the history masked); stop at the budget or
    after ``PATIENCE`` epochs without a better one; the best epoch's weights (``Pop``: one
    pass, then exact counts, see ``exact_counts``). The model, its trainer and what it did."""
    config, train = prep.config, prep.loaders[0]
    model, trainer = recbole_model(rb, prep)
    validate = validate or (lambda model: summarize(ranks(rb, model, prep, "valid"))[f"ndcg@{K}"])
    started = time.monotonic()
    if config["MODEL_TYPE"] == rb.ModelType.TRADITIONAL:  # counts, one pass
        trainer._train_epoch(train, 0)
        if exact_pop and config["model"] == "Pop":
            set_counts(model, exact_counts(prep))
        return model, trainer, {"epochs": 1, "best_epoch": 1, "seconds": time.monotonic() - started}
    deadline = started + budget_s
    best, best_score, stale, epoch, best_epoch = None, -1.0, 0, 0, 0
    while stale < PATIENCE and time.monotonic() < deadline:
        trainer._train_epoch(_Until(train, deadline), epoch)
        epoch += 1
        score = validate(model)
        if score > best_score:
            best, best_score, stale, best_epoch = copy.deepcopy(model.state_dict()), score, 0, epoch
        else:
            stale += 1
    seconds = time.monotonic() - started
    model.load_state_dict(best)
    return model, trainer, {"epochs": epoch, "best_epoch": best_epoch, "seconds": seconds}


def recbole_test(trainer, prep: Prepared) -> dict[str, float]:
    """RecBole's own evaluator on its test split (``hit@10``, ``ndcg@10``, ``mrr@10``)."""
    with _quiet():
        return dict(trainer.evaluate(prep.loader("test"), load_best_model=False))


def exact_counts(prep: Prepared) -> torch.Tensor:
    """Each item's count over RecBole's training interactions, as ``Pop.item_cnt`` holds them.
    RecBole's ``Pop.calculate_loss`` adds 1 per *batch* an item is in (``item_cnt[item] += 1``
    with repeated indices adds once), so its counts stop at the number of batches."""
    train = prep.loader("train")._dataset
    return torch.bincount(train.inter_feat["item_id"], minlength=train.item_num).view(-1, 1)


def set_counts(model, counts: torch.Tensor) -> None:
    model.item_cnt, model.max_cnt = counts, counts.max(0)[0]


CHECKS = (
    ("RecBole's Pop as trained", "counts up to the number of batches: many ties"),
    ("Pop, exact counts", "ties between equal counts"),
    ("Pop, exact counts, ties broken", "each item's place in the order of (count, item): no ties"),
)


def check(dataset: Dataset, work: Path, options: dict) -> dict:
    """Both harnesses on RecBole's Pop: RecBole's evaluator, and temporec's code on the same
    scores, ties for and against the target; and the split, case by case."""
    rb = recbole_modules()
    prep = prepare(rb, "Pop", dataset, work / "check", options)
    model, trainer, _ = fit_recbole(rb, prep, 0, exact_pop=False)
    result = {"split": split_differences(prep), "rows": {}, "batches": int(model.max_cnt)}
    exact = exact_counts(prep)
    key = exact.view(-1).double() * len(exact) + torch.arange(len(exact), dtype=torch.float64)
    for (name, _), counts in zip(CHECKS, (model.item_cnt, exact, torch.argsort(torch.argsort(key)).view(-1, 1))):
        set_counts(model, counts)
        theirs = recbole_test(trainer, prep)
        result["rows"][name] = {
            "recbole": [theirs[f"hit@{K}"], theirs[f"ndcg@{K}"], theirs[f"mrr@{K}"]],
            "for": _at_k(ranks(rb, model, prep, "test")),
            "against": _at_k(pessimistic_ranks(rb, model, prep, "test")),
        }
    return result


def _at_k(ranks: torch.Tensor) -> list[float]:
    """HR@K, NDCG@K (``summarize``) and MRR@K (RecBole's: 0 past K) of ``ranks``."""
    ranks = torch.as_tensor(ranks, dtype=torch.float64)
    summary = summarize(ranks, (K,))
    return [summary[f"hr@{K}"], summary[f"ndcg@{K}"], torch.where(ranks < K, 1 / (ranks + 1), 0.0).mean().item()]


def render_check(result: dict) -> str:
    split = result["split"]
    differing = sum(bad for _, bad in split.values())
    lines = [
        "Split: RecBole's (Pop's data set) against temporec's, case by case: "
        + ", ".join(f"{name} {n:,} cases" for name, (n, _) in split.items())
        + f"; {differing} differ. RecBole's Pop as trained counts batches, not events (its counts stop at "
        f"{result['batches']}, the training batches); the other rows give it exact counts.",
        "",
        f"| Pop's scores | harness | HR@{K} | NDCG@{K} | MRR@{K} |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, what in CHECKS:
        row = result["rows"][name]
        for harness, key in (
            ("RecBole's evaluator", "recbole"),
            ("temporec's code, ties for the target", "for"),
            ("temporec's code, ties against it", "against"),
        ):
            lines.append(f"| {name} ({what}) | {harness} | " + " | ".join(f"{v:.6f}" for v in row[key]) + " |")
    return "\n".join(lines)


def check_passes(result: dict) -> bool:
    """Without ties the harnesses agree; with them RecBole's lies between temporec's bounds."""
    rows = result["rows"]
    strict = rows[CHECKS[-1][0]]
    agree = all(abs(a - b) < 1e-6 for a, b in zip(strict["recbole"], strict["for"]))
    between = all(
        low - 1e-9 <= v <= high + 1e-9
        for row in rows.values()
        for v, high, low in zip(row["recbole"], row["for"], row["against"])
    )
    return agree and between and all(bad == 0 for _, bad in result["split"].values())


def measure(peer: Peer, data: Path, minutes: float, work: str) -> dict:
    """One row, in its own process (one torch thread each, so two run side by side)."""
    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.ERROR)
    dataset = load_set(data)
    folder = Path(work) / peer.name
    if not peer.recbole:
        from sasrec_gap import BASE

        config = replace(
            TrainConfig(**BASE), time_budget_s=minutes * 60, head_options=peer.head_options, max_len=window(peer.config)
        )
        started = time.monotonic()
        test, trained = fit_ids_only(dataset, peer.head, config, folder)
        return {"ranks": test.numpy(), **trained, "seconds": time.monotonic() - started, "recbole": None}
    rb = recbole_modules()
    prep, cases = checked_prep(rb, peer, dataset, folder, peer.name)
    model, trainer, trained = fit_recbole(rb, prep, minutes * 60)
    return {
        "ranks": ranks(rb, model, prep, "test").numpy(),
        **trained,
        "recbole": recbole_test(trainer, prep),
        "cases": cases,
    }


BASELINE = "baseline"  # a Peer's head for a retail baseline row (no training)


def table(rows: dict[str, dict], peers: list[Peer], reference: str | None = None) -> list[str]:
    """A row a peer (``rows`` by peer name), each NDCG@K also as a ratio to the best RecBole
    row's; with ``reference`` (a row's name) HR@K and MRR as ratios to that row's."""
    against = f" | HR@{K} / {reference}'s | MRR / {reference}'s" if reference else ""
    lines = [
        f"| model | what | HR@{K} (95% CI) | NDCG@{K} (95% CI) | MRR (95% CI) | RecBole's own NDCG@{K} "
        f"| NDCG@{K} / best RecBole's{against} | epochs (best) | minutes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: " + "| ---: " * (2 if reference else 0) + "| ---: | ---: |",
    ]
    metrics = {peer.name: summarize(rows[peer.name]["ranks"]) for peer in peers}
    best = max((metrics[peer.name][f"ndcg@{K}"] for peer in peers if peer.recbole), default=0.0)
    for peer in peers:
        result, mine = rows[peer.name], metrics[peer.name]
        cells = metric_cells(result["ranks"], (f"hr@{K}", f"ndcg@{K}", "mrr"))
        own = f"{result['recbole'][f'ndcg@{K}']:.4f}" if result["recbole"] else ""
        ratios = [f"{mine[f'ndcg@{K}'] / best:.2f}" if best else ""]
        if reference:
            ratios += [f"{mine[m] / metrics[reference][m]:.2f}" for m in (f"hr@{K}", "mrr")]
        trained = (
            "| |"
            if peer.head == BASELINE
            else f"| {result['epochs']} ({result['best_epoch']}) | {result['seconds'] / 60:.1f} |"
        )
        lines.append(f"| {peer.name} | {peer.why} | {' | '.join(cells)} | {own} | {' | '.join(ratios)} {trained}")
    return lines


def checked_cases(rows: dict[str, dict], peers: list[Peer]) -> str:
    """The sequential RecBole rows' split sizes, as checked against temporec's."""
    cases = next((rows[p.name]["cases"] for p in peers if rows[p.name].get("cases") and p.name != "Pop"), None)
    return " (sequential rows: " + ", ".join(f"{name} {n:,} cases" for name, n in cases.items()) + ")" if cases else ""


def described(dataset: Dataset) -> str:
    events = sum(map(len, dataset.sequences.values()))
    return (
        f"`{Path(dataset.name).name}` ({len(dataset.sequences)} users, {len(dataset.catalog)} items, {events} events)"
    )


def budget(minutes: float, options: dict, max_len: int) -> str:
    settings = f" RecBole settings given: `{options}`." if options else ""
    return (
        f"Each row: {minutes:g} min of training, validation NDCG@{K} (temporec's code) with patience "
        f"{PATIENCE}, one torch thread; RecBole 1.2.1's models with its defaults (batch 2,048, lr 1e-3) over "
        f"temporec's window ({max_len}) and split.{settings}"
    )


def render(
    rows: dict[str, dict],
    peers: list[Peer],
    dataset: Dataset,
    minutes: float,
    options: dict,
    check_text: str,
    max_len: int = MAX_LEN,
) -> str:
    return (
        f"Data: {described(dataset)}. {budget(minutes, options, max_len)} Test: leave-one-out, full ranking, the "
        "history masked, ranked by temporec's code (MRR over the whole ranking); intervals: bootstrap over the test "
        'users. "RecBole\'s own": its evaluator on the same model and test cases, which for sequential models does '
        "not mask the history. Every RecBole row's split was checked equal to temporec's case by case"
        f"{checked_cases(rows, peers)}. Minutes: training and validation (temporec's rows: their whole `train` call)."
        "\n\n"
        + "\n".join(table(rows, peers))
        + "\n\nThe harness check (RecBole's Pop by both harnesses):\n\n"
        + check_text
    )


# -- the retail protocol (Taobao) -------------------------------------------------------


def retail_check(dataset: Dataset, work: Path, options: dict) -> dict:
    """The retail harness against RecBole's: (1) its ranks (``next_item_ranks`` over
    ``retail_cases``) against RecBole's evaluator on Pop with its ties broken (as in
    ``check``), both masking the history but for the target (RecBole's evaluator does so for
    a general model); (2) the scores
    of the histories as ``history_scorer`` hands them to a sequential model (SASRec as
    initialised) against those of RecBole's own test rows."""
    rb = recbole_modules()
    cases, catalog = retail_cases(dataset, "test"), dataset.catalog
    history_masks = [rule_mask(EventsDomain(), case.history, catalog) for case in cases]  # the default rule
    for case, allowed in zip(cases, history_masks):
        allowed[catalog.index[case.target]] = True  # as RecBole's evaluator does (and ``rank_split``)
    prep = prepare(rb, "Pop", dataset, work / "retail-check-pop", options)
    model, trainer, _ = fit_recbole(rb, prep, 0)
    exact = exact_counts(prep)
    key = exact.view(-1).double() * len(exact) + torch.arange(len(exact), dtype=torch.float64)
    set_counts(model, torch.argsort(torch.argsort(key)).view(-1, 1))
    theirs = recbole_test(trainer, prep)
    with history_scorer(rb, model, prep, catalog) as score:
        ours = _at_k(next_item_ranks(score, cases, catalog, history_masks))
    prep = prepare(rb, "SASRec", dataset, work / "retail-check-sasrec", options)
    model, _ = recbole_model(rb, prep)
    s = eval_split(prep.seqs, "test")
    histories = [dataset.sequences[prep.seqs.users[u]][:stop] for u, stop in zip(s.users, s.stops)]
    with history_scorer(rb, model, prep, catalog) as score:
        difference = (score(histories) - scorer(rb, model, prep, "test")(s.users, s.stops)).abs().max().item()
    return {
        "cases": len(cases),
        "recbole": [theirs[f"hit@{K}"], theirs[f"ndcg@{K}"], theirs[f"mrr@{K}"]],
        "ours": ours,
        "difference": difference,
    }


def render_retail_check(result: dict) -> str:
    lines = [
        f"The retail harness check ({result['cases']} test cases): Pop with its ties broken, the history but the "
        "target masked, by "
        "RecBole's evaluator and by the retail harness's ranking (`next_item_ranks`); and the scores of the "
        "histories as the retail harness hands them to RecBole's SASRec (as initialised) against those of RecBole's "
        f"own test rows: they differ by at most {result['difference']:.1e}.",
        "",
        f"| Pop, ties broken | HR@{K} | NDCG@{K} | MRR@{K} |",
        "| --- | ---: | ---: | ---: |",
    ]
    for harness, key in (("RecBole's evaluator", "recbole"), ("temporec's retail harness", "ours")):
        lines.append(f"| {harness} | " + " | ".join(f"{v:.6f}" for v in result[key]) + " |")
    return "\n".join(lines)


def retail_check_passes(result: dict) -> bool:
    agree = all(abs(a - b) < 1e-6 for a, b in zip(result["recbole"], result["ours"]))
    return agree and result["difference"] < 1e-5


def fit_retail(dataset: Dataset, peer: Peer, minutes: float, folder: Path) -> tuple[LoadedModel, dict]:
    """Train ``peer``'s head as ``temporec train --domain retail`` does (the domain's
    defaults over domains.py's retail settings) within ``minutes``; the loaded model and
    its epochs."""
    registry = load_registry()
    domain_cls = registry.domains["retail"]
    base = TrainConfig(**RETAIL_SETTINGS, time_budget_s=minutes * 60, head_options=peer.head_options)
    path = train(
        dataset,
        registry.heads[peer.head],
        torch.zeros(len(dataset.catalog), 0),
        domain=domain_cls,
        encoder_name="local",
        encoder_model_id="(none: ids and categories)",
        out_dir=folder,
        config=domain_cls().training_config(dataset, base),
    )
    trained = read_manifest(path).metrics
    return load_model(path, registry.heads), {
        "epochs": int(trained["epochs"]),
        "best_epoch": int(trained["best_epoch"]),
    }


def measure_retail(run: RetailRun, data: Path, minutes: float, work: str) -> dict:
    """One row of a retail table, in its own process: trained on its task's events and
    tested on each user's last one, ranked under the retail rules."""
    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.ERROR)
    peer, dataset = run.peer, retail_data(load_set(data), run.task)
    catalog, folder = dataset.catalog, Path(work) / run.task.replace(" ", "-") / peer.name
    test = retail_cases(dataset, "test")
    started = time.monotonic()
    if not peer.recbole:
        loaded, trained = fit_retail(dataset, peer, minutes, folder)
        ranks = next_item_ranks(artifact_scorer(loaded), test, catalog, retail_masks(test, catalog))
        return {"ranks": ranks.numpy(), **trained, "seconds": time.monotonic() - started, "recbole": None}
    rb = recbole_modules()
    prep, cases = checked_prep(rb, peer, dataset, folder, run.name)
    valid = retail_cases(dataset, "valid")
    valid_masks = retail_masks(valid, catalog)

    def validate(model) -> float:
        with history_scorer(rb, model, prep, catalog) as score:
            return summarize(next_item_ranks(score, valid, catalog, valid_masks))[f"ndcg@{K}"]

    model, trainer, trained = fit_recbole(rb, prep, minutes * 60, validate)
    with history_scorer(rb, model, prep, catalog) as score:
        ranks = next_item_ranks(score, test, catalog, retail_masks(test, catalog))
    return {
        "ranks": ranks.numpy(),
        **trained,
        "recbole": recbole_test(trainer, prep),
        "cases": cases,
    }


def retail_baselines(dataset: Dataset) -> tuple[tuple[Peer, ...], dict[str, dict]]:
    """The retail domain's baselines on a task's test cases (``RetailDomain.baselines``:
    counted over the test histories), as rows."""
    cases, catalog = retail_cases(dataset, "test"), dataset.catalog
    scorers = RetailDomain().baselines(dataset, cases)
    peers = (
        Peer("recent", "the history's items, latest first, then popularity (the retail baseline)", head=BASELINE),
        Peer("popularity", "item counts over the test histories", head=BASELINE),
    )
    masks = retail_masks(cases, catalog)
    rows = {
        p.name: {"ranks": next_item_ranks(scorers[p.name], cases, catalog, masks).numpy(), "recbole": None}
        for p in peers
    }
    return peers, rows


def render_retail(
    rows: dict[str, dict], peers: list[Peer], dataset: Dataset, minutes: float, options: dict, checks: str, max_len: int
) -> str:
    parts = [
        f"Data: {described(dataset)}, no item text: RecBole's feature-aware rows and temporec's read the items' "
        f"categories. {budget(minutes, options, max_len)} BERT4Rec trains in batches of 512 (at 2,048 its logits over "
        "the catalog would take about 16 GB). RecBole's rows see the items alone (no actions); "
        "temporec's rows train with the retail domain's defaults (the actions as inputs, purchase-weighted targets, "
        "repeat-aware scores) and validate by their own code (the history masked but for the target); RecBole's "
        "validate by the retail protocol. Test: the retail domain's own protocol (`RetailDomain.next_item_cases` "
        "and `evaluate_next_item`'s ranks): each user's last event, ranked against the whole catalog with the "
        "retail rules applied (durable purchased items masked; viewed, carted and favourited items stay, so a "
        "repeat can be a hit), ties in a seeded random order; MRR over the whole ranking; intervals: bootstrap "
        'over the test users. "RecBole\'s own": its evaluator on the same model and test cases (nothing masked). '
        "Every RecBole row's split was checked equal to temporec's case by case. The next-purchase task cuts each "
        "history after its last purchase and keeps users with at least 4 events. Minutes: training and validation "
        "(temporec's rows: their whole `train` call)."
    ]
    for task in RETAIL_TASKS:
        data = retail_data(dataset, task)
        baselines, baseline_rows = retail_baselines(data)
        task_rows = {**baseline_rows, **{p.name: rows[RetailRun(p, task).name] for p in peers}}
        task_peers = [*baselines, *peers]
        checked = checked_cases(task_rows, task_peers)
        parts.append(
            f"### {task} ({len(retail_cases(data, 'test'))} users)\n\n"
            + (f"RecBole's split, checked equal to temporec's{checked}.\n\n" if checked else "")
            + "\n".join(table(task_rows, task_peers, reference="recent"))
        )
    parts.append(checks)
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    own = argparse.ArgumentParser(add_help=False)
    names = list(dict.fromkeys(p.name for p in (*PEERS, *RETAIL_HEADS)))
    own.add_argument("--models", nargs="+", choices=names)
    own.add_argument("--check", action="store_true")
    own.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    own.add_argument("--max-len", type=int, help=f"the input window (default {MAX_LEN}; ml-1m: {WINDOWS['ml-1m']})")
    mine, rest = own.parse_known_args(argv)
    args = arguments(__doc__, MINUTES, rest, sets=(*SETS, "ml-1m", RETAIL_SET))
    options = {}
    for option in mine.option:
        key, sep, value = option.partition("=")
        if not sep:
            raise SystemExit(f"--option {option!r}: expected KEY=VALUE")
        options[key] = yaml.safe_load(value)
    max_len = mine.max_len or WINDOWS.get(args.set, MAX_LEN)
    retail = args.set == RETAIL_SET
    available = peers_of(args.set)
    unknown = set(mine.models or ()) - {p.name for p in available}
    if unknown:
        raise SystemExit(f"--models: {sorted(unknown)} not in {args.set}'s rows: {[p.name for p in available]}")
    started = time.monotonic()
    dataset = load_set(args.folder)
    shared = {"MAX_ITEM_LIST_LENGTH": max_len, **options}  # every row's, RecBole's and temporec's
    with tempfile.TemporaryDirectory(prefix="temporec-peers-") as work:
        result = check(dataset, Path(work), shared)
        retail_result = retail_check(dataset, Path(work), shared) if retail else None
    check_text = render_check(result)
    if retail_result:
        check_text = f"The split and metric check (RecBole's Pop by both harnesses):\n\n{check_text}\n\n"
        check_text += render_retail_check(retail_result)
    print(check_text, flush=True)
    if not check_passes(result) or (retail_result and not retail_check_passes(retail_result)):
        print("the harness check failed: the two harnesses do not measure alike", file=sys.stderr)
        return 1
    if mine.check:
        return 0
    own_settings = RETAIL_CONFIG if retail else {}
    peers = [
        replace(p, config={**p.config, **own_settings.get(p.name, {}), **shared})
        for p in available
        if p.name in (mine.models or names)
    ]
    if retail:
        rows = side_by_side(measure_retail, [RetailRun(p, task) for task in RETAIL_TASKS for p in peers], args)
        body = render_retail(rows, peers, dataset, args.minutes, options, check_text, max_len)
    else:
        rows = side_by_side(measure, peers, args)
        body = render(rows, peers, dataset, args.minutes, options, check_text, max_len)
    if args.minutes < MINUTES:
        body = f"**Harness check, short budgets ({args.minutes:g} min a model): not the final comparison.**\n\n{body}"
    section = "peers-taobao" if retail else f"peers-{args.set}"
    results_file.record(args.out, section, "peers.py", argv, started, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
