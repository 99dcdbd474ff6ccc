"""The event structure every pipeline stage reads and extends: hits on the device, then the graph,
its per-edge data and scores, then the track candidates.

Stage objects (``graph_construction.GraphBuilder``, ``edge_classification.EdgeClassifier``,
``track_building.TrackBuilder``) each take an ``EventData`` and fill in their part, in the style of
the ACTS GNN plugin's stage interfaces. The one-process inference chain runs them back to back on
one ``EventData``; the workflow's file-by-file rules build an ``EventData`` from a stored event
(and graph) and call the very same objects, so both paths share one implementation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .io.features import node_features

#: A model's input description: (feature names, sorted (name, scale) pairs); hashable cache key.
FeatureSpec = tuple[tuple[str, ...], tuple[tuple[str, float], ...]]


def stage_clock(timer, name: str):
    """``timer.stage(name)`` (an ``inference.timing.StageTimer``), or nothing without a timer."""
    return timer.stage(name) if timer is not None else contextlib.nullcontext()


def feature_spec(model: torch.nn.Module) -> FeatureSpec:
    """The node features ``model`` reads (``node_features``, ``feature_scales`` attributes)."""
    names = tuple(getattr(model, "node_features", ()) or ())
    if not names:
        raise ValueError(f"{type(model).__name__} carries no .node_features; cannot build its input")
    scales = getattr(model, "feature_scales", None) or {}
    return names, tuple(sorted((k, float(v)) for k, v in scales.items()))


def hit_tensors(
    hits: Mapping[str, np.ndarray | torch.Tensor], columns: Sequence[str], device: torch.device | str
) -> dict[str, torch.Tensor]:
    """Torch tensors of the requested hit columns (float32; ``module_id`` as int64) on ``device``."""
    from .graph_construction.geometry import hits_to_tensors

    return hits_to_tensors(hits, tuple(columns), device)


@dataclass
class EventData:
    """One event as it moves through the stages (tensors on ``device``).

    hits: the hit columns the stages read (coordinates, module ids, ...).
    features: node-feature matrices, one per model input description (``feature_spec``).
    edge_index: (2, E) outward-directed edges, set by graph building, pruned by a filter.
    edge_data: per-edge tensors kept aligned with ``edge_index`` when a stage drops edges
        (truth labels of a stored graph, ``score/<stage>`` of each edge classifier).
    tracks: the track candidates (``track_building.Tracks``), set by track building.
    n_edges: edge counts after each stage that changes or selects edges.
    """

    key: str
    run_number: int
    event_number: int
    n_hits: int
    device: torch.device
    hits: dict[str, torch.Tensor] = field(default_factory=dict)
    features: dict[FeatureSpec, torch.Tensor] = field(default_factory=dict)
    edge_index: torch.Tensor | None = None
    edge_data: dict[str, torch.Tensor] = field(default_factory=dict)
    tracks: object = None
    n_edges: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_hits(
        cls,
        hits: Mapping[str, np.ndarray],
        columns: Sequence[str],
        specs: Sequence[FeatureSpec],
        device: torch.device | str,
        key: str = "",
        run_number: int = 0,
        event_number: int = 0,
    ) -> EventData:
        """Move one event's hit ``columns`` and the node features of ``specs`` to ``device``."""
        host = HostEvent.from_hits(hits, columns, specs, key, run_number, event_number)
        return host.to_device(device)

    def node_features(self, model: torch.nn.Module) -> torch.Tensor:
        """The node-feature matrix ``model`` reads (built at loading time)."""
        spec = feature_spec(model)
        if spec not in self.features:
            raise KeyError(f"event {self.key}: no node features loaded for {type(model).__name__}")
        return self.features[spec]

    def set_graph(self, edge_index: torch.Tensor, **edge_data: torch.Tensor) -> None:
        """Set the graph (replacing any earlier one) and its per-edge data."""
        self.edge_index = edge_index.to(self.device)
        self.edge_data = {k: v.to(self.device) for k, v in edge_data.items()}

    def keep_edges(self, keep: torch.Tensor) -> None:
        """Drop the edges where ``keep`` is false, together with their per-edge data."""
        self.edge_index = self.edge_index[:, keep]
        self.edge_data = {k: v[keep] for k, v in self.edge_data.items()}

    def scores(self, stage: str) -> torch.Tensor:
        """The edge scores an edge classifier named ``stage`` wrote."""
        return self.edge_data[f"score/{stage}"]


@dataclass
class HostEvent:
    """The host-side half of loading one event: hit columns and node-feature matrices as CPU
    tensors, ready to be moved to the device (``to_device``).

    Splitting loading in two lets the inference pipeline prepare event n+1 on a reader thread
    (file read, checks, feature matrices, pinned copies) while event n runs through the stages.
    """

    key: str
    run_number: int
    event_number: int
    n_hits: int
    hits: dict[str, torch.Tensor]
    features: dict[FeatureSpec, torch.Tensor]

    @classmethod
    def from_hits(
        cls,
        hits: Mapping[str, np.ndarray],
        columns: Sequence[str],
        specs: Sequence[FeatureSpec],
        key: str = "",
        run_number: int = 0,
        event_number: int = 0,
        pin_memory: bool = False,
    ) -> HostEvent:
        """CPU tensors of ``columns`` and of the node features of ``specs`` (page-locked copies
        when ``pin_memory``, so a later transfer to a CUDA device can be asynchronous)."""
        features = {}
        for spec in dict.fromkeys(specs):
            features[spec] = torch.from_numpy(node_features(hits, spec[0], dict(spec[1])))
        tensors = hit_tensors(hits, columns, "cpu")
        if pin_memory:
            features = {k: v.pin_memory() for k, v in features.items()}
            tensors = {k: v.pin_memory() for k, v in tensors.items()}
        return cls(
            key=key,
            run_number=int(run_number),
            event_number=int(event_number),
            n_hits=len(hits["x"]),
            hits=tensors,
            features=features,
        )

    def to_device(self, device: torch.device | str) -> EventData:
        """The ``EventData`` of this event on ``device`` (copies are ``non_blocking``: the caller
        synchronises before using them from another stream or reading the clock)."""
        device = torch.device(device)
        return EventData(
            key=self.key,
            run_number=self.run_number,
            event_number=self.event_number,
            n_hits=self.n_hits,
            device=device,
            hits={k: v.to(device, non_blocking=True) for k, v in self.hits.items()},
            features={k: v.to(device, non_blocking=True) for k, v in self.features.items()},
        )
