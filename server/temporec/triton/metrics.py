"""The histogram of calls to Triton Inference Server. It is process-wide (an encoder
belongs to no one server), so it lives in ``PROCESS_REGISTRY``, which every server's
exposition includes (``temporec.serving.metrics``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from prometheus_client import Histogram

from temporec.serving.metrics import BUCKETS, PROCESS_REGISTRY

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
