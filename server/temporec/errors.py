"""The core's exceptions. The gRPC layer maps each class to one status code
(temporec.grpc.status); nothing else in the core knows about gRPC."""


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
