"""Graph-construction studies: module-map coverage curve and metric-learning efficiency vs r_max.

Module map: build the map from the first N training events for each N in ``--n-train`` and
apply it to held-out events: target-edge efficiency, purity, edges/event, truth-CC bound, the
fraction of held-out target edges whose module pair is in the map at all ("pair coverage": the
ceiling no cut tolerance can lift), and build/apply times, for every cut tolerance and
small-count margin (``--small-count-margin``, see ``ModuleMapConfig``) and symmetry mode
(``--symmetry``: none, phi, phi_z; for phi_z also how many rings found a z mirror).

Metric learning (``--model``): efficiency, purity, edges/event and search time of the radius
graph on the held-out events for each r in ``--r-max`` and each k_max in ``--k-max`` (default:
the model's).

    python benchmarks/bench_graph_construction.py --train data/train*.h5 --test data/test.h5 \
        --n-train 5,10,30,100 --tolerance 0.1 --output results/bench/graph_construction.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from gnntrack.graph_construction import EmbeddingBuilder, ModuleMap, build_module_map
from gnntrack.graph_construction.geometry import hits_to_tensors, orient_outward
from gnntrack.graph_construction.module_map import read_map_events, target_doublets
from gnntrack.graph_construction.module_symmetry import ModuleCatalogue, mirror_rings
from gnntrack.graph_construction.neighbours import radius_graph
from gnntrack.io.event_store import iter_events
from gnntrack.io.graph_store import make_graph
from gnntrack.metrics import graph_metrics, truth_target_edges


def _test_events(path):
    return iter_events(path, tables=("hits", "particles"))


def _events(files, limit=None, reader=_test_events):
    out = []
    for f in files:
        for ev in reader(f):
            if limit is not None and len(out) >= limit:
                return out
            out.append(ev)
    return out


def pair_coverage(data, events) -> float:
    """Fraction of the events' target doublets whose (source, destination) module pair is mapped."""
    mapped = set(map(tuple, np.asarray(data.modules).view(np.int64).tolist()))
    seen = total = 0
    for ev in events:
        pairs, _ = target_doublets(ev)
        total += len(pairs)
        seen += sum(tuple(p) in mapped for p in pairs.tolist())
    return seen / total if total else float("nan")


def _summary(m: dict) -> dict:
    keep = ("efficiency", "purity", "masked_purity", "edges_per_event", "n_target_truth_edges")
    out = {k: m[k] for k in keep}
    out["truth_cc_efficiency"] = m["truth_cc"]["efficiency"]
    out["efficiency_vs_pt"] = m["efficiency_vs_pt"]
    out["efficiency_vs_eta"] = m["efficiency_vs_eta"]
    return out


def mirror_summary(events) -> dict:
    """How many rings of the events' modules have a z mirror (``symmetry: phi_z``), and why not."""
    cat = ModuleCatalogue()
    for ev in events:
        cat.add(ev)
    mirror, reason = mirror_rings(cat, return_reasons=True)
    kinds, counts = np.unique(reason.astype(str), return_counts=True)
    return {
        "n_rings": len(mirror),
        "n_mirrored_rings": int((mirror >= 0).sum()),
        "mirror_reasons": dict(zip(kinds.tolist(), counts.tolist())),
    }


def module_map_study(train, test, n_list, tolerances, margins, cut, n_sigma, symmetry, device) -> list[dict]:
    rows = []
    for n in n_list:
        if n > len(train):
            break
        t0 = time.perf_counter()
        data = build_module_map(train[:n], {"symmetry": symmetry})
        t_build = time.perf_counter() - t0
        mirrors = mirror_summary(train[:n]) if symmetry == "phi_z" else {}
        if mirrors:
            print(f"N={n:4d} sym={symmetry} rings with a z mirror: {mirrors}", flush=True)
        coverage = pair_coverage(data, test)
        for tol, k in ((t, k) for t in tolerances for k in margins):
            mm = ModuleMap(data, device, cut=cut, tolerance=tol, n_sigma=n_sigma, small_count_margin=k)
            mm.build_edges(test[0].hits)  # warm-up
            graphs, times = [], []
            for ev in test:
                hits = hits_to_tensors(ev.hits, mm.hit_columns, mm.device)
                if mm.device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                edges = mm.build_edges(hits)
                if mm.device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
                graphs.append(make_graph(edges.cpu().numpy(), ev))
            row = {
                "n_train_events": n,
                "n_train_target_particles": int(sum(int(e.particles["is_target"].sum()) for e in train[:n])),
                "n_module_pairs": data.n_pairs,
                "symmetry": symmetry,
                "cut": cut,
                "tolerance": tol,
                "small_count_margin": k,
                "n_sigma": n_sigma,
                "pair_coverage": coverage,
                "build_seconds": t_build,
                "apply_seconds_per_event": float(np.median(times)),
                **mirrors,
                **_summary(graph_metrics(graphs, test)),
            }
            rows.append(row)
            print(
                f"N={n:4d} sym={symmetry} tol={tol:<5} k={k:<4} pairs={data.n_pairs:7d} coverage={coverage:.4f} "
                f"eff={row['efficiency']:.4f} pur={row['purity']:.4f} edges/ev={row['edges_per_event']:.0f} "
                f"truthCC={row['truth_cc_efficiency']:.4f} apply={row['apply_seconds_per_event']:.3f}s",
                flush=True,
            )
    return rows


def _select(pairs: torch.Tensor, emb: torch.Tensor, r: float, k_max: int) -> torch.Tensor:
    """The pairs ``radius_graph(emb, r, k_max)`` returns, taken from a search at a larger radius
    and cap (same order: query, distance, neighbour; same distance arithmetic and strict cut)."""
    i, j = pairs
    d2 = (emb[i] - emb[j]).pow(2).sum(-1)
    keep = d2 < r * r
    i, j = i[keep], j[keep]
    counts = torch.bincount(i, minlength=emb.shape[0])
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(i.numel(), device=i.device) - first[i]
    return torch.stack([i[rank < k_max], j[rank < k_max]])


def metric_learning_study(model_path, test, r_list, k_list, backend, device, one_search=False) -> list[dict]:
    """One row per (r_max, k_max): efficiency, purity, edges/event of the radius graph and the
    median wall and process CPU time per event of the search (embedding excluded;
    ``embed_seconds_per_event`` apart).

    ``one_search``: one search per event at the largest r_max and k_max, every other (r_max,
    k_max) graph selected from it (the same edges as its own search; ``search_seconds_per_event``
    is then that of the largest search, an upper bound)."""
    from gnntrack.models import load_model

    model = load_model(model_path, device)
    builder = EmbeddingBuilder(model, backend=backend, device=device)
    k_list = k_list or [builder.k_max]
    embedded, embed_times, largest = [], [], []
    for ev in test:
        t0 = time.perf_counter()
        emb = builder.embed(ev.hits)
        embed_times.append(time.perf_counter() - t0)
        embedded.append((ev, emb))
        if one_search:
            t0, c0 = time.perf_counter(), time.process_time()
            pairs = radius_graph(emb, max(r_list), max(k_list), backend)
            largest.append((pairs, time.perf_counter() - t0, time.process_time() - c0))
    rows = []
    for k_max in k_list:
        for r in r_list:
            graphs, times, cpu = [], [], []
            for n, (ev, emb) in enumerate(embedded):
                t0, c0 = time.perf_counter(), time.process_time()
                if one_search:
                    pairs = _select(largest[n][0], emb, r, k_max)
                    times.append(largest[n][1])
                    cpu.append(largest[n][2])
                else:
                    pairs = radius_graph(emb, r, k_max, backend)
                    times.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
                edges = orient_outward(pairs, hits_to_tensors(ev.hits, ("r", "z"), emb.device))
                graphs.append(make_graph(edges.cpu().numpy(), ev))
            row = {
                "r_max": r,
                "k_max": k_max,
                "backend": backend,
                "search_seconds_per_event": float(np.median(times)),
                "search_cpu_seconds_per_event": float(np.median(cpu)),
                "search_timed": "largest (r_max, k_max)" if one_search else "this (r_max, k_max)",
                "embed_seconds_per_event": float(np.median(embed_times)),
                **_summary(graph_metrics(graphs, test)),
            }
            rows.append(row)
            print(
                f"r={r:<6} k_max={k_max} eff={row['efficiency']:.4f} pur={row['purity']:.4f} "
                f"edges/ev={row['edges_per_event']:.0f} truthCC={row['truth_cc_efficiency']:.4f} "
                f"search={row['search_seconds_per_event']:.2f}s ({row['search_cpu_seconds_per_event']:.2f} CPU-s)",
                flush=True,
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", nargs="*", default=[], help="training event shards (module map)")
    ap.add_argument("--test", nargs="+", required=True, help="held-out event shards")
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--n-train", default="1,3,10,30,100")
    ap.add_argument("--tolerance", default="0.0,0.1,0.3")
    ap.add_argument("--small-count-margin", default="0,1", help="module-map small-count margins k")
    ap.add_argument("--cut", default="minmax", choices=("minmax", "mean_rms"))
    ap.add_argument("--n-sigma", type=float, default=5.0)
    ap.add_argument(
        "--symmetry", default="phi,none", help="module-map symmetry modes to compare (none, phi, phi_z)"
    )
    ap.add_argument("--model", help="embedding model for the metric-learning study")
    ap.add_argument("--r-max", default="0.05,0.1,0.15,0.2,0.3")
    ap.add_argument("--k-max", default=None, help="comma-separated k_max values (default: the model's)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument(
        "--one-search",
        action="store_true",
        help="metric learning: one search per event at the largest r_max/k_max, the others selected from it",
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--output", default="results/bench/graph_construction.json")
    args = ap.parse_args()

    test = _events(args.test, args.n_test)
    result = {
        "test_files": args.test,
        "n_test_events": len(test),
        "mean_hits_per_test_event": float(np.mean([e.n_hits for e in test])),
        "mean_target_edges_per_test_event": float(np.mean([len(truth_target_edges(e)[0]) for e in test])),
        "device": args.device,
    }
    if args.train:
        train = _events(args.train, reader=read_map_events)
        n_list = [int(x) for x in args.n_train.split(",")]
        if len(train) not in n_list:
            n_list.append(len(train))
        tols = [float(x) for x in args.tolerance.split(",")]
        margins = [float(x) for x in args.small_count_margin.split(",")]
        result["module_map"] = [
            row
            for sym in args.symmetry.split(",")
            for row in module_map_study(
                train, test, sorted(n_list), tols, margins, args.cut, args.n_sigma, sym, args.device
            )
        ]
        result["train_files"] = args.train
    if args.model:
        r_list = [float(x) for x in args.r_max.split(",")]
        k_list = [int(x) for x in args.k_max.split(",")] if args.k_max else None
        result["metric_learning"] = metric_learning_study(
            args.model, test, r_list, k_list, args.backend, args.device, args.one_search
        )
        result["model"] = args.model
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
