"""Generated gRPC stubs for the temporec.v1 API; regenerate with scripts/generate_protos.py."""
