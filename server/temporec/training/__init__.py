"""Training and offline evaluation of sequential recommenders.

    next_item        train(): next-item prediction with a head; build_model, training_manifest
    leave_one_out    evaluate_artifact(): each user's last event the test, popularity beside
    protocols        the fields' evaluation protocols (next item, impressions, replies),
                     every ranker a Scorer, baselines side by side
    cold_start       item representations and items held out of training
    classification   accuracy, macro-F1 with bootstrap intervals; the logistic-regression probe
    encoder_tuning   training that tunes the language model (lora, top): TextTuning, TunedTexts
    conversations    train_conversations(): replies (or classes) after turns known by their text
    distributed      several processes under torchrun: each rank's share of a batch, one all-reduce a step
    splits, losses, ranking_metrics   the pieces the above are made of

``train_request`` and ``eval_request`` build what ``Domain.train`` and ``Domain.evaluate``
take (``temporec.contract.training``).
"""

from temporec.contract.training import EvalRequest, Report, TrainConfig, TrainRequest
from temporec.training.classification import (
    LogisticRegression,
    classification_metrics,
    f1_per_class,
    with_intervals,
)
from temporec.training.cold_start import (
    ITEM_REPRESENTATIONS,
    ColdStartSplit,
    cold_test_cases,
    evaluate_cold_start,
    hold_out_items,
    with_items,
    without_items,
)
from temporec.training.conversations import (
    TurnTexts,
    embed_texts,
    fit_conversations,
    reply_cases,
    train_conversations,
    turn_texts,
)
from temporec.training.encoder_tuning import (
    TUNES_ENCODER,
    TextTuning,
    TunedTexts,
    parameter_groups,
    record_tuning,
    tuned_encoder,
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
from temporec.training.lexicon import lexicon_label
from temporec.training.next_item import (
    SCHEDULES,
    TUNINGS,
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
    next_item_ranks,
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
    "TUNES_ENCODER",
    "TUNINGS",
    "ColdStartSplit",
    "EvalRequest",
    "ImpressionCase",
    "LogisticRegression",
    "NextItemCase",
    "ReplyCase",
    "Report",
    "Scorer",
    "TextTuning",
    "TextVectors",
    "TrainConfig",
    "TrainRequest",
    "TunedTexts",
    "TurnTexts",
    "artifact_scorer",
    "bm25_scorer",
    "build_model",
    "classification_metrics",
    "cold_test_cases",
    "embed_texts",
    "embedding_scorer",
    "eval_request",
    "evaluate_all",
    "evaluate_artifact",
    "evaluate_cold_start",
    "evaluate_impressions",
    "evaluate_model",
    "evaluate_next_item",
    "next_item_ranks",
    "evaluate_popularity",
    "evaluate_recent",
    "evaluate_recent_artifact",
    "evaluate_replies",
    "event_text",
    "f1_per_class",
    "fit_conversations",
    "flat_metrics",
    "frozen_item_embeddings",
    "hold_out_items",
    "lexicon_label",
    "model_scorer",
    "parameter_groups",
    "popularity_scorer",
    "recent_scorer",
    "record_tuning",
    "reply_cases",
    "restrict_to_catalog",
    "rule_mask",
    "train",
    "train_conversations",
    "train_request",
    "training_manifest",
    "tuned_encoder",
    "turn_texts",
    "with_intervals",
    "with_items",
    "without_items",
]
