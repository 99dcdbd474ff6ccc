"""Time and peak memory of each neighbour-search backend on <mu>=200-sized embeddings.

Points are either a trained embedding of real events (``--model`` + ``--events``) or, by
default, a synthetic stand-in with the structure that matters for the search: ~1e5 points on the
unit sphere in D dimensions, grouped in track-like clusters of ~10 points plus uniform noise, so a
typical point has tens of neighbours within r. Each backend runs in its own process so its peak
memory (RSS on CPU, allocator peak on CUDA) is not polluted by the others; the edge sets of all
backends are compared (they must be identical). Wall and process CPU seconds are both recorded (on a shared machine the
wall time is an upper bound).

    python benchmarks/bench_neighbours.py --n-points 100000 --dim 8 --r 0.1 --k-max 64 \
        --repeats 3 --output results/bench/neighbours.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

BACKENDS = ("brute", "faiss", "grid", "kdtree")


def synthetic_points(
    n: int, dim: int, per_track: int, noise_frac: float, spread: float, seed: int
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n_noise = int(n * noise_frac)
    n_tracks = (n - n_noise) // per_track
    centres = torch.nn.functional.normalize(torch.randn(n_tracks, dim, generator=g), dim=1)
    tracks = centres.repeat_interleave(per_track, 0) + spread * torch.randn(
        n_tracks * per_track, dim, generator=g
    )
    noise = torch.randn(n - n_tracks * per_track, dim, generator=g)
    pts = torch.cat([tracks, noise])
    return torch.nn.functional.normalize(pts, dim=1)[torch.randperm(n, generator=g)]


def embedded_points(model_path: str, events: str, n_events: int, device) -> list[torch.Tensor]:
    from gnntrack.graph_construction.build import EmbeddingBuilder
    from gnntrack.io.event_store import iter_events
    from gnntrack.models import load_model

    builder = EmbeddingBuilder(load_model(model_path, device), device=device)
    out = []
    for i, ev in enumerate(iter_events(events, tables=("hits",))):
        if i >= n_events:
            break
        out.append(builder.embed(ev.hits).cpu())
    return out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(args) -> None:
    """Run one backend on the saved points; print a JSON line."""
    from gnntrack.graph_construction.neighbours import radius_graph, resolve_backend

    device = torch.device(args.device)
    sets = torch.load(args.points, weights_only=True)
    sets = [p.to(device) for p in sets]
    backend = args.worker
    # warm-up (faiss/cuda initialisation) on a small slice
    radius_graph(sets[0][:2000], args.r, args.k_max, backend)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = _rss_mb()
    times, cpu, n_edges, digest = [], [], [], hashlib.sha256()
    for rep in range(args.repeats):
        for pts in sets:
            t0, c0 = time.perf_counter(), time.process_time()
            e = radius_graph(pts, args.r, args.k_max, backend)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            n_edges.append(int(e.shape[1]))
            if rep == 0:
                digest.update(e.cpu().numpy().tobytes())
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _rss_mb() - base
    print(
        json.dumps(
            {
                "backend": backend,
                "resolved": resolve_backend(backend, device),
                "seconds_per_event": sorted(times)[len(times) // 2],
                "seconds_min": min(times),
                "cpu_seconds_per_event": sorted(cpu)[len(cpu) // 2],
                "edges_per_event": sum(n_edges) / len(n_edges),
                "peak_mem_mb": peak,
                "memory_kind": "cuda_max_allocated" if device.type == "cuda" else "rss_increase",
                "edge_digest": digest.hexdigest(),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-points", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--per-track", type=int, default=10)
    ap.add_argument("--noise-frac", type=float, default=0.2)
    ap.add_argument("--spread", type=float, default=0.02)
    ap.add_argument("--n-events", type=int, default=1)
    ap.add_argument("--model", help="embedding model file (with --events): embed real events instead")
    ap.add_argument("--events", help="events HDF5 shard to embed")
    ap.add_argument("--r", type=float, default=0.1)
    ap.add_argument("--k-max", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--output", default="results/bench/neighbours.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--points", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        worker(args)
        return

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.model:
        sets = embedded_points(args.model, args.events, args.n_events, args.device)
        source = {"model": args.model, "events": args.events}
    else:
        sets = [
            synthetic_points(args.n_points, args.dim, args.per_track, args.noise_frac, args.spread, seed)
            for seed in range(args.n_events)
        ]
        source = {
            "synthetic": True,
            "per_track": args.per_track,
            "noise_frac": args.noise_frac,
            "spread": args.spread,
        }
    points_file = out.with_suffix(".points.pt")
    torch.save(sets, points_file)
    rows = []
    try:
        for backend in args.backends.split(","):
            cmd = [sys.executable, __file__, "--worker", backend, "--points", str(points_file)]
            cmd += ["--r", str(args.r), "--k-max", str(args.k_max), "--repeats", str(args.repeats)]
            cmd += ["--device", args.device] + (["--threads", str(args.threads)] if args.threads else [])
            res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if res.returncode != 0:
                rows.append({"backend": backend, "error": res.stderr.strip().splitlines()[-1:]})
                continue
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    finally:
        points_file.unlink(missing_ok=True)
    digests = {r["edge_digest"] for r in rows if "edge_digest" in r}
    result = {
        "n_points": [int(p.shape[0]) for p in sets],
        "dim": int(sets[0].shape[1]),
        "r": args.r,
        "k_max": args.k_max,
        "device": args.device,
        "device_name": torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else platform.processor(),
        "threads": torch.get_num_threads(),
        "source": source,
        "identical_edges": len(digests) == 1,
        "backends": rows,
    }
    out.write_text(json.dumps(result, indent=2))
    print(
        f"| backend | s/event | CPU-s/event | edges/event | peak mem (MB, {rows[0].get('memory_kind', '')}) |"
    )
    print("|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['backend']} | error: {r['error']} | | | |")
        else:
            print(
                f"| {r['backend']} | {r['seconds_per_event']:.3f} | {r['cpu_seconds_per_event']:.3f} "
                f"| {r['edges_per_event']:.0f} | {r['peak_mem_mb']:.0f} |"
            )
    print(f"identical edge sets across backends: {result['identical_edges']}  -> {out}")


if __name__ == "__main__":
    main()
