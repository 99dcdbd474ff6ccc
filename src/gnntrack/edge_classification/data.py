"""Training items for edge classifiers: (event, graph) pairs as tensors, optionally cut into regions.

Items are built once and kept in memory (a ⟨μ⟩=200 event with a few million edges is ~100 MB);
node features use the model's own ``node_features``/``feature_scales`` so training and
inference build identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..io.errors import InputError
from ..io.event_store import Event, read_event
from ..io.features import node_features
from ..io.graph_store import Graph, iter_graphs
from ..models.losses import LossConfig, edge_weights
from .regions import RegionConfig, region_masks, region_subgraph


@dataclass
class GraphItem:
    key: str
    x: torch.Tensor  # (N, F) float32
    edge_index: torch.Tensor  # (2, E) int64
    y: torch.Tensor  # (E,) float32 truth label
    y_target: torch.Tensor  # (E,) bool
    weight: torch.Tensor  # (E,) float32 loss weight

    @property
    def n_edges(self) -> int:
        return self.edge_index.shape[1]


def make_item(
    event: Event, graph: Graph, names: Sequence[str], scales: dict[str, float], loss: LossConfig
) -> GraphItem:
    x = node_features(event.hits, names, scales)
    w = edge_weights(graph.y, graph.y_target, graph.edge_particle, event.particles, loss)
    return GraphItem(
        key=graph.key,
        x=torch.from_numpy(x),
        edge_index=torch.from_numpy(np.ascontiguousarray(graph.edge_index, dtype=np.int64)),
        y=torch.from_numpy(np.asarray(graph.y, np.float32)),
        y_target=torch.from_numpy(np.asarray(graph.y_target, bool)),
        weight=torch.from_numpy(w),
    )


def split_item(item: GraphItem, eta: np.ndarray, phi: np.ndarray, regions: RegionConfig) -> list[GraphItem]:
    """The item's η–φ regions (see ``regions.py``); regions without weighted edges are dropped."""
    ei = item.edge_index.numpy()
    out = []
    for k, (region, core) in enumerate(region_masks(eta, phi, regions)):
        nodes, kept, local = region_subgraph(ei, region, core)
        weight = item.weight[kept] * torch.from_numpy(core[ei[0, kept]].astype(np.float32))
        if float(weight.sum()) <= 0:
            continue
        out.append(
            GraphItem(
                key=f"{item.key}/r{k}",
                x=item.x[torch.from_numpy(nodes)],
                edge_index=torch.from_numpy(local),
                y=item.y[kept],
                y_target=item.y_target[kept],
                weight=weight,
            )
        )
    return out


def iter_event_graphs(
    event_files: Sequence[str | Path],
    graph_files: Sequence[str | Path],
    tables: tuple[str, ...] = ("hits", "particles"),
    max_events: int | None = None,
):
    """Yield (event, graph) of every graph in ``graph_files`` with its event (shards paired by
    position), checked to fit each other; at most ``max_events`` pairs."""
    event_files, graph_files = list(event_files), list(graph_files)
    if len(event_files) != len(graph_files):
        raise InputError(
            f"{len(event_files)} event files but {len(graph_files)} graph files; they pair by shard"
        )
    n_events = 0
    for ef, gf in zip(event_files, graph_files):
        for graph in iter_graphs(gf):
            if max_events is not None and n_events >= max_events:
                return
            event = read_event(ef, graph.key, tables=tables)
            if event.n_hits != graph.n_hits:
                raise InputError(
                    f"graph has {graph.n_hits} hits but the event has {event.n_hits}",
                    file=gf,
                    event=graph.key,
                )
            if graph.n_edges and (graph.edge_index.min() < 0 or graph.edge_index.max() >= graph.n_hits):
                raise InputError(
                    "edge_index refers to a missing hit", file=gf, event=graph.key, field="edge_index"
                )
            n_events += 1
            yield event, graph


def load_items(
    event_files: Sequence[str | Path],
    graph_files: Sequence[str | Path],
    names: Sequence[str],
    scales: dict[str, float],
    loss: LossConfig,
    regions: RegionConfig | None = None,
    max_events: int | None = None,
) -> list[GraphItem]:
    """Items of every graph in ``graph_files`` with the matching event of ``event_files`` (shard by shard)."""
    items: list[GraphItem] = []
    for event, graph in iter_event_graphs(event_files, graph_files, ("hits", "particles"), max_events):
        item = make_item(event, graph, names, scales, loss)
        if regions is not None and regions.n_regions > 1:
            items += split_item(item, event.hits["eta"], event.hits["phi"], regions)
        else:
            items.append(item)
    return items
