"""The cell network: its architecture, the weights files and the I/O contract stored with them, what
a network sees (``inputs``) and where it runs (``device``). Training lives in ``model/training``."""
