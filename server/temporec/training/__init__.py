"""Training and leave-one-out evaluation of sequential recommenders.

train(dataset, head_cls, text_embeddings, domain=..., encoder_name=..., encoder_model_id=...,
      out_dir=..., config=TrainConfig(...)) -> artifact path
evaluate_artifact(path, data=None) -> Report (model and popularity metrics)
with_items(config, "text" | "ids" | "hybrid") -> TrainConfig
hold_out_items(dataset, fraction) | without_items(dataset, items) -> ColdStartSplit
evaluate_cold_start(model, dataset, split, actions, max_len) -> cold and warm metrics
"""

from temporec.training.evaluate import (
    Report,
    evaluate_all,
    evaluate_artifact,
    evaluate_model,
    evaluate_popularity,
)
from temporec.training.experiments import (
    ITEM_REPRESENTATIONS,
    ColdStartSplit,
    evaluate_cold_start,
    hold_out_items,
    with_items,
    without_items,
)
from temporec.training.train import TrainConfig, train

__all__ = [
    "ITEM_REPRESENTATIONS",
    "ColdStartSplit",
    "Report",
    "TrainConfig",
    "evaluate_all",
    "evaluate_artifact",
    "evaluate_cold_start",
    "evaluate_model",
    "evaluate_popularity",
    "hold_out_items",
    "train",
    "with_items",
    "without_items",
]
