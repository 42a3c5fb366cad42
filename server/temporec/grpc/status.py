"""The one place where core exceptions become gRPC status codes."""

from __future__ import annotations

import functools
import inspect
import logging

import grpc

from temporec.contract.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PluginError,
    ResourceExhausted,
    Unavailable,
)

log = logging.getLogger(__name__)

#: Exceptions whose message is shown to the caller as is, with their status code.
CODES: dict[type[BaseException], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    TimeoutError: grpc.StatusCode.DEADLINE_EXCEEDED,  # asyncio.TimeoutError is TimeoutError
}
MAX_DETAILS = 500  # characters of a plugin's error shown to the caller


def to_status(exc: Exception, method: str) -> tuple[grpc.StatusCode, str]:
    """The status code and message for ``exc`` raised while serving ``method``.

    Anything not in ``CODES`` is a bug (in a plugin or the server): it is logged with its
    traceback and reported as INTERNAL without exposing server internals."""
    for cls, code in CODES.items():
        if isinstance(exc, cls):
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                return code, f"{method}: the deadline passed before the answer was ready"
            return code, str(exc)
    log.error("%s failed", method, exc_info=exc)
    if isinstance(exc, PluginError):
        return grpc.StatusCode.INTERNAL, str(exc)[:MAX_DETAILS]
    return grpc.StatusCode.INTERNAL, f"{method}: internal error ({type(exc).__name__}); see the server log"


def grpc_errors(handler):
    """Decorate an async servicer method (a coroutine, or an async generator for a
    server-streaming call) so that any exception it raises ends the call with the mapped
    status instead of an opaque UNKNOWN."""
    if inspect.isasyncgenfunction(handler):

        @functools.wraps(handler)
        async def streaming(self, request, context: grpc.aio.ServicerContext):
            try:
                async for response in handler(self, request, context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                code, details = to_status(exc, handler.__name__)
                await context.abort(code, details)

        return streaming

    @functools.wraps(handler)
    async def wrapper(self, request, context: grpc.aio.ServicerContext):
        try:
            return await handler(self, request, context)
        except grpc.aio.AbortError:
            raise  # the handler already chose a status
        except Exception as exc:
            code, details = to_status(exc, handler.__name__)
            await context.abort(code, details)

    return wrapper
