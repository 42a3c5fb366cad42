"""Metrics of the calls to Triton Inference Server, process-wide: an encoder belongs to no
one server, so every server's exposition includes ``PROCESS_REGISTRY``
(``temporec.serving.metrics``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram

#: Seconds: from a fraction of a millisecond (a cached score) to the 30 s default ceiling.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

#: Process-wide metrics, included in every server's exposition.
PROCESS_REGISTRY = CollectorRegistry()
TRITON_REQUEST_SECONDS = Histogram(
    "temporec_triton_request_seconds",
    "Calls from the triton encoder to Triton Inference Server, by model and status code.",
    ["model", "code"],
    buckets=BUCKETS,
    registry=PROCESS_REGISTRY,
)


@contextlib.contextmanager
def time_triton_request(model: str) -> Iterator[None]:
    """Time one call to Triton in ``TRITON_REQUEST_SECONDS``, with the status code it ended
    with (tritonclient's ``InferenceServerException.status()``, OK or CANCELLED)."""
    started = time.perf_counter()
    code = "OK"
    try:
        yield
    except asyncio.CancelledError:
        code = "CANCELLED"
        raise
    except Exception as exc:
        status = exc.status() if callable(getattr(exc, "status", None)) else None
        code = str(status).removeprefix("StatusCode.") if status else "ERROR"
        raise
    finally:
        TRITON_REQUEST_SECONDS.labels(model, code).observe(time.perf_counter() - started)
