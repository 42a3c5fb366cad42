"""The layout's rules, checked on the import graph built from the source (docs/architecture.md):
the core never imports a plugin, no first-party plugin imports another, plugins import only
the public surfaces, the gRPC package never imports torch, and the core has no import cycle.

An import counts where it runs: at the top of a module or inside a function. Imports under
``if TYPE_CHECKING:`` run nowhere and do not count; nor does a module's implicit import of
its parent package, which import tools do not count either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "server"
PLUGINS = ROOT / "plugins"
#: What a plugin may import: these packages' own names (each ``__init__`` is a public surface).
PUBLIC = {"temporec", "temporec.contract", "temporec.data", "temporec.model", "temporec.training", "temporec.triton"}


def module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(base: Path, package: str) -> dict[str, Path]:
    return {module_name(p, base): p for p in sorted((base / package).rglob("*.py"))}


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The modules that ``path`` (module ``module``) imports; ``from a import b`` names the
    module ``a.b`` when that is one of ``known``, else ``a``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


CORE_MODULES = sources(CORE, "temporec")
PLUGIN_MODULES = sources(PLUGINS, "temporec_plugins")
KNOWN = set(CORE_MODULES) | set(PLUGIN_MODULES)


def entry_points() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["entry-points"]["temporec"]


def plugin_home(module: str) -> str:
    """The first-party plugin (entry-point module or package) that ``module`` belongs to."""
    homes = [home for home in entry_points().values() if module == home or module.startswith(home + ".")]
    assert homes, f"{module} belongs to no plugin registered in pyproject.toml"
    return max(homes, key=len)


def test_the_core_never_imports_a_plugin():
    offenders = {
        module: sorted(i for i in imports(path, module, KNOWN) if i.split(".")[0] == "temporec_plugins")
        for module, path in CORE_MODULES.items()
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_no_first_party_plugin_imports_another():
    offenders = {}
    for module, path in PLUGIN_MODULES.items():
        if module.count(".") < 2:  # temporec_plugins, temporec_plugins.heads: folders, not plugins
            continue
        home = plugin_home(module)
        foreign = [
            i for i in imports(path, module, KNOWN) if i.startswith("temporec_plugins.") and not i.startswith(home)
        ]
        if foreign:
            offenders[module] = sorted(foreign)
    assert offenders == {}


@pytest.mark.parametrize("base", [PLUGINS, ROOT / "tests" / "plugin_example"], ids=["first-party", "example"])
def test_plugins_import_only_the_public_surfaces(base):
    offenders = {}
    for path in sorted(base.rglob("*.py")):
        module = module_name(path, base)
        used = {i for i in imports(path, module, KNOWN) if i.split(".")[0] == "temporec"}
        if used - PUBLIC:
            offenders[module] = sorted(used - PUBLIC)
    assert offenders == {}


def test_the_grpc_package_never_imports_torch():
    offenders = {
        module: sorted(i for i in imports(path, module, KNOWN) if i.split(".")[0] in ("torch", "numpy"))
        for module, path in CORE_MODULES.items()
        if module.startswith("temporec.grpc")
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), and modules
    that import themselves."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    return cycles


def core_graph() -> dict[str, set[str]]:
    return {
        module: {i for i in imports(path, module, KNOWN) if i in CORE_MODULES and i != module}
        for module, path in CORE_MODULES.items()
    }


def test_the_core_has_no_import_cycle():
    assert import_cycles(core_graph()) == []


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(import_cycles(graph)) == [["a", "b", "c"], ["e"]]


def test_the_import_reader_skips_type_checking_blocks(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\nelse:\n    import json\n"
        "def f():\n    from temporec.serving import service\n"
    )
    found = imports(path, "pkg.m", {"temporec.serving.service"})
    assert "torch" not in found and {"json", "temporec.serving.service"} <= found
