"""Server configuration: defaults < TOML file < environment < command line."""

import pytest

from temporec.serving.config import ConfigError, ServerConfig, load_config


def write(tmp_path, text, name="temporec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_without_any_source():
    config = load_config(env={})
    assert config == ServerConfig()
    assert config.port == 50051 and config.max_message_bytes == 4 * 1024 * 1024 and config.limits.max_k == 1000


def test_toml_then_environment_then_command_line(tmp_path):
    path = write(tmp_path, 'host = "10.0.0.1"\nport = 1111\ndevice = "cpu"\ngrace_seconds = 3\n')
    env = {"TEMPOREC_PORT": "2222", "TEMPOREC_DEVICE": "cuda"}

    from_file = load_config(path, env={})
    assert (from_file.host, from_file.port, from_file.device, from_file.grace_seconds) == ("10.0.0.1", 1111, "cpu", 3.0)

    from_env = load_config(path, env=env)
    assert (from_env.host, from_env.port, from_env.device) == ("10.0.0.1", 2222, "cuda")

    from_flags = load_config(path, env=env, overrides={"port": 3333, "device": None, "host": None})
    assert (from_flags.host, from_flags.port, from_flags.device) == ("10.0.0.1", 3333, "cuda")


def test_limits_and_encoder_tables(tmp_path):
    path = write(
        tmp_path, '[limits]\nmax_k = 50\nmax_history = 64\n\n[encoders.local]\nbatch_size = 8\ndevice = "cpu"\n'
    )
    config = load_config(path, env={"TEMPOREC_MAX_K": "20"})
    assert (config.limits.max_k, config.limits.max_history, config.limits.max_candidates) == (20, 64, 100_000)
    assert config.encoders == {"local": {"batch_size": 8, "device": "cpu"}}


def test_encoder_substitutes_table(tmp_path):
    config = load_config(write(tmp_path, '[encoder_substitutes]\nlocal = "triton"\n'), env={})
    assert config.encoder_substitutes == {"local": "triton"}
    with pytest.raises(ConfigError, match="encoder_substitutes.local must be an encoder name"):
        load_config(write(tmp_path, "[encoder_substitutes]\nlocal = 3\n"), env={})


def test_the_config_file_can_come_from_the_environment(tmp_path):
    path = write(tmp_path, "port = 4444\n")
    assert load_config(env={"TEMPOREC_CONFIG": str(path)}).port == 4444


def test_relative_models_dir_is_relative_to_the_file(tmp_path):
    (tmp_path / "etc").mkdir()
    path = write(tmp_path / "etc", 'models_dir = "../models"\n')
    assert load_config(path, env={}).models_dir == str(tmp_path / "etc" / "../models")
    assert load_config(path, env={"TEMPOREC_MODELS_DIR": "here"}).models_dir == "here"


def test_unknown_top_level_key_is_named_with_the_allowed_ones(tmp_path):
    path = write(tmp_path, "prot = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    assert str(path) in message and "'prot'" in message and "'port'" in message and "'limits'" in message


def test_unknown_limit_is_named_with_the_allowed_ones(tmp_path):
    path = write(tmp_path, "[limits]\nmax_kk = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'limits.max_kk'.*'limits.max_k'"):
        load_config(path, env={})


@pytest.mark.parametrize(
    "text, words",
    [
        ('port = "abc"\n', "port: expected an integer, got 'abc'"),
        ("port = true\n", "port: expected an integer"),
        ("host = 5\n", "host: expected a string"),
        ("limits = 5\n", "limits must be a table"),
        ("[encoders]\nlocal = 1\n", "encoders.local must be a table"),
        ("port = \n", "invalid TOML"),
        ("port = 70000\n", "port: must be between 0 and 65535"),
        ('log_level = "loud"\n', "'debug', 'error', 'info', 'warning'"),
        ("[limits]\nmax_k = 0\n", "limits.max_k: must be positive"),
    ],
)
def test_bad_values_in_the_file_are_named(tmp_path, text, words):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    assert words in str(caught.value)


def test_bad_environment_values_name_the_variable():
    with pytest.raises(ConfigError, match="TEMPOREC_MAX_MESSAGE_BYTES: max_message_bytes: expected an integer"):
        load_config(env={"TEMPOREC_MAX_MESSAGE_BYTES": "4MB"})
    with pytest.raises(ConfigError, match="TEMPOREC_MAX_K: limits.max_k"):
        load_config(env={"TEMPOREC_MAX_K": "many"})


def test_environment_numbers_are_converted():
    config = load_config(env={"TEMPOREC_GRACE_SECONDS": "2.5", "TEMPOREC_PORT": " 0 ", "TEMPOREC_LOG_LEVEL": "DEBUG"})
    assert (config.grace_seconds, config.port, config.log_level) == (2.5, 0, "debug")


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read it"):
        load_config(tmp_path / "absent.toml", env={})


def test_serve_flags_override_environment_and_file(tmp_path):
    import argparse

    from temporec.cli import serve

    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    path = write(tmp_path, 'port = 1111\nmodels_dir = "from-file"\ndefault_encoder = "remote"\n')
    env = {"TEMPOREC_PORT": "2222", "TEMPOREC_MODELS_DIR": "from-env"}

    args = parser.parse_args(["serve", "--config", str(path), "--port", "3333", "--device", "cpu"])
    config = serve.config_from_args(args, env)
    assert (config.port, config.models_dir, config.default_encoder, config.device) == (
        3333,
        "from-env",
        "remote",
        "cpu",
    )

    args = parser.parse_args(["serve", "--config", str(path), "--models", "from-flag", "--encoder", "local"])
    config = serve.config_from_args(args, env)
    assert (config.port, config.models_dir, config.default_encoder) == (2222, "from-flag", "local")


def test_store_settings_from_file_environment_and_flags(tmp_path):
    import argparse

    from temporec.cli import serve

    path = write(tmp_path, 'store = "sqlite:///var/h.db"\nstore_max_events = 50\n[limits]\nmax_track_events = 7\n')
    config = load_config(path, env={"TEMPOREC_STORE_RETENTION_DAYS": "1.5"})
    assert (config.store, config.store_max_events, config.store_retention_days) == ("sqlite:///var/h.db", 50, 1.5)
    assert config.limits.max_track_events == 7
    assert "sqlite" not in repr(config)  # a Redis URL may carry a password

    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--config", str(path), "--store", "redis://h:6379/0", "--store-max-events", "9"])
    config = serve.config_from_args(args, {})
    assert (config.store, config.store_max_events) == ("redis://h:6379/0", 9)


@pytest.mark.parametrize(
    "text, words",
    [
        ("store_max_events = 0", "store_max_events: must be positive"),
        ("store_retention_days = -1", "must not be negative"),
    ],
)
def test_bad_store_settings_are_named(tmp_path, text, words):
    with pytest.raises(ConfigError, match=words):
        load_config(write(tmp_path, text + "\n"), env={})


def test_torch_threads_of_the_server_from_environment_and_flag(tmp_path):
    import argparse

    import torch

    from temporec.cli import serve

    assert load_config(env={}).threads == 1  # concurrent calls keep the cores busy (docs/operations.md)
    assert load_config(env={"TEMPOREC_THREADS": "2"}).threads == 2
    with pytest.raises(ConfigError, match="threads: must be positive"):
        load_config(env={"TEMPOREC_THREADS": "0"})
    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    config = serve.config_from_args(parser.parse_args(["serve", "--threads", "3"]), {"TEMPOREC_THREADS": "2"})
    assert config.threads == 3

    before = torch.get_num_threads()
    try:
        serve.set_torch_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_workers_from_file_environment_and_flag(tmp_path):
    import argparse

    from temporec.cli import serve

    assert load_config(env={}).workers == 1  # one process, as before: the port is not shared
    assert load_config(write(tmp_path, "workers = 2\n"), env={}).workers == 2
    assert load_config(env={"TEMPOREC_WORKERS": "3"}).workers == 3
    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    config = serve.config_from_args(parser.parse_args(["serve", "--workers", "4"]), {"TEMPOREC_WORKERS": "3"})
    assert config.workers == 4
    with pytest.raises(ConfigError, match="workers: must be positive, got 0"):
        load_config(env={"TEMPOREC_WORKERS": "0"})


def test_workers_with_the_monitor_are_refused_naming_both(tmp_path):
    path = write(tmp_path, 'workers = 2\n[monitor]\ndomain = "finance"\n')
    with pytest.raises(ConfigError, match=r"workers: 2 with a \[monitor\] table is refused.*one process"):
        load_config(path, env={})
    assert load_config(path, env={}, overrides={"workers": 1}).monitor is not None


def test_the_monitor_table_sets_the_monitor_and_its_forecast(tmp_path):
    text = '[monitor]\ndomain = "finance"\nhead = "ar"\nwindow_s = 3600\nseasons = [24, 168]\ninterval = 0.995\n'
    monitor = load_config(write(tmp_path, text), env={}).monitor
    assert (monitor.domain, monitor.head, monitor.negative_label) == ("finance", "ar", "negative")
    forecast = monitor.forecast
    assert (forecast.window_s, forecast.seasons, forecast.interval, forecast.min_count) == (3600, (24, 168), 0.995, 10)
    assert load_config(None, env={}).monitor is None  # no table: the server monitors nothing


@pytest.mark.parametrize(
    "text, words",
    [
        ("[monitor]\nwindow = 60\n", ["monitor.window'", "monitor.window_s'"]),
        ("[monitor]\nseasons = 7\n", ["monitor.seasons", "a list of integers"]),
        ("[monitor]\ninterval = 1.5\n", ["monitor.interval", "between 0.5 and 1"]),
        ("[monitor]\nwarmup_windows = 2\n", ["monitor.warmup_windows", "> max_order"]),
        ('[monitor]\nalert_texts = "many"\n', ["monitor.alert_texts", "an integer"]),
    ],
)
def test_bad_monitor_settings_are_named(tmp_path, text, words):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), env={})
    assert all(word in str(caught.value) for word in words), str(caught.value)


def test_encoder_warm_up_and_cache_settings_from_file_environment_and_flags(tmp_path):
    import argparse

    from temporec.cli import serve

    defaults = load_config(env={})
    assert defaults.warm_encoders is True and defaults.encoder_cache_size == 10_000
    from_file = load_config(write(tmp_path, "warm_encoders = false\nencoder_cache_size = 0\n"), env={})
    assert from_file.warm_encoders is False and from_file.encoder_cache_size == 0
    assert load_config(env={"TEMPOREC_WARM_ENCODERS": "off", "TEMPOREC_ENCODER_CACHE_SIZE": "7"}).warm_encoders is False
    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--warm-encoders", "--encoder-cache-size", "3"])
    config = serve.config_from_args(args, {"TEMPOREC_WARM_ENCODERS": "false"})
    assert config.warm_encoders is True and config.encoder_cache_size == 3
    assert serve.config_from_args(parser.parse_args(["serve"]), {"TEMPOREC_WARM_ENCODERS": "0"}).warm_encoders is False


@pytest.mark.parametrize(
    "text, words",
    [
        ("warm_encoders = 1\n", "warm_encoders: expected a boolean"),
        ('warm_encoders = "maybe"\n', "warm_encoders: expected a boolean; allowed: true, false"),
        ("encoder_cache_size = -1\n", "encoder_cache_size: must not be negative"),
    ],
)
def test_bad_encoder_settings_are_named(tmp_path, text, words):
    with pytest.raises(ConfigError, match=words):
        load_config(write(tmp_path, text), env={})
