"""The gRPC transport: the temporec.v1.Recommender servicer, health and reflection.

``serve(config)`` runs a server until SIGTERM/SIGINT; ``TemporecServer`` is the same
server for in-process use (tests, embedding in another asyncio program).
"""

from temporec.grpc.server import RecommenderServicer, TemporecServer, build_server, build_service, serve

__all__ = ["RecommenderServicer", "TemporecServer", "build_server", "build_service", "serve"]
