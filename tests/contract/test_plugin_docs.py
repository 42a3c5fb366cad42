"""The plugin guide keeps up with the plugin interface (after datasette's tests that every
plugin hook is documented and tested): each hook in ``temporec.contract.hookspecs`` has a
docstring, a section in docs/plugins.md named after it, an implementation in the example
package (tests/plugin_example) and a test of it in tests/contract/test_plugin_example.py; each
public member of the component base classes is described in the guide. A new hook or
member without documentation, example or test fails here."""

import re
from importlib import metadata

import pluggy
import pytest

from conftest import ROOT
from temporec import Domain, Encoder, Head
from temporec.contract import hookspecs
from temporec.contract.registry import ENTRY_POINT_GROUP

TESTS = ROOT / "tests"
GUIDE = (TESTS.parent / "docs" / "plugins.md").read_text(encoding="utf-8")
EXAMPLE_TESTS = (TESTS / "contract" / "test_plugin_example.py").read_text(encoding="utf-8")
HOOKS = sorted(name for name, value in vars(hookspecs).items() if hasattr(value, f"{ENTRY_POINT_GROUP}_spec"))
SECTIONS = set(re.findall(r"^### (\w+)\s*$", GUIDE, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def example_hooks(example_plugin_path):
    """Hook name -> the example distribution's entry points that implement it, as pluggy
    sees them when the pip-installed package is registered."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(example_plugin_path))
        manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        manager.add_hookspecs(hookspecs)
        for entry_point in metadata.distribution("temporec-example-plugin").entry_points:
            assert entry_point.group == ENTRY_POINT_GROUP
            manager.register(entry_point.load(), name=entry_point.name)
    return {hook: [impl.plugin_name for impl in getattr(manager.hook, hook).get_hookimpls()] for hook in HOOKS}


def test_the_hooks_are_found():
    assert {"register_heads", "register_domains", "register_encoders"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring(hook):
    assert (getattr(hookspecs, hook).__doc__ or "").strip(), f"hookspecs.{hook} has no docstring"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_section_in_the_guide(hook):
    assert hook in SECTIONS, f"docs/plugins.md has no section '### {hook}'"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_implemented_by_the_example_package(hook, example_hooks):
    assert example_hooks[hook], f"tests/plugin_example implements no {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_tested_through_the_example_package(hook):
    assert re.search(rf"^def test_{hook}_\w+\(", EXAMPLE_TESTS, flags=re.MULTILINE), (
        f"tests/contract/test_plugin_example.py has no test_{hook}_... test"
    )


def test_the_guide_has_no_section_for_a_hook_that_does_not_exist():
    hook_like = {section for section in SECTIONS if section.startswith("register_")}
    assert hook_like <= set(HOOKS)


@pytest.mark.parametrize("base", [Head, Domain, Encoder], ids=lambda base: base.__name__)
def test_every_public_member_of_a_base_class_is_described(base):
    members = [name for name in vars(base) if not name.startswith("_")]
    missing = [name for name in members if not re.search(rf"`{name}[`(]", GUIDE)]
    assert not missing, f"docs/plugins.md does not describe {base.__name__}.{', .'.join(missing)}"
