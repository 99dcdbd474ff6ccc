"""Graph building for a shard (stage ``build_graphs``) and for one event in-process (inference).

The stage object is ``GraphBuilder`` (``stage.py``), shared with the one-process inference
chain: a module map (``ModuleMap``) or an embedding model (metric learning: embed, fixed-radius
search, orient) builds outward-directed unique edges on the builder's device.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import torch

from ..config import ConfigError, Count, NonNegative, Positive, from_dict, one_of
from ..device import resolve_device
from ..io.event_store import Event, event_keys, iter_events
from ..io.graph_store import make_graph, write_graphs
from ..progress import progress, safe_total, shard_name
from .module_map import CutMode, ModuleMap
from .neighbours import BACKENDS
from .stage import GraphBuilder

log = logging.getLogger(__name__)


@dataclass
class GraphConstructionConfig:
    """How ``run_build_graphs`` builds candidate edges.

    method: ``module_map`` or ``metric_learning``.
    cut / tolerance / n_sigma: module-map cut overrides (None: the settings stored in the map).
    r_max / k_max: radius and neighbour cap of metric learning (None: the values stored with the
        embedding model, which inference also uses by default).
    backend: neighbour search backend (auto | brute | faiss | grid | kdtree; all give the same edges).
    """

    method: Literal["module_map", "metric_learning"] = "module_map"
    cut: CutMode | None = None
    tolerance: NonNegative | None = None
    n_sigma: NonNegative | None = None
    r_max: Positive | None = None
    k_max: Count | None = None
    backend: Annotated[str, one_of(BACKENDS)] = "auto"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"graph_construction.backend: {self.backend!r} is not one of {list(BACKENDS)}")
        if self.r_max is not None and not self.r_max > 0:
            raise ConfigError(f"graph_construction.r_max must be > 0, got {self.r_max}")
        if self.k_max is not None and self.k_max < 1:
            raise ConfigError(f"graph_construction.k_max must be >= 1, got {self.k_max}")
        if (self.tolerance is not None and self.tolerance < 0) or (
            self.n_sigma is not None and self.n_sigma < 0
        ):
            raise ConfigError("graph_construction: tolerance and n_sigma must be >= 0")


class EmbeddingBuilder(GraphBuilder):
    """Metric-learning graph construction: embedding model + radius search + outward orientation.

    ``r_max``/``k_max`` None = the values stored with the model.
    """

    def __init__(self, model: torch.nn.Module, r_max=None, k_max=None, backend: str = "auto", device="auto"):
        dev = resolve_device(device)
        super().__init__(embedding=model.to(dev), r_max=r_max, k_max=k_max, backend=backend, device=dev)
        self.model = self.embedding

    @torch.no_grad()
    def embed(self, hits: Mapping) -> torch.Tensor:
        """The embedded points (N, emb_dim) of one event's hits (numpy columns)."""
        return self.runner(self.load(hits).node_features(self.embedding)).float()


def build_graph_edges(event_or_hits: Event | Mapping, builder) -> torch.Tensor:
    """Edges of one event with any builder (``GraphBuilder``, ``ModuleMap``)."""
    hits = event_or_hits.hits if isinstance(event_or_hits, Event) else event_or_hits
    return builder.build_edges(hits)


def make_builder(cfg: GraphConstructionConfig, module_map=None, model=None, device="auto") -> GraphBuilder:
    """The graph-construction stage ``cfg.method`` asks for, from loaded objects or file paths."""
    if cfg.method == "module_map":
        if module_map is None:
            raise ValueError("graph_construction.method 'module_map' needs a module map")
        if isinstance(module_map, (str, Path)):
            module_map = ModuleMap.load(module_map, device)
        mm = module_map.with_cuts(cfg.cut, cfg.tolerance, cfg.n_sigma, device=resolve_device(device))
        return GraphBuilder(module_map=mm, device=resolve_device(device))
    if model is None:
        raise ValueError("graph_construction.method 'metric_learning' needs an embedding model")
    if isinstance(model, (str, Path)):
        from ..models import load_model

        model = load_model(model, resolve_device(device))
    return EmbeddingBuilder(model, cfg.r_max, cfg.k_max, cfg.backend, device)


def run_build_graphs(
    event_file: str | Path,
    output: str | Path,
    cfg: GraphConstructionConfig | dict | None = None,
    module_map=None,
    model=None,
    device="auto",
) -> None:
    """Stage entry point: one events shard -> graphs HDF5 (labelled edges, atomic)."""
    if not isinstance(cfg, GraphConstructionConfig):
        cfg = from_dict(GraphConstructionConfig, cfg, "graph_construction")
    builder = make_builder(cfg, module_map, model, device)
    graphs = []
    events = iter_events(event_file, tables=("hits", "particles"))
    total = safe_total(lambda: len(event_keys(event_file)))
    for ev in progress(events, total, f"build graphs {shard_name(event_file)}", "events", log):
        edges = builder(builder.load(ev.hits, ev.key)).edge_index.cpu().numpy()
        graphs.append(make_graph(edges, ev))
    write_graphs(output, graphs, stage=cfg.method)
