"""Server configuration: defaults, then a TOML file, then environment variables, then
command-line flags; each later source overrides the earlier ones.

Example ``temporec.toml``::

    host = "0.0.0.0"
    port = 50051
    models_dir = "models"        # relative paths are relative to this file
    default_encoder = "local"
    device = "auto"              # "auto", "cpu", "cuda", "cuda:1", ...
    max_message_bytes = 4194304  # larger requests fail with RESOURCE_EXHAUSTED
    grace_seconds = 10           # in-flight calls may finish this long after SIGTERM
    max_request_seconds = 30     # server-side deadline of a call whose client sets none
    metrics_port = 9100          # Prometheus metrics at http://host:9100/metrics (0: off)
    admin_tokens_file = "admin-tokens"  # Admin service tokens, one a line
    tls_cert = "server.pem"      # TLS (docs/security.md); with tls_client_ca: mutual TLS
    tls_key = "server.key"
    tokens_file = "tokens"       # bearer tokens, one a line (or TEMPOREC_TOKENS=a,b)
    max_concurrent_rpcs = 64     # calls past it fail with RESOURCE_EXHAUSTED
    log_format = "text"          # or "json": one object per line, with the request id
    store = "sqlite:///var/lib/temporec/history.db"  # users' tracked events (docs/realtime.md)
    store_max_events = 10000     # events kept per user, the newest
    store_retention_days = 0     # events older than this are dropped; 0: kept
    warm_encoders = true         # load the models' encoders before SERVING (docs/encoders.md)
    encoder_cache_size = 10000   # vectors of repeated out-of-catalog texts kept per encoder; 0: off
    log_level = "info"
    workers = 1                  # server processes sharing the port (docs/operations.md)

    [encoders.local]             # keyword options of the encoder named "local"
    batch_size = 32

    [limits]                     # per-request limits
    max_k = 1000

    [encoder_substitutes]        # serve models trained with "local" through "triton"
    local = "triton"             # (the two must produce the same vector space)

    [experiments.heads-2026]     # an A/B test (docs/realtime.md), one per domain
    domain = "retail"
    salt = "heads-2026"          # default: the experiment's name
    attribution_window_s = 86400 # outcomes count this long after an exposure
    outcome_actions = ["cart", "purchase"]   # default: the domain's of click, cart, purchase
    exposure_clock = "server"    # or "events": a replay of recorded events (docs/realtime.md)
    [experiments.heads-2026.arms.ar]
    share = 0.5                  # the shares must sum to 1
    head = "ar"
    control = true               # exactly one arm
    [experiments.heads-2026.arms.hstu]
    share = 0.5
    head = "hstu"                # also model_version, encoder, [....options]

    [monitor]                    # sentiment monitoring of published texts (docs/finance.md)
    domain = "finance"           # its model classifies, its topics tag; head, model_version select
    window_s = 86400             # windows of a day; the forecast's settings too (warmup_windows, ...)
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import tomllib

from temporec.contract.errors import InvalidArgument, TemporecError, allowed
from temporec.contract.options import options_from_mapping
from temporec.contract.types import Limits
from temporec.monitor.forecast import ForecastSettings
from temporec.monitor.settings import MonitorSettings
from temporec.serving.experiments import DAY_SECONDS, DEFAULT_OUTCOME_ACTIONS, EXPOSURE_CLOCKS, Arm, Experiment

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
#: File settings that a TOML file may give relative to itself.
SECURITY_FILES = ("tls_cert", "tls_key", "tls_client_ca", "tokens_file")


class ConfigError(TemporecError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 50051  # 0: pick a free port
    models_dir: str = "models"
    default_encoder: str = "local"
    encoders: dict[str, dict[str, Any]] = field(default_factory=dict)
    encoder_substitutes: dict[str, str] = field(default_factory=dict)
    device: str = "auto"
    limits: Limits = field(default_factory=Limits)
    max_message_bytes: int = 4 * 1024 * 1024
    grace_seconds: float = 10.0
    log_level: str = "info"
    max_request_seconds: float = 30.0  # a call without a (shorter) client deadline ends after this
    metrics_port: int = 0  # Prometheus metrics over HTTP on this port; 0: off
    admin_tokens_file: str = ""  # tokens for the Admin service, one a line; see docs/operations.md
    admin_tokens: str = field(default="", repr=False)  # comma separated; a secret: never shown
    # Security and load (docs/security.md): TLS when tls_cert and tls_key are set, mutual
    # TLS when tls_client_ca is too; bearer tokens from tokens_file and/or tokens.
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    tokens_file: str = ""
    tokens: str = field(default="", repr=False)  # comma separated; a secret: never shown
    max_concurrent_rpcs: int = 64  # calls past it end with RESOURCE_EXHAUSTED
    log_format: str = "text"
    # Tracked events (docs/realtime.md): a store URL whose scheme names the store plugin,
    # e.g. sqlite:///path/history.db or redis://host:6379/0; "": no store.
    store: str = field(default="", repr=False)  # a Redis URL may carry a password
    store_max_events: int = 10_000
    store_retention_days: float = 0.0
    # torch intra-op threads of the server process; 1 served 1.34-1.41x more than torch's
    # default 2 on 2 cores (issue 17): concurrent calls already use the cores.
    threads: int = 1
    # Load every encoder the loaded models need, and run one text through it, before the
    # health turns SERVING: the first text-only Recommend then costs what later ones do
    # (without it, 3.4 s: the encoder loaded on first use). Costs the load at start.
    warm_encoders: bool = True
    # Vectors of out-of-catalog texts kept per encoder instance (LRU), so a repeated text
    # is not encoded again; 0: no cache. 10,000 MiniLM vectors are about 15 MB.
    encoder_cache_size: int = 10_000
    # Server processes sharing the port (docs/operations.md#workers); 1: this process alone.
    workers: int = 1
    experiments: dict[str, Experiment] = field(default_factory=dict)  # [experiments.NAME]
    monitor: MonitorSettings | None = None  # [monitor]; None: the server monitors no texts


TABLES = ("encoders", "encoder_substitutes", "limits", "experiments", "monitor")
SCALARS = tuple(f.name for f in dataclasses.fields(ServerConfig) if f.name not in TABLES)
LIMITS = tuple(f.name for f in dataclasses.fields(Limits))

#: Environment variable -> (section, field); section "" is the top level.
ENVIRONMENT = {
    **{f"TEMPOREC_{name.upper()}": ("", name) for name in SCALARS},
    **{f"TEMPOREC_{name.upper()}": ("limits", name) for name in LIMITS},
}
CONFIG_FILE_VARIABLE = "TEMPOREC_CONFIG"


def load_config(
    path: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """Build the configuration from defaults, the TOML file at ``path`` (default: the file
    named by ``TEMPOREC_CONFIG``, if any), ``env`` (default: ``os.environ``) and
    ``overrides`` (field -> value, e.g. from command-line flags; None values are ignored)."""
    env = os.environ if env is None else env
    config = ServerConfig()
    path = path or env.get(CONFIG_FILE_VARIABLE)
    if path:
        apply_toml(config, Path(path))
    apply_environment(config, env)
    for name, value in (overrides or {}).items():
        if value is not None:
            _set(config, "", name, value, "command line")
    validate(config)
    return config


def apply_toml(config: ServerConfig, path: Path) -> None:
    """Apply a TOML file; relative ``models_dir``, ``admin_tokens_file`` and
    ``SECURITY_FILES`` are taken relative to the file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML: {exc}") from exc
    where = f"config file {path}"
    known = (*SCALARS, *TABLES)
    for key, value in data.items():
        if key == "encoders":
            config.encoders = _encoder_tables(value, where)
        elif key == "encoder_substitutes":
            config.encoder_substitutes = _substitutes(value, where)
        elif key == "experiments":
            config.experiments = experiments_from_toml(value, where)
        elif key == "monitor":
            config.monitor = monitor_from_toml(value, where)
        elif key == "limits":
            _check_table(value, where, "limits")
            for name, limit in value.items():
                _check_key(name, LIMITS, where, "limits.")
                _set(config, "limits", name, limit, where)
        else:
            _check_key(key, known, where)
            _set(config, "", key, value, where)
    if "models_dir" in data and not Path(config.models_dir).is_absolute():
        config.models_dir = str(path.parent / config.models_dir)
    if data.get("admin_tokens_file") and not Path(config.admin_tokens_file).is_absolute():
        config.admin_tokens_file = str(path.parent / config.admin_tokens_file)
    for name in SECURITY_FILES:
        if data.get(name) and not Path(getattr(config, name)).is_absolute():
            setattr(config, name, str(path.parent / getattr(config, name)))


def apply_environment(config: ServerConfig, env: Mapping[str, str]) -> None:
    for variable, (section, name) in ENVIRONMENT.items():
        if variable in env:
            _set(config, section, name, env[variable], f"environment variable {variable}")


def validate(config: ServerConfig) -> None:
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"port: must be between 0 and 65535, got {config.port}")
    if config.max_message_bytes < 1:
        raise ConfigError(f"max_message_bytes: must be positive, got {config.max_message_bytes}")
    if config.grace_seconds < 0:
        raise ConfigError(f"grace_seconds: must not be negative, got {config.grace_seconds}")
    if config.max_request_seconds <= 0:
        raise ConfigError(f"max_request_seconds: must be positive, got {config.max_request_seconds}")
    if not 0 <= config.metrics_port <= 65535:
        raise ConfigError(f"metrics_port: must be between 0 (off) and 65535, got {config.metrics_port}")
    if config.max_concurrent_rpcs < 1:
        raise ConfigError(f"max_concurrent_rpcs: must be positive, got {config.max_concurrent_rpcs}")
    config.log_format = config.log_format.lower()
    if config.log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format: {config.log_format!r} is not allowed; allowed: {allowed(LOG_FORMATS)}")
    config.log_level = config.log_level.lower()
    if config.log_level not in LOG_LEVELS:
        raise ConfigError(f"log_level: {config.log_level!r} is not allowed; allowed: {allowed(LOG_LEVELS)}")
    if config.store_max_events < 1:
        raise ConfigError(f"store_max_events: must be positive, got {config.store_max_events}")
    if config.store_retention_days < 0:
        raise ConfigError(f"store_retention_days: must not be negative (0: keep), got {config.store_retention_days}")
    if config.threads < 1:
        raise ConfigError(f"threads: must be positive, got {config.threads}")
    if config.workers < 1:
        raise ConfigError(f"workers: must be positive, got {config.workers}")
    if config.workers > 1 and config.monitor is not None:
        raise ConfigError(
            f"workers: {config.workers} with a [monitor] table is refused: the monitor keeps its topics' windows "
            "in one process; serve the monitor with workers = 1 (docs/operations.md#workers)"
        )
    if config.encoder_cache_size < 0:
        raise ConfigError(f"encoder_cache_size: must not be negative (0: no cache), got {config.encoder_cache_size}")
    for name in LIMITS:
        if getattr(config.limits, name) < 1:
            raise ConfigError(f"limits.{name}: must be positive, got {getattr(config.limits, name)}")


EXPERIMENT_KEYS = ("domain", "salt", "arms", "attribution_window_s", "outcome_actions", "exposure_clock")
ARM_KEYS = ("share", "control", "head", "model_version", "encoder", "options")
SHARE_TOLERANCE = 1e-9
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # experiments' and arms' names: metric labels, store keys


def experiments_from_toml(value: Any, where: str) -> dict[str, Experiment]:
    """The ``[experiments.NAME]`` tables, checked; at most one experiment per domain."""
    _check_table(value, where, "experiments")
    experiments = {name: _experiment(name, table, where) for name, table in value.items()}
    domains: dict[str, str] = {}
    for name, experiment in experiments.items():
        if experiment.domain in domains:
            raise ConfigError(
                f"{where}: experiments.{name}.domain: domain {experiment.domain!r} is already in experiment "
                f"{domains[experiment.domain]!r}; a domain's users are in one experiment at a time"
            )
        domains[experiment.domain] = name
    return experiments


def _experiment(name: str, table: Any, where: str) -> Experiment:
    label = f"experiments.{name}"
    _check_name(name, where, label)
    _check_table(table, where, label)
    for key in table:
        _check_key(key, EXPERIMENT_KEYS, where, f"{label}.")
    domain = table.get("domain")
    if not isinstance(domain, str) or not domain:
        raise ConfigError(f"{where}: {label}.domain: required, a domain name; got {domain!r}")
    salt = _convert(table.get("salt", name), str, f"{where}: {label}.salt")
    window = _convert(table.get("attribution_window_s", DAY_SECONDS), float, f"{where}: {label}.attribution_window_s")
    if window <= 0:
        raise ConfigError(f"{where}: {label}.attribution_window_s: must be positive, got {window}")
    actions = table.get("outcome_actions")  # None: the domain's, at start
    if actions is not None and (not isinstance(actions, list) or not actions or not all(_is_name(a) for a in actions)):
        raise ConfigError(f"{where}: {label}.outcome_actions: must be a list of action names, got {actions!r}")
    clock = table.get("exposure_clock", "server")
    if clock not in EXPOSURE_CLOCKS:
        raise ConfigError(f"{where}: {label}.exposure_clock: {clock!r}; allowed: {allowed(EXPOSURE_CLOCKS)}")
    arms = _arms(table.get("arms"), where, f"{label}.arms")
    return Experiment(name, domain, arms, salt, window, tuple(actions or ()), clock)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _arms(value: Any, where: str, label: str) -> tuple[Arm, ...]:
    if not value:
        raise ConfigError(f"{where}: {label}: required, a table of arms ([{label}.NAME]) with their shares")
    _check_table(value, where, label)
    arms = tuple(_arm(name, table, where, f"{label}.{name}") for name, table in value.items())
    total = sum(arm.share for arm in arms)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        shares = ", ".join(f"{arm.name}={arm.share:g}" for arm in arms)
        raise ConfigError(f"{where}: {label}: the shares must sum to 1, got {total:g} ({shares})")
    controls = [arm.name for arm in arms if arm.control]
    if len(controls) != 1:
        raise ConfigError(
            f"{where}: {label}: exactly one arm must have control = true, got {len(controls)}"
            + (f" ({', '.join(controls)})" if controls else "")
        )
    return arms


def _arm(name: str, table: Any, where: str, label: str) -> Arm:
    _check_name(name, where, label)
    _check_table(table, where, label)
    for key in table:
        _check_key(key, ARM_KEYS, where, f"{label}.")
    if "share" not in table:
        raise ConfigError(f"{where}: {label}.share: required, the arm's share of the users (0 to 1)")
    share = _convert(table["share"], float, f"{where}: {label}.share")
    if not 0 <= share <= 1:
        raise ConfigError(f"{where}: {label}.share: must be between 0 and 1, got {share}")
    control = table.get("control", False)
    if not isinstance(control, bool):
        raise ConfigError(f"{where}: {label}.control: expected true or false, got {control!r}")
    selector = {key: _convert(table.get(key, ""), str, f"{where}: {label}.{key}") for key in ARM_KEYS[2:5]}
    options = table.get("options", {})
    _check_table(options, where, f"{label}.options")
    return Arm(name, share, control, options=dict(options), **selector)


def _check_name(name: str, where: str, label: str) -> None:
    if not NAME.fullmatch(name):
        raise ConfigError(f"{where}: {label}: a name of letters, digits, '_', '-' and '.', got {name!r}")


def resolve_experiments(
    experiments: dict[str, Experiment], domains: Mapping[str, Any], heads: Any, encoders: Any
) -> dict[str, Experiment]:
    """The experiments checked against what is installed (``domains``: name -> Domain):
    their domains, the arms' heads, encoders and options, and the outcome actions, which
    default to those of ``DEFAULT_OUTCOME_ACTIONS`` the domain has."""
    resolved = {}
    for name, experiment in experiments.items():
        label = f"experiments.{name}"
        if experiment.domain not in domains:
            raise ConfigError(f"{label}.domain: unknown domain {experiment.domain!r}; installed: {allowed(domains)}")
        domain = domains[experiment.domain]
        for arm in experiment.arms:
            _check_arm(arm, domain, heads, encoders, f"{label}.arms.{arm.name}")
        resolved[name] = replace(experiment, outcome_actions=_outcome_actions(experiment, domain, label))
    return resolved


def _check_arm(arm: Arm, domain: Any, heads: Any, encoders: Any, label: str) -> None:
    if arm.head and arm.head not in heads:
        raise ConfigError(f"{label}.head: unknown head {arm.head!r}; installed: {allowed(heads)}")
    if arm.encoder and arm.encoder not in encoders:
        raise ConfigError(f"{label}.encoder: unknown encoder {arm.encoder!r}; installed: {allowed(encoders)}")
    try:
        options_from_mapping(domain.request_options, arm.options)
    except TemporecError as exc:
        raise ConfigError(f"{label}.{exc}") from exc


def _outcome_actions(experiment: Experiment, domain: Any, label: str) -> tuple[str, ...]:
    actions = tuple(domain.actions)  # () for a domain whose actions come from its data
    if experiment.outcome_actions:
        unknown = [a for a in experiment.outcome_actions if actions and a not in actions]
        if unknown:
            raise ConfigError(
                f"{label}.outcome_actions: domain {domain.name!r} has no action {unknown[0]!r}; its actions: "
                f"{allowed(actions)}"
            )
        return experiment.outcome_actions
    chosen = tuple(a for a in DEFAULT_OUTCOME_ACTIONS if not actions or a in actions)
    if not chosen:
        raise ConfigError(
            f"{label}.outcome_actions: required for domain {domain.name!r}, which has none of "
            f"{allowed(DEFAULT_OUTCOME_ACTIONS)}; its actions: {allowed(actions)}"
        )
    return chosen


def check_experiment_store(experiments: dict[str, Experiment], store: Any) -> None:
    """Experiments log their exposures in the store: one that keeps them is needed."""
    if not experiments:
        return
    names = allowed(experiments)
    if store is None:
        raise ConfigError(f"experiments ({names}) log their exposures in the store; set `store` (docs/realtime.md)")
    if not store.keeps_experiments():
        raise ConfigError(f"experiments ({names}): store {store.name!r} does not keep experiments; use sqlite or redis")


MONITOR_KEYS = tuple(f.name for f in dataclasses.fields(MonitorSettings) if f.name != "forecast")
FORECAST_KEYS = tuple(f.name for f in dataclasses.fields(ForecastSettings))


def monitor_from_toml(value: Any, where: str) -> MonitorSettings:
    """The ``[monitor]`` table: the monitor's own keys and its forecast's, in one table."""
    _check_table(value, where, "monitor")
    own, forecast = {}, {}
    for key, setting in value.items():
        _check_key(key, (*MONITOR_KEYS, *FORECAST_KEYS), where, "monitor.")
        defaults, target = (MonitorSettings(), own) if key in MONITOR_KEYS else (ForecastSettings(), forecast)
        default = getattr(defaults, key)
        if isinstance(default, tuple):
            if not isinstance(setting, list) or not all(isinstance(v, int) for v in setting):
                raise ConfigError(f"{where}: monitor.{key}: expected a list of integers, got {setting!r}")
            target[key] = tuple(setting)
        else:
            target[key] = _convert(setting, type(default), f"{where}: monitor.{key}")
    try:
        return MonitorSettings(**own, forecast=ForecastSettings(**forecast))
    except InvalidArgument as exc:
        raise ConfigError(f"{where}: monitor.{exc}") from exc


def _encoder_tables(value: Any, where: str) -> dict[str, dict[str, Any]]:
    _check_table(value, where, "encoders")
    for name, options in value.items():
        _check_table(options, where, f"encoders.{name}")
    return {name: dict(options) for name, options in value.items()}


def _substitutes(value: Any, where: str) -> dict[str, str]:
    _check_table(value, where, "encoder_substitutes")
    for trained, serving in value.items():
        if not isinstance(serving, str) or not serving:
            raise ConfigError(f"{where}: encoder_substitutes.{trained} must be an encoder name, got {serving!r}")
    return dict(value)


def _check_table(value: Any, where: str, key: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a table ([{key}]), got {value!r}")


def _check_key(key: str, known: tuple[str, ...], where: str, prefix: str = "") -> None:
    if key not in known:
        raise ConfigError(f"{where}: unknown key {prefix + key!r}; allowed: {allowed(prefix + k for k in known)}")


def _set(config: ServerConfig, section: str, name: str, value: Any, where: str) -> None:
    """Set one field, converting ``value`` to the type of the field's default."""
    target = config.limits if section else config
    label = f"{section}.{name}" if section else name
    if not hasattr(target, name) or name in TABLES:
        raise ConfigError(f"{where}: unknown setting {label!r}")
    setattr(target, name, _convert(value, type(getattr(target, name)), f"{where}: {label}"))


def _convert(value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        return _boolean(value, where)
    if kind is str:
        if isinstance(value, (str, os.PathLike)):
            return str(value)
    elif isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            pass
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if kind is float or (kind is int and float(value).is_integer()):
            return kind(value)
    names = {str: "a string", int: "an integer", float: "a number"}
    raise ConfigError(f"{where}: expected {names[kind]}, got {value!r}")


BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _boolean(value: Any, where: str) -> bool:
    """A TOML boolean, or an environment variable's text (true/false, 1/0, yes/no, on/off)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in BOOLEANS:
        return BOOLEANS[value.strip().lower()]
    raise ConfigError(f"{where}: expected a boolean; allowed: true, false (or 1/0, yes/no, on/off), got {value!r}")
