"""An example third-party temporec plugin distribution: the ``decay`` head
(``head.py``), the ``podcasts`` domain (``podcasts.py``), the ``hashing`` encoder
(``hashing.py``) and the ``memory`` store (``memory.py``), each registered through its own entry point."""

__version__ = "0.1.0"
