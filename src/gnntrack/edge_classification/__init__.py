"""Edge classification: the stage object that scores a graph's edges with a learned model.

The edge filter and the interaction GNN are two instances of ``EdgeClassifier``: the filter
drops the edges below its cut, the GNN only scores them for track building.
"""

from .stage import EdgeClassifier

__all__ = ["EdgeClassifier"]
