"""Module map with and without triplet cuts on the same held-out events.

Builds (``build``) a module map with triplet windows (``module_map.triplets: true``) from event
shards, exactly as the workflow's ``build_module_map`` rule does, and records its build time and
file size; then (``compare``) applies it to held-out events with doublet cuts only and with doublet
+ triplet cuts, at the map's cut settings and at further ``--cuts``, and prints per variant: target-edge efficiency (target truth edges found, of all
target truth edges), edges per event, target edges per event and the apply time per event, and
why the target edges the triplet cuts drop are dropped.

    python benchmarks/bench_module_map_triplets.py build --events train/*.h5 map_sample/*.h5 \
        --set symmetry=phi --set tolerance=0.05 --set small_count_margin=0 --output mm.h5
    python benchmarks/bench_module_map_triplets.py compare --map mm.h5 --test test/9.h5 \
        --cuts 0.2:0 0.05:1 --json triplets.json

Times are wall-clock seconds of one process; on a machine shared with other jobs they are
upper bounds.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from gnntrack.graph_construction import ModuleMap, ModuleMapData, build_module_map
from gnntrack.graph_construction.module_map import _target_edges
from gnntrack.io.event_store import iter_events
from gnntrack.metrics import truth_target_edges
from gnntrack.metrics.edges import edge_codes


def cmd_build(args) -> None:
    cfg = {"triplets": True}
    for item in args.set:
        key, value = item.split("=", 1)
        cfg[key] = yaml.safe_load(value)
    t0 = time.perf_counter()
    data = build_module_map([Path(p) for p in args.events], cfg)
    seconds = time.perf_counter() - t0
    data.write(args.output)
    record = {
        "events": [str(p) for p in args.events],
        "config": cfg,
        "n_events": data.n_events,
        "n_pairs": data.n_pairs,
        "n_triplets": data.triplets.n_triplets,
        "build_s": round(seconds, 1),
        "file_bytes": Path(args.output).stat().st_size,
    }
    print(json.dumps(record, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


def _apply(mm: ModuleMap, ev) -> dict:
    t0 = time.perf_counter()
    edges = mm.build_edges(ev.hits)
    seconds = time.perf_counter() - t0
    truth, _ = truth_target_edges(ev)
    found = np.isin(truth, edge_codes(edges.numpy(), ev.n_hits))
    return {
        "edges": int(edges.shape[1]),
        "truth": len(truth),
        "found": int(found.sum()),
        "s": seconds,
    }, edges


def _truth_triplets(ev) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3) hits a, b, c and (T, 3) int64 modules of the event's target truth triplets (the
    triplets ``build_module_map`` records)."""
    src, dst, part, _, mod = _target_edges(ev)
    n = np.int64(max(len(mod), 1))
    key_out = part * n + src
    order = np.argsort(key_out, kind="stable")
    key_in = part * n + dst
    lo = np.searchsorted(key_out[order], key_in, side="left")
    cnt = np.searchsorted(key_out[order], key_in, side="right") - lo
    i = np.repeat(np.arange(len(src)), cnt)
    j = order[lo[i] + np.arange(len(i)) - np.repeat(np.cumsum(cnt) - cnt, cnt)]
    keep = src[i] != dst[j]
    hits = np.stack([src[i], dst[i], dst[j]], 1)[keep]
    return hits, mod[hits]


def _losses(data: ModuleMapData, doublet_edges, triplet_edges, ev) -> dict:
    """Why target edges of the doublet graph are missing from the triplet graph: no truth triplet
    (a particle crossing two modules), module triplet never mapped, the other doublet of every
    mapped truth triplet missing from the doublet graph, or outside the triplet windows."""
    n = ev.n_hits
    in_d = set(edge_codes(doublet_edges.numpy(), n).tolist())
    in_t = set(edge_codes(triplet_edges.numpy(), n).tolist())
    truth, _ = truth_target_edges(ev)
    lost = [c for c in truth.tolist() if c in in_d and c not in in_t]
    hits, mods = _truth_triplets(ev)
    mapped_set = set(map(tuple, np.asarray(data.triplets.modules).view(np.int64).tolist()))
    mapped = np.array([tuple(m) in mapped_set for m in mods.tolist()], bool)
    ab = edge_codes(hits[:, [0, 1]].T, n)
    bc = edge_codes(hits[:, [1, 2]].T, n)
    by_edge: dict[int, list[tuple[bool, int]]] = {}
    for k in range(len(hits)):
        by_edge.setdefault(int(ab[k]), []).append((bool(mapped[k]), int(bc[k])))
        by_edge.setdefault(int(bc[k]), []).append((bool(mapped[k]), int(ab[k])))
    out = {"no_truth_triplet": 0, "triplet_not_mapped": 0, "other_doublet_missing": 0, "outside_windows": 0}
    for code in lost:
        trips = by_edge.get(code, [])
        if not trips:
            out["no_truth_triplet"] += 1
        elif not any(m for m, _ in trips):
            out["triplet_not_mapped"] += 1
        elif not any(m and other in in_d for m, other in trips):
            out["other_doublet_missing"] += 1
        else:
            out["outside_windows"] += 1
    return out


def cmd_compare(args) -> None:
    data = ModuleMapData.read(args.map)
    base = ModuleMap(data, "cpu", triplets=False)
    variants = {"doublets": base, "doublets+triplets": base.with_cuts(triplets=True)}
    for item in args.cuts:
        tol, margin = (float(x) for x in item.split(":"))
        label = f" tol={tol:g} margin={margin:g}"
        variants[f"doublets{label}"] = base.with_cuts(tolerance=tol, small_count_margin=margin)
        variants[f"doublets+triplets{label}"] = base.with_cuts(
            tolerance=tol, small_count_margin=margin, triplets=True
        )
    per = {name: [] for name in variants}
    n = 0
    for path in args.test:
        for ev in iter_events(path, tables=("hits", "particles")):
            if args.n_test is not None and n >= args.n_test:
                break
            n += 1
            line = [f"{ev.key}: {ev.n_hits} hits"]
            doublet_edges = None
            for name, mm in variants.items():
                r, edges = _apply(mm, ev)
                if mm.triplets:
                    r["lost"] = _losses(data, doublet_edges, edges, ev)
                else:
                    doublet_edges = edges
                per[name].append(r)
                line.append(f"{name} {r['edges']} edges {r['found']}/{r['truth']} ({r['s']:.1f} s)")
            print("; ".join(line), flush=True)
    rows = []
    for name, r in per.items():
        truth = sum(x["truth"] for x in r)
        found = sum(x["found"] for x in r)
        rows.append(
            {
                "variant": name,
                "n_events": len(r),
                "efficiency": found / truth if truth else float("nan"),
                "edges_per_event": float(np.mean([x["edges"] for x in r])),
                "target_edges_found_per_event": found / len(r),
                "apply_s_per_event": float(np.mean([x["s"] for x in r])),
            }
        )
        if "lost" in r[0]:
            rows[-1]["lost_vs_doublets"] = {k: sum(x["lost"][k] for x in r) for k in r[0]["lost"]}
    base = rows[0]
    for row in rows:
        row["edges_vs_doublets"] = row["edges_per_event"] / base["edges_per_event"]
        row["efficiency_vs_doublets"] = row["efficiency"] / base["efficiency"]
    print(f"\n{'variant':<40}{'efficiency':>12}{'edges/event':>14}{'x edges':>9}{'x eff':>8}{'s/event':>9}")
    for row in rows:
        print(
            f"{row['variant']:<40}{row['efficiency']:>12.4f}{row['edges_per_event']:>14.0f}"
            f"{row['edges_vs_doublets']:>9.3f}{row['efficiency_vs_doublets']:>8.4f}"
            f"{row['apply_s_per_event']:>9.2f}"
        )
    for row in rows:
        if "lost_vs_doublets" in row:
            print(
                f"{row['variant']}: target edges of the doublet graph lost, by cause: {row['lost_vs_doublets']}"
            )
    result = {
        "map": str(args.map),
        "map_bytes": Path(args.map).stat().st_size,
        "map_pairs": data.n_pairs,
        "map_triplets": data.triplets.n_triplets if data.triplets is not None else 0,
        "map_cuts": {k: (v.item() if hasattr(v, "item") else v) for k, v in data.cuts.items()},
        "test": [str(p) for p in args.test],
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "rows": rows,
        "per_event": per,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build a module map with triplet windows")
    b.add_argument("--events", nargs="+", required=True, help="training event shards")
    b.add_argument("--set", action="append", default=[], help="module_map setting key=value (YAML)")
    b.add_argument("--output", required=True)
    b.add_argument("--json", help="write the build record here")
    c = sub.add_parser("compare", help="doublet vs doublet+triplet graphs on held-out events")
    c.add_argument("--map", required=True, help="module map with triplet windows")
    c.add_argument("--test", nargs="+", required=True, help="held-out event shards")
    c.add_argument("--n-test", type=int, default=None)
    c.add_argument(
        "--cuts",
        nargs="*",
        default=[],
        help="further cut settings TOLERANCE:SMALL_COUNT_MARGIN, e.g. 0.2:0 0.05:1 (besides the map's own)",
    )
    c.add_argument("--json", help="write the table and per-event numbers here")
    args = ap.parse_args()
    {"build": cmd_build, "compare": cmd_compare}[args.cmd](args)


if __name__ == "__main__":
    main()
