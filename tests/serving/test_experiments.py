"""A/B experiments (docs/realtime.md): the [experiments.NAME] tables, checked at start, and
the sticky assignment of users to arms."""

from __future__ import annotations

import pytest

from temporec.contract.types import Query
from temporec.serving.config import ConfigError, check_experiment_names, load_config
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
    assert experiment.outcome_actions == DEFAULT_OUTCOME_ACTIONS
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


def test_unknown_domain_head_encoder_and_options_are_named_with_the_installed_ones(tmp_path, tiny_registry):
    domains = {name: cls() for name, cls in tiny_registry.domains.items()}
    heads, encoders = tiny_registry.heads, tiny_registry.encoders
    good = load(tmp_path, TWO_ARMS.replace('options = { exclude = "x" }', "")).experiments
    check_experiment_names(good, domains, heads, encoders)
    cases = [
        ('domain = "tiny"', 'domain = "shop"', "experiments.heads.domain: unknown domain 'shop'; installed: 'tiny'"),
        ('head = "tiny-mean"', 'head = "sasrec"', "experiments.heads.arms.b.head: unknown head 'sasrec'; installed: "),
        ('head = "tiny-mean"', 'encoder = "bert"', "experiments.heads.arms.b.encoder: unknown encoder 'bert'"),
        ("", "", "experiments.heads.arms.b.options.exclude: unknown option"),
    ]
    for old, new, words in cases:
        experiments = load(tmp_path, TWO_ARMS.replace(old, new, 1)).experiments
        with pytest.raises(ConfigError) as raised:
            check_experiment_names(experiments, domains, heads, encoders)
        assert words in str(raised.value)


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
