"""The sequential recommender and what it is made of and saved as.

recommender      SequenceRecommender: item tower + event embedding + a temporal head
artifacts        one directory per trained model: manifest, weights, catalog
embedding_cache  catalog text embeddings, computed once per encoder and catalog
pretrained       the default language model, its bundled weights, pooling
tuned_encoder    the language model trained with the recommender (TrainConfig.tuning lora, top)
devices          which torch device to run on
"""

from temporec.model.artifacts import (
    LoadedModel,
    Manifest,
    find_artifacts,
    load_model,
    read_manifest,
    save_model,
)
from temporec.model.devices import resolve_device
from temporec.model.embedding_cache import cache_root, catalog_embeddings
from temporec.model.pretrained import (
    DEFAULT_MODEL_ID,
    bundled_model_dir,
    mean_pool,
    resolve_source,
)
from temporec.model.recommender import (
    GAP_BUCKETS,
    SIMILARITIES,
    EventBatch,
    SequenceRecommender,
    gap_buckets,
)
from temporec.model.tuned_encoder import Tokens, TunedEncoder

__all__ = [
    "DEFAULT_MODEL_ID",
    "GAP_BUCKETS",
    "SIMILARITIES",
    "EventBatch",
    "LoadedModel",
    "Manifest",
    "SequenceRecommender",
    "Tokens",
    "TunedEncoder",
    "bundled_model_dir",
    "cache_root",
    "catalog_embeddings",
    "find_artifacts",
    "gap_buckets",
    "load_model",
    "mean_pool",
    "read_manifest",
    "resolve_device",
    "resolve_source",
    "save_model",
]
