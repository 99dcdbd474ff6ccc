"""Benchmark + validation of the built-in simulation at a given pile-up.

Times generation (Pythia), propagation, digitisation and ROOT writing per event on one core,
and prints the physics numbers the simulation must reach (issue 2): particles leaving hits,
spacepoints, target particles, spacepoints per target particle vs eta.

    python benchmarks/bench_simulation.py --mu 200 --events 3 --out benchmarks/simulation.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from gnntrack.io.root_writer import write_gnn4itk
from gnntrack.simulation import SimulationConfig, event_seed, get_geometry, simulate_event
from gnntrack.simulation.event import init_generators
from gnntrack.simulation.summary import ETA_BINS, event_summary

PHASES = ["generation", "propagation", "digitisation", "writing"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mu", type=float, default=200.0)
    ap.add_argument("--events", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--detector", default="config/detector/itk_like.yaml")
    ap.add_argument("--mpi-cache", default=None, help="file prefix to cache Pythia's MPI init tables")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    cfg = SimulationConfig(mu=args.mu, seed=args.seed, detector=args.detector, mpi_cache=args.mpi_cache)
    t0 = time.perf_counter()
    geo = get_geometry(cfg.detector)
    init_generators(cfg)  # both Pythia instances, kept alive for all events
    t_init = time.perf_counter() - t0

    rows, summaries = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.events):
            timing: dict = {}
            ev = simulate_event(cfg, geo, 0, i, event_seed(cfg.seed, i), timing=timing)
            t, c = time.perf_counter(), time.process_time()
            write_gnn4itk(Path(tmp) / f"ev{i}.root", [ev])
            timing["writing"] = time.perf_counter() - t
            timing["cpu_writing"] = time.process_time() - c
            timing["total"] = sum(timing[k] for k in PHASES)
            timing["cpu_total"] = sum(timing[f"cpu_{k}"] for k in PHASES)
            rows.append(timing)
            summaries.append(event_summary(ev))

    phases = [*PHASES, "total"]
    mean_t = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    keys = [
        "n_particles_with_hits",
        "n_spacepoints",
        "n_strip_spacepoints",
        "n_true_spacepoints",
        "n_clusters",
        "n_merged_clusters",
        "n_noise_clusters",
        "n_secondaries",
        "n_target",
        "sp_per_target_central",
        "n_jets",
    ]
    per_eta = np.nanmean(np.array([s["sp_per_target_vs_eta"] for s in summaries]), axis=0)

    print(f"\nsimulation benchmark: <mu> = {args.mu}, {args.events} events, one core")
    print(f"geometry + Pythia initialisation: {t_init:.1f} s (once per process)\n")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; wall / CPU seconds per event")
    print(f"{'event':>6} " + " ".join(f"{k:>17}" for k in phases))
    for i, r in enumerate([*rows, mean_t]):
        label = "mean" if i == len(rows) else str(i)
        print(f"{label:>6} " + " ".join(f"{r[k]:>7.2f} / {r['cpu_' + k]:>6.2f}s" for k in phases))
    print()
    for k in keys:
        vals = [s[k] for s in summaries]
        print(f"{k:>24}: " + "  ".join(f"{v:>9.1f}" if isinstance(v, float) else f"{v:>9d}" for v in vals))
    print("\nspacepoints per target particle vs eta (mean over events)")
    for lo, hi, v in zip(ETA_BINS[:-1], ETA_BINS[1:], per_eta):
        print(f"  eta [{lo:+.1f}, {hi:+.1f}): {v:5.2f}")

    result = {
        "mu": args.mu,
        "events": args.events,
        "seed": args.seed,
        "detector": args.detector,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()},
        "init_seconds": t_init,
        "seconds_per_event": rows,
        "mean_seconds": mean_t,
        "events_summary": summaries,
        "eta_bins": ETA_BINS.tolist(),
        "sp_per_target_vs_eta": [None if np.isnan(v) else float(v) for v in per_eta],
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
