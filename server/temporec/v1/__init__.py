"""The temporec.v1 API stubs, as the server imports them.

They are generated once, into the client distribution (``temporec_client.v1``, which the
server depends on), so that server and clients speak from the same generated code;
``scripts/generate_protos.py`` writes them. This package re-exports those modules, so
that both ``from temporec.v1 import recommender_pb2`` and
``import temporec.v1.recommender_pb2`` work.
"""

import sys

from temporec_client.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    monitor_pb2,
    monitor_pb2_grpc,
    recommender_pb2,
    recommender_pb2_grpc,
)

for _module in (admin_pb2, admin_pb2_grpc, monitor_pb2, monitor_pb2_grpc, recommender_pb2, recommender_pb2_grpc):
    sys.modules[f"{__name__}.{_module.__name__.rpartition('.')[2]}"] = _module

__all__ = ["admin_pb2", "admin_pb2_grpc", "monitor_pb2", "monitor_pb2_grpc", "recommender_pb2", "recommender_pb2_grpc"]
