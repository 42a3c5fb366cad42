"""A/B experiments (docs/realtime.md): the [experiments.NAME] tables, checked at start, and
the sticky assignment of users to arms."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import replace

import pytest

from temporec.contract.stores import Exposure, TrackedEvent
from temporec.contract.types import Event, Query
from temporec.serving.config import ConfigError, load_config, resolve_experiments
from temporec.serving.experiment_report import cumulative, format_report, report
from temporec.serving.experiments import DAY_SECONDS, DEFAULT_OUTCOME_ACTIONS, Arm, Experiment, assign, bucket

TWO_ARMS = """
[experiments.heads]
domain = "tiny"
[experiments.heads.arms.a]
share = 0.25
control = true
[experiments.heads.arms.b]
share = 0.75
head = "tiny-mean"
model_version = "v9"
options = { exclude = "x" }
"""


def load(tmp_path, text):
    path = tmp_path / "temporec.toml"
    path.write_text(text)
    return load_config(path, env={})


def test_an_experiment_table_with_its_defaults(tmp_path):
    experiment = load(tmp_path, TWO_ARMS).experiments["heads"]
    assert (experiment.domain, experiment.salt, experiment.attribution_window_s) == ("tiny", "heads", DAY_SECONDS)
    assert experiment.outcome_actions == ()  # the domain's, once it is known
    assert [(a.name, a.share, a.control) for a in experiment.arms] == [("a", 0.25, True), ("b", 0.75, False)]
    assert experiment.control.name == "a"
    b = experiment.arms[1]
    assert (b.head, b.model_version, b.encoder, b.options) == ("tiny-mean", "v9", "", {"exclude": "x"})
    chosen = load(
        tmp_path,
        TWO_ARMS.replace(
            'domain = "tiny"', 'domain = "tiny"\nsalt = "s1"\nattribution_window_s = 60\noutcome_actions = ["like"]'
        ),
    )
    experiment = chosen.experiments["heads"]
    assert (experiment.salt, experiment.attribution_window_s, experiment.outcome_actions) == ("s1", 60.0, ("like",))
    assert experiment.exposure_clock == "server"
    replayed = load(tmp_path, TWO_ARMS.replace('domain = "tiny"', 'domain = "tiny"\nexposure_clock = "events"'))
    assert replayed.experiments["heads"].exposure_clock == "events"


@pytest.mark.parametrize(
    "old, new, words",
    [
        ('domain = "tiny"', 'domain = "tiny"\ncolour = "red"', "unknown key 'experiments.heads.colour'; allowed: "),
        ('domain = "tiny"', "", "experiments.heads.domain: required"),
        ("share = 0.75", "share = 0.7", "experiments.heads.arms: the shares must sum to 1, got 0.95 (a=0.25, b=0.7)"),
        ("share = 0.75", "share = 1.75", "experiments.heads.arms.b.share: must be between 0 and 1, got 1.75"),
        ("share = 0.75", 'share = "most"', "experiments.heads.arms.b.share: expected a number, got 'most'"),
        ("share = 0.75\n", "", "experiments.heads.arms.b.share: required"),
        ("control = true", "control = false", "exactly one arm must have control = true, got 0"),
        ("share = 0.75", "share = 0.75\ncontrol = true", "exactly one arm must have control = true, got 2 (a, b)"),
        ('head = "tiny-mean"', 'heads = "tiny-mean"', "unknown key 'experiments.heads.arms.b.heads'; allowed: "),
        ('domain = "tiny"', 'domain = "tiny"\nattribution_window_s = 0', "attribution_window_s: must be positive"),
        ('domain = "tiny"', 'domain = "tiny"\noutcome_actions = "buy"', "outcome_actions: must be a list of action"),
        ('domain = "tiny"', 'domain = "tiny"\nexposure_clock = "gps"', "exposure_clock: 'gps'; allowed: 'events', "),
    ],
)
def test_bad_experiment_tables_name_the_field(tmp_path, old, new, words):
    assert old in TWO_ARMS
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, TWO_ARMS.replace(old, new, 1))
    assert words in str(raised.value)


def test_two_experiments_of_one_domain_are_refused(tmp_path):
    second = TWO_ARMS.replace("experiments.heads", "experiments.other")
    with pytest.raises(ConfigError, match="experiments.other.domain: domain 'tiny' is already in experiment 'heads'"):
        load(tmp_path, TWO_ARMS + second)


def test_unknown_domain_head_encoder_options_and_actions_are_named_with_the_installed_ones(tmp_path, tiny_registry):
    domains = {name: cls() for name, cls in tiny_registry.domains.items()}
    heads, encoders = tiny_registry.heads, tiny_registry.encoders
    liked = TWO_ARMS.replace('domain = "tiny"', 'domain = "tiny"\noutcome_actions = ["like"]')
    good = load(tmp_path, liked.replace('options = { exclude = "x" }', "")).experiments
    assert resolve_experiments(good, domains, heads, encoders)["heads"].outcome_actions == ("like",)
    cases = [
        ('domain = "tiny"', 'domain = "shop"', "experiments.heads.domain: unknown domain 'shop'; installed: 'tiny'"),
        ('head = "tiny-mean"', 'head = "sasrec"', "experiments.heads.arms.b.head: unknown head 'sasrec'; installed: "),
        ('head = "tiny-mean"', 'encoder = "bert"', "experiments.heads.arms.b.encoder: unknown encoder 'bert'"),
        ("", "", "experiments.heads.arms.b.options.exclude: unknown option"),
        ('["like"]', '["buy"]', "experiments.heads.outcome_actions: domain 'tiny' has no action 'buy'; its actions: "),
        ('\noutcome_actions = ["like"]', "", "experiments.heads.outcome_actions: required for domain 'tiny', which "),
    ]
    for old, new, words in cases:
        text = liked.replace(old, new, 1) if old else liked
        if "options" not in words:
            text = text.replace('options = { exclude = "x" }', "")
        experiments = load(tmp_path, text).experiments
        with pytest.raises(ConfigError) as raised:
            resolve_experiments(experiments, domains, heads, encoders)
        assert words in str(raised.value)


def test_the_default_outcome_actions_are_the_domains_conversions():
    from temporec.contract.registry import load_registry

    registry = load_registry(env={"TEMPOREC_PLUGINS": "retail,news"})
    domains = {name: cls() for name, cls in registry.domains.items()}
    arms = (Arm("a", 1.0, control=True),)
    experiments = {name: Experiment(name, name, arms) for name in ("retail", "news")}
    resolved = resolve_experiments(experiments, domains, registry.heads, registry.encoders)
    assert resolved["retail"].outcome_actions == ("cart", "purchase")
    assert resolved["news"].outcome_actions == ("click",)
    assert set(DEFAULT_OUTCOME_ACTIONS) == {"click", "cart", "purchase"}


def experiment(shares=(0.25, 0.75), salt="fixed-salt") -> Experiment:
    arms = tuple(Arm(f"arm{i}", share, control=i == 0, head=f"h{i}") for i, share in enumerate(shares))
    return Experiment("e", "tiny", arms, salt)


def test_assignment_is_a_function_of_the_salt_and_the_user():
    first, again = experiment(), experiment()  # e.g. another server, or this one restarted
    users = [f"user-{n}" for n in range(200)]
    assert [first.arm_of(u) for u in users] == [again.arm_of(u) for u in users]
    resalted = experiment(salt="another-salt")
    assert [first.arm_of(u) for u in users] != [resalted.arm_of(u) for u in users]
    assert 0 <= bucket("s", "u") < 1 and bucket("s", "u") == bucket("s", "u") != bucket("s", "v")


def test_shares_are_roughly_respected_over_many_users():
    chosen = experiment(shares=(0.2, 0.3, 0.5))
    counts = {"arm0": 0, "arm1": 0, "arm2": 0}
    for n in range(20_000):
        counts[chosen.arm_of(f"u{n}").name] += 1
    assert counts["arm0"] / 20_000 == pytest.approx(0.2, abs=0.02)
    assert counts["arm1"] / 20_000 == pytest.approx(0.3, abs=0.02)
    assert counts["arm2"] / 20_000 == pytest.approx(0.5, abs=0.02)
    assert {experiment(shares=(0.0, 1.0)).arm_of(f"u{n}").name for n in range(500)} == {"arm1"}


def test_the_arm_overrides_the_request_and_only_users_of_the_domain_are_in():
    experiments = {"e": experiment()}
    anonymous = Query("tiny", [], head="mine")
    assert assign(experiments, anonymous) == (anonymous, None, None)
    elsewhere = Query("news", [], user_id="u1")
    assert assign(experiments, elsewhere) == (elsewhere, None, None)
    served, chosen, arm = assign(experiments, Query("tiny", [], head="mine", encoder="enc", user_id="u1"))
    assert chosen is experiments["e"] and arm is chosen.arm_of("u1")
    assert (served.head, served.encoder, served.model_version) == (arm.head, "enc", "")
    with_options = Experiment("o", "tiny", (Arm("only", 1.0, True, options={"a": "1"}),))
    served, _, _ = assign({"o": with_options}, Query("tiny", [], user_id="u", options={"a": "0", "b": "2"}))
    assert served.options == {"a": "1", "b": "2"}


# -- the report: outcomes within the window, of shown items, and the lift --------------------


def hand_case():
    arms = (Arm("a", 0.5, control=True), Arm("b", 0.5))
    chosen = Experiment("ab", "tiny", arms, attribution_window_s=100.0, outcome_actions=("purchase",))
    shown = [("a", "u1", ("x", "y")), ("a", "u2", ("x",)), ("a", "u3", ("z",)), ("a", "u4", ("x",))]
    shown += [("b", "u5", ("x",)), ("b", "u6", ("y",)), ("a", "u1", ("q",))]
    exposures = [Exposure("ab", arm, user, f"r{n}", items, 1000.0) for n, (arm, user, items) in enumerate(shown)]
    events = {
        "u1": [("y", "purchase", 1050.0)],  # shown, in the window: an outcome
        "u2": [("x", "purchase", 1200.0)],  # after the window
        "u3": [("x", "purchase", 1010.0)],  # not shown to u3
        "u4": [("x", "purchase", 990.0), ("x", "view", 1010.0)],  # before the exposure; not an outcome action
        "u5": [("x", "purchase", 1100.0)],  # at the window's end: counts
        "u6": [("y", "purchase", 1001.0)],
    }
    histories = {
        user: [TrackedEvent(user, f"e{i}", Event(item, action, t)) for i, (item, action, t) in enumerate(rows)]
        for user, rows in events.items()
    }
    return chosen, exposures, histories


def test_the_report_of_a_hand_computed_case():
    chosen, exposures, histories = hand_case()
    a, b = report(chosen, exposures, histories)
    assert (a.arm, a.control, a.users, a.exposures, a.converted) == ("a", True, 4, 5, 1)
    assert (b.arm, b.control, b.users, b.exposures, b.converted) == ("b", False, 2, 2, 2)
    assert (a.rate, b.rate) == (pytest.approx(0.25), pytest.approx(1.0))
    assert (a.lift, a.low, a.high) == (0.0, 0.0, 0.0)
    half = 1.959964 * math.sqrt(0.25 * 0.75 / 4)  # b's rate is 1: no variance of its own
    assert b.lift == pytest.approx(0.75)
    assert (b.low, b.high) == (pytest.approx(0.75 - half, abs=1e-6), pytest.approx(0.75 + half, abs=1e-6))
    assert b.relative == pytest.approx(3.0)
    early = {row.arm: row.converted for row in report(chosen, exposures, histories, until=1060.0)}
    assert early == {"a": 1, "b": 1}  # u5's purchase had not happened yet
    series = cumulative(chosen, exposures, histories, points=10)
    assert [t for t, _ in series] == pytest.approx([1010.0 + 10 * i for i in range(10)])
    assert series[-1][1] == report(chosen, exposures, histories)
    table = format_report(chosen, report(chosen, exposures, histories))
    assert "a *" in table and "+75.00%  [+32.57%, +117.43%]" in table


def test_an_arm_without_users_has_no_interval():
    chosen, exposures, histories = hand_case()
    _, b = report(chosen, [e for e in exposures if e.arm == "a"], histories)
    assert (b.users, b.rate) == (0, 0.0) and math.isnan(b.low) and math.isnan(b.high)


def test_the_report_command_reads_the_configured_store(tmp_path, capsys):
    from conftest import run_command
    from temporec.cli import experiments as command
    from temporec.contract.errors import FailedPrecondition, NotFound
    from temporec.contract.registry import load_registry
    from temporec.contract.stores import StoreSettings

    chosen, exposures, histories = hand_case()
    store = load_registry(env={"TEMPOREC_PLUGINS": "sqlite"}).stores["sqlite"](
        f"sqlite://{tmp_path}/h.db", StoreSettings()
    )
    for exposure in exposures:
        store.record_exposure(exposure)
    store.append([tracked for events in histories.values() for tracked in events])
    store.close()
    config = tmp_path / "temporec.toml"
    config.write_text(
        f'store = "sqlite://{tmp_path}/h.db"\n[experiments.ab]\ndomain = "retail"\nattribution_window_s = 100\n'
        'outcome_actions = ["purchase"]\n[experiments.ab.arms.a]\nshare = 0.5\ncontrol = true\n'
        "[experiments.ab.arms.b]\nshare = 0.5\n"
    )
    assert run_command(command, ["experiments", "report", "ab", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    chosen = replace(chosen, domain="retail")
    assert printed == format_report(chosen, report(chosen, exposures, histories)) + "\n"
    with pytest.raises(NotFound, match="experiment 'cd' is not in .*; configured: 'ab'"):
        run_command(command, ["experiments", "report", "cd", "--config", str(config)])
    if importlib.util.find_spec("matplotlib") is None:
        with pytest.raises(FailedPrecondition, match="--plot needs matplotlib"):
            run_command(command, ["experiments", "report", "ab", "--config", str(config), "--plot", "lift.png"])
    else:  # pragma: no cover (not installed here)
        plot = tmp_path / "lift.png"
        assert run_command(command, ["experiments", "report", "ab", "--config", str(config), "--plot", str(plot)]) == 0
        assert plot.read_bytes().startswith(b"\x89PNG")
