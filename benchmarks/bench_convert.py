"""Benchmark of the convert stage: seconds per event (goal <= 2 s at <mu>=200) and exact round-trip.

Input: GNN4ITk ROOT files given with ``--inputs``, or a shard simulated here with the built-in
simulation (``--mu``, ``--events``; simulation time is reported but not counted as convert).
Measures, per event: ROOT read + validation, raw -> Event (truth links, truth graph, features),
HDF5 write, the end-to-end ``run_convert``, and checks that ``read_events`` returns every column
and truth array bit-for-bit. Optionally the TrackML sample event too. Prints a table and writes
JSON.

    python benchmarks/bench_convert.py --mu 200 --events 2 --json results/bench/convert.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from gnntrack.conversion.convert import ConvertConfig, event_from_gnn4itk, run_convert
from gnntrack.conversion.root_reader import iter_gnn4itk
from gnntrack.io.event_store import TABLES, read_events, write_events

GOAL_S = 2.0


def _exact(a, b) -> list[str]:
    """Names of everything that differs between two Events (empty list: identical)."""
    bad = []
    for table in TABLES:
        ta, tb = getattr(a, table), getattr(b, table)
        if set(ta) != set(tb):
            bad.append(f"{table}: columns {sorted(set(ta) ^ set(tb))}")
        for col in set(ta) & set(tb):
            x, y = ta[col], tb[col]
            if x.dtype != y.dtype or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                bad.append(f"{table}/{col}")
    for name in ("truth_edges", "truth_edge_particle", "hit_particle"):
        if not np.array_equal(getattr(a, name), getattr(b, name)):
            bad.append(name)
    if (a.run_number, a.event_number) != (b.run_number, b.event_number):
        bad.append("key")
    return bad


def bench_root(paths: list[Path], cfg: ConvertConfig, workdir: Path) -> dict:
    read_s, event_s, events = [], [], []
    for path in paths:
        t0 = time.perf_counter()
        for raw in iter_gnn4itk(path, links="flat"):
            t1 = time.perf_counter()
            read_s.append(t1 - t0)
            events.append(event_from_gnn4itk(raw, cfg, source=str(path)))
            t0 = time.perf_counter()
            event_s.append(t0 - t1)
    n = len(events)
    t0 = time.perf_counter()
    write_events(workdir / "direct.h5", events, compression=cfg.compression)
    write_s = (time.perf_counter() - t0) / n
    out = workdir / "convert.h5"
    t0, c0 = time.perf_counter(), time.process_time()
    run_convert(paths, out, cfg)
    total_s = (time.perf_counter() - t0) / n
    total_cpu_s = (time.process_time() - c0) / n
    back = read_events(out)
    diffs = {e.key: _exact(e, b) for e, b in zip(events, back)}
    exact = len(back) == n and not any(diffs.values())
    return {
        "n_events": n,
        "n_hits_mean": float(np.mean([e.n_hits for e in events])),
        "n_particles_mean": float(np.mean([len(e.particles["pt"]) for e in events])),
        "n_clusters_mean": float(np.mean([len(e.clusters["x"]) for e in events])),
        "n_truth_edges_mean": float(np.mean([e.truth_edges.shape[1] for e in events])),
        "n_target_mean": float(np.mean([e.particles["is_target"].sum() for e in events])),
        "read_s": float(np.mean(read_s)),
        "to_event_s": float(np.mean(event_s)),
        "write_s": write_s,
        "run_convert_s": total_s,
        "run_convert_cpu_s": total_cpu_s,
        "output_mb_per_event": out.stat().st_size / n / 1e6,
        "round_trip_exact": exact,
        "round_trip_diffs": {k: v for k, v in diffs.items() if v},
    }


def bench_trackml(prefix: Path, cfg: ConvertConfig, workdir: Path) -> dict:
    out = workdir / "trackml.h5"
    t0, c0 = time.perf_counter(), time.process_time()
    run_convert(
        [prefix], out, ConvertConfig(input_format="trackml", target=cfg.target, compression=cfg.compression)
    )
    total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    from gnntrack.conversion.trackml import read_trackml_event

    ev = read_trackml_event(prefix, cfg=ConvertConfig(input_format="trackml", target=cfg.target))
    (back,) = read_events(out)
    return {
        "n_events": 1,
        "n_hits_mean": float(ev.n_hits),
        "n_particles_mean": float(len(ev.particles["pt"])),
        "n_truth_edges_mean": float(ev.truth_edges.shape[1]),
        "run_convert_s": total,
        "run_convert_cpu_s": total_cpu,
        "round_trip_exact": not _exact(ev, back),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", nargs="*", type=Path, help="GNN4ITk ROOT files (default: simulate a shard)")
    ap.add_argument("--mu", type=float, default=200.0, help="pile-up of the simulated shard")
    ap.add_argument("--events", type=int, default=2, help="events of the simulated shard")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--compression", default="lzf", choices=["none", "lzf", "gzip"])
    ap.add_argument("--trackml", type=Path, default=None, help="TrackML event prefix to time as well")
    ap.add_argument("--json", type=Path, default=Path("results/bench/convert.json"))
    ap.add_argument("--keep", type=Path, default=None, help="directory to keep the simulated ROOT shard in")
    args = ap.parse_args(argv)

    cfg = ConvertConfig(compression=None if args.compression == "none" else args.compression)
    result: dict = {
        "host": platform.node(),
        "python": sys.version.split()[0],
        "compression": cfg.compression,
        "goal_s_per_event": GOAL_S,
    }
    with tempfile.TemporaryDirectory(prefix="bench_convert_") as tmp:
        workdir = Path(tmp)
        inputs = args.inputs
        if not inputs:
            from gnntrack.simulation.event import run_simulate

            sim_dir = args.keep or workdir
            shard = sim_dir / f"sim_mu{args.mu:g}_seed{args.seed}.root"
            timing: dict = {}
            t0 = time.perf_counter()
            if not shard.exists():
                run_simulate(
                    shard, {"mu": args.mu, "n_events": args.events, "seed": args.seed}, 0, timing=timing
                )
            result["simulation"] = {
                "mu": args.mu,
                "n_events": args.events,
                "seconds": time.perf_counter() - t0,
                "stages": timing,
            }
            inputs = [shard]
        result["root"] = bench_root(list(inputs), cfg, workdir)
        result["root"]["inputs"] = [str(p) for p in inputs]
        if args.trackml is not None:
            result["trackml"] = bench_trackml(args.trackml, cfg, workdir)

    rows = [("root", result["root"])] + ([("trackml", result["trackml"])] if "trackml" in result else [])
    print(f"convert benchmark (compression={cfg.compression}; CPU, shared machine: timings under load)")
    head = (
        f"{'input':8} {'events':>6} {'hits':>9} {'particles':>9} {'edges':>9} {'read s':>8} {'event s':>8} "
    )
    head += f"{'write s':>8} {'total s/ev':>10} {'cpu s/ev':>8} {'MB/ev':>6} {'exact':>6}"
    print(head)
    for name, r in rows:
        print(
            f"{name:8} {r['n_events']:>6} {r['n_hits_mean']:>9.0f} {r['n_particles_mean']:>9.0f} "
            f"{r['n_truth_edges_mean']:>9.0f} {r.get('read_s', float('nan')):>8.3f} "
            f"{r.get('to_event_s', float('nan')):>8.3f} {r.get('write_s', float('nan')):>8.3f} "
            f"{r['run_convert_s']:>10.3f} {r['run_convert_cpu_s']:>8.3f} "
            f"{r.get('output_mb_per_event', float('nan')):>6.1f} {str(r['round_trip_exact']):>6}"
        )
    r = result["root"]
    verdict = {True: "met", False: "NOT met"}
    print(
        f"goal <= {GOAL_S} s/event: wall {r['run_convert_s']:.2f} s ({verdict[r['run_convert_s'] <= GOAL_S]}), "
        f"CPU {r['run_convert_cpu_s']:.2f} s ({verdict[r['run_convert_cpu_s'] <= GOAL_S]})"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {args.json}")
    return 0 if result["root"]["round_trip_exact"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
