"""Graph building for a shard (stage ``build_graphs``) and for one event in-process (inference).

Two builders share one interface, ``builder.build_edges(hits) -> (2, E)`` outward-directed
unique edges on the builder's device: ``ModuleMap`` and ``EmbeddingBuilder`` (metric learning:
embed, fixed-radius search, orient). ``hits`` may be the event's numpy columns or torch tensors
already on the device, so the inference pipeline never copies data back to the host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch

from ..config import ConfigError, Count, NonNegative, Positive, from_dict, one_of
from ..io.event_store import Event, iter_events
from ..io.graph_store import make_graph, write_graphs
from .geometry import hits_to_tensors, orient_outward
from .module_map import CutMode, ModuleMap, _device
from .neighbours import BACKENDS, radius_graph


@dataclass
class GraphConstructionConfig:
    """How ``run_build_graphs`` builds candidate edges.

    method: ``module_map`` or ``metric_learning``.
    cut / tolerance / n_sigma: module-map cut overrides (None: the settings stored in the map).
    r_max / k_max: radius and neighbour cap of metric learning (None: the values stored with the
        embedding model, which inference also uses by default).
    backend: neighbour search backend (auto | brute | faiss | grid; all give the same edges).
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


def _features_on_device(hits: Mapping, names, scales: Mapping[str, float], device) -> torch.Tensor:
    """The model's scaled input matrix from numpy columns or device tensors (same as io.features)."""
    cols = []
    for name in names:
        v = hits[name]
        t = (
            v.to(device)
            if isinstance(v, torch.Tensor)
            else torch.from_numpy(np.asarray(v, np.float32)).to(device)
        )
        cols.append(t.float() / float(scales.get(name, 1.0)))
    x = torch.stack(cols, 1)
    return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


class EmbeddingBuilder:
    """Metric-learning graph builder: embedding model + radius search + outward orientation."""

    def __init__(self, model: torch.nn.Module, r_max=None, k_max=None, backend: str = "auto", device="auto"):
        self.device = _device(device)
        self.model = model.to(self.device).eval()
        cfg = getattr(model, "config", {}) or {}
        self.r_max = float(r_max if r_max is not None else getattr(model, "r_max", cfg.get("r_max", 0.1)))
        self.k_max = int(k_max if k_max is not None else getattr(model, "k_max", cfg.get("k_max", 64)))
        self.backend = backend
        self.node_features = tuple(model.node_features)
        self.feature_scales = dict(getattr(model, "feature_scales", {}) or {})
        self.hit_columns = ("r", "z", *self.node_features)

    @torch.no_grad()
    def embed(self, hits: Mapping) -> torch.Tensor:
        x = _features_on_device(hits, self.node_features, self.feature_scales, self.device)
        return self.model(x).float()

    @torch.no_grad()
    def build_edges(self, hits: Mapping) -> torch.Tensor:
        emb = self.embed(hits)
        pairs = radius_graph(emb, self.r_max, self.k_max, self.backend)
        return orient_outward(pairs, hits_to_tensors(hits, ("r", "z"), self.device))


def build_graph_edges(event_or_hits: Event | Mapping, builder) -> torch.Tensor:
    """Edges of one event with any builder (``ModuleMap`` or ``EmbeddingBuilder``)."""
    hits = event_or_hits.hits if isinstance(event_or_hits, Event) else event_or_hits
    return builder.build_edges(hits)


def make_builder(cfg: GraphConstructionConfig, module_map=None, model=None, device="auto"):
    """The builder ``cfg.method`` asks for, from loaded objects or file paths."""
    if cfg.method == "module_map":
        if module_map is None:
            raise ValueError("graph_construction.method 'module_map' needs a module map")
        if isinstance(module_map, (str, Path)):
            module_map = ModuleMap.load(module_map, device)
        return module_map.with_cuts(cfg.cut, cfg.tolerance, cfg.n_sigma, device=_device(device))
    if model is None:
        raise ValueError("graph_construction.method 'metric_learning' needs an embedding model")
    if isinstance(model, (str, Path)):
        from ..models import load_model

        model = load_model(model, _device(device))
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
    for ev in iter_events(event_file, tables=("hits", "particles")):
        edges = build_graph_edges(ev, builder).cpu().numpy()
        graphs.append(make_graph(edges, ev))
    write_graphs(output, graphs, stage=cfg.method)
