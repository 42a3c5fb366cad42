"""``temporec serve``: run the gRPC server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import signal
from typing import TYPE_CHECKING

from temporec.serving.config import (
    CONFIG_FILE_VARIABLE,
    ENVIRONMENT,
    ServerConfig,
    load_config,
)

if TYPE_CHECKING:
    from temporec.grpc.workers import WorkerLink

EPILOG = """\
Settings come from, in increasing order of precedence: built-in defaults, the TOML
file (--config, or the file named by ${config_variable}), environment variables,
and the flags above.

Environment variables:
{variables}
  TEMPOREC_PLUGINS, TEMPOREC_BLOCK_PLUGINS  which plugins load (comma-separated names)

The TOML file takes the same settings as keys, [encoders.NAME] tables of encoder
options, a [limits] table and an [encoder_substitutes] table (TRAINED = "SERVING":
serve models trained with one encoder through another of the same vector space,
e.g. local = "triton"); unknown keys are errors, and relative paths are relative
to the file:
  port = 50051
  models_dir = "models"
  device = "cuda"
  [encoders.local]
  batch_size = 32
  [limits]
  max_k = 100

When the models are loaded the server prints one line to stdout:
  temporec serving on HOST:PORT (N models)
and its gRPC health (grpc.health.v1) turns SERVING. SIGTERM or Ctrl-C stop it:
new calls fail with UNAVAILABLE, in-flight calls get grace_seconds to finish.
SIGHUP (or the Admin service's ReloadModels, with an admin token) reloads the
models: all at once, or none when any fails (see docs/operations.md).

--threads sets torch's threads per server process (default 1: concurrent calls
already keep the cores busy; 1 served 1.34-1.41x more than torch's default of 2).

--workers N runs N server processes on the one port (SO_REUSEPORT), each with its
own event loop and models: about one per core. The ready line comes once all
serve; SIGTERM drains and SIGHUP reloads every worker; Admin.ReloadModels reloads
them all and answers with the reload of the worker it reached; metrics_port serves
the workers' sum. A worker that dies stops the whole server (exit status 1): its
supervisor (systemd, Kubernetes) restarts it. Not with a [monitor] table.

The models' encoders load before the health turns SERVING (--no-warm-encoders:
on first use), and repeated out-of-catalog texts come from a cache of
--encoder-cache-size vectors per encoder (see docs/encoders.md).

Example:
  temporec serve --port 50051 --models models/
  TEMPOREC_DEVICE=cuda temporec serve --config temporec.toml --port 0
"""


def add_parser(subparsers) -> None:
    defaults = ServerConfig()
    variables = "\n".join(
        f"  {variable:<30} {section + '.' if section else ''}{name}"
        for variable, (section, name) in ENVIRONMENT.items()
    )
    parser = subparsers.add_parser(
        "serve",
        help="run the gRPC recommendation server",
        description="Serve the trained models in a directory over gRPC (temporec.v1.Recommender).",
        epilog=EPILOG.format(config_variable=CONFIG_FILE_VARIABLE, variables=variables),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--host", help=f"address to listen on (default {defaults.host})")
    parser.add_argument("--port", type=int, help=f"port to listen on; 0 picks a free one (default {defaults.port})")
    parser.add_argument(
        "--models",
        dest="models_dir",
        metavar="DIR",
        help=f"directory of trained model artifacts (default {defaults.models_dir})",
    )
    parser.add_argument(
        "--encoder",
        dest="default_encoder",
        metavar="NAME",
        help=f"encoder for Encode calls that name none (default {defaults.default_encoder})",
    )
    parser.add_argument("--device", help=f"torch device: auto, cpu, cuda, cuda:N (default {defaults.device})")
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        metavar="N",
        help=f"largest request accepted (default {defaults.max_message_bytes})",
    )
    parser.add_argument(
        "--grace-seconds",
        type=float,
        metavar="S",
        help=f"time in-flight calls get to finish at shutdown (default {defaults.grace_seconds:g})",
    )
    parser.add_argument(
        "--max-request-seconds",
        type=float,
        metavar="S",
        help=f"deadline of a call whose client sets none or a later one (default {defaults.max_request_seconds:g})",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default 0: off)",
    )
    parser.add_argument(
        "--admin-tokens-file",
        metavar="FILE",
        help="admin tokens, one a line, for the Admin service (ReloadModels); default: none, Admin refuses all",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        help="keep users' tracked events: sqlite:///path/history.db or redis://host:6379/0 (default: none)",
    )
    parser.add_argument(
        "--store-max-events",
        type=int,
        metavar="N",
        help=f"events kept per user, the newest (default {defaults.store_max_events})",
    )
    parser.add_argument(
        "--store-retention-days",
        type=float,
        metavar="D",
        help="drop tracked events older than this (default 0: keep them)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help=f"torch threads (intra-op and inter-op) of the server process (default {defaults.threads})",
    )
    parser.add_argument(
        "--warm-encoders",
        action=argparse.BooleanOptionalAction,
        help="load the models' encoders and run one text through each before reporting SERVING (default on)",
    )
    parser.add_argument(
        "--encoder-cache-size",
        type=int,
        metavar="N",
        help=f"vectors of repeated out-of-catalog texts kept per encoder; 0: off (default {defaults.encoder_cache_size})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help=f"server processes sharing the port, each with its own models (default {defaults.workers})",
    )
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="default info")
    add_security_arguments(parser, defaults)
    parser.set_defaults(run=run)


def add_security_arguments(parser: argparse.ArgumentParser, defaults: ServerConfig) -> None:
    """TLS, tokens, load limit and log format (docs/security.md). Tokens themselves have
    no flag: command lines are visible to every user of the machine."""
    parser.add_argument("--tls-cert", metavar="FILE", help="server certificate chain (PEM); serves TLS with --tls-key")
    parser.add_argument("--tls-key", metavar="FILE", help="private key of --tls-cert (PEM, unencrypted)")
    parser.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="CA certificate (PEM): clients must present a certificate it signed",
    )
    parser.add_argument(
        "--tokens-file",
        metavar="FILE",
        help="bearer tokens, one a line (# comments); calls must send 'authorization: Bearer TOKEN'",
    )
    parser.add_argument(
        "--max-concurrent-rpcs",
        type=int,
        metavar="N",
        help=f"calls served at once; more fail with RESOURCE_EXHAUSTED (default {defaults.max_concurrent_rpcs})",
    )
    parser.add_argument("--log-format", choices=("text", "json"), help=f"default {defaults.log_format}")


OVERRIDES = (
    "host",
    "port",
    "models_dir",
    "default_encoder",
    "device",
    "max_message_bytes",
    "grace_seconds",
    "log_level",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "tokens_file",
    "max_concurrent_rpcs",
    "log_format",
    "max_request_seconds",
    "metrics_port",
    "admin_tokens_file",
    "store",
    "store_max_events",
    "store_retention_days",
    "threads",
    "warm_encoders",
    "encoder_cache_size",
    "workers",
)


def config_from_args(args: argparse.Namespace, env=None) -> ServerConfig:
    """The configuration for parsed ``serve`` arguments: file < environment < flags."""
    env = os.environ if env is None else env
    return load_config(args.config, env, {name: getattr(args, name) for name in OVERRIDES})


def set_torch_threads(threads: int) -> None:
    """Set torch's thread pools before any model loads: the inter-op pool can be sized only
    once per process, before it is first used."""
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already started (serve run twice in one process, as in tests)
        torch.set_num_interop_threads(threads)


def announce(address: str, models: int) -> None:
    """The ready line, the one line ``temporec serve`` prints to stdout."""
    print(f"temporec serving on {address} ({models} models)", flush=True)


def run(args: argparse.Namespace) -> int:
    from temporec.grpc.interceptors import configure_logging
    from temporec.grpc.server import serve  # the gRPC stack loads only when serving
    from temporec.grpc.workers import supervise
    from temporec.serving import build_service

    config = config_from_args(args)
    verbose = getattr(args, "verbose", False)
    if not verbose:
        logging.getLogger().setLevel(config.log_level.upper())
    configure_logging(config.log_format)
    if config.workers > 1:
        level = "debug" if verbose else config.log_level
        return supervise(config, functools.partial(run_worker, log_level=level), announce)
    set_torch_threads(config.threads)
    ready = lambda server: announce(server.address, len(server.service.models))  # noqa: E731
    asyncio.run(serve(build_service(config), config, on_ready=ready))
    return 0


def run_worker(config: ServerConfig, link: WorkerLink, log_level: str) -> None:
    """One worker of ``--workers N``, in a process of its own: serve until SIGTERM."""
    from temporec.grpc.interceptors import configure_logging
    from temporec.grpc.server import serve
    from temporec.serving import build_service

    logging.basicConfig(level=log_level.upper(), format="%(message)s")  # configure_logging sets the format
    configure_logging(config.log_format, with_pid=True)
    set_torch_threads(config.threads)
    link.watch_supervisor()
    ready = lambda server: link.ready(len(server.service.models))  # noqa: E731
    service = build_service(config)
    stops = dict(stop_signals=(signal.SIGTERM,), interruptible=False)  # Ctrl-C reaches it through the supervisor
    asyncio.run(serve(service, config, on_ready=ready, on_admin_reload=link.reload_others, **stops))
