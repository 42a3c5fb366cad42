"""An example third-party temporec plugin distribution: the ``decay`` head
(``head.py``), the ``podcasts`` domain (``podcasts.py``) and the ``hashing`` encoder
(``hashing.py``), each registered through its own entry point."""

__version__ = "0.1.0"
