"""digitflow's shared package: the NumPy engine, datasets, model files and the model registry.

Both services import from here; nothing in this package imports Flask or RQ.
"""

__version__ = "0.1.0"
