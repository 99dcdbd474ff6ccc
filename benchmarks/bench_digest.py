"""Cost of the content digests: hash speed, and reading/writing events and graph files with and
without verification.

    PYTHONPATH=src python benchmarks/bench_digest.py [--hits 60000] [--events 3] [--edges 700000]
        [--repeat 3] [--out benchmarks/digest.json]

Events are synthetic (tests/synthetic.py helices plus noise) at the size of an <mu>=200-like
event's spacepoint count given by ``--hits``, written with the convert default (lzf); graphs
have ``--edges`` random edges per event with one score column. "unverified" reads the same
files through the same reader with checking switched off, so the difference is the digest
cost. Prints a table and writes JSON including the machine it ran on.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synthetic import make_event  # noqa: E402

from gnntrack.device import cpu_name  # noqa: E402
from gnntrack.io import event_store, graph_store, hdf5  # noqa: E402
from gnntrack.io.graph_store import Graph, read_graphs, write_graphs  # noqa: E402
from gnntrack.models import InteractionGNN, load_model, registry, save_model  # noqa: E402

#: what inference reads of an event (the module map's geometry columns)
PARTIAL = {"hits": ["x", "y", "z", "r", "phi", "eta", "module_id"]}


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


@contextlib.contextmanager
def _unverified():
    """Readers with checking off (what files without digests cost to read)."""
    saved = {m: m.open_verified for m in (event_store, graph_store)}
    saved_digest = registry._stored_digest
    for m in saved:
        m.open_verified = functools.partial(hdf5.open_verified, verify=False)
    registry._stored_digest = lambda path: None
    try:
        yield
    finally:
        for m, f in saved.items():
            m.open_verified = f
        registry._stored_digest = saved_digest


@contextlib.contextmanager
def _no_hashing():
    """Writers with the SHA-256 of dataset values replaced by a constant (hashing cost at write)."""
    saved = hdf5.array_digest
    hdf5.array_digest = lambda a: ""
    try:
        yield
    finally:
        hdf5.array_digest = saved


def _machine() -> dict:
    cpu = cpu_name()
    return {
        "cpu": cpu,
        "cores_visible": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "numpy": np.__version__,
        "torch": torch.__version__,
        "openssl": __import__("ssl").OPENSSL_VERSION,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hits", type=int, default=60000, help="spacepoints per event (approx.)")
    ap.add_argument("--events", type=int, default=3)
    ap.add_argument("--edges", type=int, default=700000, help="graph edges per event")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("digest.json"))
    args = ap.parse_args(argv)

    rows = []
    buf = np.random.default_rng(0).integers(0, 255, 64 << 20, dtype=np.uint8)
    for name in ("sha256", "blake2b"):
        dt = _best(lambda n=name: hashlib.new(n, buf).digest(), args.repeat)
        rows.append({"what": f"hash {name}", "MB/s": round(buf.nbytes / dt / 1e6)})

    n_particles = max(1, int(args.hits * 0.8 / 6.5))
    events = [
        make_event(n_particles=n_particles, n_noise=args.hits // 5, seed=i, event_number=i, eta_max=2.5)
        for i in range(args.events)
    ]
    rng = np.random.default_rng(1)
    graphs = []
    for ev in events:
        ei = rng.integers(0, ev.n_hits, (2, args.edges))
        e = args.edges
        graphs.append(
            Graph(ev.key, ev.n_hits, ei, rng.random(e) < 0.1, rng.random(e) < 0.05, np.full(e, -1),
                  {"gnn": rng.random(e, dtype=np.float32)})
        )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ev_path, gr_path, model_path = tmp / "events.h5", tmp / "graphs.h5", tmp / "gnn.pt"
        t_write = _best(lambda: event_store.write_events(ev_path, events, compression="lzf"), args.repeat)
        with _no_hashing():
            t_write_nohash = _best(
                lambda: event_store.write_events(tmp / "x.h5", events, compression="lzf"), args.repeat
            )
        g_write = _best(lambda: write_graphs(gr_path, graphs, stage="bench"), args.repeat)
        with _no_hashing():
            g_write_nohash = _best(lambda: write_graphs(tmp / "y.h5", graphs, stage="bench"), args.repeat)
        save_model(InteractionGNN(hidden=128, n_graph_iters=8), model_path)

        def reads():
            return {
                "events: full read": lambda: event_store.read_events(ev_path),
                "events: inference columns": lambda: event_store.read_events(
                    ev_path, tables=("hits",), columns=PARTIAL, truth=False
                ),
                "events: one event, one column": lambda: event_store.read_event(
                    ev_path, events[-1].key, tables=("hits",), columns={"hits": ["r"]}, truth=False
                ),
                "graphs: full read": lambda: read_graphs(gr_path),
                "model: load (IGNN h128 x8)": lambda: load_model(model_path),
            }

        verified = {k: _best(f, args.repeat) for k, f in reads().items()}
        with _unverified():
            unverified = {k: _best(f, args.repeat) for k, f in reads().items()}
        sizes = {
            "events": ev_path.stat().st_size,
            "graphs": gr_path.stat().st_size,
            "model": model_path.stat().st_size,
        }

    for what, v in verified.items():
        u = unverified[what]
        rows.append({"what": what, "verified_s": v, "unverified_s": u, "overhead_pct": 100 * (v - u) / u})
    rows.append({"what": "events: write (lzf)", "verified_s": t_write, "unverified_s": t_write_nohash,
                 "overhead_pct": 100 * (t_write - t_write_nohash) / t_write_nohash})  # fmt: skip
    rows.append({"what": "graphs: write", "verified_s": g_write, "unverified_s": g_write_nohash,
                 "overhead_pct": 100 * (g_write - g_write_nohash) / g_write_nohash})  # fmt: skip

    result = {
        "machine": _machine(),
        "setup": {
            "events": args.events,
            "hits_per_event": [int(ev.n_hits) for ev in events],
            "edges_per_event": args.edges,
            "file_bytes": sizes,
            "repeat": args.repeat,
            "timing": "best of repeat, seconds",
            "write columns": "'unverified_s' = same writer with dataset hashing replaced by a constant",
        },
        "rows": rows,
    }
    m = result["machine"]
    print(f"machine: {m['cpu']}, {m['cores_visible']} cores visible; h5py {m['h5py']} / HDF5 {m['hdf5']}")
    print(f"{args.events} events x ~{int(np.mean(result['setup']['hits_per_event']))} hits, "
          f"{args.edges} edges/event; files {sizes}")  # fmt: skip
    print(f"{'what':34s} {'verified s':>11s} {'unverified s':>13s} {'overhead':>9s}")
    for r in rows:
        if "MB/s" in r:
            print(f"{r['what']:34s} {r['MB/s']:>11d} MB/s")
        else:
            print(
                f"{r['what']:34s} {r['verified_s']:11.4f} {r['unverified_s']:13.4f} {r['overhead_pct']:8.1f}%"
            )
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
