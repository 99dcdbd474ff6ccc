"""The per-shard HDF5 graph file: candidate edges of each event, their truth labels and scores.

Layout::

    /                       attrs: format="gnntrack-graphs", version, stage (e.g. "module_map")
    /graphs/<key>/          attrs: n_hits; <key> is the event key of the events file
        edge_index              (2, E) int64 hit rows, directed outward (source nearer the beam)
        y                       (E,) bool: the edge is a truth-graph edge (either direction)
        y_target                (E,) bool: y and the edge's particle is a target particle
        edge_particle           (E,) int64 particle row of a true edge, -1 otherwise
        scores/<stage>          (E,) float32 classifier scores written by later stages

Graphs hold edges only; node data comes from the matching events file (same shard).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .atomic import atomic_output
from .errors import InputError
from .event_store import Event
from .hdf5 import SealedWriter, open_verified, read_errors

FORMAT = "gnntrack-graphs"
VERSION = 1
_ARRAYS = ("edge_index", "y", "y_target", "edge_particle")


@dataclass
class Graph:
    key: str
    n_hits: int
    edge_index: np.ndarray
    y: np.ndarray
    y_target: np.ndarray
    edge_particle: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_edges(self) -> int:
        return self.edge_index.shape[1]

    def subset(self, mask: np.ndarray) -> Graph:
        """The graph restricted to the edges selected by ``mask``."""
        return Graph(
            key=self.key,
            n_hits=self.n_hits,
            edge_index=self.edge_index[:, mask],
            y=self.y[mask],
            y_target=self.y_target[mask],
            edge_particle=self.edge_particle[mask],
            scores={k: v[mask] for k, v in self.scores.items()},
        )


def label_edges(edge_index: np.ndarray, event: Event) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth labels of candidate edges against the event's truth graph (direction ignored).

    Returns (y, y_target, edge_particle).
    """
    edge_index = np.asarray(edge_index, dtype=np.int64)
    n = np.int64(max(event.n_hits, 1))
    n_edges = edge_index.shape[1]
    truth = event.truth_edges
    if truth.shape[1] == 0 or n_edges == 0:
        return (np.zeros(n_edges, bool), np.zeros(n_edges, bool), np.full(n_edges, -1, np.int64))
    t_lo, t_hi = np.minimum(truth[0], truth[1]), np.maximum(truth[0], truth[1])
    t_code = t_lo * n + t_hi
    order = np.argsort(t_code, kind="stable")
    t_sorted = t_code[order]
    e_code = np.minimum(edge_index[0], edge_index[1]) * n + np.maximum(edge_index[0], edge_index[1])
    pos = np.clip(np.searchsorted(t_sorted, e_code), 0, len(t_sorted) - 1)
    y = t_sorted[pos] == e_code
    edge_particle = np.where(y, event.truth_edge_particle[order[pos]], -1)
    is_target = np.asarray(event.particles["is_target"], bool)
    y_target = y & np.where(edge_particle >= 0, is_target[np.maximum(edge_particle, 0)], False)
    return y, y_target, edge_particle.astype(np.int64)


def make_graph(edge_index: np.ndarray, event: Event, scores: dict | None = None) -> Graph:
    y, y_target, edge_particle = label_edges(edge_index, event)
    return Graph(
        key=event.key,
        n_hits=event.n_hits,
        edge_index=np.asarray(edge_index, dtype=np.int64),
        y=y,
        y_target=y_target,
        edge_particle=edge_particle,
        scores=dict(scores or {}),
    )


def write_graphs(path: str | Path, graphs: list[Graph], stage: str) -> None:
    """Write a shard's graphs atomically, each dataset and group with its content digest."""
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        w = SealedWriter(f)
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["stage"] = stage
        root = w.group(f, "graphs")
        for gr in graphs:
            g = w.group(root, gr.key)
            g.attrs["n_hits"] = int(gr.n_hits)
            w.dataset(g, "edge_index", np.asarray(gr.edge_index, dtype=np.int64))
            w.dataset(g, "y", np.asarray(gr.y, dtype=bool))
            w.dataset(g, "y_target", np.asarray(gr.y_target, dtype=bool))
            w.dataset(g, "edge_particle", np.asarray(gr.edge_particle, dtype=np.int64))
            sg = w.group(g, "scores")
            for name, s in gr.scores.items():
                w.dataset(sg, name, np.asarray(s, dtype=np.float32))
        w.seal()


def graph_keys(path: str | Path) -> list[str]:
    """Event keys of a graphs file (its key listing checked against the file's digest)."""
    with open_verified(path, FORMAT) as r:
        return r.names(r.group(r.f, "graphs"))


def iter_graphs(path: str | Path, keys: list[str] | None = None) -> Iterator[Graph]:
    """Yield the graphs of a shard; a damaged file is an InputError naming file, event and field."""
    with open_verified(path, FORMAT) as r:
        root = r.group(r.f, "graphs")
        for key in keys if keys is not None else r.names(root):
            with read_errors(path, key):
                if key not in root:
                    raise InputError("no such event in file", file=path, event=key)
            g = r.group(root, key, event=key)
            with read_errors(path, key, "n_hits"):
                n_hits = int(g.attrs["n_hits"])
            arrays = {name: r.read(g, name, event=key, field=name) for name in _ARRAYS}
            sg = r.group(g, "scores", event=key)
            scores = {k: r.read(sg, k, event=key, field=f"scores/{k}") for k in r.names(sg, key)}
            yield Graph(key=key, n_hits=n_hits, scores=scores, **arrays)


def read_graphs(path: str | Path, keys: list[str] | None = None) -> list[Graph]:
    return list(iter_graphs(path, keys))
