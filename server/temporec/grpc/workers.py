"""``temporec serve --workers N``: N server processes sharing one port (SO_REUSEPORT, the
pattern gRPC recommends for Python: each process has its own event loop, interpreter
lock and models).

The supervisor is the process ``temporec serve`` started as. It reserves the port first (a
socket bound with SO_REUSEPORT that never listens: ``port = 0`` becomes one real port
before any worker starts, and a port another server holds is refused), then starts the
workers as fresh interpreters (``multiprocessing``'s spawn: no gRPC or torch state is
inherited). Each worker loads the models and serves the port with its own loop; the kernel
spreads new connections over the workers, and a gRPC channel is one connection, so its
calls stay on one worker. When every worker is ready the supervisor calls ``on_ready``
(the ready line). Then it:

- forwards SIGHUP to every worker (each reloads its own models), and SIGHUPs the others
  when one worker is asked to reload by ``Admin.ReloadModels``;
- turns SIGTERM and Ctrl-C into SIGTERM for every worker (each drains as a single server
  does) and exits 0 once they all have; a second one kills them at once, and so does
  ``STOP_MARGIN_SECONDS`` past the grace period (a hung plugin's thread keeps a process
  alive: an orchestrator kills only the supervisor);
- serves the workers' summed Prometheus metrics on ``metrics_port`` (multiprocess mode);
- restarts nothing: a worker that exits by itself is logged and the whole server stops
  (the others drain) with exit status 1 (the worker's own, if positive), so that whatever
  runs the server (systemd, Kubernetes) restarts it whole.

A worker whose supervisor is killed notices it (the pipe between them closes) and drains.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait

from temporec.contract.errors import FailedPrecondition, TemporecError
from temporec.grpc.server import listen_address
from temporec.serving.config import ServerConfig
from temporec.serving.metrics import (
    MULTIPROCESS_VARIABLE,
    aggregated_registry,
    forget_worker,
    serve_registry,
    stop_serving,
)

log = logging.getLogger(__name__)

#: Seconds past ``grace_seconds`` after which a worker still stopping is killed (exit 1).
STOP_MARGIN_SECONDS = 10.0

#: What a worker runs: serve ``config`` until SIGTERM, reporting through the link.
WorkerTarget = Callable[[ServerConfig, "WorkerLink"], None]


@contextlib.contextmanager
def reserved_port(host: str, port: int) -> Iterator[int]:
    """Hold ``host:port`` (``port`` 0: a free one) for the workers while the block runs;
    yields the port. A first socket without SO_REUSEPORT checks that no server holds it."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(address)
            address = (address[0], probe.getsockname()[1], *address[2:])
        holder = socket.socket(family, kind, proto)
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(address)
    except OSError as exc:
        reason = exc.strerror or exc
        raise FailedPrecondition(
            f"cannot listen on {listen_address(host, port)}: {reason} (is the port in use?)"
        ) from exc
    try:
        yield address[1]
    finally:
        holder.close()


@dataclass
class WorkerLink:
    """A worker's end of the pipe to its supervisor."""

    index: int
    connection: Connection

    def ready(self, models: int) -> None:
        """The worker serves, with ``models`` models."""
        self._send(("ready", models))

    def reload_others(self) -> None:
        """Admin.ReloadModels reached this worker: the supervisor reloads the others."""
        self._send(("reload",))

    def watch_supervisor(self) -> None:
        """Drain (SIGTERM to this process) when the supervisor is gone."""
        threading.Thread(target=self._wait_for_the_end, name="supervisor-watch", daemon=True).start()

    def _wait_for_the_end(self) -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                self.connection.recv()  # the supervisor sends nothing: this returns at its end
        log.warning("worker %d: the supervisor is gone; stopping", self.index)
        os.kill(os.getpid(), signal.SIGTERM)

    def _send(self, message: tuple) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone: the watch stops this worker
            self.connection.send(message)


def _worker_main(target: WorkerTarget, config: ServerConfig, link: WorkerLink) -> None:
    """The worker process: Ctrl-C reaches it through the supervisor, as SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        target(config, link)
    except TemporecError as exc:
        print(f"temporec serve (worker {link.index}): {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


@dataclass
class Worker:
    """The supervisor's view of one worker."""

    index: int
    process: multiprocessing.process.BaseProcess
    connection: Connection | None  # None once the worker closed its end
    models: int | None = None  # set when the worker is ready

    @property
    def ready(self) -> bool:
        return self.models is not None

    def signal(self, number: int) -> None:
        if self.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, number)


class Supervisor:
    """Starts ``config.workers`` workers running ``target`` on one port and watches them
    (see the module's docstring); ``on_ready(address, models)`` once all serve."""

    def __init__(self, config: ServerConfig, target: WorkerTarget, on_ready: Callable[[str, int], None]):
        self.config = config
        self.target = target
        self.on_ready = on_ready
        self.workers: list[Worker] = []
        self.stopping = False
        self.kill_at = float("inf")  # time.monotonic() when stopping workers are killed
        self.announced = False
        self.exit_code = 0

    def run(self) -> int:
        """Serve until the workers have ended; the exit status."""
        with reserved_port(self.config.host, self.config.port) as port:
            with tempfile.TemporaryDirectory(prefix="temporec-metrics-") as metrics_dir:
                self._serve(port, metrics_dir)
        return self.exit_code

    def _serve(self, port: int, metrics_dir: str) -> None:
        self.address = listen_address(self.config.host, port)
        self.metrics_dir = metrics_dir
        http = None
        if self.config.metrics_port:
            http = serve_registry(aggregated_registry(metrics_dir), self.config.host, self.config.metrics_port)
        previous = {
            number: signal.signal(number, handler)
            for number, handler in (
                (signal.SIGTERM, self._on_stop_signal),
                (signal.SIGINT, self._on_stop_signal),
                (signal.SIGHUP, self._on_sighup),
            )
        }
        os.environ[MULTIPROCESS_VARIABLE] = metrics_dir  # the workers inherit it
        try:
            # The workers bind the reserved port themselves; the supervisor serves the metrics.
            worker_config = replace(self.config, port=port, metrics_port=0)
            context = multiprocessing.get_context("spawn")
            for index in range(self.config.workers):
                if not self.stopping:
                    self.workers.append(self._start(context, index, worker_config))
            self._watch()
        finally:
            os.environ.pop(MULTIPROCESS_VARIABLE, None)
            for worker in self.workers:  # only after an error of the supervisor's own
                worker.signal(signal.SIGKILL)
                worker.process.join()
            for number, handler in previous.items():
                signal.signal(number, handler)
            if http is not None:
                stop_serving(http)

    def _start(self, context, index: int, config: ServerConfig) -> Worker:
        mine, theirs = context.Pipe()
        process = context.Process(
            target=_worker_main, args=(self.target, config, WorkerLink(index, theirs)), name=f"temporec-worker-{index}"
        )
        process.start()
        theirs.close()  # the worker holds its end: this one reads EOF when the worker is gone
        log.info("worker %d started (pid %d)", index, process.pid)
        return Worker(index, process, mine)

    def _watch(self) -> None:
        """Handle the workers' messages and ends until none is left."""
        while self.workers:
            sentinels = {worker.process.sentinel: worker for worker in self.workers}
            connections = {worker.connection: worker for worker in self.workers if worker.connection}
            timeout = None if not self.stopping else max(0.0, self.kill_at - time.monotonic())
            ended = wait([*sentinels, *connections], timeout)
            if not ended:
                self._kill_stragglers()
            for ready in ended:
                if ready in connections:
                    self._receive(connections[ready])
                elif ready in sentinels:
                    self._ended(sentinels[ready])

    def _receive(self, worker: Worker) -> None:
        try:
            message = worker.connection.recv()
        except (EOFError, OSError):
            worker.connection = None  # the worker is ending: its sentinel follows
            return
        if message[0] == "ready":
            worker.models = message[1]
            log.info("worker %d (pid %d) serves %d models", worker.index, worker.process.pid, worker.models)
            if not self.announced and not self.stopping and all(w.ready for w in self.workers):
                self.announced = True
                self.on_ready(self.address, self.workers[0].models)
        elif message[0] == "reload":
            log.info("worker %d was asked to reload: reloading the other workers", worker.index)
            self._reload(exclude=worker)

    def _ended(self, worker: Worker) -> None:
        worker.process.join()
        code = worker.process.exitcode
        self.workers.remove(worker)
        forget_worker(worker.process.pid, self.metrics_dir)
        if self.stopping and code in (0, -signal.SIGTERM):
            log.info("worker %d (pid %d) stopped", worker.index, worker.process.pid)
            return
        log.error(
            "worker %d (pid %d) exited with status %s: stopping the server", worker.index, worker.process.pid, code
        )
        self.exit_code = self.exit_code or (code if code and code > 0 else 1)
        self._stop()

    def _on_stop_signal(self, number, frame) -> None:
        if self.stopping:
            log.warning("stopping at once: killing the workers")
            self.exit_code = self.exit_code or 1
            for worker in self.workers:
                worker.signal(signal.SIGKILL)
        else:
            log.info(
                "shutting down %d workers: in-flight calls have %ss to finish",
                len(self.workers),
                self.config.grace_seconds,
            )
            self._stop()

    def _on_sighup(self, number, frame) -> None:
        if not self.announced:
            log.warning("SIGHUP ignored: the models are still loading")
            return
        self._reload()

    def _stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            self.kill_at = time.monotonic() + self.config.grace_seconds + STOP_MARGIN_SECONDS
        for worker in self.workers:
            worker.signal(signal.SIGTERM)

    def _kill_stragglers(self) -> None:
        for worker in self.workers:
            log.error("worker %d (pid %d) did not stop in time: killing it", worker.index, worker.process.pid)
            worker.signal(signal.SIGKILL)
        self.kill_at = float("inf")  # their ends follow

    def _reload(self, exclude: Worker | None = None) -> None:
        if self.stopping:  # a draining worker would take SIGHUP's default: the end
            return
        for worker in self.workers:
            if worker is exclude:
                continue
            if worker.ready:
                worker.signal(signal.SIGHUP)
            else:  # its SIGHUP handler may not be there yet: the signal would end it
                log.warning("worker %d is still loading its models: not reloaded", worker.index)


def supervise(config: ServerConfig, target: WorkerTarget, on_ready: Callable[[str, int], None]) -> int:
    """Serve ``config`` with ``config.workers`` worker processes; the exit status."""
    return Supervisor(config, target, on_ready).run()
