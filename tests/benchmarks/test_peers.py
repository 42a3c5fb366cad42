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
