"""Ranking metrics, splits and the popularity baseline: hand-computed cases, a per-user
reference loop, and the pinned ML-1M popularity numbers."""

import math

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA
from temporec.contract.types import Catalog, Dataset, Event
from temporec.data import k_core, load_dataset
from temporec.training.leave_one_out import evaluate_popularity, evaluate_recent, rank_split
from temporec.training.ranking_metrics import bootstrap_interval, per_user, summarize, target_ranks
from temporec.training.splits import (
    IGNORE,
    encode,
    eval_split,
    history_pairs,
    prefix_counts,
    training_examples,
)

ML1M = SHARED_DATA / "ml-1m"


def dataset_of(histories: dict[str, str], n_items: int = 6) -> Dataset:
    """Histories as strings of one-digit item ids, e.g. {"u": "0123"}."""
    ids = [str(i) for i in range(n_items)]
    sequences = {user: [Event(i, "", float(t + 1)) for t, i in enumerate(items)] for user, items in histories.items()}
    return Dataset("toy", Catalog(ids, [f"item {i}" for i in ids]), sequences)


def test_rank_counts_strictly_higher_items_and_skips_the_history():
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.7, 0.1], [0.2, 0.3, 0.4, 0.5, 0.6]])
    targets = torch.tensor([1, 0])
    # Row 0: item 0 (0.9) is history, item 2 ties the target (counts for it), item 3 beats it.
    # Row 1: the target itself is in the history: its own score still counts.
    masked = (torch.tensor([0, 1, 1]), torch.tensor([0, 0, 4]))
    assert target_ranks(scores, targets, masked).tolist() == [1, 3]


def test_summarize_by_hand():
    metrics = summarize(np.array([0, 1, 4, 9, 30]), ks=(5, 10))
    assert metrics["hr@5"] == pytest.approx(3 / 5)
    assert metrics["hr@10"] == pytest.approx(4 / 5)
    assert metrics["ndcg@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 5)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(11)) / 5)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 10 + 1 / 31) / 5)


def test_leave_one_out_split_and_history():
    seqs = encode(dataset_of({"a": "01234", "b": "52", "c": "345"}), ["watch"])
    test, valid = eval_split(seqs, "test"), eval_split(seqs, "valid")
    assert test.users.tolist() == valid.users.tolist() == [0, 2]  # "b" has too few events
    assert test.targets.tolist() == [4, 5] and valid.targets.tolist() == [3, 4]
    rows, items = history_pairs(seqs, test.users, test.stops)
    assert list(zip(rows.tolist(), items.tolist())) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 3), (1, 4)]


def test_training_windows_cover_every_pair_before_the_validation_target_once():
    seqs = encode(dataset_of({"a": "0123450", "b": "123"}), ["watch"])
    examples = training_examples(seqs, max_len=2)
    # "a" trains on 0123 4: pairs 0>1 1>2 2>3 3>4, as two windows, the latest first; "b" has none.
    assert examples.inputs.items.tolist() == [[2, 3], [0, 1]]
    assert examples.targets.tolist() == [[3, 4], [1, 2]]
    short = training_examples(encode(dataset_of({"a": "0123"}), ["watch"]), max_len=3)
    assert short.targets.tolist() == [[IGNORE, IGNORE, 1]]
    assert short.inputs.mask.tolist() == [[False, False, True]]


def test_popularity_counts_the_prefix_before_each_target():
    seqs = encode(dataset_of({"a": "0011", "b": "212"}), ["watch"])
    assert prefix_counts(seqs, "test", 6).tolist() == [2, 2, 1, 0, 0, 0]  # "001" + "21"
    assert prefix_counts(seqs, "valid", 6).tolist() == [2, 0, 1, 0, 0, 0]  # "00" + "2"


def test_batched_ranks_equal_a_per_user_reference():
    rng = np.random.default_rng(0)
    histories = {f"u{u}": "".join(map(str, rng.integers(0, 10, rng.integers(3, 9)))) for u in range(40)}
    seqs = encode(dataset_of(histories, n_items=10), ["watch"])
    table = torch.from_numpy(rng.integers(0, 4, (40, 10))).float()  # many ties
    ranks = rank_split(lambda users, _: table[users].clone(), seqs, "test", 7, torch.device("cpu"))
    expected = []
    for u, items in enumerate(histories.values()):
        history, target = {int(i) for i in items[:-1]}, int(items[-1])
        expected.append(sum(table[u, j] > table[u, target] for j in range(10) if j not in history))
    assert ranks.tolist() == expected


@pytest.mark.skipif(not ML1M.is_dir(), reason=f"shared data set absent: {ML1M}")
def test_popularity_reproduces_the_pinned_ml1m_numbers():
    dataset = k_core(load_dataset(ML1M))
    seqs = encode(dataset, ["watch"])
    valid = evaluate_popularity(seqs, "valid", len(dataset.catalog))
    test = evaluate_popularity(seqs, "test", len(dataset.catalog))
    pinned_valid = {"hr@10": 0.0435, "ndcg@10": 0.0216, "hr@20": 0.0733, "ndcg@20": 0.0291}
    pinned_test = {
        "hr@5": 0.0219,
        "ndcg@5": 0.0138,
        "hr@10": 0.0392,
        "ndcg@10": 0.0193,
        "hr@20": 0.0700,
        "ndcg@20": 0.0271,
    }
    assert {k: round(valid[k], 4) for k in pinned_valid} == pinned_valid
    assert {k: round(test[k], 4) for k in pinned_test} == pinned_test


def test_recent_ranks_the_history_first_then_popularity():
    # a and b come back to an item of their history (rank 0: the history's other items are
    # masked as for any ranker); c's target 5 is new and never seen before the test targets,
    # so items 0, 1 and 2 (popular, outside c's history 3 4) come before it.
    seqs = encode(dataset_of({"a": "1212", "b": "0340", "c": "345"}), ["watch"])
    metrics = evaluate_recent(seqs, "test", 6)
    assert metrics["mrr"] == pytest.approx((1 + 1 + 1 / 4) / 3) and metrics["hr@5"] == 1.0


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_users():
    rng = np.random.default_rng(0)
    few, many = rng.integers(0, 40, 200), rng.integers(0, 40, 20_000)
    for ranks in (few, many):
        low, high = bootstrap_interval(ranks, "hr@10")
        assert low < summarize(ranks)["hr@10"] < high
    width = lambda ranks: -np.subtract(*bootstrap_interval(ranks, "ndcg@10"))  # noqa: E731
    assert width(many) < width(few) / 5  # about sqrt(100) = 10 times narrower


def test_per_user_metrics_average_to_the_summary_and_refuse_unknown_names():
    ranks = torch.tensor([0, 3, 12, 40])
    assert per_user(ranks, "ndcg@10").mean().item() == pytest.approx(summarize(ranks)["ndcg@10"])
    with pytest.raises(ValueError, match="hr@K, ndcg@K or mrr"):
        per_user(ranks, "recall@10")
