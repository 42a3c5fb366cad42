"""temporec 0.1's module paths still import, each as the module now at its new path, with a
DeprecationWarning that names where it went (CHANGELOG, 0.2)."""

import importlib
import sys

import pytest

from temporec._moved import MOVED


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_path_imports_the_moved_module_with_a_warning(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_the_plugin_contract_imports_from_temporec_itself():
    import temporec
    from temporec.contract import NAMES

    for name, module in NAMES.items():
        assert getattr(temporec, name) is getattr(importlib.import_module(f"temporec.contract.{module}"), name)
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        temporec.Nothing  # noqa: B018


def test_a_0_1_plugin_import_works_unchanged(monkeypatch):
    monkeypatch.delitem(sys.modules, "temporec.types", raising=False)
    with pytest.warns(DeprecationWarning):
        from temporec.types import Query  # noqa: F401  (as tests/plugin_example imported it in 0.1)
