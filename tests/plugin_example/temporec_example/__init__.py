"""An example third-party temporec plugin: the ``decay`` temporal head."""

__version__ = "0.1.0"
