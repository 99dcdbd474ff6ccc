#!/usr/bin/env python
"""Inference benchmark driver: prepare inputs, run ``gnntrack bench``, profile stages against floors.

    python benchmarks/bench_inference.py prepare --mu 200 --n-train 3 --n-test 3 -o benchmarks/inputs
    python benchmarks/bench_inference.py run --inputs benchmarks/inputs --method module_map -o DIR
    python benchmarks/bench_inference.py profile --inputs benchmarks/inputs --method module_map -o DIR
    python benchmarks/bench_inference.py repack benchmarks/inputs/test_slim.h5 DST --compression none

``prepare`` simulates and converts events with the built-in simulation, builds a module map
from the training events and writes production-size models (the default configs of the
embedding, filter and GNN). When no trained models are at hand (``--models`` not given) the
models are freshly initialised: their *cost* per event is that of trained ones (same shapes, same
graph sizes), their physics is not. So that every stage still sees realistic work, the cuts of
fresh models are calibrated on the first event: the radius gives ``--neighbours`` neighbours per
hit on average, the filter keeps ``--filter-keep`` of the edges and the GNN passes
``--gnn-pass`` of them to track building. The calibration is stored in ``inputs/inference.yaml``
and reported with every table. With trained models (``--models DIR`` holding embedding.pt,
filter.pt, gnn.pt) nothing is calibrated.

``profile`` measures the machine's rates (fp32 matrix-multiply FLOP/s, memory copy bandwidth),
counts each stage's work on one event (FLOPs with ``torch.utils.flop_counter``, bytes from the
tensor sizes) and writes the floor (work / rate) next to the measured time, plus the
``torch.profiler`` operator table of one event.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gnntrack.inference import Pipeline, StageTimer, run_bench  # noqa: E402
from gnntrack.inference.report import format_table  # noqa: E402
from gnntrack.io.event_store import event_keys, read_event  # noqa: E402


# --------------------------------------------------------------------------- prepare
def prepare(args) -> None:
    from gnntrack.conversion.convert import run_convert
    from gnntrack.graph_construction import build_module_map
    from gnntrack.models import FilterModel, InteractionGNN, save_model
    from gnntrack.models.embedding import EmbeddingMLP
    from gnntrack.simulation import run_simulate

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    sim = {"mu": float(args.mu), "seed": args.seed}
    for split, shard, n in (("train", 0, args.n_train), ("test", 1, args.n_test)):
        events = out / f"{split}.h5"
        if events.exists():
            continue
        root = out / f"{split}.root"
        t0 = time.perf_counter()
        run_simulate(root, dict(sim, n_events=n), shard=shard)
        run_convert([root], events, {"compression": "gzip"})
        root.unlink()
        print(f"{split}: {n} events at mu={args.mu} in {time.perf_counter() - t0:.0f} s", flush=True)
    if not (out / "module_map.h5").exists():
        build_module_map([out / "train.h5"]).write(out / "module_map.h5")
    if args.slim:
        slim_events(out / "test.h5", out / "test_slim.h5")
    if args.models:
        for name in ("embedding.pt", "filter.pt", "gnn.pt"):
            shutil.copy(Path(args.models) / name, out / name)
        (out / "inference.yaml").write_text(yaml.safe_dump({"calibrated": False, "inference": {}}))
        return
    torch.manual_seed(args.seed)
    emb = EmbeddingMLP()
    save_model(emb, out / "embedding.pt")
    save_model(FilterModel(), out / "filter.pt")
    save_model(InteractionGNN(), out / "gnn.pt")
    calib = calibrate(out, args)
    (out / "inference.yaml").write_text(yaml.safe_dump({"calibrated": True, **calib}, sort_keys=False))
    print(yaml.safe_dump(calib, sort_keys=False))


def slim_events(src: Path, dst: Path) -> None:
    """A copy of an events shard with only what inference and its efficiency need (hits columns
    of the models and graph builders, particles' is_target, truth links), gzip-compressed, small
    enough to carry to a GPU machine that has no simulation installed."""
    import h5py

    from gnntrack.io.event_store import FORMAT, UNITS, VERSION
    from gnntrack.io.features import DEFAULT_NODE_FEATURES

    keep_hits = {"x", "y", "z", "r", "phi", "eta", "module_id", "hit_id", *DEFAULT_NODE_FEATURES}
    with h5py.File(src) as fi, h5py.File(dst, "w") as fo:
        fo.attrs.update({"format": FORMAT, "version": VERSION, "units": UNITS})
        for key, g in fi["events"].items():
            go = fo.create_group(f"events/{key}")
            go.attrs.update(dict(g.attrs))
            for table in ("hits", "clusters", "particles", "jets"):
                go.create_group(table)
            for c in keep_hits & set(g["hits"]):
                go["hits"].create_dataset(c, data=g["hits"][c][()], compression="gzip", shuffle=True)
            go["particles"].create_dataset(
                "is_target", data=g["particles"]["is_target"][()], compression="gzip"
            )
            for c in ("edges", "edge_particle", "hit_particle"):
                go.create_dataset(f"truth/{c}", data=g["truth"][c][()], compression="gzip", shuffle=True)


def repack(args) -> None:
    """Copy an HDF5 file (events or tracks) with another compression. Reading a <mu>=200 event
    is mostly decompression (gzip ~0.16, lzf ~0.09, none ~0.02 s/event on the 2-core machine),
    so the data-loading row depends on how the events were written: carry gzip, measure what a
    campaign writes (``convert.compression``: lzf by default, null for none)."""
    import h5py

    comp = None if args.compression == "none" else args.compression
    with h5py.File(args.src) as fi, h5py.File(args.dst, "w") as fo:
        fo.attrs.update(dict(fi.attrs))

        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                fo.require_group(name).attrs.update(dict(obj.attrs))
                return
            data = obj[()]
            opts = {"compression": comp} if comp and data.size else {}
            fo.create_dataset(name, data=data, **opts).attrs.update(dict(obj.attrs))

        fi.visititems(copy)
    print(f"{args.src} -> {args.dst} ({args.compression})")


def calibrate(inputs: Path, args) -> dict:
    """Radius and cuts that give fresh models the work of trained ones (see module docstring)."""
    from gnntrack.graph_construction.neighbours import radius_graph

    key = event_keys(inputs / "train.h5")[0]
    ev = read_event(inputs / "train.h5", key, tables=("hits",))
    result = {}
    for method in ("metric_learning", "module_map"):
        pipe = _pipeline(inputs, method, {}, "cpu")
        t = pipe.load(ev.hits, key)
        timer = StageTimer()
        with torch.inference_mode():
            if method == "metric_learning":
                pts = pipe._runners["embedding"](pipe._x(t, pipe.embedding))
                sub = pts[torch.randperm(len(pts))[:2000]]
                d = torch.cdist(sub, pts).topk(args.neighbours + 1, largest=False).values[:, -1]
                r_max = float(d.median())
                pipe.r_max, pipe.k_max = r_max, 4 * args.neighbours
                edges = radius_graph(pts, r_max, 4 * args.neighbours, "grid")
                from gnntrack.graph_construction.geometry import orient_outward

                edges = orient_outward(edges, t.hits)
            else:
                edges = pipe.build_graph(t, timer)
            cfg = {}
            if method == "metric_learning":
                x = pipe._x(t, pipe.filter_model)
                fs = torch.cat(
                    [
                        torch.sigmoid(pipe.filter_model(x, edges[:, s : s + 10**6]))
                        for s in range(0, edges.shape[1], 10**6)
                    ]
                )
                fcut = float(torch.quantile(fs[torch.randperm(len(fs))[: 10**6]], 1 - args.filter_keep))
                edges = edges[:, fs >= fcut]
                cfg.update(r_max=r_max, k_max=4 * args.neighbours, filter_cut=fcut)
            gs = torch.sigmoid(pipe.gnn_model(pipe._x(t, pipe.gnn_model), edges))
            gcut = float(torch.quantile(gs[torch.randperm(len(gs))[: 10**6]], 1 - args.gnn_pass))
            cfg["track_building"] = {"score_cut": gcut}
        result[method] = {"inference": cfg, "n_hits": int(t.n_hits), "n_edges_scored": int(edges.shape[1])}
    return result


def _inference_cfg(inputs: Path, method: str) -> dict:
    data = yaml.safe_load((Path(inputs) / "inference.yaml").read_text()) or {}
    if data.get("calibrated"):
        return dict(data[method]["inference"])
    return dict(data.get("inference") or {})


def _test_events(inputs: Path, events: Path | None = None) -> Path:
    if events is not None:
        return Path(events)
    full = Path(inputs) / "test.h5"
    return full if full.exists() else Path(inputs) / "test_slim.h5"


def _models(inputs: Path, method: str) -> dict:
    inputs = Path(inputs)
    m = {"gnn_model": inputs / "gnn.pt"}
    if method == "module_map":
        m["module_map"] = inputs / "module_map.h5"
    else:
        m["embedding"] = inputs / "embedding.pt"
        m["filter_model"] = inputs / "filter.pt"
    return m


def _pipeline(inputs: Path, method: str, cfg: dict, device) -> Pipeline:
    return Pipeline.from_files(cfg, device=device, **_models(inputs, method))


# --------------------------------------------------------------------------- run
def run(args) -> dict:
    cfg = {"n_events": args.n_events, "warmup": args.warmup}
    if args.variants:
        cfg["variants"] = args.variants.split(",")
    if args.cpu_runtimes:
        cfg["cpu_runtimes"] = args.cpu_runtimes.split(",")
    if args.threads:
        cfg["threads"] = args.threads
    cfg["runtime_probe_events"] = args.probe_events
    inputs = Path(args.inputs)
    res = run_bench(
        [_test_events(inputs, args.events)],
        args.output,
        cfg,
        _inference_cfg(inputs, args.method),
        device=args.device,
        **_models(inputs, args.method),
        own_process=True,  # this script's process: the allocator as gnntrack infer runs
    )
    print(format_table(res))
    return res


# --------------------------------------------------------------------------- profile
def machine_rates(device: torch.device, repeats: int = 5) -> dict:
    """Measured fp32 GEMM FLOP/s and memory copy bandwidth (bytes read + written per second)."""

    def best(fn):
        fn()
        ts = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    n = 2048 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    flops = 2 * n**3 / best(lambda: a @ b)
    # tall-skinny GEMM like the GNN's (E x 384) @ (384 x 128)
    x = torch.randn(200_000, 384, device=device)
    w = torch.randn(384, 128, device=device)
    flops_skinny = 2 * x.shape[0] * 384 * 128 / best(lambda: x @ w)
    big = torch.empty(64 * 2**20, device=device)  # 256 MiB
    dst = torch.empty_like(big)
    bw = 2 * big.numel() * 4 / best(lambda: dst.copy_(big))
    idx = torch.randint(0, 100_000, (2_000_000,), device=device)
    table = torch.randn(100_000, 128, device=device)
    gather_bytes = idx.numel() * 128 * 4 * 2
    gather_bw = gather_bytes / best(lambda: table.index_select(0, idx))
    return {
        "gemm_flops": flops,
        "gemm_skinny_flops": flops_skinny,
        "copy_bytes_per_s": bw,
        "gather_bytes_per_s": gather_bw,
        "threads": torch.get_num_threads(),
    }


def _flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def _per_node_edge_flops(model, edges_model: bool) -> tuple[float, float]:
    """FLOPs per node and per edge of ``model`` (linear in both), from two small random graphs."""
    import copy

    model = copy.deepcopy(model).cpu()
    n = 2000
    x = torch.rand(n, len(model.node_features))
    if not edges_model:
        return _flops(lambda: model(x)) / n, 0.0
    e1 = torch.randint(0, n, (2, 4000))
    e2 = torch.randint(0, n, (2, 12000))
    f1, f2 = _flops(lambda: model(x, e1)), _flops(lambda: model(x, e2))
    per_edge = (f2 - f1) / 8000
    return max(f1 - per_edge * 4000, 0.0) / n, per_edge


def profile(args) -> dict:
    """One event through the pipeline, its per-stage work and the floors from measured rates."""
    from gnntrack.inference.bench import EventSource, _timed_event

    inputs = Path(args.inputs)
    dev = torch.device(
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = _inference_cfg(inputs, args.method)
    cfg.update(neighbour_backend=args.neighbour_backend)
    if args.runtime:
        cfg["runtime"] = args.runtime
    pipe = _pipeline(inputs, args.method, cfg, dev)
    source = EventSource([_test_events(inputs, args.events)], args.n_events, pipe.required_hit_columns())
    for i in range(min(args.warmup, len(source))):
        _timed_event(pipe, source, i)
    runs = [_timed_event(pipe, source, i)[0] for i in range(len(source))]
    measured = {s: float(np.mean([r.timing[s] for r in runs])) for s in runs[0].timing}
    n = float(np.mean([r.n_hits for r in runs]))
    e_built = float(np.mean([r.n_edges["build_edges"] for r in runs]))
    e_kept = float(np.mean([r.n_edges["filtering"] for r in runs]))
    n_pass = float(np.mean([r.n_edges["gnn"] for r in runs]))
    n_gnn = float(np.mean([torch.unique(r.edge_index).numel() for r in runs]))  # hits the GNN runs on

    import h5py

    path, key = source.items[0]
    with h5py.File(path) as f:
        g = f[f"events/{key}/hits"]
        wanted = source.columns["hits"] if source.columns else list(g)
        raw = sum(g[c].dtype.itemsize * g[c].shape[0] for c in g if c in wanted)
    n_feat = len(pipe.gnn_model.node_features)
    work = {
        "data_loading": {
            "bytes": 2 * raw + 2 * 4 * n * n_feat,
            "note": "decompressed hit columns written + read, feature matrix written + read",
        }
    }
    with torch.inference_mode():
        if pipe.embedding is not None:
            fn, _ = _per_node_edge_flops(pipe.embedding, False)
            work["embedding"] = {"flops": fn * n}
        if args.method == "metric_learning":
            d = pipe.embedding.emb_dim
            work["build_edges"] = {
                "flops": 3 * d * 4 * e_built,
                "bytes": 4 * e_built * (2 * 8 + 2 * d * 4) + 3 * 16 * e_built,
                "note": "~4 candidate pairs per edge: gather 2 points, distance; 3 sorts of the kept pairs",
            }
        else:
            mm = pipe.module_map
            ev = source.read_hits(0)
            mod = torch.from_numpy(ev.hits["module_id"].view(np.int64)).to(mm.modules.device)
            pos = torch.searchsorted(mm.modules, mod).clamp(max=mm.modules.numel() - 1)
            on = mm.modules[pos] == mod
            cnt = torch.bincount(pos[on], minlength=mm.modules.numel())
            cand = float((cnt[mm.pair_src] * cnt[mm.pair_dst]).sum())
            work["build_edges"] = {
                "flops": 40 * cand,
                "bytes": cand * (2 * 8 + 2 * 4 * 4 + 5 * 4 * 3),
                "candidates": cand,
                "note": "every candidate doublet: 2 indices, 2x4 coordinates, 5 quantities vs 10 bounds",
            }
        if pipe.filter_model is not None:
            fn, fe = _per_node_edge_flops(pipe.filter_model, True)
            work["filtering"] = {"flops": fn * n + fe * e_built}
        fn, fe = _per_node_edge_flops(pipe.gnn_model, True)
        h = pipe.gnn_model.config["hidden"]
        iters = pipe.gnn_model.config["n_graph_iters"]
        work["gnn"] = {
            "flops": fn * n_gnn + fe * e_kept,
            "bytes": iters * e_kept * h * 4 * 12,
            "note": "bytes: per iteration ~12 E x H float32 reads/writes (gathers, scatters, MLP I/O)",
        }
    work["labelling"] = {
        "bytes": e_kept * (4 + 16) + n_pass * 16 * 3 + n * 8 * 4,
        "note": "score cut, CSR build, union-find over the passing edges",
    }
    rates = machine_rates(dev)
    floors = {}
    for stage, w in work.items():
        f = w.get("flops", 0) / rates["gemm_flops"]
        b = w.get("bytes", 0) / rates["copy_bytes_per_s"]
        fl = {"floor_s": max(f, b), "bound": "compute" if f >= b else "memory", **w}
        fl["measured_s"] = measured.get(stage, 0.0)
        fl["ratio"] = fl["measured_s"] / fl["floor_s"] if fl["floor_s"] else None
        floors[stage] = fl

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if args.ops:  # operator table of one more event (torch.profiler)
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as tprofile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        with tprofile(activities=acts) as prof:
            _timed_event(pipe, source, 0)
        sort = "cuda_time_total" if dev.type == "cuda" else "cpu_time_total"
        (out / "operators.txt").write_text(prof.key_averages().table(sort_by=sort, row_limit=30))
    result = {
        "method": args.method,
        "device": str(dev),
        "n_events": len(runs),
        "n_hits": n,
        "n_gnn_hits": n_gnn,
        "edges": {"built": e_built, "kept": e_kept, "passing": n_pass},
        "rates": rates,
        "measured_mean_s": measured,
        "stages": floors,
        "config": cfg,
    }
    (out / "profile.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"{args.method} on {dev} ({rates['threads']} threads): {n:.0f} hits, {e_built:.0f} built / "
        f"{e_kept:.0f} scored / {n_pass:.0f} passing edges per event ({len(runs)} events); measured rates: "
        f"GEMM {rates['gemm_flops'] / 1e9:.0f} GFLOP/s, copy {rates['copy_bytes_per_s'] / 1e9:.1f} GB/s",
        "",
        "| Stage | measured s | floor s | bound | measured / floor | work |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for stage, fl in floors.items():
        wk = ", ".join(f"{k}={v:.3g}" for k, v in fl.items() if k in ("flops", "bytes", "candidates"))
        ratio = f"{fl['ratio']:.1f}" if fl["ratio"] else "–"
        lines.append(
            f"| {stage} | {fl['measured_s']:.3f} | {fl['floor_s']:.4f} | {fl['bound']} | {ratio} | {wk} |"
        )
    text = "\n".join(lines) + "\n"
    (out / "profile.md").write_text(text)
    print(text)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("repack", help="copy an HDF5 file with another compression")
    r.add_argument("src", type=Path)
    r.add_argument("dst", type=Path)
    r.add_argument("--compression", choices=("none", "lzf", "gzip"), default="none")
    a = sub.add_parser("prepare")
    a.add_argument("--mu", type=float, default=200.0)
    a.add_argument("--n-train", type=int, default=3)
    a.add_argument("--n-test", type=int, default=3)
    a.add_argument("--seed", type=int, default=2024)
    a.add_argument("--models", type=Path, help="folder with trained embedding.pt, filter.pt, gnn.pt")
    a.add_argument("--slim", action="store_true", help="also write test_slim.h5 (to carry to a GPU)")
    a.add_argument("--neighbours", type=int, default=16, help="fresh embedding: mean neighbours per hit")
    a.add_argument("--filter-keep", type=float, default=0.3, help="fresh filter: fraction of edges kept")
    a.add_argument("--gnn-pass", type=float, default=0.5, help="fresh GNN: fraction of edges passing")
    a.add_argument("-o", "--output", type=Path, default=ROOT / "benchmarks" / "inputs")
    for name in ("run", "profile"):
        b = sub.add_parser(name)
        b.add_argument("--inputs", type=Path, default=ROOT / "benchmarks" / "inputs")
        b.add_argument("--method", choices=("module_map", "metric_learning"), default="module_map")
        b.add_argument(
            "--events", type=Path, help="test events (default: test.h5 or test_slim.h5 in --inputs)"
        )
        b.add_argument("--n-events", type=int, default=3)
        b.add_argument("--device", default="auto")
        b.add_argument("--threads", type=int)
        b.add_argument("-o", "--output", type=Path, required=True)
        if name == "run":
            b.add_argument("--warmup", type=int, default=1)
            b.add_argument("--variants")
            b.add_argument("--cpu-runtimes")
            b.add_argument("--probe-events", type=int, default=1, help="events timing each CPU runtime")
        else:
            b.add_argument("--runtime", choices=("eager", "torchscript", "onnx", "compile"))
            b.add_argument("--neighbour-backend", default="grid", choices=("brute", "faiss", "grid"))
            b.add_argument("--warmup", type=int, default=0)
            b.add_argument("--ops", action="store_true", help="also write the torch.profiler operator table")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    {"prepare": prepare, "run": run, "profile": profile, "repack": repack}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
