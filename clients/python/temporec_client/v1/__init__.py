"""Generated gRPC stubs for the temporec API; regenerate with scripts/generate_protos.py."""
