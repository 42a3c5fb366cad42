"""The ``temporec.v1.Admin`` service: operator actions, guarded by admin tokens.

Admin tokens come from the file named by the setting ``admin_tokens_file`` (one token a
line, ``#`` comments) and from the setting ``admin_tokens`` (comma-separated; environment
variable ``TEMPOREC_ADMIN_TOKENS``). Each call must carry the metadata ``authorization:
Bearer <token>`` with one of them: a call without it ends with UNAUTHENTICATED, one with
another token (a Recommender token, say) with PERMISSION_DENIED. Without any admin token
the service is off: it refuses every call with PERMISSION_DENIED and says how to turn it
on. (The Recommender service's bearer tokens are checked by ``temporec.grpc.security``,
which leaves ``/temporec.v1.Admin/`` to this servicer.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

from temporec.grpc import translate
from temporec.grpc.interceptors import metadata_values
from temporec.grpc.security import AUTHORIZATION_KEY, bearer_token, digest, token_matches, tokens_from
from temporec.grpc.status import grpc_errors
from temporec.serving.config import ServerConfig
from temporec.serving.service import ReloadResult
from temporec.v1 import admin_pb2, admin_pb2_grpc

ADMIN_SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name
HOW_TO_ENABLE = (
    "the Admin service is off: this server has no admin token; set admin_tokens_file (a file "
    "with one token a line) or TEMPOREC_ADMIN_TOKENS (comma-separated tokens) and restart it"
)


def load_admin_tokens(config: ServerConfig) -> list[str]:
    """The admin tokens of ``config``: ``admin_tokens`` and those in ``admin_tokens_file``."""
    return tokens_from(
        config.admin_tokens, "admin_tokens (TEMPOREC_ADMIN_TOKENS)", config.admin_tokens_file, "admin_tokens_file"
    )


class AdminServicer(admin_pb2_grpc.AdminServicer):
    """Checks the caller's admin token, then acts; ``reload`` reloads the server's models."""

    def __init__(self, reload: Callable[[], Awaitable[ReloadResult]], tokens: list[str]):
        self._reload = reload
        self._digests = [digest(token) for token in tokens]

    @grpc_errors
    async def ReloadModels(self, request, context):
        await self._authorize(context)
        result = await self._reload()
        return admin_pb2.ReloadModelsResponse(
            reloaded=result.reloaded,
            models=[translate.model_to_proto(model) for model in result.models],
            errors=result.errors,
        )

    async def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        """End the call unless it carries one of the admin tokens."""
        if not self._digests:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, HOW_TO_ENABLE)
        token = bearer_token(metadata_values(context.invocation_metadata(), AUTHORIZATION_KEY))
        if token is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "authorization: send exactly one metadata value 'authorization: Bearer <admin token>'",
            )
        if not token_matches(token, self._digests):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "authorization: this token is not an admin token")
