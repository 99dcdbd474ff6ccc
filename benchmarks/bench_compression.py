"""Compression study of the GNN: fine-tune a trained campaign GNN with pruning / QAT, then compare
every variant with the fp32 model on the same test events.

``train``: from the campaign's trained GNN (``init_from``), one fine-tuning run per variant
through ``gnntrack.gnn.run_train_gnn`` (the campaign's ``gnn`` section with a small training
budget and the variant's ``compression`` section); working points are not re-chosen: every
variant is scored at the fp32 model's stored cut. Runs already finished are reused (the shared
loop resumes them).

``measure``: per variant, on the same test events: parameters, non-zero parameters, sparsity,
bits, Linear FLOPs per event, target-edge efficiency and masked purity at the working point,
two-way and ATLAS track efficiency (candidates built with the campaign's
``inference.track_building``), and CPU s/event of the GNN forward pass (one thread, the variants
interleaved event by event in one process, so times are comparable within one run). Prints the
table and writes JSON.

Usage::

    PYTHONPATH=src python benchmarks/bench_compression.py train --results results/default \\
        --config config/config.yaml --out benchmarks/tmp/compression
    PYTHONPATH=src python benchmarks/bench_compression.py measure --results results/default \\
        --config config/config.yaml --out benchmarks/tmp/compression --json table.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from gnntrack.campaign import load_campaign, resolve_campaign
from gnntrack.config import to_dict
from gnntrack.edge_classification import EdgeClassifier, event_data
from gnntrack.edge_classification.data import iter_event_graphs
from gnntrack.gnn import run_train_gnn
from gnntrack.gnn.working_point import _target
from gnntrack.metrics.edges import working_point
from gnntrack.metrics.tracks import Rates, apply_style, event_rates, match_pairs
from gnntrack.models import load_model
from gnntrack.models.compression import (
    count_parameters,
    linear_flops,
    prune_latent,
    prune_units,
    quantize_int8,
    weight_sparsity,
)
from gnntrack.models.registry import read_model_info
from gnntrack.track_building import build_tracks

log = logging.getLogger("bench_compression")

#: name -> compression section of the fine-tuning run (None: no fine-tuning, the campaign model)
VARIANTS = {
    "fp32": None,
    "prune50": {"prune": {"target_sparsity": 0.5, "rounds": 2}},
    "units50": {"prune": {"target_sparsity": 0.5, "rounds": 2, "structured": True}},
    "qat_int8": {"qat": True},
    "prune80": {"prune": {"target_sparsity": 0.8, "rounds": 4}},
    "units75": {"prune": {"target_sparsity": 0.75, "rounds": 3, "structured": True}},
    "fp32_finetuned": {},
    # structured pruning of the hidden blocks AND the node/edge latents (prune_latent)
    "latent50": {"prune": {"target_sparsity": 0.5, "rounds": 2, "structured": True, "latent": True}},
    "latent375": {"prune": {"target_sparsity": 0.375, "rounds": 2, "structured": True, "latent": True}},
    "latent50_qat": {
        "prune": {"target_sparsity": 0.5, "rounds": 2, "structured": True, "latent": True},
        "qat": True,
    },
}
#: variants measured with int8 inference (torch.ao dynamic quantisation of the Linear layers)
INT8 = {
    "fp32_int8": "fp32",
    "units50_int8": "units50",
    "qat_int8": "qat_int8",
    "units75_int8": "units75",
    "latent50_int8": "latent50",
    "latent50_qat_int8": "latent50_qat",
}


def _files(results: Path, split: str) -> tuple[list[str], list[str]]:
    graphs = sorted((results / "graphs" / split).glob("*.h5"))
    return [str(results / "events" / split / g.name) for g in graphs], [str(g) for g in graphs]


def train(args) -> None:
    results = Path(args.results)
    campaign = resolve_campaign(load_campaign(args.config), sections=["gnn", "inference"])
    base = to_dict(campaign["gnn"])
    te, tg = _files(results, "train")
    ve, vg = _files(results, "val")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, compression in VARIANTS.items():
        if compression is None or (args.only and name not in args.only):
            continue
        cfg = copy.deepcopy(base)
        cfg.update(
            init_from=str(results / "models" / "gnn.pt"),
            max_train_events=args.train_events,
            max_val_events=args.val_events,
            compression=compression,
        )
        epochs = args.epochs if not compression.get("prune") else args.epochs_per_round
        cfg["train"].update(
            epochs=epochs, lr=args.lr, scheduler=args.scheduler, warmup_epochs=0.0, progress="off"
        )
        if not compression:  # same epochs as a 2-round pruning run: the fine-tuning control
            cfg["train"]["epochs"] = 2 * args.epochs_per_round
        t0 = time.perf_counter()
        summary = run_train_gnn(
            te, tg, ve, vg, out / f"{name}.pt", cfg, device="cpu", choose_cut=args.choose_cut,
            track_building=campaign["inference"].track_building,
        )  # fmt: skip
        log.info("%s: trained in %.0f s, best %s = %s", name, time.perf_counter() - t0, summary["monitor"],
                 summary["best_metric"])  # fmt: skip


def _rates(tracks, event) -> tuple[Rates, Rates]:
    target = _target(event)
    pairs = match_pairs(tracks, event.hit_particle, event.n_hits, len(target))
    two, atlas = Rates(), Rates()
    two.add(event_rates(apply_style(pairs, "two_way", 0.5), target))
    atlas.add(event_rates(apply_style(pairs, "ATLAS", 0.5), target))
    return two, atlas


def measure(args) -> dict:
    results, out = Path(args.results), Path(args.out)
    campaign = resolve_campaign(load_campaign(args.config), sections=["inference"])
    tb = campaign["inference"].track_building
    reference = Path(args.fp32_model) if args.fp32_model else results / "models" / "gnn.pt"
    cut = float(read_model_info(reference)["working_point"]["score_cut"])
    files = {"fp32": reference}
    for name, comp in VARIANTS.items():
        if comp is not None and (out / f"{name}.pt").exists():
            files[name] = out / f"{name}.pt"
    floats = {name: load_model(path) for name, path in files.items()}
    models = dict(floats)
    for name, source in INT8.items():
        if source in models:
            models[name] = quantize_int8(floats[source])
    infos = {name: read_model_info(path) for name, path in files.items()}
    # each model at its own working point (chosen on validation by `train --choose-cut`), else the
    # fp32 model's; an int8 copy at the point of the float model it was made from
    cuts = {}
    for name in models:
        wp = infos[INT8.get(name, name)].get("working_point") or {}
        cuts[name] = float(wp.get("score_cut", cut))
    tbs = {name: dataclasses.replace(tb, score_cut=c) for name, c in cuts.items()}
    te, tg = _files(results, "test")
    stages = {name: EdgeClassifier("gnn", m, cuts[name]) for name, m in models.items()}
    acc = {name: {"s": [], "y": [], "yt": [], "two": Rates(), "atlas": Rates(), "t": []} for name in models}
    n_nodes = n_edges = n_events = 0
    names = list(models)
    for i, (event, graph) in enumerate(iter_event_graphs(te, tg, ("hits", "particles"), args.events)):
        n_events += 1
        n_nodes += int(np.unique(graph.edge_index).size)
        n_edges += graph.n_edges
        order = names if i % 2 == 0 else names[::-1]  # interleaved, alternating order
        for name in order:
            stage = stages[name]
            ev = event_data(event.hits, graph, stage.model, torch.device("cpu"))
            t0 = time.perf_counter()
            stage(ev)
            acc[name]["t"].append(time.perf_counter() - t0)
            scores = ev.scores("gnn").numpy()
            a = acc[name]
            a["s"].append(scores)
            a["y"].append(graph.y)
            a["yt"].append(graph.y_target)
            tracks = build_tracks(graph.edge_index, scores, event.n_hits, tbs[name], hits=event.hits)
            two, atlas = _rates(tracks, event)
            a["two"].add(two)
            a["atlas"].add(atlas)
        log.info("event %d done", i)
    rows = {}
    n_avg, e_avg = n_nodes / max(n_events, 1), n_edges / max(n_events, 1)
    base_t = None
    for name in names:
        a = acc[name]
        source = INT8.get(name, name)
        m = floats[source]  # the float weights the int8 model was made from: sizes, sparsity, FLOPs
        wp = working_point(
            np.concatenate(a["s"]), np.concatenate(a["y"]), np.concatenate(a["yt"]), cuts[name]
        )
        sp = weight_sparsity(m)
        comp = infos.get(source, {}).get("compression", {})
        t = float(np.min(a["t"]))  # least time: other jobs on a shared machine only add time
        base_t = t if name == "fp32" else base_t
        rows[name] = {
            "parameters": count_parameters(m),
            "nonzero_parameters": count_parameters(m, nonzero=True),
            "linear_sparsity": sp["global"],
            "widths": sorted(set(m.config.get("widths", {}).values())) or [m.config["hidden"]],
            "latent": int(m.config["hidden"]),
            "bits": 8 if name in INT8 else 32,
            "qat": bool(comp.get("qat", False)),
            "score_cut": cuts[name],
            "gflops_per_event": linear_flops(m, round(n_avg), round(e_avg)) / 1e9,
            "sparse_gflops_per_event": linear_flops(m, round(n_avg), round(e_avg), sparse=True) / 1e9,
            "edge_efficiency": wp["efficiency"],
            "edge_masked_purity": wp["masked_purity"],
            "two_way_efficiency": a["two"].efficiency,
            "atlas_efficiency": a["atlas"].efficiency,
            "two_way_fake_rate": a["two"].fake_rate,
            "cpu_s_per_event": t,
            "cpu_s_median": float(np.median(a["t"])),
            "cpu_s_all": a["t"],
        }
    for r in rows.values():
        r["speedup"] = base_t / r["cpu_s_per_event"] if base_t else float("nan")
        # the same events timed back to back: the median of the per-event ratios
        r["speedup_per_event_median"] = float(np.median(np.divide(rows["fp32"]["cpu_s_all"], r["cpu_s_all"])))
        r["two_way_loss_points"] = 100 * (rows["fp32"]["two_way_efficiency"] - r["two_way_efficiency"])
    report = {
        "events": n_events,
        "nodes_per_event": n_avg,
        "edges_per_event": e_avg,
        "score_cut": cut,
        "track_building": to_dict(tb),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "quantized_engine": torch.backends.quantized.engine,
        "rows": rows,
    }
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


def timing(args) -> dict:
    """CPU s/event of the GNN forward pass of each architecture, from the campaign model: fp32,
    int8 of it, and structurally pruned copies (``prune_units``, NOT fine-tuned: time and size
    only, their scores mean nothing), alone and in int8. All on the same test graphs, one thread,
    interleaved; ``--edge-fraction`` times a sub-graph (the edges among the first hits) to fit a
    small CPU budget."""
    results = Path(args.results)
    fp32 = load_model(results / "models" / "gnn.pt")
    hidden = int(fp32.config["hidden"])
    floats = {"fp32": fp32}
    for frac in args.unit_fractions:
        floats[f"units{round(100 * frac)}"] = prune_units(fp32, frac, hidden).eval()
    for frac in args.latent_fractions:
        floats[f"latent{round(100 * frac)}"] = prune_units(
            prune_latent(fp32, frac, hidden), frac, hidden
        ).eval()
    models = dict(floats)
    for name in list(floats):
        models[f"{name}_int8"] = quantize_int8(floats[name])
    te, tg = _files(results, "test")
    times = {name: [] for name in models}
    sizes = []
    for i, (event, graph) in enumerate(iter_event_graphs(te, tg, ("hits",), args.events)):
        ev = event_data(event.hits, graph, fp32, torch.device("cpu"))
        x, ei = ev.node_features(fp32), ev.edge_index
        if args.edge_fraction < 1.0:
            n_keep = int(args.edge_fraction * x.shape[0])
            ei = ei[:, (ei[0] < n_keep) & (ei[1] < n_keep)]
        nodes = torch.unique(ei)
        x, ei = x[nodes], torch.searchsorted(nodes, ei)
        sizes.append((x.shape[0], ei.shape[1]))
        order = list(models) if i % 2 == 0 else list(models)[::-1]
        with torch.inference_mode():
            for _ in range(args.repeats):
                for name in order:
                    t0 = time.perf_counter()
                    models[name](x, ei)
                    times[name].append(time.perf_counter() - t0)
        log.info("event %d: %d nodes, %d edges", i, *sizes[-1])
    n_avg = float(np.mean([s[0] for s in sizes]))
    e_avg = float(np.mean([s[1] for s in sizes]))
    rows = {}
    for name, ts in times.items():
        m = floats[name.removesuffix("_int8")]
        rows[name] = {
            "parameters": count_parameters(m),
            "widths": sorted(set(m.config.get("widths", {}).values())) or [int(m.config["hidden"])],
            "latent": int(m.config["hidden"]),
            "bits": 8 if name.endswith("_int8") else 32,
            "gflops_per_event": linear_flops(m, round(n_avg), round(e_avg)) / 1e9,
            # least time over the repeats: on a shared machine other jobs only ever add time
            "cpu_s_per_event": float(np.min(ts)),
            "cpu_s_median": float(np.median(ts)),
            "cpu_s_all": ts,
        }
    for r in rows.values():
        r["speedup"] = rows["fp32"]["cpu_s_per_event"] / r["cpu_s_per_event"]
        r["speedup_median"] = rows["fp32"]["cpu_s_median"] / r["cpu_s_median"]
    report = {
        "events": len(sizes),
        "nodes_per_event": n_avg,
        "edges_per_event": e_avg,
        "edge_fraction": args.edge_fraction,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "quantized_engine": torch.backends.quantized.engine,
        "rows": rows,
    }
    head = ("architecture", "params", "hidden widths", "bits", "GFLOP/ev", "CPU s/ev (min)", "speed-up",
            "median s/ev", "speed-up (median)")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        cells = [name, f"{r['parameters']:,}", ",".join(map(str, r["widths"])), str(r["bits"]),
                 f"{r['gflops_per_event']:.2f}", f"{r['cpu_s_per_event']:.3f}", f"{r['speedup']:.2f}x",
                 f"{r['cpu_s_median']:.3f}", f"{r['speedup_median']:.2f}x"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


def table(report: dict) -> str:
    head = ("variant", "params", "non-zero", "sparsity", "latent", "bits", "GFLOP/ev", "cut", "edge eff",
            "masked pur", "2-way eff", "ATLAS eff", "loss (pts)", "CPU s/ev", "speed-up",
            "speed-up (per-event median)")  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in report["rows"].items():
        cells = [
            name, f"{r['parameters']:,}", f"{r['nonzero_parameters']:,}", f"{r['linear_sparsity']:.2f}",
            str(r["latent"]), str(r["bits"]), f"{r['gflops_per_event']:.1f}", f"{r['score_cut']:.3f}",
            f"{r['edge_efficiency']:.4f}",
            f"{r['edge_masked_purity']:.4f}", f"{r['two_way_efficiency']:.4f}", f"{r['atlas_efficiency']:.4f}",
            f"{r['two_way_loss_points']:+.2f}", f"{r['cpu_s_per_event']:.2f}", f"{r['speedup']:.2f}x",
            f"{r['speedup_per_event_median']:.2f}x",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["train", "measure", "timing"])
    p.add_argument("--results", default="results/default")
    p.add_argument(
        "--config", nargs="+", default=["config/config.yaml"], help="campaign YAML files, merged in order"
    )
    p.add_argument("--out", default="benchmarks/tmp/compression")
    p.add_argument("--only", nargs="*", help="train only these variants")
    p.add_argument("--train-events", type=int, default=10)
    p.add_argument("--val-events", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2, help="QAT epochs")
    p.add_argument("--epochs-per-round", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-4, help="learning rate each round rewinds to")
    p.add_argument("--events", type=int, default=None, help="test events measured (default: all)")
    p.add_argument("--json")
    p.add_argument("--unit-fractions", type=float, nargs="*", default=[0.5, 0.75], help="timing: structured")
    p.add_argument(
        "--latent-fractions", type=float, nargs="*", default=[], help="timing: structured + latent"
    )
    p.add_argument("--fp32-model", help="measure: the fp32 model (default: the campaign's models/gnn.pt)")
    p.add_argument("--scheduler", default="none", help="train: learning-rate schedule of each round")
    p.add_argument("--choose-cut", action="store_true", help="train: choose each variant's working point")
    p.add_argument("--edge-fraction", type=float, default=1.0, help="timing: sub-graph of the first hits")
    p.add_argument("--repeats", type=int, default=2, help="timing: passes per event and variant")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
    {"train": train, "measure": measure, "timing": timing}[args.action](args)


if __name__ == "__main__":
    main()
