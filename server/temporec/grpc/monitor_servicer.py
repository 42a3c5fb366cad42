"""The ``temporec.v1.Monitor`` servicer: each call translated to the monitor and back.
On a server without a ``[monitor]`` table every call is FAILED_PRECONDITION."""

from __future__ import annotations

from temporec.contract.errors import FailedPrecondition
from temporec.grpc import translate
from temporec.grpc.status import grpc_errors
from temporec.monitor.monitor import IngestResult, Monitor
from temporec.v1 import monitor_pb2, monitor_pb2_grpc

NOT_CONFIGURED = (
    "monitor: this server does not monitor texts; give its configuration a [monitor] table and a store "
    "(docs/finance.md)"
)


class MonitorServicer(monitor_pb2_grpc.MonitorServicer):
    def __init__(self, monitor: Monitor | None):
        self.monitor = monitor

    def _monitor(self) -> Monitor:
        if self.monitor is None:
            raise FailedPrecondition(NOT_CONFIGURED)
        return self.monitor

    @grpc_errors
    async def Ingest(self, request_iterator, context):
        """Each message kept as it arrives: what was counted is durable even when a later
        message fails."""
        monitor, total, messages = self._monitor(), IngestResult(), 0
        async for request in request_iterator:
            total.add(await monitor.ingest([translate.incoming_from_proto(t) for t in request.texts]))
            messages += 1
        return translate.ingest_to_proto(total, messages)

    @grpc_errors
    async def WatchAlerts(self, request, context):
        async for alert in self._monitor().watch(request.subscriber_id, list(request.topics)):
            yield monitor_pb2.WatchAlertsResponse(alert=translate.alert_to_proto(alert))

    @grpc_errors
    async def AcknowledgeAlerts(self, request, context):
        acknowledged = await self._monitor().acknowledge(request.subscriber_id, request.sequence)
        return monitor_pb2.AcknowledgeAlertsResponse(acknowledged=acknowledged)

    @grpc_errors
    async def GetTopicSeries(self, request, context):
        monitor = self._monitor()
        windows = monitor.series(request.topic)
        return monitor_pb2.GetTopicSeriesResponse(
            topic=request.topic,
            windows=[translate.window_to_proto(w) for w in windows],
            topics=monitor.topic_names(),
        )
