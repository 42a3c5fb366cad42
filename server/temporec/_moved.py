"""The module paths of temporec 0.1, kept importable with a DeprecationWarning.

0.2 grouped the package by role; a plugin written against 0.1 (``from temporec.types
import Query``) keeps working, told where the module went. CHANGELOG.md lists the moves.
These aliases will be removed in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "temporec.hookspecs": "temporec.contract.hookspecs",
    "temporec.plugins": "temporec.contract.registry",
    "temporec.heads": "temporec.contract.heads",
    "temporec.encoders": "temporec.contract.encoders",
    "temporec.domains": "temporec.contract.domains",
    "temporec.options": "temporec.contract.options",
    "temporec.types": "temporec.contract.types",
    "temporec.errors": "temporec.contract.errors",
    "temporec.artifacts": "temporec.model.artifacts",
    "temporec.embedding_cache": "temporec.model.embedding_cache",
    "temporec.devices": "temporec.model.devices",
    "temporec.service": "temporec.serving.service",
    "temporec.config": "temporec.serving.config",
    "temporec.metrics": "temporec.serving.metrics",
    "temporec.training.train": "temporec.training.next_item",
    "temporec.training.evaluate": "temporec.training.leave_one_out",
    "temporec.training.metrics": "temporec.training.ranking_metrics",
    "temporec.training.domain_eval": "temporec.training.protocols",
    "temporec.training.experiments": "temporec.training.cold_start",
}


class _Aliases(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path as the module now at its new path (the same module object)."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        warnings.warn(
            f"{spec.name} moved to {MOVED[spec.name]} in temporec 0.2; import it from there "
            "(or the plugin contract from temporec itself)",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module) -> None:
        pass  # already executed under its new name


def install() -> None:
    if not any(isinstance(finder, _Aliases) for finder in sys.meta_path):
        sys.meta_path.append(_Aliases())
