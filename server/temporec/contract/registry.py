"""Plugin discovery: entry points in the group ``temporec``, filtered by environment.

Plugins run arbitrary code at import, so two variables decide which are loaded:

- ``TEMPOREC_PLUGINS``: comma-separated entry-point names; when set, only these load
  (set it to an empty string to load none).
- ``TEMPOREC_BLOCK_PLUGINS``: comma-separated entry-point names never to load.

A plugin that fails to import or to register is recorded with its error and skipped:
one broken plugin never stops the others or the server.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from temporec.contract import hookspecs

ENTRY_POINT_GROUP = "temporec"
KINDS = ("heads", "domains", "encoders", "stores")

log = logging.getLogger(__name__)


@dataclass
class PluginInfo:
    name: str
    distribution: str = ""
    version: str = ""
    registered: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    error: str = ""


@dataclass
class Registry:
    """Every component that the loaded plugins registered, by kind and name."""

    heads: dict[str, type] = field(default_factory=dict)
    domains: dict[str, type] = field(default_factory=dict)
    encoders: dict[str, type] = field(default_factory=dict)
    stores: dict[str, type] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)

    def kind(self, kind: str) -> dict[str, type]:
        return getattr(self, kind)


def _names(variable: str, env) -> set[str] | None:
    value = env.get(variable)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def _entry_points(env) -> list[metadata.EntryPoint]:
    allow = _names("TEMPOREC_PLUGINS", env)
    block = _names("TEMPOREC_BLOCK_PLUGINS", env) or set()
    found = metadata.entry_points(group=ENTRY_POINT_GROUP)
    return [ep for ep in found if (allow is None or ep.name in allow) and ep.name not in block]


def load_registry(extra_plugins: dict[str, object] | None = None, env=None) -> Registry:
    """Load the entry-point plugins (plus ``extra_plugins``, name -> module or object,
    for in-process use) and collect what they register."""
    env = os.environ if env is None else env
    manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
    manager.add_hookspecs(hookspecs)
    registry = Registry()
    infos: dict[str, PluginInfo] = {}

    for ep in _entry_points(env):
        dist = ep.dist
        info = PluginInfo(ep.name, dist.name if dist else "", dist.version if dist else "")
        infos[ep.name] = info
        try:
            manager.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must not take the server down
            info.error = f"import failed: {exc!r}"
            log.error("plugin %s (%s) failed to load: %r", ep.name, info.distribution, exc)
    for name, plugin in (extra_plugins or {}).items():
        infos[name] = PluginInfo(name, "(in process)")
        try:
            manager.register(plugin, name=name)
        except Exception as exc:  # e.g. a hook implementation that fails pluggy's checks
            infos[name].error = f"register failed: {exc!r}"

    for kind in KINDS:
        caller = getattr(manager.hook, f"register_{kind}")
        for impl in caller.get_hookimpls():
            _collect(registry, kind, infos[impl.plugin_name], impl.function)
    registry.plugins = sorted(infos.values(), key=lambda info: info.name)
    return registry


def _collect(registry: Registry, kind: str, info: PluginInfo, hook) -> None:
    """Call one plugin's hook with a register callback that records what it adds."""
    table = registry.kind(kind)

    def register(component: type) -> None:
        name = getattr(component, "name", "")
        if not name:
            raise ValueError(f"{component!r} has no 'name' attribute")
        if name in table:
            raise ValueError(f"{kind[:-1]} {name!r} is already registered")
        table[name] = component
        info.registered[kind].append(name)

    try:
        hook(register=register)
    except Exception as exc:
        info.error = f"register_{kind} failed: {exc}"
        log.error("plugin %s: register_%s failed: %s", info.name, kind, exc)
