"""Which models are served: every artifact under a directory, the newest version per
(domain, head, encoder), and the one that answers a query."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from temporec.contract.domains import Domain, check_compatible
from temporec.contract.errors import NotFound, TemporecError, allowed
from temporec.contract.types import Query
from temporec.model.artifacts import LoadedModel, find_artifacts, load_model
from temporec.serving.batching import ServingModel

ModelKey = tuple[str, str, str]  # (domain, head, encoder the model was trained with)


def load_models(
    models_dir: Path | None, heads: dict[str, type], domains: dict[str, Domain], device: torch.device
) -> tuple[dict[ModelKey, ServingModel], list[str]]:
    """The newest model per key under ``models_dir``, ready to serve, and one error
    message per artifact that could not be loaded (it is skipped)."""
    newest: dict[ModelKey, LoadedModel] = {}
    errors = []
    for path in find_artifacts(models_dir) if models_dir else []:
        try:
            model = load_model(path, heads)
        except Exception as exc:
            errors.append(str(exc) if isinstance(exc, TemporecError) else f"{path}: {type(exc).__name__}: {exc}")
            continue
        key = model.manifest.key
        if key[0] not in domains:
            errors.append(f"{path}: domain {key[0]!r} is not installed (installed: {allowed(domains)})")
        elif key not in newest or model.version > newest[key].version:
            newest[key] = model
    return {key: ServingModel(model, device) for key, model in newest.items()}, errors


def choose_model(
    models: dict[ModelKey, ServingModel],
    query: Query,
    domain: Domain,
    heads: dict[str, type],
    serving_encoder: Callable[[str], str],
) -> ServingModel:
    """The newest model of the query's domain with the query's head (else the domain's
    default head, else any head), encoder and version (when it names one). A head the query did not name is checked
    here against the domain's data (``_domain`` checked a named one before)."""
    candidates = [
        (key, serving)
        for key, serving in models.items()
        if key[0] == query.domain
        and (not query.encoder or serving_encoder(key[2]) == query.encoder)
        and (not query.model_version or serving.loaded.version == query.model_version)
    ]
    head = query.head or domain.default_head
    matching = [serving for key, serving in candidates if key[1] == head]
    if not matching and not query.head and candidates:
        matching = [serving for _, serving in candidates]  # the domain's default head has no model
    if not matching:
        loaded = [f"{h} ({e})" for (d, h, e) in models if d == query.domain]
        raise NotFound(
            f"head: no model is loaded for domain {query.domain!r} with head {head!r}"
            + (f" and encoder {query.encoder!r}" if query.encoder else "")
            + (f" and version {query.model_version!r}" if query.model_version else "")
            + f"; loaded for this domain: {', '.join(loaded) or '(none)'}"
        )
    chosen = max(matching, key=lambda serving: serving.loaded.version)
    if not query.head:  # e.g. a model older than the rule
        check_compatible(heads[chosen.loaded.manifest.head], domain)
    return chosen
