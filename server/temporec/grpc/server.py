"""The grpc.aio server around a built ``RecommenderService``: its services, ports,
health, metrics endpoint, reloads and graceful stop.

Besides ``temporec.v1.Recommender`` it serves the standard ``grpc.health.v1.Health``
(NOT_SERVING while models load and during shutdown, SERVING in between) and server
reflection, so that grpcurl, grpc_health_probe and Kubernetes probes work unchanged, and
``temporec.v1.Monitor`` (texts' sentiment per topic over time, and alerts; docs/finance.md).
Each started encoder also has its own health status, ``temporec.v1.Recommender/encoder/
<name>``, kept current from ``Encoder.healthy``: a remote encoder that is down shows there,
while requests that need no encoder are still served. A server with a store reports it as
``temporec.v1.Recommender/store`` in the same way.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from typing import Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from temporec.contract.errors import FailedPrecondition
from temporec.grpc.admin import ADMIN_SERVICE_NAME, AdminServicer, load_admin_tokens
from temporec.grpc.monitor_servicer import MonitorServicer
from temporec.grpc.security import call_pipeline, server_credentials
from temporec.grpc.servicer import RecommenderServicer
from temporec.monitor.monitor import Monitor
from temporec.serving import RecommenderService, ReloadResult
from temporec.serving.config import ServerConfig
from temporec.serving.metrics import ServerMetrics
from temporec.v1 import admin_pb2_grpc, monitor_pb2, monitor_pb2_grpc, recommender_pb2, recommender_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = recommender_pb2.DESCRIPTOR.services_by_name["Recommender"].full_name
MONITOR_SERVICE_NAME = monitor_pb2.DESCRIPTOR.services_by_name["Monitor"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
ENCODER_HEALTH_INTERVAL = 1.0  # seconds between encoder (and store) health checks
#: The health-service name that reports the store (docs/realtime.md), on servers with one.
STORE_HEALTH_NAME = f"{SERVICE_NAME}/store"


def encoder_health_name(encoder: str) -> str:
    """The health-service name that reports the encoder ``encoder``."""
    return f"{SERVICE_NAME}/encoder/{encoder}"


def build_server(
    service: RecommenderService,
    config: ServerConfig,
    health_servicer: health.aio.HealthServicer,
    admin: AdminServicer | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    monitor: Monitor | None = None,
) -> grpc.aio.Server:
    """A grpc.aio server with the Recommender, Monitor (FAILED_PRECONDITION on every call
    without a ``monitor``), health and reflection services, and the Admin service when
    given (no port yet)."""
    server = grpc.aio.server(
        interceptors=list(interceptors),
        options=[
            # Larger requests are refused by gRPC itself with RESOURCE_EXHAUSTED.
            ("grpc.max_receive_message_length", config.max_message_bytes),
            # A second server on a taken port must fail, not silently share the traffic;
            # only the workers of one `temporec serve --workers N` share theirs (grpc/workers.py).
            ("grpc.so_reuseport", 1 if config.workers > 1 else 0),
        ],
    )
    recommender_pb2_grpc.add_RecommenderServicer_to_server(
        RecommenderServicer(service, config.max_request_seconds), server
    )
    monitor_pb2_grpc.add_MonitorServicer_to_server(MonitorServicer(monitor), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    services = [SERVICE_NAME, MONITOR_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME]
    if admin is not None:
        admin_pb2_grpc.add_AdminServicer_to_server(admin, server)
        services.append(ADMIN_SERVICE_NAME)
    reflection.enable_server_reflection(services, server)
    return server


def settle_heap() -> None:
    """Collect, then freeze what survives (gc.freeze): the models, catalogs and imports,
    the bulk of a serving process's objects, leave the collector's sight. A full collection
    would otherwise walk them all, pausing every call in flight (173 ms, once in 20 s of
    load, with 3,416 items: docs/operations.md)."""
    gc.collect()
    gc.freeze()


def listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class TemporecServer:
    """One RecommenderService served over gRPC, with its health status kept current.
    ``on_admin_reload`` is called when the Admin service is asked to reload, before this
    server reloads (a worker tells its supervisor, which reloads the other workers)."""

    def __init__(
        self, service: RecommenderService, config: ServerConfig, on_admin_reload: Callable[[], None] = lambda: None
    ):
        self.service = service
        self.config = config
        self.health = health.aio.HealthServicer()
        self.metrics = ServerMetrics(service.domains, service.registry.heads, lambda: len(service.models))
        service.on_exposure = self.metrics.record_exposure
        self._on_admin_reload = on_admin_reload
        admin = AdminServicer(self._admin_reload, load_admin_tokens(config))
        self.calls = call_pipeline(config, recorder=self.metrics)
        self.monitor = Monitor(service, config.monitor, self.metrics) if config.monitor else None
        self.server = build_server(service, config, self.health, admin, [self.calls], self.monitor)
        self.metrics_port: int | None = None  # the bound metrics port, once serving
        self._encoder_watch: asyncio.Task | None = None
        self._settle: asyncio.TimerHandle | None = None  # the heap settled again after a reload
        address = listen_address(config.host, config.port)
        credentials = server_credentials(config)  # None: plaintext
        try:
            if credentials:
                self.port = self.server.add_secure_port(address, credentials)
            else:
                self.port = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise FailedPrecondition(f"cannot listen on {address}: {exc} (is the port in use?)") from exc

    @property
    def address(self) -> str:
        """host:port with the port actually bound (port 0 in the config picks a free one)."""
        return listen_address(self.config.host, self.port)

    async def start(self) -> None:
        """Listen (health NOT_SERVING), load the models, then report SERVING."""
        if self.config.metrics_port:
            self.metrics_port = self.metrics.serve_http(self.config.host, self.config.metrics_port)
        await self._set_health(NOT_SERVING)
        await self.server.start()
        await self.service.start()
        self.metrics.count_models()
        if self.monitor:
            await self.monitor.start()
        settle_heap()
        await self._set_health(SERVING)
        self._encoder_watch = asyncio.create_task(self._watch_encoders())

    async def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING and refuse new calls (UNAVAILABLE), let in-flight calls
        finish for ``grace`` seconds (then cancel them), close."""
        grace = self.config.grace_seconds if grace is None else grace
        if self._encoder_watch:
            self._encoder_watch.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await self.health.enter_graceful_shutdown()
        if self.monitor:
            self.monitor.close()  # watchers' streams never end by themselves
        await self.calls.drain(grace)
        await self.server.stop(max(0.0, deadline - loop.time()))
        await self.service.close()
        self.metrics.close()
        self._unfreeze()

    async def reload(self) -> ReloadResult:
        """Reload the models (SIGHUP, Admin.ReloadModels; see RecommenderService.reload)."""
        self._unfreeze()  # the replaced models must be collectable
        result = await self.service.reload()
        self.metrics.count_models()
        self.metrics.reloads.labels("ok" if result.reloaded else "failed").inc()
        # Settled again once the calls that chose the replaced models have ended.
        self._settle = asyncio.get_running_loop().call_later(2 * self.config.max_request_seconds, settle_heap)
        return result

    def _unfreeze(self) -> None:
        if self._settle:
            self._settle.cancel()
        gc.unfreeze()

    async def _admin_reload(self) -> ReloadResult:
        self._on_admin_reload()
        return await self.reload()

    async def _set_health(self, status) -> None:
        for name in ("", SERVICE_NAME):  # "" is the whole server
            await self.health.set(name, status)

    async def _watch_encoders(self) -> None:
        """Keep each started encoder's health status current, and the store's."""
        while True:
            for name, healthy in (await self.service.encoder_health()).items():
                await self.health.set(encoder_health_name(name), SERVING if healthy else NOT_SERVING)
            if self.service.history.store is not None:
                healthy = await self.service.history.healthy()
                await self.health.set(STORE_HEALTH_NAME, SERVING if healthy else NOT_SERVING)
            await asyncio.sleep(ENCODER_HEALTH_INTERVAL)


async def serve(
    service: RecommenderService,
    config: ServerConfig,
    on_ready: Callable[[TemporecServer], None] | None = None,
    stop_signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    on_admin_reload: Callable[[], None] = lambda: None,
    interruptible: bool = True,
) -> None:
    """Serve ``service`` until one of ``stop_signals``, then shut down gracefully; SIGHUP
    reloads the models. ``on_ready`` is called once the models are loaded. Signal
    handlers need the main thread; elsewhere use ``TemporecServer`` directly.

    A second stop signal interrupts the grace period, unless not ``interruptible``: a worker
    of ``--workers N`` (stopped by SIGTERM alone) may get SIGTERM twice, from its supervisor
    and from a process manager that signals the whole group (systemd), and must still drain;
    its supervisor kills it to stop at once."""
    server = TemporecServer(service, config, on_admin_reload)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in stop_signals:
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task] = set()  # running reloads, kept from the garbage collector

    def reload_on_sighup() -> None:
        if not server.service.ready():
            log.warning("SIGHUP ignored: the models are still loading")
            return
        task = loop.create_task(server.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload_on_sighup)
    try:
        await server.start()
        log.info("serving %s on %s", SERVICE_NAME, server.address)
        if on_ready:
            on_ready(server)
        await stop.wait()
    finally:
        for sig in (*stop_signals, signal.SIGHUP):
            loop.remove_signal_handler(sig)  # a second Ctrl-C interrupts the grace period
            if not interruptible:
                signal.signal(sig, signal.SIG_IGN)  # a worker drains, whatever else it is sent
        log.info("shutting down: in-flight calls have %ss to finish", config.grace_seconds)
        await server.stop()
