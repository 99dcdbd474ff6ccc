#!/usr/bin/env python
"""GNN training throughput and learning curve on the same events, on any device.

    python benchmarks/bench_gnn_training.py --events EVENTS.h5 --module-map MAP.h5 \
        --epochs 40 --device cuda -o DIR

Splits the events file (the last ``--n-val`` events validate), builds module-map graphs, trains
the campaign's GNN (``gnn`` section of ``--config``, epochs overridden) through the shared
training loop and writes ``DIR/training.json`` + ``DIR/training.md``: seconds per epoch and the
validation efficiency / masked purity / AUC after every epoch. Run with ``--epochs 1`` on a CPU
and with many epochs on a GPU, on the same events, it answers two questions of the edge
classifier: how much faster a GPU trains it, and whether its efficiency is limited by training
time (the curve keeps rising) or by the model (it saturates). ``--time-limit`` stops starting
new epochs after that many seconds (the per-epoch metrics log is kept either way).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import h5py
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gnntrack.gnn import run_train_gnn  # noqa: E402
from gnntrack.graph_construction import run_build_graphs  # noqa: E402
from gnntrack.graph_construction.module_map import ModuleMap  # noqa: E402


def split_events(src: Path, out: Path, n_val: int) -> tuple[Path, Path]:
    """Copy the events of ``src`` into train.h5 / val.h5 (last ``n_val`` events validate)."""
    train, val = out / "train_events.h5", out / "val_events.h5"
    with h5py.File(src) as fi:
        keys = list(fi["events"])
        if len(keys) <= n_val:
            sys.exit(f"{src}: {len(keys)} events, need more than --n-val {n_val}")
        for dst, ks in ((train, keys[:-n_val]), (val, keys[-n_val:])):
            with h5py.File(dst, "w") as fo:
                fo.attrs.update(dict(fi.attrs))
                for k in ks:
                    fi.copy(fi[f"events/{k}"], fo.require_group("events"), name=k)
    return train, val


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=Path, required=True)
    p.add_argument("--module-map", type=Path, required=True)
    p.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    p.add_argument("--n-val", type=int, default=1)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--time-limit", type=float, help="seconds after which no new epoch starts")
    p.add_argument("--device", default="auto")
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args(argv)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")

    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    train_ev, val_ev = split_events(args.events, out, args.n_val)
    mm = ModuleMap.load(args.module_map, device)
    t0 = time.perf_counter()
    for ev in (train_ev, val_ev):
        run_build_graphs(
            ev, ev.with_name(ev.stem + "_graphs.h5"), {"method": "module_map"}, module_map=mm, device=device
        )
    t_graphs = time.perf_counter() - t0

    cfg = dict((yaml.safe_load(args.config.read_text()) or {}).get("gnn") or {})
    cfg["train"] = dict(cfg.get("train") or {}, epochs=args.epochs, progress="off", resume=False)
    model_path = out / "gnn.pt"
    for f in out.glob("gnn.pt*"):
        f.unlink()
    deadline = None if args.time_limit is None else time.perf_counter() + args.time_limit
    if deadline is not None:  # stop between epochs once the budget is spent
        cfg["train"]["early_stopping_patience"] = None
    t0 = time.perf_counter()
    summary = _train_with_deadline(train_ev, val_ev, model_path, cfg, device, deadline)
    wall = time.perf_counter() - t0

    with open(f"{model_path}.metrics.csv") as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    result = {
        "device": device_name(device),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "events": str(args.events),
        "module_map": str(args.module_map),
        "gnn_config": cfg,
        "graph_building_s": t_graphs,
        "train_wall_s": wall,
        "epochs_run": len(rows),
        "s_per_epoch": [r["time_s"] for r in rows],
        "curve": rows,
        "summary": {k: v for k, v in summary.items() if isinstance(v, (int, float, str))},
    }
    (out / "training.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"GNN training on {result['device']}, {result['date']}: {args.events.name} "
        f"(last {args.n_val} event(s) validate), map {args.module_map.name}, "
        f"hidden {cfg.get('hidden')} x {cfg.get('n_graph_iters')} iterations",
        "",
        "| epoch | s/epoch | train loss | val loss | val eff @cut | val masked purity | val AUC | val masked AUC |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {int(r['epoch'])} | {r['time_s']:.2f} | {r['train_loss']:.4f} | {r['val_loss']:.4f} | "
            f"{r['val_efficiency']:.4f} | {r['val_masked_purity']:.4f} | {r['val_auc']:.4f} | "
            f"{r['val_masked_auc']:.4f} |"
        )
    (out / "training.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _train_with_deadline(train_ev, val_ev, model_path, cfg, device, deadline):
    """``run_train_gnn``, epoch by epoch via resume, until the epochs or the deadline run out."""
    if deadline is None:
        return run_train_gnn(
            [train_ev], [train_ev.with_name(train_ev.stem + "_graphs.h5")],
            [val_ev], [val_ev.with_name(val_ev.stem + "_graphs.h5")], model_path, cfg, device,
        )  # fmt: skip
    total = cfg["train"]["epochs"]
    summary: dict = {}
    for epoch in range(1, total + 1):
        if time.perf_counter() >= deadline:
            break
        step = dict(cfg, train=dict(cfg["train"], epochs=epoch, resume=True))
        summary = run_train_gnn(
            [train_ev], [train_ev.with_name(train_ev.stem + "_graphs.h5")],
            [val_ev], [val_ev.with_name(val_ev.stem + "_graphs.h5")], model_path, step, device,
        )  # fmt: skip
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
