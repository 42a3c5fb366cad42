"""The transport-free data plane: the models a server serves, answering queries, the
encoders, and the server's configuration. ``temporec.grpc`` receives a built service."""

from temporec.serving.records import ComponentInfo, Components, ModelInfo, ReloadResult
from temporec.serving.service import RecommenderService, build_service

__all__ = ["ComponentInfo", "Components", "ModelInfo", "RecommenderService", "ReloadResult", "build_service"]
