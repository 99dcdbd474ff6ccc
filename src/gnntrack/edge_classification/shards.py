"""Edge classifiers on stored shards: training from events + graphs files, and scoring them.

The filter (``gnntrack.edge_filter``) and the GNN (``gnntrack.gnn``) train through ``train_edge_classifier``
with the shared loop, and every stored graph is scored by the inference chain's ``EdgeClassifier``
stage object, so the file-by-file rules and the one-process chain share one implementation.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..device import resolve_device
from ..event_data import EventData, feature_spec
from ..io.errors import InputError
from ..io.event_store import read_event
from ..io.graph_store import Graph, iter_graphs, write_graphs
from ..metrics.edges import working_point
from ..models.registry import load_model
from ..track_building.build import DEFAULT_SCORE_CUT
from ..training.loop import fit
from .compression import train_compressed
from .data import load_items
from .stage import EdgeClassifier
from .task import EdgeClassifierTask

log = logging.getLogger(__name__)


def train_edge_classifier(
    model, cfg, train_events, train_graphs, val_events, val_graphs, output, device, **task_kw
) -> dict:
    """Load the training items and validation events, fit the model's input normalisation (or
    take weights and normalisation from ``cfg.init_from``), run the shared loop (or, with
    ``cfg.compression`` on, its pruning rounds / QAT: ``compression.train_compressed``); best
    model -> ``output``."""
    t0 = time.perf_counter()
    train = load_items(
        train_events, train_graphs, model.node_features, model.feature_scales, cfg.loss, cfg.regions,
        cfg.max_train_events,
    )  # fmt: skip
    val = load_items(
        val_events, val_graphs, model.node_features, model.feature_scales, cfg.loss, None, cfg.max_val_events
    )
    log.info(
        "%d training items, %d validation events (%.1f s to load)",
        len(train),
        len(val),
        time.perf_counter() - t0,
    )
    init_from = getattr(cfg, "init_from", None)
    if init_from:
        # fine-tuning: the weights and input standardisation of a trained model of the same shape
        init_weights(model, init_from)
    else:
        # input standardisation from the training items (region margins count a few hits twice)
        model.fit_input_normalisation(item.x for item in train)
    task = EdgeClassifierTask(model, score_cut=cfg.score_cut, focal_gamma=cfg.loss.focal_gamma, **task_kw)
    compression = getattr(cfg, "compression", None)
    if compression is not None and compression.enabled:
        summary = train_compressed(task, train, val, cfg, output, device)
    else:
        summary = fit(task, train, val, cfg.train, output, device)
    summary["n_train_items"] = len(train)
    summary["n_val_events"] = len(val)
    return summary


def init_weights(model: nn.Module, path: str | Path) -> None:
    """Start ``model`` from the weights (and input standardisation) of the model file ``path``,
    which must be of the same class and shape (read with the safe model-file loader). Modules the
    model names in ``init_optional`` (a filter's context MLPs) may be absent from the file: they
    keep their initialisation (a per-edge filter starting a filter with context)."""
    trained = load_model(path, "cpu")
    if type(trained) is not type(model):
        raise InputError(
            f"init_from is a {type(trained).__name__}, not a {type(model).__name__}", file=path, field="class"
        )
    optional = tuple(getattr(model, "init_optional", ()))
    try:
        result = model.load_state_dict(trained.state_dict(), strict=False)
    except RuntimeError as exc:
        raise InputError(f"init_from does not fit the configured model ({exc})", file=path) from None
    missing = [k for k in result.missing_keys if k.split(".")[0] not in optional]
    if missing or result.unexpected_keys:
        raise InputError(
            f"init_from does not fit the configured model (missing {missing}, unexpected"
            f" {result.unexpected_keys})",
            file=path,
            field="state_dict",
        )
    log.info(
        "initialised from %s%s",
        path,
        f" ({', '.join(optional)} not in it: new)" if result.missing_keys else "",
    )


def as_model(model: nn.Module | str | Path, device: torch.device) -> nn.Module:
    if isinstance(model, nn.Module):
        return model.to(device).eval()
    return load_model(model, device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def event_data(event_hits: dict, graph: Graph, model: nn.Module, device: torch.device) -> EventData:
    """A stored event's hits and graph as the ``EventData`` the stage objects take."""
    ev = EventData.from_hits(event_hits, (), [feature_spec(model)], device, key=graph.key)
    ev.set_graph(torch.from_numpy(np.ascontiguousarray(graph.edge_index, dtype=np.int64)))
    return ev


def score_graph(
    model: nn.Module, event_hits: dict, graph: Graph, device: torch.device, chunk_size: int | None = None
) -> np.ndarray:
    """Sigmoid scores (E,) float32 of one graph's edges (the pipeline's ``EdgeClassifier``)."""
    stage = EdgeClassifier("score", model, cut=0.5, chunk_size=chunk_size)
    return stage(event_data(event_hits, graph, model, device)).scores("score").cpu().numpy()


def score_file(event_file, graph_file, stage: EdgeClassifier, device):
    """Yield (graph, scores, seconds) for every graph of a shard, scored by ``stage``."""
    for graph in iter_graphs(graph_file):
        event = read_event(event_file, graph.key, tables=("hits",))
        if event.n_hits != graph.n_hits:
            raise InputError(
                f"graph has {graph.n_hits} hits but the event has {event.n_hits}",
                file=graph_file,
                event=graph.key,
            )
        ev = event_data(event.hits, graph, stage.model, device)
        sync(device)
        t0 = time.perf_counter()
        stage(ev)
        sync(device)
        yield graph, ev.scores(stage.name).cpu().numpy(), time.perf_counter() - t0


def score_summary(all_scores, all_y, all_yt, cut, times, n_events) -> dict:
    if all_scores:
        metrics = working_point(
            np.concatenate(all_scores), np.concatenate(all_y), np.concatenate(all_yt), cut
        )
    else:
        metrics = working_point(np.zeros(0), np.zeros(0, bool), np.zeros(0, bool), cut)
    metrics.update(
        score_cut=cut,
        n_events=n_events,
        edges_in_per_event=metrics["edges_in"] / max(n_events, 1),
        edges_out_per_event=metrics["edges_out"] / max(n_events, 1),
        time_per_event_s=float(np.mean(times)) if times else float("nan"),
    )
    return metrics


def run_score_graphs(
    event_file: str | Path,
    graph_file: str | Path,
    model: nn.Module | str | Path,
    output: str | Path,
    stage_name: str = "gnn",
    device: str = "auto",
    score_cut: float | None = None,
    chunk_size: int | None = None,
) -> dict:
    """Add ``scores/<stage_name>`` to every graph (all edges kept); metrics at ``score_cut``
    (None: the model's stored working point, else 0.5)."""
    dev = resolve_device(device)
    net = as_model(model, dev)
    if score_cut is None:
        score_cut = float(getattr(net, "score_cut", DEFAULT_SCORE_CUT))
    stage = EdgeClassifier(stage_name, net, score_cut, chunk_size=chunk_size)
    out, scores_l, y_l, yt_l, times = [], [], [], [], []
    for graph, scores, dt in score_file(event_file, graph_file, stage, dev):
        graph.scores[stage_name] = scores
        out.append(graph)
        scores_l.append(scores)
        y_l.append(graph.y)
        yt_l.append(graph.y_target)
        times.append(dt)
    write_graphs(output, out, stage=stage_name)
    return score_summary(scores_l, y_l, yt_l, score_cut, times, len(out))
