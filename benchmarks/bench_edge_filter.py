"""Doublet module-map graphs with and without the edge filter, on the same held-out events.

Issue #17, item 1 ("fewer edges into the GNN at the same physics"): the edge-filter row next to
the doublet and triplet module-map graphs of ``benchmarks/module_map_triplets_20261203``. The
filter is trained and applied by the workflow's own commands (``gnntrack train-filter``,
``gnntrack apply-filter``; see the record's README); this script measures, per held-out event:

- the doublet graph (the campaign's stored graphs): target-edge efficiency and edges;
- the filter's scores on it, from the inference chain's filter stage (``EdgeClassifier``, the
  object ``apply-filter`` and the one-process chain use), timed per event (wall-clock
  and process CPU seconds, each the best of ``--repeat`` runs, after one untimed warm-up event);
- the doublet graph cut at the model's stored cut and at every ``--cuts`` value, and at the cuts
  that keep ``--val-efficiencies`` of the validation graphs' target edges (what
  ``filter.target_efficiency`` would store), and at the cut that keeps ``--edge-budgets`` edges
  per event on average (one cut over all the events scanned: the "efficiency at N edges/event"
  of a goal);
- optionally the ``apply-filter`` output (``--filtered``: its edges must be the stored-cut row's),
  the doublet graph-building time (``--module-map``, the campaign's map, timed likewise) and the
  doublet + triplet graphs of a map with triplet windows (``--triplet-map``, at each
  ``--triplet-margins`` small-count margin, the map's other cuts; timed likewise).

``--int8`` scores with the filter's int8 copy (``inference.int8``: torch.ao dynamic quantisation
of its Linear layers, CPU only) instead of the fp32 model.

Efficiency = target truth edges found / target truth edges (``gnntrack.metrics.truth_target_edges``,
as in the triplet record); purity = target truth edges found / edges. The triplet record's rows
(``--triplets``, its compare JSON) are copied into the table for comparison.

    python benchmarks/bench_edge_filter.py --events test/9.h5 --graphs graphs/test/9.h5 \
        --model filter.pt --filtered filtered/test/9.h5 --cuts 0.01 0.05 0.1 0.3 \
        --val-events val/8.h5 --val-graphs graphs/val/8.h5 --val-efficiencies 0.99 0.995 \
        --module-map module_map.h5 --triplets compare_mu60.json --json filter.json

Times are wall-clock seconds of one process; on a machine shared with other jobs they are upper
bounds.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from gnntrack.edge_classification import EdgeClassifier
from gnntrack.edge_classification.shards import event_data, score_file
from gnntrack.edge_filter import FilterConfig
from gnntrack.graph_construction import ModuleMap
from gnntrack.io.event_store import iter_events
from gnntrack.io.graph_store import iter_graphs
from gnntrack.metrics import truth_target_edges
from gnntrack.metrics.edges import cut_at_efficiency, edge_codes
from gnntrack.models.registry import load_model, read_model_info


def _best_time(fn, repeat: int, setup=lambda: ()) -> tuple[float, float]:
    """(wall, CPU) seconds of ``fn(*setup())``, each the best of ``repeat`` runs (setup untimed).

    The CPU time is the process's (``time.process_time``): with one torch thread it is the work
    done, whatever share of the cores the process got on a shared machine."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        a = setup()
        t0, c0 = time.perf_counter(), time.process_time()
        fn(*a)
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu


def _count(truth: np.ndarray, n_hits: int, edge_index: np.ndarray, **extra) -> dict:
    """Edges, target truth edges and those of them in the graph (``edge_index`` (2, E))."""
    found = int(np.isin(truth, edge_codes(edge_index, n_hits)).sum())
    return {"edges": int(edge_index.shape[1]), "truth": len(truth), "found": found, **extra}


def budget_cut(scores: np.ndarray, edges_per_event: float, n_events: int) -> float:
    """The one cut (keep score >= cut) over the ``scores`` of ``n_events`` events that keeps
    ``edges_per_event`` edges per event on average (ties at the cut are all kept)."""
    k = min(len(scores), max(1, round(edges_per_event * n_events)))
    return float(np.partition(scores, len(scores) - k)[len(scores) - k])


def _val_cuts(stage: EdgeClassifier, events, graphs, efficiencies) -> dict[float, float]:
    """The cut keeping each fraction of the validation graphs' target edges (``run_train_filter``'s
    ``target_efficiency`` rule)."""
    s_l, yt_l = [], []
    for ef, gf in zip(events, graphs):
        for graph, scores, _ in score_file(ef, gf, stage, torch.device("cpu")):
            s_l.append(scores)
            yt_l.append(graph.y_target)
    s, yt = np.concatenate(s_l), np.concatenate(yt_l)
    return {eff: cut_at_efficiency(s, yt, eff) for eff in efficiencies}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", required=True, help="held-out events shard")
    ap.add_argument("--graphs", required=True, help="its doublet graphs shard")
    ap.add_argument("--model", required=True, help="trained filter model")
    ap.add_argument("--filtered", help="apply-filter output of --graphs (checked against the stored cut)")
    ap.add_argument("--cuts", nargs="*", type=float, default=[], help="further filter cuts to scan")
    ap.add_argument("--val-events", nargs="*", default=[])
    ap.add_argument("--val-graphs", nargs="*", default=[])
    ap.add_argument("--val-efficiencies", nargs="*", type=float, default=[])
    ap.add_argument("--module-map", help="time the doublet graph building with this map too")
    ap.add_argument(
        "--triplet-map", help="a map with triplet windows: its doublet + triplet graphs, timed likewise"
    )
    ap.add_argument(
        "--triplet-margins",
        nargs="+",
        type=float,
        default=[0.0],
        help="small_count_margin of the triplet rows",
    )
    ap.add_argument("--triplets", help="the triplet record's compare JSON (rows copied into the table)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per event (the best is kept)")
    ap.add_argument("--n-events", type=int, default=None, help="only the first N events")
    ap.add_argument(
        "--edge-budgets",
        nargs="*",
        type=float,
        default=[],
        help="edges/event: the one cut over all events that keeps this many edges per event on average",
    )
    ap.add_argument(
        "--int8",
        action="store_true",
        help="score with the int8 copy of the filter (inference.int8: torch.ao dynamic quantisation)",
    )
    ap.add_argument("--json", help="write the table and per-event numbers here")
    args = ap.parse_args()

    dev = torch.device("cpu")
    net = load_model(args.model, dev)
    if args.int8:
        from gnntrack.models.compression import quantize_int8

        net = quantize_int8(net)
    info = read_model_info(args.model)
    stored_cut = float(getattr(net, "score_cut", FilterConfig().score_cut))  # as run_apply_filter
    chunk = FilterConfig().chunk_size  # the filter section's default, as in apply-filter
    stage = EdgeClassifier("filter", net, stored_cut, chunk_size=chunk)
    val_cuts = (
        _val_cuts(stage, args.val_events, args.val_graphs, args.val_efficiencies)
        if args.val_efficiencies
        else {}
    )
    cuts = {f"stored cut {stored_cut:g}": stored_cut}
    cuts.update({f"cut {c:g}": c for c in args.cuts})
    cuts.update({f"val. eff. {e:g} (cut {c:.4g})": c for e, c in val_cuts.items()})
    mm = ModuleMap.load(args.module_map, "cpu") if args.module_map else None
    tms = {
        m: ModuleMap.load(args.triplet_map, "cpu", triplets=True, small_count_margin=m)
        for m in (args.triplet_margins if args.triplet_map else [])
    }
    filtered = {g.key: g for g in iter_graphs(args.filtered)} if args.filtered else {}

    per: dict[str, list[dict]] = {"doublets": [], **{f"doublets + filter, {k}": [] for k in cuts}}
    if filtered:
        per["doublets + filter, apply-filter output"] = []
    for m in tms:
        per[f"doublets + triplets, small_count_margin {m:g} (this run)"] = []
    warm = False
    scored = []  # (scores, edge is a target truth edge, target truth edges) per event
    for graph, ev in zip(iter_graphs(args.graphs), iter_events(args.events, tables=("hits", "particles"))):
        if args.n_events is not None and len(per["doublets"]) >= args.n_events:
            break
        assert graph.key == ev.key and graph.n_hits == ev.n_hits, (graph.key, ev.key)
        truth, _ = truth_target_edges(ev)
        count = partial(_count, truth, ev.n_hits)
        if not warm:  # one untimed run of each timed step
            stage(event_data(ev.hits, graph, net, dev))
            for m in (mm, *tms.values()):
                if m is not None:
                    m.build_edges(ev.hits)
            warm = True
        build_s = build_cpu = None
        if mm is not None:
            edges = mm.build_edges(ev.hits)
            assert edges.shape[1] == graph.n_edges, (edges.shape, graph.n_edges)
            build_s, build_cpu = _best_time(mm.build_edges, args.repeat, lambda h=ev.hits: (h,))
        scores = stage(event_data(ev.hits, graph, net, dev)).scores("filter").cpu().numpy()
        # the filter stage on a fresh EventData, built untimed (node features are loaded with the
        # event in the chain, as in score_file)
        filter_s, filter_cpu = _best_time(
            stage, args.repeat, lambda h=ev.hits, g=graph: (event_data(h, g, net, dev),)
        )
        per["doublets"].append(count(graph.edge_index, s=build_s, cpu_s=build_cpu))
        for m, tm in tms.items():
            edges = tm.build_edges(ev.hits).numpy()
            t_s, t_cpu = _best_time(tm.build_edges, args.repeat, lambda h=ev.hits: (h,))
            per[f"doublets + triplets, small_count_margin {m:g} (this run)"].append(
                count(edges, s=t_s, cpu_s=t_cpu)
            )
        for name, cut in cuts.items():
            keep = scores >= cut
            per[f"doublets + filter, {name}"].append(
                count(graph.edge_index[:, keep], s=filter_s, cpu_s=filter_cpu)
            )
        if args.edge_budgets:  # for the budget cuts, chosen once all events are scored
            in_truth = np.isin(edge_codes(graph.edge_index, ev.n_hits), truth)
            scored.append((scores, in_truth, len(truth)))
        if filtered:
            f = filtered[graph.key]
            kept = graph.edge_index[:, scores >= stored_cut]
            assert np.array_equal(f.edge_index, kept), graph.key  # apply-filter keeps the same edges
            per["doublets + filter, apply-filter output"].append(count(f.edge_index))
        print(
            f"{ev.key}: {ev.n_hits} hits, {graph.n_edges} doublet edges, {per['doublets'][-1]['found']}/{len(truth)}; "
            f"filter {filter_s:.3f} s ({filter_cpu:.3f} CPU-s), at {stored_cut:g}: {int((scores >= stored_cut).sum())} edges "
            f"{per[f'doublets + filter, stored cut {stored_cut:g}'][-1]['found']} found",
            flush=True,
        )

    budget_cuts = {}
    if scored:
        all_scores = np.concatenate([sc for sc, _, _ in scored])
        for budget in args.edge_budgets:
            cut = budget_cut(all_scores, budget, len(scored))
            budget_cuts[budget] = cut
            per[f"doublets + filter, {budget:.0f} edges/event (cut {cut:.4g})"] = [
                {"edges": int((sc >= cut).sum()), "truth": n_truth, "found": int((in_t & (sc >= cut)).sum())}
                for sc, in_t, n_truth in scored
            ]
    rows = []
    for name, r in per.items():
        truth = sum(x["truth"] for x in r)
        found = sum(x["found"] for x in r)
        edges = float(np.mean([x["edges"] for x in r]))
        times = [x["s"] for x in r if x.get("s") is not None]
        cpu = [x["cpu_s"] for x in r if x.get("cpu_s") is not None]
        rows.append(
            {
                "variant": name,
                "n_events": len(r),
                "efficiency": found / truth,
                "edges_per_event": edges,
                "target_edges_found_per_event": found / len(r),
                "purity": found / (edges * len(r)),
                "s_per_event": float(np.mean(times)) if times else None,
                "cpu_s_per_event": float(np.mean(cpu)) if cpu else None,
            }
        )
    if args.triplets:
        for row in json.loads(Path(args.triplets).read_text())["rows"]:
            rows.append(
                {
                    "variant": f"triplet record: {row['variant']}",
                    "n_events": row["n_events"],
                    "efficiency": row["efficiency"],
                    "edges_per_event": row["edges_per_event"],
                    "target_edges_found_per_event": row["target_edges_found_per_event"],
                    "purity": row["target_edges_found_per_event"] / row["edges_per_event"],
                    "s_per_event": row["apply_s_per_event"],
                    "cpu_s_per_event": None,
                }
            )
    base = rows[0]
    for row in rows:
        row["edges_vs_doublets"] = row["edges_per_event"] / base["edges_per_event"]
        row["efficiency_vs_doublets"] = row["efficiency"] / base["efficiency"]
    print(
        f"\n{'variant':<58}{'efficiency':>11}{'edges/event':>13}{'x edges':>9}{'x eff':>8}{'purity':>8}{'s/event':>9}{'CPU-s':>8}"
    )
    for row in rows:
        s = f"{row['s_per_event']:9.3f}" if row["s_per_event"] is not None else f"{'-':>9}"
        s += f"{row['cpu_s_per_event']:8.3f}" if row["cpu_s_per_event"] is not None else f"{'-':>8}"
        print(
            f"{row['variant']:<58}{row['efficiency']:>11.4f}{row['edges_per_event']:>13.0f}"
            f"{row['edges_vs_doublets']:>9.3f}{row['efficiency_vs_doublets']:>8.4f}{row['purity']:>8.3f}{s}"
        )
    result = {
        "events": args.events,
        "graphs": args.graphs,
        "model": args.model,
        "model_working_point": info.get("working_point"),
        "model_config": info.get("config"),
        "stored_cut": stored_cut,
        "val_cuts": {str(k): v for k, v in val_cuts.items()},
        "budget_cuts": {str(k): v for k, v in budget_cuts.items()},
        "module_map": args.module_map,
        "triplet_map": args.triplet_map,
        "triplet_margins": args.triplet_margins if args.triplet_map else [],
        "repeat": args.repeat,
        "int8": args.int8,
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "rows": rows,
        "per_event": per,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
