"""Training and offline evaluation of sequential recommenders.

    next_item        train(): next-item prediction with a head; build_model, training_manifest
    leave_one_out    evaluate_artifact(): each user's last event the test, popularity beside
    protocols        the fields' evaluation protocols (next item, impressions, replies),
                     every ranker a Scorer, baselines side by side
    cold_start       item representations and items held out of training
    splits, losses, ranking_metrics   the pieces the above are made of

``train_request`` and ``eval_request`` build what ``Domain.train`` and ``Domain.evaluate``
take (``temporec.contract.training``).
"""

from temporec.contract.training import EvalRequest, Report, TrainConfig, TrainRequest
from temporec.training.cold_start import (
    ITEM_REPRESENTATIONS,
    ColdStartSplit,
    evaluate_cold_start,
    hold_out_items,
    with_items,
    without_items,
)
from temporec.training.leave_one_out import (
    eval_request,
    evaluate_all,
    evaluate_artifact,
    evaluate_model,
    evaluate_popularity,
    evaluate_recent,
    evaluate_recent_artifact,
    restrict_to_catalog,
)
from temporec.training.next_item import (
    SCHEDULES,
    build_model,
    train,
    train_request,
    training_manifest,
)
from temporec.training.protocols import (
    BM25,
    ImpressionCase,
    NextItemCase,
    ReplyCase,
    Scorer,
    TextVectors,
    artifact_scorer,
    bm25_scorer,
    embedding_scorer,
    evaluate_impressions,
    evaluate_next_item,
    evaluate_replies,
    event_text,
    flat_metrics,
    frozen_item_embeddings,
    model_scorer,
    popularity_scorer,
    recent_scorer,
    rule_mask,
)
from temporec.training.splits import MIN_EVENTS

__all__ = [
    "BM25",
    "ITEM_REPRESENTATIONS",
    "MIN_EVENTS",
    "SCHEDULES",
    "ColdStartSplit",
    "EvalRequest",
    "ImpressionCase",
    "NextItemCase",
    "Report",
    "ReplyCase",
    "Scorer",
    "TextVectors",
    "TrainConfig",
    "TrainRequest",
    "artifact_scorer",
    "bm25_scorer",
    "build_model",
    "embedding_scorer",
    "eval_request",
    "evaluate_all",
    "evaluate_artifact",
    "evaluate_cold_start",
    "evaluate_impressions",
    "evaluate_model",
    "evaluate_next_item",
    "evaluate_popularity",
    "evaluate_recent",
    "evaluate_recent_artifact",
    "evaluate_replies",
    "event_text",
    "flat_metrics",
    "frozen_item_embeddings",
    "hold_out_items",
    "model_scorer",
    "popularity_scorer",
    "recent_scorer",
    "restrict_to_catalog",
    "rule_mask",
    "train",
    "train_request",
    "training_manifest",
    "with_items",
    "without_items",
]
