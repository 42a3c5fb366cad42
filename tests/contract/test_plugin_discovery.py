"""Plugin discovery, filtering and failure isolation; ``temporec plugins``; and a real
third-party plugin distribution (tests/plugin_example) installed with pip."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import temporec
from temporec.contract.registry import load_registry
from temporec.model.recommender import EventBatch, SequenceRecommender

NO_FILTERS = {}  # an explicit environment: the caller's TEMPOREC_PLUGINS must not leak in


def plugin(registry, name):
    return next(info for info in registry.plugins if info.name == name)


def run_cli(*args, pythonpath=None, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TEMPOREC_")}
    if pythonpath:
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), environ.get("PYTHONPATH")]))
    environ.update(env)
    done = subprocess.run([sys.executable, "-m", "temporec", *args], capture_output=True, text=True, env=environ)
    assert done.returncode == 0, done.stderr
    return done.stdout


# --- first-party plugins --------------------------------------------------------------


def test_first_party_plugins_load():
    from temporec_plugins.encoders.local import LocalEncoder

    registry = load_registry(env=NO_FILTERS)
    assert registry.encoders["local"] is LocalEncoder
    assert "lstm" in registry.heads
    assert "video" in registry.domains
    for name, kind in (("local", "encoders"), ("lstm", "heads"), ("video", "domains")):
        info = plugin(registry, name)
        assert (info.distribution, info.version, info.error) == ("temporec", temporec.__version__, "")
        assert info.registered[kind] == [name]


def test_allow_list_loads_only_the_named_plugins():
    registry = load_registry(env={"TEMPOREC_PLUGINS": " local , no-such-plugin"})
    assert [info.name for info in registry.plugins] == ["local"]
    assert list(registry.encoders) == ["local"] and not registry.heads and not registry.domains


def test_an_empty_allow_list_loads_nothing():
    registry = load_registry(env={"TEMPOREC_PLUGINS": ""})
    assert registry.plugins == [] and not registry.encoders


def test_block_list_wins():
    registry = load_registry(env={"TEMPOREC_BLOCK_PLUGINS": "local,video"})
    names = [info.name for info in registry.plugins]
    assert "local" not in names and "video" not in names and "local" not in registry.encoders
    assert "lstm" in names
    registry = load_registry(env={"TEMPOREC_PLUGINS": "local", "TEMPOREC_BLOCK_PLUGINS": "local"})
    assert registry.plugins == []


# --- broken plugins ---------------------------------------------------------------------


class RaisesOnRegister:
    @temporec.hookimpl
    def register_heads(self, register):
        raise RuntimeError("my weights are missing")


class ClaimsTakenName:
    class Impostor(temporec.Encoder):
        name = "local"

        def encode(self, texts):
            return torch.zeros(len(texts), 1)

    @temporec.hookimpl
    def register_encoders(self, register):
        register(self.Impostor)


def test_a_plugin_failing_to_register_is_recorded_and_others_load():
    from temporec_plugins.encoders.local import LocalEncoder

    registry = load_registry({"broken": RaisesOnRegister(), "impostor": ClaimsTakenName()}, env=NO_FILTERS)
    assert "my weights are missing" in plugin(registry, "broken").error
    assert "register_heads" in plugin(registry, "broken").error
    assert "'local' is already registered" in plugin(registry, "impostor").error
    assert registry.encoders["local"] is LocalEncoder
    assert plugin(registry, "local").error == ""


def test_a_plugin_failing_at_import_is_recorded_and_others_load(tmp_path, monkeypatch):
    """A real installed distribution whose entry-point module raises when imported."""
    (tmp_path / "exploding_plugin.py").write_text('raise ImportError("needs libfoo.so")\n')
    dist_info = tmp_path / "exploding_plugin-2.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: exploding-plugin\nVersion: 2.0\n")
    (dist_info / "entry_points.txt").write_text("[temporec]\nexploding = exploding_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    registry = load_registry(env=NO_FILTERS)
    info = plugin(registry, "exploding")
    assert (info.distribution, info.version) == ("exploding-plugin", "2.0")
    assert "import failed" in info.error and "needs libfoo.so" in info.error
    assert "local" in registry.encoders and plugin(registry, "local").error == ""

    blocked = load_registry(env={"TEMPOREC_BLOCK_PLUGINS": "exploding"})
    assert "exploding" not in [i.name for i in blocked.plugins]


# --- the third-party example plugin -------------------------------------------------------


def test_cli_lists_the_installed_example_plugin(example_plugin_path):
    listing = json.loads(run_cli("plugins", "--json", pythonpath=example_plugin_path))
    example = next(info for info in listing["plugins"] if info["name"] == "example")
    assert example["distribution"] == "temporec-example-plugin"
    assert example["version"] == "0.1.0"
    assert example["registered"] == {"heads": ["decay"], "domains": [], "encoders": [], "stores": []}
    assert example["error"] == ""
    local = next(info for info in listing["plugins"] if info["name"] == "local")
    assert local["registered"]["encoders"] == ["local"]


def test_cli_table_and_block_list(example_plugin_path):
    table = run_cli("plugins", pythonpath=example_plugin_path)
    assert any(
        line.split()[:3] == ["example", "temporec-example-plugin", "0.1.0"] and "heads: decay" in line
        for line in table.splitlines()
    )
    blocked = json.loads(run_cli("plugins", "--json", pythonpath=example_plugin_path, TEMPOREC_BLOCK_PLUGINS="example"))
    assert "example" not in [info["name"] for info in blocked["plugins"]]
    assert blocked["filters"] == {"TEMPOREC_BLOCK_PLUGINS": "example"}


def test_cli_help_explains_the_filters():
    help_text = run_cli("plugins", "--help")
    assert "TEMPOREC_PLUGINS" in help_text and "TEMPOREC_BLOCK_PLUGINS" in help_text


@pytest.fixture
def decay_module(example_plugin_path, monkeypatch):
    """The example plugin's head module, imported from the pip-installed copy."""
    monkeypatch.syspath_prepend(str(example_plugin_path))
    import temporec_example.head

    assert Path(temporec_example.head.__file__).is_relative_to(example_plugin_path)
    return temporec_example.head


def identity_readout(head):
    with torch.no_grad():
        head.out.weight.copy_(torch.eye(head.dim))
        head.out.bias.zero_()
    return head


def test_decay_head_registers_through_the_hook(decay_module):
    registry = load_registry({"example": decay_module}, env={"TEMPOREC_PLUGINS": ""})
    assert registry.heads == {"decay": decay_module.DecayHead}


def test_decay_head_is_a_decayed_average(decay_module):
    head = identity_readout(decay_module.DecayHead(2, 8, init_decay=0.5))
    events = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]])
    states = head(events, torch.ones(1, 3, dtype=torch.bool)).states
    # weights 0.25, 0.5, 1 on the three events, divided by their sum 1.75
    assert torch.allclose(states[0, -1], torch.tensor([2.25, 2.5]) / 1.75)
    assert torch.allclose(states[0, 0], events[0, 0])


def test_decay_head_is_causal_and_ignores_padding(decay_module):
    torch.manual_seed(0)
    head = decay_module.DecayHead(4, 8).eval()
    history = torch.randn(1, 3, 4)
    padded = torch.cat([torch.randn(1, 2, 4) * 100, history], dim=1)  # garbage under the mask
    mask = torch.tensor([[False, False, True, True, True]])
    output = head(padded, mask)
    assert output.states.shape == (1, 5, 4) and output.aux_loss is None
    alone = head(history, torch.ones(1, 3, dtype=torch.bool)).states
    assert torch.allclose(output.states[:, 2:], alone, atol=1e-6)

    changed = history.clone()
    changed[0, 2] = 5.0  # only the last event differs
    later = head(changed, torch.ones(1, 3, dtype=torch.bool)).states
    assert torch.allclose(later[:, :2], alone[:, :2]) and not torch.allclose(later[:, 2], alone[:, 2])


def test_decay_head_learns_its_decay(decay_module):
    """Predicting the last event rewards forgetting: training must lower the decay."""
    torch.manual_seed(0)
    head = identity_readout(decay_module.DecayHead(8, 6, init_decay=0.9))
    head.out.requires_grad_(False)
    optimizer = torch.optim.Adam([head.decay_logit], lr=0.1)
    events, mask = torch.randn(32, 6, 8), torch.ones(32, 6, dtype=torch.bool)
    before = head.decay.mean().item()
    for _ in range(30):
        loss = (head(events, mask).states - events).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert head.decay.mean().item() < before - 0.2


def test_decay_head_in_the_sequence_recommender(decay_module):
    torch.manual_seed(0)
    model = SequenceRecommender(decay_module.DecayHead(16, 5), torch.randn(7, 12), n_actions=2).eval()
    batch = EventBatch.from_histories([[1, 2, 3], [4]], [[0, 1, 0], [1]], [[10.0, 20.0, 90.0], [5.0]], max_len=5)
    assert model.scores(batch).shape == (2, 7)


def test_decay_head_options_are_checked(decay_module):
    with pytest.raises(ValueError, match="init_decay"):
        decay_module.DecayHead(4, 8, init_decay=1.5)
    with pytest.raises(ValueError, match="unknown options"):
        decay_module.DecayHead(4, 8, half_life=3)
