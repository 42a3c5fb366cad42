"""The ``temporec.v1.Recommender`` servicer: each call translated to the service and back."""

from __future__ import annotations

from dataclasses import replace

import grpc

from temporec.contract.errors import Unavailable
from temporec.grpc import translate
from temporec.grpc.interceptors import current_request_id
from temporec.grpc.status import grpc_errors
from temporec.serving import RecommenderService
from temporec.v1 import recommender_pb2, recommender_pb2_grpc


class RecommenderServicer(recommender_pb2_grpc.RecommenderServicer):
    """Translates each call to the service; the call's deadline becomes its timeout,
    capped by ``max_request_seconds`` so that no call waits forever on a hung plugin."""

    def __init__(self, service: RecommenderService, max_request_seconds: float | None = None):
        self.service = service
        self.max_request_seconds = max_request_seconds

    def _timeout(self, context: grpc.aio.ServicerContext) -> float | None:
        """The call's time limit: the client's deadline or the server's ceiling, the shorter."""
        remaining = context.time_remaining()
        if self.max_request_seconds is None:
            return remaining
        return self.max_request_seconds if remaining is None else min(remaining, self.max_request_seconds)

    @grpc_errors
    async def Recommend(self, request, context):
        if not self.service.ready():
            raise Unavailable("the server is still loading its models; retry when its health is SERVING")
        request_id = current_request_id.get()  # "-" outside the interceptors: the service picks one
        query = replace(translate.query_from_proto(request), request_id="" if request_id == "-" else request_id)
        recommendation = await self.service.recommend(query, timeout=self._timeout(context))
        return translate.recommendation_to_proto(recommendation)

    @grpc_errors
    async def ListComponents(self, request, context):
        return translate.components_to_proto(self.service.components())

    @grpc_errors
    async def Encode(self, request, context):
        encoder, vectors = await self.service.encode(
            list(request.texts), request.encoder, timeout=self._timeout(context), model_version=request.model_version
        )
        return translate.embeddings_to_proto(encoder, vectors)

    @grpc_errors
    async def Track(self, request, context):
        result = await self.service.history.track([translate.tracked_from_proto(e) for e in request.events])
        return translate.track_to_proto(result)

    @grpc_errors
    async def TrackStream(self, request_iterator, context):
        """Each message stored as it arrives: what was acknowledged to the stream is kept
        even when a later message fails."""
        response = recommender_pb2.TrackStreamResponse()
        async for request in request_iterator:
            result = await self.service.history.track([translate.tracked_from_proto(e) for e in request.events])
            response.stored += result.stored
            response.duplicates += result.duplicates
            response.expired += result.expired
            response.messages += 1
        return response

    @grpc_errors
    async def GetHistory(self, request, context):
        events = await self.service.history.events(request.user_id, request.limit)
        return recommender_pb2.GetHistoryResponse(events=[translate.tracked_to_proto(e) for e in events])

    @grpc_errors
    async def ForgetUser(self, request, context):
        return recommender_pb2.ForgetUserResponse(removed=await self.service.history.forget(request.user_id))
