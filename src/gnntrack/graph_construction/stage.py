"""``GraphBuilder``: the graph-construction stage (module map or metric learning) on an ``EventData``."""

from __future__ import annotations

import torch

from ..event_data import EventData, feature_spec, stage_clock
from .geometry import GEOMETRY_COLUMNS, orient_outward
from .neighbours import radius_graph


class GraphBuilder:
    """Build the event's candidate edges, outward-directed, on the event's device.

    ``module_map``: a ``ModuleMap`` with its cuts applied (``ModuleMap.with_cuts``); or
    ``embedding`` + ``r_max``/``k_max``/``backend``: embed the hits, fixed-radius neighbour search,
    orient outward (metric learning). ``runner`` calls the embedding model (an
    ``inference.runtime.ModelRunner``; None = the model in fp32). Timed as ``build_edges``
    (metric learning: ``embedding`` + ``build_edges``).
    """

    def __init__(
        self,
        module_map=None,
        embedding: torch.nn.Module | None = None,
        r_max: float | None = None,
        k_max: int | None = None,
        backend: str = "auto",
        runner=None,
        device: torch.device | str | None = None,
    ):
        if (module_map is None) == (embedding is None):
            raise ValueError("GraphBuilder needs exactly one of a module map or an embedding model")
        self.module_map = module_map
        self.embedding = embedding.eval() if embedding is not None else None
        self.method = "module_map" if module_map is not None else "metric_learning"
        self.r_max, self.k_max, self.backend = r_max, k_max, backend
        if self.embedding is not None:
            # unset: the values stored with the embedding model (the graphs it was validated on)
            cfg = getattr(embedding, "config", {}) or {}
            self.r_max = float(
                r_max if r_max is not None else getattr(embedding, "r_max", cfg.get("r_max", 0.1))
            )
            self.k_max = int(
                k_max if k_max is not None else getattr(embedding, "k_max", cfg.get("k_max", 64))
            )
        self.runner = runner if runner is not None else self.embedding
        if device is None:
            ref = next(self.embedding.parameters(), None) if self.embedding is not None else None
            device = ref.device if ref is not None else getattr(module_map, "device", "cpu")
        self.device = torch.device(device)

    @property
    def hit_columns(self) -> tuple[str, ...]:
        """The hit columns this stage reads from ``EventData.hits``."""
        cols = list(GEOMETRY_COLUMNS)
        if self.module_map is not None:
            cols += [c for c in getattr(self.module_map, "hit_columns", ("module_id",)) if c not in cols]
        return tuple(cols)

    @property
    def feature_specs(self) -> list:
        """Node-feature matrices this stage reads (the embedding's input)."""
        return [feature_spec(self.embedding)] if self.embedding is not None else []

    def load(self, hits, key: str = "") -> EventData:
        """An ``EventData`` holding what this stage reads of ``hits`` (numpy columns), on its device."""
        return EventData.from_hits(hits, self.hit_columns, self.feature_specs, self.device, key=key)

    def build_edges(self, hits) -> torch.Tensor:
        """The (2, E) edges of one event's ``hits`` (numpy columns): load + this stage."""
        return self(self.load(hits)).edge_index

    @torch.inference_mode()
    def __call__(self, ev: EventData, timer=None) -> EventData:
        if self.embedding is not None:
            with stage_clock(timer, "embedding"):
                points = self.runner(ev.node_features(self.embedding)).float()
            with stage_clock(timer, "build_edges"):
                pairs = radius_graph(points, self.r_max, self.k_max, backend=self.backend)
                edge_index = orient_outward(pairs, ev.hits)
        else:
            with stage_clock(timer, "build_edges"):
                # the map moves the hit columns it needs to its own device (CPU in the baseline)
                edge_index = self.module_map.build_edges(ev.hits).to(ev.device)
        ev.set_graph(edge_index)
        ev.n_edges["build_edges"] = int(edge_index.shape[1])
        return ev
