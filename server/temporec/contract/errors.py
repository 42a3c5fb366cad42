"""The core's exceptions, and ``plugin_call``, which keeps a plugin's failure to itself. The gRPC layer maps each class to one status code
(temporec.grpc.status); nothing else in the core knows about gRPC."""

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class TemporecError(Exception):
    """Base class: the message is shown to the caller as is."""


class InvalidArgument(TemporecError):
    """A request field has a bad value; the message names the field and what is allowed."""


class NotFound(TemporecError):
    """A named domain, head, encoder, model or item does not exist; the message lists what does."""


class FailedPrecondition(TemporecError):
    """The request is well formed but cannot be served in the server's current state."""


class ResourceExhausted(TemporecError):
    """A size limit or the server's capacity was exceeded."""


class Unavailable(TemporecError):
    """A dependency (for example a remote encoder) cannot be reached right now; retry later."""


class PluginError(TemporecError):
    """A plugin raised or returned something unusable. Reported as INTERNAL."""


def allowed(values) -> str:
    """Format a collection of allowed values for an error message."""
    values = sorted(values)
    return ", ".join(repr(v) for v in values) if values else "(none)"


def plugin_call(what: str, fn: Callable, *args: Any) -> Any:
    """Run plugin code; anything it raises besides a TemporecError becomes a PluginError
    (INTERNAL for that one call), so that a faulty plugin never takes the server down."""
    try:
        return fn(*args)
    except TemporecError:
        raise
    except Exception as exc:
        log.exception("plugin failure in %s", what)
        raise PluginError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
