"""The gRPC transport: everything about RPCs, over a built ``temporec.serving``
service. No module here imports torch or reads a tensor.

    server        TemporecServer: services, ports, health, reloads, graceful stop; serve()
    servicer      the temporec.v1.Recommender servicer
    admin         the temporec.v1.Admin servicer (reloads), guarded by its own tokens
    translate     protobuf <-> the core's types
    status        the one map from core exceptions to status codes
    interceptors  request ids, access log, metrics, concurrency limit, drain
    security      TLS, mutual TLS, bearer tokens
"""

from temporec.grpc.server import TemporecServer, build_server, serve
from temporec.grpc.servicer import RecommenderServicer

__all__ = ["RecommenderServicer", "TemporecServer", "build_server", "serve"]
