"""The server's one interceptor, ``CallPipeline``, and the pieces of every call it runs:
request ids and access logs, metrics, the limit on concurrent calls, refusing request
messages that do not decode, refusing callers before their request is read (the drain
of a graceful stop, the token check), and the logging set-up.

One interceptor, not one per concern: each layer of grpc.aio interception costs an
awaited continuation and a new handler per call. ``CallPipeline`` wraps each method's
handler once, on its first call, and runs every step of a call in one flat coroutine.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import grpc

REQUEST_ID_KEY = "x-request-id"
MAX_REQUEST_ID_CHARS = 128
#: Method prefixes that are always open: probes and tools must work on a busy server.
HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIXES = ("/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/")
#: Request and response fields that name the components of a call; logged when present.
COMPONENT_FIELDS = ("domain", "head", "encoder")
MAX_LOGGED_NAME_CHARS = 64
KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
HANDLER_FACTORIES = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}

#: The id of the call being served; "-" outside calls. Each call runs in its own asyncio
#: task, so a value set there never leaks into another call (worker threads started with
#: asyncio.to_thread inherit it).
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("temporec_request_id", default="-")
access_log = logging.getLogger("temporec.access")


@dataclass
class Call:
    """One call as the pipeline sees it; ``request`` is None for client streaming."""

    method: str
    request: Any
    context: grpc.aio.ServicerContext
    response: Any = None  # set when a unary response was returned
    counted: bool = False  # in CallPipeline.in_flight


class Gate(Protocol):
    """A check made before the request is read (the token check): why the call is
    refused, or None to let it through."""

    def problem(self, method: str, metadata: Sequence[tuple[str, Any]]) -> str | None: ...


class Recorder(Protocol):
    """Where finished unary calls are counted (``temporec.serving.metrics.ServerMetrics``)."""

    def record_call(self, method, domain, head, code, seconds, stages_ms) -> None: ...


def handler_kind(handler: grpc.RpcMethodHandler) -> str:
    """ "unary_unary", "unary_stream", "stream_unary" or "stream_stream"."""
    return next(kind for kind in KINDS if getattr(handler, kind) is not None)


def with_behaviour(
    handler: grpc.RpcMethodHandler, behaviour: Callable, request_deserializer: Callable | None
) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s kind and response serializer with another behaviour and
    request deserializer."""
    return HANDLER_FACTORIES[handler_kind(handler)](
        behaviour, request_deserializer=request_deserializer, response_serializer=handler.response_serializer
    )


def is_health(method: str) -> bool:
    return method.startswith(HEALTH_PREFIX)


def is_always_open(method: str) -> bool:
    """Health and reflection: answered without a token, outside the concurrency limit and
    during a drain."""
    return is_health(method) or method.startswith(REFLECTION_PREFIXES)


def metadata_values(metadata: Sequence[tuple[str, Any]] | None, key: str) -> list[str]:
    """Every value of ``key`` in call metadata (keys arrive lower-case)."""
    return [value for name, value in metadata or () if name == key]


# -- the pipeline ---------------------------------------------------------------------------


class CallPipeline(grpc.aio.ServerInterceptor):
    """Every call, in order: a request id (sent back at once in the initial metadata, so
    that refused calls carry it too), then refusals before the request is read (UNAVAILABLE
    while draining, then each gate's), the concurrency limit (RESOURCE_EXHAUSTED),
    INVALID_ARGUMENT for a request that does not decode, the servicer; at the end, one
    access-log line and, for unary calls, the recorder's count. Health and reflection pass
    the gates, the limit and the drain."""

    def __init__(self, max_concurrent: int, gates: Sequence[Gate] = (), recorder: Recorder | None = None):
        self.limit = max_concurrent
        self.gates = tuple(gates)
        self.recorder = recorder
        self.draining = False
        self.in_flight = 0  # counted calls running; only touched on the server's event loop
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}
        self._refusals: dict[tuple[str, grpc.StatusCode, str], grpc.RpcMethodHandler] = {}

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        refused = None if is_always_open(method) else self._refusal(method, details.invocation_metadata)
        if refused:
            return self._refusal_handler(handler, method, *refused)
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = self._wrapped[method] = (handler, self._wrap(handler, method))
        return cached[1]

    def _refusal(self, method: str, metadata) -> tuple[grpc.StatusCode, str] | None:
        if self.draining:
            return grpc.StatusCode.UNAVAILABLE, "the server is shutting down; retry on another server"
        for gate in self.gates:
            problem = gate.problem(method, metadata)
            if problem:
                return grpc.StatusCode.UNAUTHENTICATED, problem
        return None

    def _refusal_handler(self, handler, method: str, code: grpc.StatusCode, details: str):
        """A handler that ends the call with ``code`` without reading the request: nothing
        is decoded for a refused caller. Few distinct refusals exist, so they are kept."""
        key = (method, code, details)
        if key not in self._refusals:

            async def refuse(request, context):
                await context.abort(code, details)

            refusal = with_behaviour(handler, refuse, request_deserializer=None)
            self._refusals[key] = self._wrap(refusal, method, counted=False)
        return self._refusals[key]

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str, counted: bool = True) -> grpc.RpcMethodHandler:
        inner = getattr(handler, handler_kind(handler))
        counted = counted and not is_always_open(method)
        record = self.recorder is not None and handler.unary_unary is not None
        streaming_request = handler.request_streaming

        def call_of(request, context) -> Call:
            return Call(method, None if streaming_request else request, context)

        if inspect.isasyncgenfunction(inner):

            async def behaviour(request, context):
                call, started, error = call_of(request, context), time.perf_counter(), None
                try:
                    await self._begin(call, counted)
                    async for response in inner(request, context):
                        yield response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    self._end(call, error, started, record)

        elif inspect.iscoroutinefunction(inner):

            async def behaviour(request, context):
                call, started, error = call_of(request, context), time.perf_counter(), None
                try:
                    await self._begin(call, counted)
                    call.response = await inner(request, context)
                    return call.response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    self._end(call, error, started, record)

        else:
            return handler  # synchronous behaviours (the migration thread pool): this server has none
        decode = handler.request_deserializer
        tolerant = tolerant_decoder(decode) if decode is not None and not streaming_request else decode
        return with_behaviour(handler, behaviour, tolerant)

    async def _begin(self, call: Call, counted: bool) -> None:
        request_id = request_id_of(call.context)
        current_request_id.set(request_id)  # the call's own task: no reset needed
        await call.context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
        if counted:
            await self._admit(call)

    def _end(self, call: Call, error: BaseException | None, started: float, record: bool) -> None:
        if call.counted:
            self.in_flight -= 1
        seconds = time.perf_counter() - started
        code = ending_code(call.context, error)
        log_access(call, code, seconds * 1000)
        if record:
            self._record(call, code, seconds)

    async def _admit(self, call: Call) -> None:
        """Count the call in, or end it: over the concurrency limit, or undecodable."""
        if self.in_flight >= self.limit:
            await call.context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the server is busy: {self.limit} calls are in flight, the most it runs at once "
                f"(setting max_concurrent_rpcs); retry with backoff",
            )
        self.in_flight += 1
        call.counted = True
        if isinstance(call.request, Undecodable):
            name = call.method.rsplit("/", 1)[-1]
            await call.context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"{name}: the request message does not decode: {call.request.error}"
            )

    def _record(self, call: Call, code: grpc.StatusCode, seconds: float) -> None:
        request, response = call.request, call.response
        domain = getattr(request, "domain", "")
        head = getattr(response, "head", "") or getattr(request, "head", "")
        stages = {timing.stage: timing.milliseconds for timing in getattr(response, "timings", ())}
        self.recorder.record_call(call.method.rpartition("/")[2], domain, head, code.name, seconds, stages)

    async def drain(self, timeout: float) -> None:
        """Graceful shutdown's first step: refuse new calls with UNAVAILABLE (so that their
        clients retry on another replica; gRPC's own stop would cancel new calls on open
        connections instead), and return when no call is in flight, or after ``timeout``
        seconds."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.02)


# -- undecodable requests ---------------------------------------------------------------


@dataclass
class Undecodable:
    """Stands in for a request message that failed to decode: the pipeline ends its call
    with INVALID_ARGUMENT, where gRPC alone would answer UNKNOWN with the parser's error."""

    error: str


def tolerant_decoder(decode: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def tolerant_decode(data: bytes):
        try:
            return decode(data)
        except Exception as exc:  # the parser's errors vary by protobuf backend
            return Undecodable(str(exc))

    return tolerant_decode


# -- request ids and the access log -----------------------------------------------------


def valid_request_id(value: str | None) -> bool:
    """A client's request id is used when it is 1-128 visible ASCII characters (no spaces)."""
    return bool(value) and len(value) <= MAX_REQUEST_ID_CHARS and all("!" <= c <= "~" for c in value)


class RequestIds:
    """New request ids: 32 hex digits, a random prefix per process and a counter. Unique
    across processes and restarts like random ids, without a random draw (a system call)
    per call; a forked worker draws its own prefix."""

    def __init__(self):
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._prefix, self._counter = os.urandom(8).hex(), itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


new_request_id = RequestIds()


def request_id_of(context: grpc.aio.ServicerContext) -> str:
    """The client's ``x-request-id`` when valid, else a new one."""
    values = metadata_values(context.invocation_metadata(), REQUEST_ID_KEY)
    return values[0] if len(values) == 1 and valid_request_id(values[0]) else new_request_id()


# -- how a call ended ---------------------------------------------------------------------


def ending_code(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status a call ended with; ``error`` is what its servicer raised, if anything.
    A call that outlived its deadline, or whose client left, does not always end in
    CancelledError: the servicer can finish first and then fail to send its status
    (gRPC's ExecuteBatchError). The client saw DEADLINE_EXCEEDED or CANCELLED either
    way, so that is what counts."""
    if error is None:
        return status_code(context.code()) or grpc.StatusCode.OK
    if isinstance(error, grpc.aio.AbortError):
        return status_code(context.code()) or grpc.StatusCode.UNKNOWN
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    if isinstance(error, asyncio.CancelledError) or context.cancelled():
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def status_code(code: Any) -> grpc.StatusCode | None:
    """``context.code()`` as a ``grpc.StatusCode`` (it may be the raw integer)."""
    if code is None or isinstance(code, grpc.StatusCode):
        return code
    return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)


def call_components(call: Call) -> dict[str, str]:
    """domain, head and encoder: the ones that served (response), else the ones asked for."""
    found = {}
    for message in (call.response, call.request):
        for name in COMPONENT_FIELDS:
            value = getattr(message, name, None)
            if name not in found and isinstance(value, str) and value:
                found[name] = loggable(value)
    return found


def loggable(value: str) -> str:
    """A client-chosen name made safe for one log line: short, printable, no spaces."""
    short = value[:MAX_LOGGED_NAME_CHARS] + ("..." if len(value) > MAX_LOGGED_NAME_CHARS else "")
    return "".join(c if c.isprintable() and not c.isspace() else "?" for c in short)


def log_access(call: Call, code: grpc.StatusCode, milliseconds: float) -> None:
    level = logging.DEBUG if is_health(call.method) else logging.INFO
    if not access_log.isEnabledFor(level):
        return  # the fields cost more than the check: build them only for a line written
    fields = {"method": call.method, "code": code.name, "duration_ms": round(milliseconds, 3), **call_components(call)}
    names = "".join(f" {name}={value}" for name, value in fields.items() if name in COMPONENT_FIELDS)
    access_log.log(level, "%s %s %.1f ms%s", call.method, code.name, milliseconds, names, extra={"access": fields})


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` to the id of the call being served ("-" outside calls).
    Add it to a handler: a handler's filters see the records of every logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
#: A worker of ``--workers N`` names its process: which worker logged a line.
WORKER_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s pid %(process)d [%(request_id)s]: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, request_id,
    the access fields of access-log lines, and the traceback when there is one; ``pid``
    too with ``with_pid`` (a worker of ``--workers N``)."""

    def __init__(self, with_pid: bool = False):
        super().__init__()
        self.with_pid = with_pid

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", current_request_id.get()),
            **getattr(record, "access", {}),
        }
        if self.with_pid:
            entry["pid"] = record.process
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: str, logger: logging.Logger | None = None, with_pid: bool = False) -> None:
    """Format the handlers of ``logger`` (default: the root logger) as ``log_format``
    ("text" or "json") with each record's request id, and its process id ``with_pid``."""
    logger = logger or logging.getLogger()
    if log_format == "json":
        formatter = JsonFormatter(with_pid)
    else:
        formatter = logging.Formatter(WORKER_TEXT_FORMAT if with_pid else TEXT_FORMAT)
    for handler in logger.handlers:
        handler.setFormatter(formatter)
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
