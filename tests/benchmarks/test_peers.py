"""The RecBole harness (``benchmarks/peers.py``) on tiny data: RecBole's split is temporec's,
and both harnesses measure RecBole's Pop alike. RecBole is an optional extra (``peers``)."""

import sys

import pytest

from conftest import ROOT

pytest.importorskip("recbole", reason="RecBole is not installed (the optional peers extra, see pyproject.toml)")

sys.path.insert(0, str(ROOT / "benchmarks"))
import peers  # noqa: E402
from temporec.contract.types import Catalog, Dataset, Event  # noqa: E402


def tiny(lengths: list[int], n_items: int = 15) -> Dataset:
    """Users with histories of ``lengths`` over ``n_items`` items, every event on the same day
    (so only the order given tells them apart), with a brand per item."""
    ids = [f"i{i}" for i in range(n_items)]
    catalog = Catalog(
        ids, [f"item {i}" for i in ids], {"brand": ["" if i % 4 else f"b{i % 3}" for i in range(n_items)]}
    )
    sequences = {
        f"u{u}": [Event(ids[(7 * u + 3 * t + t * t) % n_items], "purchase", 86_400.0) for t in range(n)]
        for u, n in enumerate(lengths)
    }
    return Dataset("tiny", catalog, sequences)


@pytest.fixture(scope="module")
def rb():
    return peers.recbole_modules()


@pytest.mark.parametrize("model", ["SASRec", "Pop"])
def test_recbole_splits_every_user_as_temporec_does(rb, tmp_path, model):
    prep = peers.prepare(rb, model, tiny([4, 5, 9, 12, 60, 4, 7]), tmp_path, {})
    differences = peers.split_differences(prep)
    assert all(bad == 0 for _, bad in differences.values()), differences
    assert differences["test"][0] == 7


def test_a_shorter_window_cuts_both_harnesses_inputs_alike(rb, tmp_path):
    prep = peers.prepare(rb, "SASRec", tiny([4, 5, 9, 12, 60, 4, 7]), tmp_path, {"MAX_ITEM_LIST_LENGTH": 8})
    differences = peers.split_differences(prep)
    assert all(bad == 0 for _, bad in differences.values()), differences
    model, _, _ = peers.fit_recbole(rb, prep, budget_s=5)
    assert len(peers.ranks(rb, model, prep, "test")) == 7  # the scorer's check of the cut inputs holds


def test_a_user_with_three_events_is_split_otherwise_and_the_comparison_says_so(rb, tmp_path):
    # RecBole: its one training case and its test case, no validation; temporec: validation and test.
    prep = peers.prepare(rb, "SASRec", tiny([5, 3, 6]), tmp_path, {})
    differences = peers.split_differences(prep)
    assert differences["valid"][1] > 0 and differences["train"][1] > 0


def test_both_harnesses_give_pop_the_same_metrics(tmp_path):
    result = peers.check(tiny([5, 6, 9, 12, 7, 5, 8, 10, 6, 5], n_items=40), tmp_path, {})
    assert peers.check_passes(result), peers.render_check(result)


def shop(lengths: list[int], n_items: int = 40) -> Dataset:
    """``tiny``'s histories as a shop's: views, with a cart and a purchase every few events."""
    dataset = tiny(lengths, n_items)
    actions = ("view", "view", "cart", "view", "purchase")
    sequences = {
        user: [Event(e.item_id, actions[t % len(actions)], e.timestamp) for t, e in enumerate(events)]
        for user, events in dataset.sequences.items()
    }
    return Dataset("shop", dataset.catalog, sequences)


def test_the_retail_harness_ranks_and_feeds_recbole_as_recbole_does(tmp_path):
    result = peers.retail_check(shop([5, 6, 9, 12, 7, 5, 8, 10, 6, 5]), tmp_path, {})
    assert peers.retail_check_passes(result), peers.render_retail_check(result)
    assert result["difference"] == 0.0


def test_next_purchase_cuts_after_the_last_purchase_and_keeps_recboles_split_equal(rb, tmp_path):
    data = peers.retail_data(shop([5, 6, 9, 12, 7, 4, 8, 10, 6, 5]), "next purchase")
    # purchases at positions 4 and 9: 9 events -> 5, 12 -> 10; the history of 4 has none
    assert {u: len(e) for u, e in data.sequences.items()} == {
        "u0": 5, "u1": 5, "u2": 5, "u3": 10, "u4": 5, "u6": 5, "u7": 10, "u8": 5, "u9": 5
    }  # fmt: skip
    assert all(events[-1].action == "purchase" for events in data.sequences.values())
    differences = peers.split_differences(peers.prepare(rb, "SASRec", data, tmp_path, {}))
    assert all(bad == 0 for _, bad in differences.values()), differences


def test_a_recbole_model_validated_by_the_retail_protocol_is_ranked_under_the_retail_rules(rb, tmp_path):
    data = shop([6, 9, 12, 7, 8, 10, 6, 11])
    prep = peers.prepare(rb, "GRU4Rec", data, tmp_path, {})
    valid = peers.retail_cases(data, "valid")
    scores = []

    def validate(model) -> float:
        with peers.history_scorer(rb, model, prep, data.catalog) as score:
            scores.append(score([case.history for case in valid]))
        return float(len(scores))  # each epoch better than the last

    model, _, trained = peers.fit_recbole(rb, prep, budget_s=3, validate=validate)
    assert trained["epochs"] == len(scores) >= 1 and trained["best_epoch"] == trained["epochs"]
    test = peers.retail_cases(data, "test")
    with peers.history_scorer(rb, model, prep, data.catalog) as score:
        ranks = peers.next_item_ranks(score, test, data.catalog, peers.retail_masks(test, data.catalog))
    bought = [{e.item_id for e in case.history if e.action == "purchase"} for case in test]
    # a purchased (durable) target is forbidden by the rules: it ranks last, past every item
    for case, rank, before in zip(test, ranks.tolist(), bought):
        assert (rank == len(data.catalog)) == (case.target in before)
