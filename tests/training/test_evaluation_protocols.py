"""The domains' metrics and baselines (temporec.training.protocols), on cases small
enough to check by hand."""

import math

import pytest
import torch

from temporec.contract.types import Catalog, Event
from temporec.training.protocols import (
    BM25,
    ImpressionCase,
    NextItemCase,
    ReplyCase,
    auc,
    embedding_scorer,
    evaluate_impressions,
    evaluate_next_item,
    evaluate_replies,
    handoff_rates,
    impression_metrics,
    next_item_ranks,
    popularity_scorer,
    ranked,
    recent_scorer,
    reply_metrics,
    target_rank,
)
from temporec_plugins.domains.video import VideoDomain

CATALOG = Catalog(["a", "b", "c", "d"], ["red apple", "green apple", "blue sky", "red sky"])


def fixed(rows: list[list[float]]):
    """A scorer that returns the given scores, one row per history in order."""
    table = torch.tensor(rows)
    return lambda histories: table[: len(histories)].clone()


def test_auc_counts_ties_as_half():
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0])
    assert auc(labels, torch.tensor([0.9, 0.1, 0.5, 0.3])) == 0.75  # of 4 pairs, (0.3 vs 0.5) is lost
    assert auc(labels, torch.ones(4)) == 0.5


def test_impression_metrics_match_mind_on_a_worked_example():
    generator = torch.Generator().manual_seed(0)
    # clicks at ranks 2 and 3 of four: MRR = (1/2 + 1/3) / 2; DCG = 1/log2(3) + 1/log2(4)
    metrics = impression_metrics([0, 1, 1, 0], torch.tensor([0.9, 0.8, 0.7, 0.1]), generator)
    assert metrics["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    ideal = 1 + 1 / math.log2(3)
    assert metrics["ndcg@5"] == metrics["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / ideal)
    assert metrics["auc"] == 0.5


def test_a_ranker_that_cannot_tell_items_apart_scores_like_random_order():
    cases = [ImpressionCase([], ["a", "b", "c", "d"], [1, 0, 0, 0])] * 400
    results, skipped = evaluate_impressions({"constant": popularity_scorer(torch.zeros(4))}, cases, CATALOG)
    assert skipped == 0 and results["constant"]["auc"] == 0.5
    assert results["constant"]["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4, abs=0.03)


def test_impression_auc_and_ndcg_come_with_a_bootstrap_interval_over_impressions():
    # half the impressions ranked right (AUC 1), half wrong (AUC 0)
    cases = [ImpressionCase([], ["a", "d"], [1, 0])] * 50 + [ImpressionCase([], ["a", "d"], [0, 1])] * 50
    metrics = evaluate_impressions({"fixed": fixed([[1, 0, 0, 0]] * 100)}, cases, CATALOG)[0]["fixed"]
    assert metrics["auc"] == 0.5
    assert 0.35 < metrics["auc_low"] < 0.5 < metrics["auc_high"] < 0.65
    assert metrics["ndcg@10_low"] < metrics["ndcg@10"] < metrics["ndcg@10_high"]


def test_next_item_metrics_come_with_a_bootstrap_interval_over_users():
    cases = [NextItemCase([Event("a")], "b")] * 30 + [NextItemCase([Event("a")], "d")] * 30
    metrics = evaluate_next_item({"fixed": fixed([[0, 3, 2, 1]] * 60)}, cases, CATALOG, VideoDomain())["fixed"]
    # "b" ranks first, "d" third: MRR (1 + 1/3) / 2
    assert metrics["mrr"] == pytest.approx(2 / 3)
    assert metrics["mrr_low"] < metrics["mrr"] < metrics["mrr_high"]
    assert metrics["hr@10_low"] == metrics["hr@10"] == metrics["hr@10_high"] == 1.0


def test_impressions_without_both_a_click_and_a_non_click_are_skipped():
    cases = [ImpressionCase([], ["a", "b"], [1, 0]), ImpressionCase([], ["a", "b"], [0, 0])]
    results, skipped = evaluate_impressions({"fixed": fixed([[1, 0, 0, 0]] * 2)}, cases, CATALOG)
    assert skipped == 1 and results["fixed"]["auc"] == 1.0


def test_target_rank_puts_a_forbidden_target_last_and_skips_forbidden_items():
    generator = torch.Generator().manual_seed(0)
    scores = torch.tensor([5.0, float("-inf"), 1.0, 3.0])
    assert target_rank(scores, 2, generator) == 2
    assert target_rank(scores, 1, generator) == 4


def test_ranked_orders_best_first():
    order = ranked(torch.tensor([[0.1, 0.9, 0.5]]), torch.Generator().manual_seed(0))
    assert order.tolist() == [[1, 2, 0]]


def test_next_item_evaluation_applies_the_domain_rules():
    history = [Event("a", "watch"), Event("b", "watch")]
    cases = [NextItemCase(history, "c")]
    # "a" and "b" outscore "c", but the video domain does not repeat watched titles
    results = evaluate_next_item({"fixed": fixed([[9, 8, 7, 1]])}, cases, CATALOG, VideoDomain())
    assert results["fixed"]["mrr"] == 1.0


def test_recent_ranks_the_history_latest_first_then_popularity():
    scores = recent_scorer(CATALOG, torch.tensor([0.0, 0.0, 5.0, 1.0]))([[Event("b"), Event("a")]])[0]
    assert torch.argsort(scores, descending=True).tolist() == [0, 1, 2, 3]


def test_bm25_prefers_documents_with_the_rarer_query_term():
    index = BM25(CATALOG.texts)
    scores = index.scores("red sky")
    assert scores.argmax() == 3 and scores[2] > 0 and scores[1] == 0


def test_frozen_encoder_weighs_later_events_more():
    embeddings = torch.eye(4)
    scorer = embedding_scorer(embeddings, CATALOG, decay=0.5)
    scores = scorer([[Event("a"), Event("c")]])[0]
    assert scores[2] > scores[0] > scores[1] == 0


def test_reply_metrics_count_accuracy_precision_and_rank():
    cases = [ReplyCase([Event("", "user", 0, "hi")], ["b", "c"]), ReplyCase([Event("", "user", 0, "yo")], ["d"])]
    results = evaluate_replies({"fixed": fixed([[4, 3, 2, 1], [4, 3, 2, 1]])}, cases, CATALOG)["fixed"]
    # case 1: ranking a, b, c, d -> first right at 2, two right in the top 3; case 2: "d" last
    assert results["accuracy@1"] == 0 and results["accuracy@3"] == 0.5
    assert results["p@3"] == pytest.approx((2 / 3 + 0) / 2)
    assert results["mrr"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert reply_metrics(torch.tensor([[True, False]]))["p@1"] == 1.0


def test_reply_metrics_bound_accuracy_and_mrr_by_their_bootstrap_interval():
    # 100 cases: the first 60 right at rank 1, the rest at rank 2
    hits = torch.zeros(100, 3, dtype=torch.bool)
    hits[:60, 0] = True
    hits[60:, 1] = True
    metrics = reply_metrics(hits)
    assert metrics["accuracy@1"] == pytest.approx(0.6)
    assert 0.45 < metrics["accuracy@1_low"] < 0.6 < metrics["accuracy@1_high"] < 0.75
    assert metrics["accuracy@3_low"] == metrics["accuracy@3_high"] == 1.0  # every case is right by rank 2
    assert metrics["mrr"] == pytest.approx(0.6 + 0.4 / 2)
    assert metrics["mrr_low"] < metrics["mrr"] < metrics["mrr_high"]


def test_handoff_rates_answer_only_the_confident_cases():
    rates = handoff_rates(torch.tensor([0.9, 0.2, 0.6]), torch.tensor([True, True, False]), 0.5)
    assert rates == {"answered": pytest.approx(2 / 3), "accuracy@1.answered": 0.5}
    assert math.isnan(handoff_rates(torch.tensor([0.1]), torch.tensor([True]), 0.5)["accuracy@1.answered"])


def test_next_item_ranks_are_the_ranks_the_metrics_summarize():
    cases = [NextItemCase([Event("a")], "b"), NextItemCase([Event("a")], "d"), NextItemCase([Event("a")], "a")]
    allowed = torch.tensor([False, True, True, True])  # "a" forbidden: its case ranks last
    ranks = next_item_ranks(fixed([[0, 3, 2, 1]] * 3), cases, CATALOG, [allowed] * 3)
    assert ranks.tolist() == [0, 2, 4]
