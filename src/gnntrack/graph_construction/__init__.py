"""Graph construction: module map or metric learning + fixed-radius neighbour search.

The quality of built graphs (``graph_metrics``) is in ``gnntrack.metrics``.
"""

from .build import (
    EmbeddingBuilder,
    GraphConstructionConfig,
    build_graph_edges,
    make_builder,
    run_build_graphs,
)
from .metric_learning import MetricLearningConfig, MetricLearningTask, run_train_metric_learning
from .module_map import ModuleMap, ModuleMapConfig, ModuleMapData, build_module_map, run_build_module_map
from .neighbours import radius_graph
from .stage import GraphBuilder

__all__ = [
    "EmbeddingBuilder",
    "GraphBuilder",
    "GraphConstructionConfig",
    "MetricLearningConfig",
    "MetricLearningTask",
    "ModuleMap",
    "ModuleMapConfig",
    "ModuleMapData",
    "build_graph_edges",
    "build_module_map",
    "make_builder",
    "radius_graph",
    "run_build_graphs",
    "run_build_module_map",
    "run_train_metric_learning",
]
