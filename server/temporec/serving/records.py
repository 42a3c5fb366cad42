"""The records the service answers with, besides a ``Recommendation``: what is installed
and served (``ListComponents``) and how a reload went. The transport translates them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ComponentInfo:
    kind: str
    name: str
    plugin: str
    description: str
    details: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelInfo:
    domain: str
    head: str
    encoder: str
    version: str
    path: str
    data_name: str
    data_fingerprint: str
    metrics: dict[str, float]
    items: int
    created: str


@dataclass
class Components:
    encoders: list[ComponentInfo]
    heads: list[ComponentInfo]
    domains: list[ComponentInfo]
    models: list[ModelInfo]


@dataclass
class ReloadResult:
    reloaded: bool  # False: the reload failed and the previous models still serve
    models: list[ModelInfo]  # the models served after the reload
    errors: list[str] = field(default_factory=list)  # why it failed, one line per artifact


@dataclass
class TrackResult:
    stored: int  # new events
    duplicates: int  # events stored before (retries), or repeated within the call
    expired: int = 0  # older than the store's retention: not kept


@dataclass
class Classified:
    """Texts classified by a model (``RecommenderService.classify``): ``probabilities``
    (n_texts, n_classes) over the model's catalog items ``classes``, and the texts'
    vectors as the model's encoder gave them."""

    classes: list[str]
    probabilities: Any  # torch.Tensor; typed loosely so that this module needs no torch
    vectors: Any
    model_version: str
