#!/usr/bin/env python
"""Data-parallel GNN training: time per optimiser step and items/s on 1, 2, ... ranks.

    python benchmarks/bench_ddp.py --ranks 1 2 -o DIR                         # CPU, gloo
    python benchmarks/bench_ddp.py --device cuda --ranks 1 2 4 8 --preset gpu -o DIR   # one GPU per rank, NCCL

Every rank count trains the same interaction GNN (``gnntrack.models.InteractionGNN``) on the same
synthetic graphs (random node features, random edges, a random half true; sized by the preset or
``--nodes``/``--edges``) through the shared training loop (``gnntrack.training.Trainer``), started
as the workflow starts them (``gnntrack.training.distributed.launch``: local processes; inside a
SLURM allocation an ``srun`` step). The global batch is the same for every rank count
(``--batch-items``, default the largest rank count), so each rank computes
``batch_items / ranks`` items per step: this is strong scaling of one training run. The first
``--warmup`` epochs are not timed; the time of an epoch is rank 0's wall time of ``train_epoch``
(the ranks step together, so it is the job's). ``DIR/ddp.json`` holds every epoch's time and the
settings; the table (ranks, steps, s/step, items/s, speed-up over the first rank count) is
printed and written to ``DIR/ddp.md``.

``--threads`` is per rank (``torch.set_num_threads``); on a CPU, 1 rank x 2 threads against
2 ranks x 1 thread compares the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gnntrack.edge_classification.data import GraphItem  # noqa: E402
from gnntrack.edge_classification.task import EdgeClassifierTask  # noqa: E402
from gnntrack.models import InteractionGNN  # noqa: E402
from gnntrack.training import TrainConfig  # noqa: E402
from gnntrack.training.distributed import launch, rank_and_size  # noqa: E402
from gnntrack.training.loop import Trainer  # noqa: E402

PRESETS = {
    # small graphs: a CPU steps through a few per second
    "cpu": {"nodes": 2000, "edges": 20000, "hidden": 64, "iters": 4},
    # about one <mu> = 200 event after module-map graph building and filtering
    "gpu": {"nodes": 300000, "edges": 1500000, "hidden": 128, "iters": 8},
}


def synthetic_items(
    n_items: int, n_nodes: int, n_edges: int, n_features: int, seed: int = 0
) -> list[GraphItem]:
    gen = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n_items):
        y = (torch.rand(n_edges, generator=gen) < 0.5).float()
        items.append(
            GraphItem(
                key=f"synthetic/{i}",
                x=torch.randn(n_nodes, n_features, generator=gen),
                edge_index=torch.randint(0, n_nodes, (2, n_edges), generator=gen),
                y=y,
                y_target=y > 0.5,
                weight=torch.ones(n_edges),
            )
        )
    return items


def train_rank(output: str, settings: dict, report: str) -> None:
    """One rank's part: build the same model and items as every rank, time each epoch."""
    rank, size = rank_and_size()
    torch.manual_seed(0)
    model = InteractionGNN(hidden=settings["hidden"], n_graph_iters=settings["iters"])
    items = synthetic_items(settings["items"], settings["nodes"], settings["edges"], len(model.node_features))
    cfg = TrainConfig(
        epochs=settings["epochs"],
        batch_items=settings["batch_items"],
        progress="off",
        resume=False,
        precision="fp32",
    )
    trainer = Trainer(EdgeClassifierTask(model), items, [], cfg, output, device=settings["device"])
    trainer.restore()
    times = []
    with trainer:
        while not trainer.done:
            if trainer.device.type == "cuda":
                torch.cuda.synchronize(trainer.device)
            t0 = time.perf_counter()
            train = trainer.train_epoch()
            if trainer.device.type == "cuda":
                torch.cuda.synchronize(trainer.device)
            times.append(time.perf_counter() - t0)
            trainer.end_epoch(train, {})
    if rank == 0:
        Path(report).write_text(
            json.dumps(
                {
                    "ranks": size,
                    "epoch_s": times,
                    "steps_per_epoch": trainer.steps_per_epoch,
                    "device": str(trainer.device),
                    "threads": torch.get_num_threads(),
                }
            )
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--nodes", type=int, help="nodes per graph (default: the preset's)")
    ap.add_argument("--edges", type=int, help="edges per graph (default: the preset's)")
    ap.add_argument("--hidden", type=int)
    ap.add_argument("--iters", type=int, help="message-passing iterations")
    ap.add_argument("--items", type=int, default=16, help="training graphs (an epoch visits each once)")
    ap.add_argument("--batch-items", type=int, help="global batch (default: the largest rank count)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="epochs not timed")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per rank")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per rank)")
    ap.add_argument("--backend", default="auto", choices=["auto", "gloo", "nccl"])
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args(argv)
    settings = {**PRESETS[args.preset]}
    for key in ("nodes", "edges", "hidden", "iters"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    batch = args.batch_items or max(args.ranks)
    settings.update(items=args.items, batch_items=batch, epochs=args.epochs, device=args.device)
    if args.warmup >= args.epochs:
        raise SystemExit("--warmup must leave at least one timed epoch")
    args.out.mkdir(parents=True, exist_ok=True)
    # the ranks import this file by name
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
    )
    torch.set_num_threads(args.threads)
    rows = []
    for ranks in args.ranks:
        report = args.out / f"ranks{ranks}.json"
        kwargs = {
            "output": str(args.out / f"model_ranks{ranks}.pt"),
            "settings": settings,
            "report": str(report),
        }
        launch(
            "bench_ddp:train_rank",
            kwargs,
            {"ranks": ranks, "backend": args.backend},
            threads=args.threads,
            call_dir=args.out,
        )
        result = json.loads(report.read_text())
        timed = result["epoch_s"][args.warmup :]
        per_epoch = sum(timed) / len(timed)
        steps = result["steps_per_epoch"]
        rows.append(
            {
                "ranks": ranks,
                "threads_per_rank": result["threads"],
                "device": result["device"],
                "steps_per_epoch": steps,
                "items_per_epoch": min(args.items, steps * batch),
                "s_per_epoch": per_epoch,
                "s_per_step": per_epoch / steps,
                "items_per_s": min(args.items, steps * batch) / per_epoch,
                "epoch_s": result["epoch_s"],
            }
        )
    base = rows[0]["items_per_s"]
    for row in rows:
        row["speedup"] = row["items_per_s"] / base
    lines = [
        f"graphs: {settings['nodes']} nodes, {settings['edges']} edges; GNN hidden {settings['hidden']}, "
        f"{settings['iters']} iterations; {args.items} graphs per epoch, global batch {batch}; "
        f"{args.epochs - args.warmup} timed epoch(s) after {args.warmup} warm-up",
        "",
        "| ranks | threads/rank | device | steps/epoch | s/step | items/s | speed-up |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['ranks']} | {r['threads_per_rank']} | {r['device']} | {r['steps_per_epoch']} | "
            f"{r['s_per_step']:.3f} | {r['items_per_s']:.2f} | {r['speedup']:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    (args.out / "ddp.md").write_text(table + "\n")
    meta = {
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "command": " ".join(sys.argv),
        "settings": settings,
        "rows": rows,
    }
    (args.out / "ddp.json").write_text(json.dumps(meta, indent=1))
    for ranks in args.ranks:
        for suffix in ("", ".last", ".best", ".metrics.csv"):
            (args.out / f"model_ranks{ranks}.pt{suffix}").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
