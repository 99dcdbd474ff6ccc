"""Edge classification shared by the filter and the GNN: the ``EdgeClassifier`` stage object that
scores a graph's edges, the training task and items (whole events or eta-phi regions), and the
stages on stored shards (training from events + graphs files, scoring them).

The edge filter and the interaction GNN are two instances of ``EdgeClassifier``: the filter
drops the edges below its cut, the GNN only scores them for track building.
"""

from .regions import RegionConfig
from .shards import event_data, run_score_graphs, score_graph, train_edge_classifier
from .stage import EdgeClassifier

__all__ = [
    "EdgeClassifier",
    "RegionConfig",
    "event_data",
    "run_score_graphs",
    "score_graph",
    "train_edge_classifier",
]
