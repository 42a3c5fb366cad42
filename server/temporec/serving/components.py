"""What ``ListComponents`` reports: every installed head, domain and encoder with the
plugin that registered it and its details, and every served model."""

from __future__ import annotations

from collections.abc import Callable

from temporec.contract.options import option_defaults, option_text
from temporec.contract.registry import Registry
from temporec.serving.batching import ServingModel
from temporec.serving.encoder_pool import EncoderPool
from temporec.serving.records import ComponentInfo, Components, ModelInfo


def list_components(
    registry: Registry, models: list[ServingModel], encoders: EncoderPool, serving_encoder: Callable[[str], str]
) -> Components:
    def infos(kind: str) -> list[ComponentInfo]:
        owners = {name: p.name for p in registry.plugins for name in p.registered[kind]}
        result = []
        for name, cls in sorted(registry.kind(kind).items()):
            description = getattr(cls, "description", "") or (cls.__doc__ or "").strip().split("\n")[0]
            result.append(
                ComponentInfo(kind[:-1], name, owners.get(name, ""), description, _details(kind, name, cls, encoders))
            )
        return result

    served = [
        ModelInfo(
            m.domain,
            m.head,
            serving_encoder(m.encoder),
            m.version,
            str(s.loaded.path),
            m.data_name,
            m.data_fingerprint,
            dict(m.metrics),
            len(s.loaded.catalog),
            m.created,
        )
        for s in models
        for m in [s.loaded.manifest]
    ]
    return Components(infos("encoders"), infos("heads"), infos("domains"), served)


def _details(kind: str, name: str, cls, encoders: EncoderPool) -> dict[str, str]:
    if kind == "heads":
        requires = {"requires": ",".join(sorted(cls.requires))} if cls.requires else {}
        return {f"option.{k}": str(v) for k, v in cls.options.items()} | requires
    if kind == "domains":
        options = {f"option.{k}": option_text(v) for k, v in option_defaults(cls.request_options).items()}
        provides = ",".join(sorted(cls.provides))
        actions = ",".join(cls.actions) or "(from the data)"  # e.g. the events domain's
        return {"actions": actions, "default_head": cls.default_head, "provides": provides, **options}
    if name in encoders.started:
        return dict(encoders.started[name].describe())
    return {f"option.{k}": str(v) for k, v in encoders.options.get(name, {}).items()}
