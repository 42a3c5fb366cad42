"""The ``model.py`` sources of the Python-backend models that ``temporec export-triton``
writes. They run inside Triton (they import ``triton_python_backend_utils``) and need only
numpy, torch and transformers there, not temporec: never import them here; the exporter
copies them as text."""
