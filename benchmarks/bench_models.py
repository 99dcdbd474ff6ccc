"""Benchmark of the edge classifiers: physics at the working point and CPU time per event.

Trains the edge filter (optional) and the interaction GNN on the given train shards with the
shared loop, applies them to the test shards, and reports for each stage: target-edge
efficiency, purity and masked purity at the score cut, ROC AUC, edges in/out per event, and
the forward time per event (model only, features included, ``--threads`` torch threads; the
median of ``--repeat`` runs). With ``--filter-model/--gnn-model`` it skips training and only
measures. Prints a table and writes JSON.

    python benchmarks/bench_models.py \
        --train-events ev0.h5 ev1.h5 --train-graphs g0.h5 g1.h5 \
        --test-events ev2.h5 --test-graphs g2.h5 --filter --epochs 10 --json results/bench/models.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gnntrack.edge_classification import run_score_graphs, score_graph
from gnntrack.edge_filter import FilterConfig, run_apply_filter, run_train_filter
from gnntrack.gnn import GNNConfig, run_train_gnn
from gnntrack.io.event_store import read_event
from gnntrack.io.graph_store import read_graphs
from gnntrack.metrics.edges import working_point
from gnntrack.models import load_model


def eta_phi_graphs(event_file: Path, output: Path, d_eta: float, d_phi: float, k_max: int) -> Path:
    """A loose geometric candidate graph (hits close in η and φ, any layers) as benchmark input.

    Uses graph construction's public neighbour search; it stands in for a trained metric-learning
    graph when none is at hand: ~10^5 edges per ⟨μ⟩=20 event at a few % purity, so the filter and
    the GNN face a realistic class imbalance.
    """
    from gnntrack.graph_construction.geometry import orient_outward
    from gnntrack.graph_construction.neighbours import radius_graph
    from gnntrack.io.event_store import iter_events
    from gnntrack.io.graph_store import make_graph, write_graphs

    graphs = []
    for ev in iter_events(event_file, tables=("hits", "particles")):
        h = ev.hits
        pts = np.stack([h["eta"] / d_eta, np.cos(h["phi"]) / d_phi, np.sin(h["phi"]) / d_phi], axis=1)
        ei = radius_graph(torch.from_numpy(pts.astype(np.float32)), 1.0, k_max)
        ei = orient_outward(ei, {"r": torch.from_numpy(h["r"]), "z": torch.from_numpy(h["z"])})
        graphs.append(make_graph(ei.numpy(), ev))
    write_graphs(output, graphs, stage="eta_phi_radius")
    return output


def time_per_event(model_path: Path, event_files, graph_files, repeat: int) -> dict:
    """Median forward time per event (feature building + model), and the edges it scored."""
    model = load_model(model_path, "cpu")
    times, edges, hits = [], [], []
    for ef, gf in zip(event_files, graph_files):
        for g in read_graphs(gf):
            ev = read_event(ef, g.key, tables=("hits",))
            score_graph(model, ev.hits, g, torch.device("cpu"))  # warm-up
            runs = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                score_graph(model, ev.hits, g, torch.device("cpu"))
                runs.append(time.perf_counter() - t0)
            times.append(statistics.median(runs))
            edges.append(g.n_edges)
            hits.append(g.n_hits)
    return {
        "time_per_event_s": float(np.mean(times)),
        "hits_per_event": float(np.mean(hits)),
        "edges_per_event": float(np.mean(edges)),
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
    }


def file_metrics(files, stage: str, cut: float) -> dict:
    """Working-point metrics of ``scores/<stage>`` over all graphs of the scored files."""
    graphs = [g for f in files for g in read_graphs(f)]
    scores = np.concatenate([g.scores[stage] for g in graphs])
    m = working_point(
        scores, np.concatenate([g.y for g in graphs]), np.concatenate([g.y_target for g in graphs]), cut
    )
    m.update(score_cut=cut, n_events=len(graphs), edges_in_per_event=m["edges_in"] / len(graphs))
    m["edges_out_per_event"] = m["edges_out"] / len(graphs)
    return m


def _train_step_child(event_file, graph_file, gnn_kwargs, queue) -> None:
    """One GNN training step on a whole event in a fresh process; reports peak RSS growth (MB)."""
    import resource

    from gnntrack.edge_classification.data import make_item
    from gnntrack.edge_classification.task import EdgeClassifierTask
    from gnntrack.io.graph_store import read_graphs as _read
    from gnntrack.models import InteractionGNN
    from gnntrack.models.losses import LossConfig

    torch.set_num_threads(1)
    graph = _read(graph_file)[0]
    event = read_event(event_file, graph.key, tables=("hits", "particles"))
    model = InteractionGNN(GNNConfig(**gnn_kwargs))
    item = make_item(event, graph, model.node_features, model.feature_scales, LossConfig())
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    loss = EdgeClassifierTask(model).loss(item, torch.device("cpu"))
    loss.backward()
    opt.step()
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(
        {"hits": graph.n_hits, "edges": graph.n_edges, "step_s": dt, "peak_rss_growth_mb": peak - before}
    )


def train_step_memory(event_file: Path, graph_file: Path, gnn_kwargs: dict) -> dict:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_train_step_child, args=(event_file, graph_file, gnn_kwargs, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return {**gnn_kwargs, **out}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-events", nargs="+", type=Path)
    p.add_argument("--train-graphs", nargs="+", type=Path)
    p.add_argument(
        "--eta-phi-graphs", nargs=3, type=float, metavar=("D_ETA", "D_PHI", "K_MAX"),
        help="build loose eta-phi radius graphs for all events instead of reading --*-graphs",
    )  # fmt: skip
    p.add_argument("--test-events", nargs="+", type=Path, default=[])
    p.add_argument("--test-graphs", nargs="+", type=Path)
    p.add_argument("--filter", action="store_true", help="train/apply an edge filter before the GNN")
    p.add_argument("--filter-model", type=Path)
    p.add_argument("--gnn-model", type=Path)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--filter-cut", type=float, default=0.05)
    p.add_argument("--gnn-cut", type=float, default=0.5)
    p.add_argument("--gnn-hidden", type=int, default=64)
    p.add_argument("--gnn-iters", type=int, default=4)
    p.add_argument("--regions", type=int, nargs=2, default=[1, 1], metavar=("N_ETA", "N_PHI"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--memory-event", type=Path,
        help="events file: measure time and peak memory of one GNN training step on its first whole "
        "event (eta-phi graph), with and without gradient checkpointing, then exit",
    )  # fmt: skip
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench_models_"))
    work.mkdir(parents=True, exist_ok=True)
    train_cfg = {"epochs": a.epochs, "lr": 3e-3, "progress": "off", "monitor": "masked_auc", "mode": "max"}
    regions = {"n_eta": a.regions[0], "n_phi": a.regions[1]}
    result: dict = {
        "machine": platform.platform(),
        "cpu_threads": a.threads,
        "note": "CPU only; timings taken on a shared, loaded machine",
    }
    if a.eta_phi_graphs:
        d_eta, d_phi, k = a.eta_phi_graphs
        t0 = time.perf_counter()
        a.train_graphs = [
            eta_phi_graphs(e, work / f"graphs_train_{i}.h5", d_eta, d_phi, int(k))
            for i, e in enumerate(a.train_events or [])
        ]
        a.test_graphs = [
            eta_phi_graphs(e, work / f"graphs_test_{i}.h5", d_eta, d_phi, int(k))
            for i, e in enumerate(a.test_events)
        ]
        result["graphs"] = {
            "method": f"eta_phi_radius {d_eta} {d_phi} {int(k)}",
            "seconds": time.perf_counter() - t0,
        }
    if not a.test_graphs and not a.memory_event:
        p.error("--test-graphs or --eta-phi-graphs is required")
    if a.memory_event:
        d_eta, d_phi, k = a.eta_phi_graphs or (0.15, 0.05, 16)
        gf = eta_phi_graphs(a.memory_event, work / "memory_graphs.h5", d_eta, d_phi, int(k))
        base = {"hidden": a.gnn_hidden, "n_graph_iters": a.gnn_iters}
        result["train_step_whole_event"] = [
            train_step_memory(a.memory_event, gf, {**base, "checkpointing": ckpt}) for ckpt in (False, True)
        ]
        for row in result["train_step_whole_event"]:
            print(row)
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(result, indent=2))
        return result
    train_graphs, test_graphs = a.train_graphs, a.test_graphs

    if a.filter or a.filter_model:
        fcfg = FilterConfig(hidden=128, n_layers=3, score_cut=a.filter_cut)
        fcfg.train.__dict__.update(train_cfg)
        fcfg.regions.__dict__.update(regions)
        model = a.filter_model
        if model is None:
            model = work / "filter.pt"
            t0 = time.perf_counter()
            s = run_train_filter(a.train_events, train_graphs, a.test_events, test_graphs, model, fcfg, "cpu")
            result["filter_training"] = {"seconds": time.perf_counter() - t0, "best_epoch": s["best_epoch"]}

        scored = [work / f"filter_scored_{i}.h5" for i in range(len(a.test_events))]
        for ef, gf, out in zip(a.test_events, test_graphs, scored):
            run_score_graphs(ef, gf, model, out, "filter", "cpu", chunk_size=fcfg.chunk_size)
        m = file_metrics(scored, "filter", a.filter_cut)
        result["filter"] = {**m, **time_per_event(model, a.test_events, a.test_graphs, a.repeat)}

        # filter every shard so the GNN trains on and is tested on what it sees in the pipeline
        def apply(events, graphs, tag):
            out = [work / f"filtered_{tag}_{i}.h5" for i in range(len(events))]
            for ef, gf, o in zip(events, graphs, out):
                run_apply_filter(ef, gf, model, o, fcfg, "cpu")
            return out

        if a.train_events and a.gnn_model is None:
            train_graphs = apply(a.train_events, train_graphs, "train")
        test_graphs = apply(a.test_events, test_graphs, "test")

    gcfg = GNNConfig(hidden=a.gnn_hidden, n_graph_iters=a.gnn_iters, score_cut=a.gnn_cut)
    gcfg.train.__dict__.update(train_cfg)
    gcfg.regions.__dict__.update(regions)
    gnn = a.gnn_model
    if gnn is None:
        gnn = work / "gnn.pt"
        t0 = time.perf_counter()
        s = run_train_gnn(a.train_events, train_graphs, a.test_events, test_graphs, gnn, gcfg, "cpu")
        result["gnn_training"] = {"seconds": time.perf_counter() - t0, "best_epoch": s["best_epoch"]}
    scored = [work / f"gnn_scored_{i}.h5" for i in range(len(a.test_events))]
    for ef, gf, out in zip(a.test_events, test_graphs, scored):
        run_score_graphs(ef, gf, gnn, out, "gnn", "cpu", score_cut=a.gnn_cut)
    result["gnn"] = {
        **file_metrics(scored, "gnn", a.gnn_cut),
        **time_per_event(gnn, a.test_events, test_graphs, a.repeat),
    }

    keys = ["efficiency", "purity", "masked_purity", "auc", "masked_auc", "edges_in_per_event",
            "edges_out_per_event", "hits_per_event", "time_per_event_s", "n_parameters"]  # fmt: skip
    print(f"{'stage':8s} " + " ".join(f"{k[:14]:>14s}" for k in keys))
    for stage in ("filter", "gnn"):
        if stage in result:
            print(f"{stage:8s} " + " ".join(f"{result[stage].get(k, float('nan')):14.4g}" for k in keys))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
