"""Prometheus metrics: requests, per-stage latency, loaded models, reloads, Triton calls.

Each server owns a ``ServerMetrics`` with its own ``CollectorRegistry``, so that two servers
in one process (as in the tests) never mix their counts. The gRPC interceptor
``temporec.grpc.interceptors.CallPipeline`` hands it every unary call, outside the service: a
call's method, domain, head and status code come from the request, the response and the
call's outcome, and the stage timings from the response's ``timings``. ``serve_http``
exposes the registry for Prometheus to scrape.

With ``temporec serve --workers N`` each worker process writes its metrics to files in
the directory named by ``PROMETHEUS_MULTIPROC_DIR`` (Prometheus's multiprocess mode),
and the supervisor serves their sum once (``aggregated_registry``): counters and
histograms add up, ``temporec_models_loaded`` has one sample per live worker (label
``pid``), and there are no ``process_*`` metrics (the mode has no per-process collectors).

    temporec_requests_total{method,domain,head,code}   calls answered, by gRPC status code
    temporec_request_seconds{method}                    call latency, as the server sees it
    temporec_stage_seconds{stage,domain,head}           Recommend's stages: encode, rules,
                                                        head, score
    temporec_models_loaded                              models being served (by pid with
                                                        workers)
    temporec_reloads_total{result}                      model reloads: ok, failed
    temporec_experiment_exposures_total{experiment,arm} answers of an A/B experiment's arms
                                                        logged in the store (docs/realtime.md)
    temporec_triton_request_seconds{model,code}         calls to Triton (process-wide: an
                                                        encoder belongs to no one server)
    temporec_encoder_cache_lookups_total{encoder,result} texts looked up in the encoders'
                                                        caches: hit, miss (process-wide,
                                                        temporec.serving.encoder_pool)
    process_*                                           the process: memory, CPU, files

Label values that come from requests are limited to the installed domains and heads
(anything else is counted as ``other``), so that no client can grow the label sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    multiprocess,
    start_http_server,
)

from temporec.contract.errors import FailedPrecondition

#: Seconds: from a fraction of a millisecond (a cached score) to the 30 s default ceiling.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
OTHER = "other"  # the label value of a domain or head that is not installed
#: Process-wide metrics (``temporec.triton.metrics``), included in every server's exposition.
PROCESS_REGISTRY = CollectorRegistry()
#: Set in a worker's environment before it starts: the directory its metrics are written to.
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


class _Include:
    """A collector that yields another registry's metrics (the process-wide ones)."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self):
        return self.registry.collect()


class ServerMetrics:
    """One server's metrics. ``domains`` and ``heads`` are the installed names (label
    values); ``models_loaded`` returns the number of models served, read by
    ``count_models`` after each load."""

    def __init__(self, domains: Iterable[str], heads: Iterable[str], models_loaded: Callable[[], int]):
        self.domains = frozenset(domains)
        self.heads = frozenset(heads) | {"popularity"}  # the cold-start ranking answers as "popularity"
        self.registry = CollectorRegistry()
        self.registry.register(_Include(PROCESS_REGISTRY))
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU time, open files
        self.requests = Counter(
            "temporec_requests",
            "Calls answered, by method, domain, head and gRPC status code.",
            ["method", "domain", "head", "code"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "temporec_request_seconds",
            "Call latency inside the server, by method.",
            ["method"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "temporec_stage_seconds",
            "Time spent in each stage of a Recommend call (encode, rules, head, score).",
            ["stage", "domain", "head"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        # Set after each load, not read at each scrape: the multiprocess mode stores values only.
        self.models_loaded = Gauge(
            "temporec_models_loaded", "Models being served.", registry=self.registry, multiprocess_mode="liveall"
        )
        self._count_models = models_loaded
        self.reloads = Counter(
            "temporec_reloads",
            "Model reloads (SIGHUP or Admin.ReloadModels), by result: ok or failed.",
            ["result"],
            registry=self.registry,
        )
        self.exposures = Counter(
            "temporec_experiment_exposures",
            "Answers of an A/B experiment's arms, logged in the store, by experiment and arm.",
            ["experiment", "arm"],
            registry=self.registry,
        )
        self.monitored = Counter(
            "temporec_monitor_texts",
            "Texts the monitor classified and stored, by sentiment label.",
            ["label"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "temporec_monitor_alerts",
            "Alerts the monitor raised, by kind: negative_share or volume.",
            ["kind"],
            registry=self.registry,
        )
        self._http = None

    def count_models(self) -> None:
        """Update ``temporec_models_loaded``; called once the models are loaded or reloaded."""
        self.models_loaded.set(self._count_models())

    def record_monitored(self, labels: Mapping[str, int]) -> None:
        """Count stored texts per label (the model's classes, never a client's strings)."""
        for label, count in labels.items():
            self.monitored.labels(label).inc(count)

    def record_alert(self, kind: str) -> None:
        self.alerts.labels(kind).inc()

    def record_exposure(self, experiment: str, arm: str) -> None:
        """Count one logged exposure (the names are the configuration's, never a client's)."""
        self.exposures.labels(experiment, arm).inc()

    def record_call(
        self, method: str, domain: str, head: str, code: str, seconds: float, stages_ms: Mapping[str, float]
    ) -> None:
        """Count one finished call: its status code's name, and the stage timings of its
        answer (none when it failed)."""
        domain, head = self._known(domain, self.domains), self._known(head, self.heads)
        self.requests.labels(method, domain, head, code).inc()
        self.request_seconds.labels(method).observe(seconds)
        for stage, milliseconds in stages_ms.items():
            self.stage_seconds.labels(stage, domain, head).observe(milliseconds / 1000)

    @staticmethod
    def _known(value: str, known: frozenset[str]) -> str:
        return value if not value or value in known else OTHER

    def serve_http(self, host: str, port: int) -> int:
        """Expose the metrics at ``http://host:port/metrics`` from a background thread;
        returns the port."""
        self._http = serve_registry(self.registry, host, port)
        return self._http.server_port

    def close(self) -> None:
        """Stop the HTTP endpoint, if it runs."""
        if self._http is not None:
            stop_serving(self._http)
            self._http = None


def serve_registry(registry: CollectorRegistry, host: str, port: int):
    """Serve ``registry`` at ``http://host:port/metrics`` from a background thread; returns
    the HTTP server (its ``server_port`` is the bound port)."""
    try:
        server, _ = start_http_server(port, host, registry=registry)
    except OSError as exc:
        raise FailedPrecondition(f"metrics_port: cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
    return server


def stop_serving(server) -> None:
    server.shutdown()
    server.server_close()


def aggregated_registry(directory: str) -> CollectorRegistry:
    """A registry of the sum of every worker's metrics written to ``directory``."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return registry


def forget_worker(pid: int, directory: str) -> None:
    """Drop an ended worker's live gauges (``temporec_models_loaded``) from the sum."""
    multiprocess.mark_process_dead(pid, directory)
