"""Python client for the temporec gRPC recommendation server.

from temporec_client import TemporecClient, Event

with TemporecClient("localhost:50051") as client:
    result = client.recommend("video", history=[Event("v1", "watch")], k=5)
    print(result.item_ids)
"""

from temporec_client.client import (
    Component,
    Components,
    Contribution,
    Embeddings,
    Event,
    HandOff,
    Model,
    Recommendation,
    RecommendedItem,
    TemporecClient,
    TemporecError,
    Tracked,
    TrackedEvent,
    tls_credentials,
)
from temporec_client.monitoring import Alert, AlertText, Ingested, MonitoredText, TopicWindow

__all__ = [
    "Alert",
    "AlertText",
    "Ingested",
    "MonitoredText",
    "TopicWindow",
    "Component",
    "Components",
    "Contribution",
    "Embeddings",
    "Event",
    "HandOff",
    "Model",
    "Recommendation",
    "RecommendedItem",
    "TemporecClient",
    "TemporecError",
    "Tracked",
    "TrackedEvent",
    "tls_credentials",
]
