"""grpc.aio server interceptors for every call: request ids and access logs, metrics, the
limit on concurrent calls, refusing request messages that do not decode, and the drain
that starts a graceful stop.

``temporec.grpc.security.call_interceptors`` installs them outermost first: ``CallLog``,
(``CallMetrics``,) bearer-token authentication, ``ConcurrencyLimit``,
``MalformedRequests``; so a call refused by any of them still gets its request id and
its access-log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

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


# -- wrapping a method handler ----------------------------------------------------------


@dataclass
class Call:
    """One call as an interceptor sees it; ``request`` is None for client streaming."""

    method: str
    request: Any
    context: grpc.aio.ServicerContext
    response: Any = None  # set when a unary response was returned


Around = Callable[[Call], contextlib.AbstractAsyncContextManager[None]]


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


def wrap(handler: grpc.RpcMethodHandler, method: str, around: Around) -> grpc.RpcMethodHandler:
    """Run ``handler``'s behaviour inside ``around(call)``. Synchronous behaviours (the
    migration thread pool) are left as they are: this server has none."""
    inner = getattr(handler, handler_kind(handler))

    def call_of(request, context) -> Call:
        return Call(method, None if handler.request_streaming else request, context)

    if inspect.isasyncgenfunction(inner):

        async def behaviour(request, context):
            async with around(call_of(request, context)):
                async for response in inner(request, context):
                    yield response

    elif inspect.iscoroutinefunction(inner):

        async def behaviour(request, context):
            call = call_of(request, context)
            async with around(call):
                call.response = await inner(request, context)
                return call.response

    else:
        return handler
    return with_behaviour(handler, behaviour, handler.request_deserializer)


def refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, details: str) -> grpc.RpcMethodHandler:
    """A handler of ``handler``'s kind that ends the call with ``code`` without reading
    the request (nothing is decoded for a refused caller)."""

    async def refuse(request, context):
        await context.abort(code, details)

    return with_behaviour(handler, refuse, request_deserializer=None)


def is_health(method: str) -> bool:
    return method.startswith(HEALTH_PREFIX)


def is_always_open(method: str) -> bool:
    """Health and reflection: answered without a token and outside the concurrency limit."""
    return is_health(method) or method.startswith(REFLECTION_PREFIXES)


def metadata_values(metadata: Sequence[tuple[str, Any]] | None, key: str) -> list[str]:
    """Every value of ``key`` in call metadata (keys arrive lower-case)."""
    return [value for name, value in metadata or () if name == key]


# -- request ids and the access log -----------------------------------------------------


def valid_request_id(value: str | None) -> bool:
    """A client's request id is used when it is 1-128 visible ASCII characters (no spaces)."""
    return bool(value) and len(value) <= MAX_REQUEST_ID_CHARS and all("!" <= c <= "~" for c in value)


def request_id_of(context: grpc.aio.ServicerContext) -> str:
    """The client's ``x-request-id`` when valid, else a new random one."""
    values = metadata_values(context.invocation_metadata(), REQUEST_ID_KEY)
    return values[0] if len(values) == 1 and valid_request_id(values[0]) else uuid.uuid4().hex


class CallLog(grpc.aio.ServerInterceptor):
    """Gives each call a request id (the client's ``x-request-id`` or a new one), sends it
    back in the initial metadata, makes it the ``request_id`` of every log record written
    while the call runs (with ``RequestIdFilter``), and writes one access-log line per
    call to the logger ``temporec.access``: method, status code, duration and the domain,
    head and encoder when the call names them. Never metadata (tokens), never user or
    item ids. Health checks log at DEBUG: probes call every few seconds. The initial
    metadata goes out when the call starts, so servicers must not send their own."""

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        return wrap(handler, details.method, self.observe) if handler else None

    @contextlib.asynccontextmanager
    async def observe(self, call: Call):
        request_id = request_id_of(call.context)
        current_request_id.set(request_id)  # the call's own task: no reset needed
        await call.context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
        async with reporting_end(call, lambda code, seconds: log_access(call, code, seconds * 1000)):
            yield


class CallMetrics(grpc.aio.ServerInterceptor):
    """Hands every finished unary call to ``recorder.record_call`` (``temporec.serving.
    metrics.ServerMetrics``): its method, domain and head (from the request and the
    response), status code, seconds and Recommend's stage timings. Streams (health Watch,
    reflection) and unknown methods are not counted."""

    def __init__(self, recorder):
        self.recorder = recorder

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        return wrap(handler, details.method, self.measure)

    @contextlib.asynccontextmanager
    async def measure(self, call: Call):
        def record(code: grpc.StatusCode, seconds: float) -> None:
            request, response = call.request, call.response
            domain = getattr(request, "domain", "")
            head = getattr(response, "head", "") or getattr(request, "head", "")
            stages = {timing.stage: timing.milliseconds for timing in getattr(response, "timings", ())}
            self.recorder.record_call(call.method.rpartition("/")[2], domain, head, code.name, seconds, stages)

        async with reporting_end(call, record):
            yield


# -- how a call ended ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def reporting_end(call: Call, report: Callable[[grpc.StatusCode, float], None]):
    """Run the block, then ``report(code, seconds)``: the status the call ended with and
    how long the block took, however it ended (its exception propagates)."""
    started, error = time.perf_counter(), None
    try:
        yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        report(ending_code(call.context, error), time.perf_counter() - started)


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
    fields = {"method": call.method, "code": code.name, "duration_ms": round(milliseconds, 3), **call_components(call)}
    names = "".join(f" {name}={value}" for name, value in fields.items() if name in COMPONENT_FIELDS)
    level = logging.DEBUG if is_health(call.method) else logging.INFO
    access_log.log(level, "%s %s %.1f ms%s", call.method, code.name, milliseconds, names, extra={"access": fields})


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` to the id of the call being served ("-" outside calls).
    Add it to a handler: a handler's filters see the records of every logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, request_id,
    the access fields of access-log lines, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", current_request_id.get()),
            **getattr(record, "access", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: str, logger: logging.Logger | None = None) -> None:
    """Format the handlers of ``logger`` (default: the root logger) as ``log_format``
    ("text" or "json") with each record's request id."""
    logger = logger or logging.getLogger()
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    for handler in logger.handlers:
        handler.setFormatter(formatter)
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())


# -- the concurrency limit --------------------------------------------------------------


class ConcurrencyLimit(grpc.aio.ServerInterceptor):
    """At most ``limit`` calls run at once; the next one ends at once with
    RESOURCE_EXHAUSTED (nothing waits in a queue). Health and reflection are not counted.

    grpc.aio's own ``maximum_concurrent_rpcs`` counts every call, long health watches
    included, and answers "Concurrent RPC limit exceeded!"; this one names the setting."""

    def __init__(self, limit: int):
        self.limit = limit
        self.in_flight = 0  # only touched on the server's event loop

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None or is_always_open(details.method):
            return handler
        return wrap(handler, details.method, self.slot)

    @contextlib.asynccontextmanager
    async def slot(self, call: Call):
        if self.in_flight >= self.limit:
            await call.context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the server is busy: {self.limit} calls are in flight, the most it runs at once "
                f"(setting max_concurrent_rpcs); retry with backoff",
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


# -- undecodable requests ---------------------------------------------------------------


@dataclass
class Undecodable:
    """Stands in for a request message that failed to decode."""

    error: str


class MalformedRequests(grpc.aio.ServerInterceptor):
    """A unary request that does not decode (corrupt wire format, invalid UTF-8 in a
    string field) ends with INVALID_ARGUMENT; gRPC alone would answer UNKNOWN with the
    parser's exception."""

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        decode = handler.request_deserializer

        def tolerant_decode(data: bytes):
            try:
                return decode(data)
            except Exception as exc:  # the parser's errors vary by protobuf backend
                return Undecodable(str(exc))

        checked = wrap(handler, details.method, self.refuse_undecodable)
        return with_behaviour(checked, getattr(checked, handler_kind(checked)), tolerant_decode)

    @contextlib.asynccontextmanager
    async def refuse_undecodable(self, call: Call):
        if isinstance(call.request, Undecodable):
            name = call.method.rsplit("/", 1)[-1]
            await call.context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"{name}: the request message does not decode: {call.request.error}"
            )
        yield


class Drain(grpc.aio.ServerInterceptor):
    """Graceful shutdown's first step. Once ``drain`` starts, a new call ends at once
    with UNAVAILABLE, so that its client retries (on another replica), while the calls in
    flight finish; gRPC's own stop would cancel new calls on open connections instead.
    Health and reflection stay open."""

    def __init__(self):
        self.draining = False
        self.in_flight = 0  # only touched on the server's event loop

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        handler = await continuation(details)
        if handler is None or is_always_open(details.method):
            return handler
        if self.draining:
            return refusal(handler, grpc.StatusCode.UNAVAILABLE, "the server is shutting down; retry on another server")
        return wrap(handler, details.method, self._counted)

    @contextlib.asynccontextmanager
    async def _counted(self, call: Call):
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    async def drain(self, timeout: float) -> None:
        """Refuse new calls; return when no call is in flight, or after ``timeout`` seconds."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.02)
