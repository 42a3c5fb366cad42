"""Triton Inference Server support: model repositories and a local server.

- ``temporec.triton.export``: ``export_repository`` writes a Triton model repository for a
  Hugging Face encoder (a Python-backend encoder; an ONNX model with a tokenizer -> model ->
  pooling ensemble) and ``validate_repository`` checks one (``temporec export-triton``).
- ``temporec.triton.configs``: the ``config.pbtxt`` of each model, built as Triton's own
  ``ModelConfig`` protobuf.
- ``temporec.triton.local_server``: ``LocalTriton`` runs the Triton server that the
  ``nvidia-pytriton`` wheel bundles (Python backend only, runs on a CPU), by pid, for tests
  and local use.
- ``temporec.triton.backends``: the ``model.py`` sources that run inside Triton.
- ``temporec.triton.metrics``: ``time_triton_request``, the histogram of calls to Triton.

The client side is the ``triton`` encoder plugin (``temporec_plugins.encoders.triton``).
"""

from temporec.triton.metrics import time_triton_request

__all__ = ["time_triton_request"]
