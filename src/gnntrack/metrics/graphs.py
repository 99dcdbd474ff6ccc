"""Quality of a constructed graph: edge efficiency/purity, binned efficiencies, truth-CC bound.

Definitions (as in ``metrics.edges`` and the evaluation report):

- target-edge efficiency: fraction of the truth graph's target edges (edges of target particles,
  direction ignored) present in the graph;
- purity: target true edges / graph edges; masked purity ignores true edges of non-target
  particles (they are neither signal nor fakes);
- truth-CC bound: connected components on the graph's truth-labelled edges, matched to particles;
  the best track efficiency any edge classifier can reach on this graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..io.errors import InputError
from ..io.event_store import Event, iter_events
from ..io.graph_store import Graph, iter_graphs, make_graph
from .edges import edge_efficiency_per_truth
from .tracks import apply_style, match_pairs, truth_cc_tracks

DEFAULT_PT_BINS = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 20.0, 50.0, 100.0)
DEFAULT_ETA_BINS = tuple(np.round(np.linspace(-4.0, 4.0, 21), 6))


def _as_list(items, reader) -> list:
    if isinstance(items, (str, Path)):
        return list(reader(items))
    out = []
    for it in items:
        out.extend(reader(it) if isinstance(it, (str, Path)) else [it])
    return out


def _binned(found: np.ndarray, values: np.ndarray, bins) -> dict:
    bins = np.asarray(bins, dtype=np.float64)
    idx = np.digitize(values, bins) - 1
    inside = (idx >= 0) & (idx < len(bins) - 1)
    total = np.bincount(idx[inside], minlength=len(bins) - 1)
    passed = np.bincount(idx[inside], weights=found[inside].astype(np.float64), minlength=len(bins) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = np.where(total > 0, passed / np.maximum(total, 1), np.nan)
    return {"bins": bins.tolist(), "efficiency": eff.tolist(), "n_edges": total.astype(int).tolist()}


def truth_cc_counts(graph: Graph, event: Event, style: str = "two_way", min_hits: int = 3) -> tuple[int, int]:
    """(reconstructed target particles, target particles) of CC on the graph's true edges."""
    target = np.asarray(event.particles["is_target"], bool)
    tracks = truth_cc_tracks(np.asarray(graph.edge_index, dtype=np.int64), graph.y, event.n_hits, min_hits)
    pairs = match_pairs(tracks, event.hit_particle, event.n_hits, len(target))
    match = apply_style(pairs, style, 0.5)
    return int((match.particle_reconstructed & target).sum()), int(target.sum())


def graph_metrics(
    graphs: Sequence[Graph] | Sequence[str | Path] | str | Path,
    events: Sequence[Event] | Sequence[str | Path] | str | Path,
    pt_bins: Sequence[float] = DEFAULT_PT_BINS,
    eta_bins: Sequence[float] = DEFAULT_ETA_BINS,
    truth_cc: bool = True,
    matching_style: str = "two_way",
    min_hits: int = 3,
) -> dict:
    """Edge- and track-level quality of graphs, summed over events matched by event key.

    Graphs may be given without labels (a ``Graph`` from ``make_graph`` always has them);
    every graph needs its event. Efficiencies vs pT/eta use the particle of each target edge.
    """
    graph_list = _as_list(graphs, iter_graphs)
    event_map = {ev.key: ev for ev in _as_list(events, iter_events)}
    n_edges = n_target = n_true = found_total = truth_total = 0
    cc_reco = cc_target = 0
    found_all, pt_all, eta_all = [], [], []
    for g in graph_list:
        ev = event_map.get(g.key)
        if ev is None:
            raise InputError("graph has no matching event", event=g.key)
        if g.n_hits != ev.n_hits:
            raise InputError(
                f"graph n_hits {g.n_hits} != event n_hits {ev.n_hits}", event=g.key, field="n_hits"
            )
        n_edges += g.n_edges
        n_target += int(np.sum(g.y_target))
        n_true += int(np.sum(g.y))
        found, part = edge_efficiency_per_truth(g, ev)
        found_total += int(found.sum())
        truth_total += len(found)
        found_all.append(found)
        pt_all.append(np.asarray(ev.particles["pt"], np.float64)[part])
        eta_all.append(np.asarray(ev.particles["eta"], np.float64)[part])
        if truth_cc:
            r, t = truth_cc_counts(g, ev, matching_style, min_hits)
            cc_reco += r
            cc_target += t
    n_events = len(graph_list)
    found_all = np.concatenate(found_all) if found_all else np.zeros(0, bool)
    pt_all = np.concatenate(pt_all) if pt_all else np.zeros(0)
    eta_all = np.concatenate(eta_all) if eta_all else np.zeros(0)
    non_target_true = n_true - n_target
    out = {
        "n_events": n_events,
        "n_edges": n_edges,
        "edges_per_event": n_edges / n_events if n_events else 0.0,
        "n_target_truth_edges": truth_total,
        "efficiency": found_total / truth_total if truth_total else None,
        "purity": n_target / n_edges if n_edges else None,
        "masked_purity": n_target / (n_edges - non_target_true) if n_edges > non_target_true else None,
        "true_purity": n_true / n_edges if n_edges else None,
        "efficiency_vs_pt": _binned(found_all, pt_all, pt_bins),
        "efficiency_vs_eta": _binned(found_all, eta_all, eta_bins),
    }
    if truth_cc:
        out["truth_cc"] = {
            "matching_style": matching_style,
            "min_hits": min_hits,
            "n_target": cc_target,
            "n_reconstructed": cc_reco,
            "efficiency": cc_reco / cc_target if cc_target else None,
        }
    return out


def label_and_measure(edges: Mapping[str, np.ndarray], events: Sequence[Event], **kw) -> dict:
    """``graph_metrics`` for raw per-event edge arrays keyed by event key (studies, benchmarks)."""
    graphs = [make_graph(np.asarray(edges[ev.key]), ev) for ev in events]
    return graph_metrics(graphs, events, **kw)
