"""Training and leave-one-out evaluation of sequential recommenders.

train(dataset, head_cls, text_embeddings, domain=..., encoder_name=..., encoder_model_id=...,
      out_dir=..., config=TrainConfig(...)) -> artifact path
evaluate_artifact(path, data=None) -> Report (model and popularity metrics)
"""

from temporec.training.evaluate import (
    Report,
    evaluate_all,
    evaluate_artifact,
    evaluate_model,
    evaluate_popularity,
    format_table,
)
from temporec.training.train import TrainConfig, train

__all__ = [
    "Report",
    "TrainConfig",
    "evaluate_all",
    "evaluate_artifact",
    "evaluate_model",
    "evaluate_popularity",
    "format_table",
    "train",
]
