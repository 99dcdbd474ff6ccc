"""Prototype: the edge filter with one round of message passing before its cut (issue #16).

Question: a filter that scores one edge at a time plateaus at ~0.984 of the target edges at 150 k
edges per <mu> = 200 event on the metric-learning graphs (benchmarks/filter_focal_20261204). Does
one round of neighbourhood context close the gap to the goal (0.985)?

Model (``ContextFilter``): the trained filter (``FilterModel``) gives each edge a latent (its
last hidden layer) and a logit; each hit sums the latents of its outgoing and of its incoming
edges, each weighted by the edge's own filter probability (so the many fakes say little); a node
MLP turns the two sums into a context vector; a pair MLP on (context of the source, context of the
target, edge latent) gives a correction added to the filter's logit. The correction's last layer
starts at zero, so training starts from the filter exactly. Everything is trained (the filter's
weights too), on the campaign's 4 x 4 eta-phi regions, whole regions per step (the context needs
all the edges around a hit, not a random subset), through the project's training loop.

Evaluation: whole events (no chunking), target-edge efficiency at fixed edge budgets per event
(one cut over all events, as ``bench_edge_filter.py --edge-budgets``), for the starting filter and
the context filter on the same events, with the scoring time per event.

    PYTHONPATH=src python benchmarks/filter_context_20261204/context_filter.py train \
        --campaign results/physics_mu200_ml --base results/physics_mu200_ml/models/filter.pt \
        --epochs 3 -o benchmarks/tmp/ctx/context.pt
    PYTHONPATH=src python benchmarks/filter_context_20261204/context_filter.py evaluate \
        --campaign results/physics_mu200_ml --base results/physics_mu200_ml/models/filter.pt \
        --model benchmarks/tmp/ctx/context.pt --shard test/5 --json OUT.json

Not part of the library: a prototype to measure whether the idea pays before it is built into
``gnntrack.models.filter`` (export, int8, pruning and the inference chain's chunked scoring would
all need it).
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_edge_filter import budget_cut  # noqa: E402

from gnntrack.config import from_dict  # noqa: E402
from gnntrack.edge_classification.data import load_items  # noqa: E402
from gnntrack.edge_classification.regions import RegionConfig  # noqa: E402
from gnntrack.edge_classification.task import EdgeClassifierTask  # noqa: E402
from gnntrack.io.event_store import iter_events  # noqa: E402
from gnntrack.metrics import truth_target_edges  # noqa: E402
from gnntrack.models import load_model  # noqa: E402
from gnntrack.models.losses import LossConfig  # noqa: E402
from gnntrack.models.mlp import PairMLP, make_mlp  # noqa: E402
from gnntrack.models.registry import load_checkpoint, register_model  # noqa: E402
from gnntrack.training.config import TrainConfig  # noqa: E402
from gnntrack.training.loop import fit  # noqa: E402


class ContextFilter(nn.Module):
    """``base`` filter logit + a correction from one round of score-weighted message passing."""

    def __init__(self, base: nn.Module, hidden: int = 64):
        super().__init__()
        self.base = base
        width = base.net[-1].in_features  # the filter's last hidden width
        self.node_net = make_mlp(2 * width, hidden, hidden, 2)
        self.corr = PairMLP(*make_mlp(2 * hidden + width, hidden, 1, 2))
        last = self.corr[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        # what the project's data and loop read from a model
        self.node_features = base.node_features
        self.feature_scales = base.feature_scales
        self.config = {"base": dict(base.config), "hidden": hidden}

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        b = self.base
        src, dst = edge_index
        xn = b.encoder_input(x)
        h = torch.cat([xn[src], xn[dst], b.edge_feats(x, edge_index)], dim=1)
        lat = b.net[:-1](h)
        logit = b.net[-1](lat).squeeze(-1)
        msg = lat * torch.sigmoid(logit).unsqueeze(-1)
        n = x.shape[0]
        out_sum = torch.zeros(n, lat.shape[1], dtype=lat.dtype, device=lat.device).index_add_(0, src, msg)
        in_sum = torch.zeros(n, lat.shape[1], dtype=lat.dtype, device=lat.device).index_add_(0, dst, msg)
        ctx = self.node_net(torch.cat([out_sum, in_sum], dim=1))
        return logit + self.corr.pairs(ctx, src, dst, lat).squeeze(-1)


register_model(ContextFilter)


def shard_files(campaign: Path, kind: str, split: str) -> list[str]:
    return sorted(glob.glob(str(campaign / kind / split / "*.h5")))


def train(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    base = load_model(args.base, "cpu")
    model = ContextFilter(base, args.hidden)
    loss = LossConfig()
    regions = RegionConfig(n_eta=4, n_phi=4)
    t0 = time.perf_counter()
    train_items = load_items(
        shard_files(args.campaign, "events", "train"), shard_files(args.campaign, "graphs", "train"),
        model.node_features, model.feature_scales, loss, regions,
    )  # fmt: skip
    val_items = load_items(
        shard_files(args.campaign, "events", "val"), shard_files(args.campaign, "graphs", "val"),
        model.node_features, model.feature_scales, loss, None, args.val_events,
    )  # fmt: skip
    print(
        f"{len(train_items)} training items, {len(val_items)} validation events ({time.perf_counter() - t0:.0f} s)"
    )
    task = EdgeClassifierTask(model, score_cut=0.1, max_edges_per_step=None, eval_chunk_size=None)
    cfg = from_dict(
        TrainConfig,
        {"epochs": args.epochs, "lr": args.lr, "scheduler": "cosine", "warmup_epochs": 0.05, "min_lr": 1e-4},
        "train",
    )
    summary = fit(task, train_items, val_items, cfg, args.output, "cpu")
    print(json.dumps({k: summary[k] for k in summary if k != "history"}, default=str))


@torch.no_grad()
def evaluate(args) -> None:
    torch.set_num_threads(args.threads)
    base = load_model(args.base, "cpu").eval()
    ctx = ContextFilter(load_model(args.base, "cpu"), args.hidden)
    ctx.load_state_dict(load_checkpoint(args.model, "context filter")["state_dict"])
    ctx.eval()
    split, shard = args.shard.split("/")
    ev_file = args.campaign / "events" / split / f"{shard}.h5"
    gr_file = args.campaign / "graphs" / split / f"{shard}.h5"
    items = load_items([ev_file], [gr_file], base.node_features, base.feature_scales, LossConfig())
    n_truth = [len(truth_target_edges(ev)[0]) for ev in iter_events(ev_file, tables=("hits", "particles"))]
    out = {"model": str(args.model), "base": str(args.base), "events": str(ev_file), "threads": args.threads}
    scores = {}
    for name, net in (("filter", base), ("context filter", ctx)):
        s, secs = [], []
        net(items[0].x, items[0].edge_index)  # warm-up
        for it in items:
            t0 = time.perf_counter()
            s.append(torch.sigmoid(net(it.x, it.edge_index)).numpy())
            secs.append(time.perf_counter() - t0)
        scores[name] = s
        out[f"{name} s_per_event"] = float(np.mean(secs))
    yt = [it.y_target.numpy().astype(bool) for it in items]
    rows = []
    for name, s in scores.items():
        allsc = np.concatenate(s)
        for budget in args.budgets:
            cut = budget_cut(allsc, budget, len(items))
            found = sum(int((sc >= cut)[y].sum()) for sc, y in zip(s, yt))
            kept = sum(int((sc >= cut).sum()) for sc in s)
            rows.append({"model": name, "budget": budget, "cut": cut, "edges_per_event": kept / len(items),
                         "efficiency": found / sum(n_truth)})  # fmt: skip
            print(
                f"{name:15s} {budget:>8.0f} edges/event: efficiency {found / sum(n_truth):.4f} (cut {cut:.4g})"
            )
    out["graph_efficiency"] = sum(int(y.sum()) for y in yt) / sum(n_truth)
    out["edges_per_event"] = float(np.mean([len(y) for y in yt]))
    out["rows"] = rows
    print(f"graph: {out['graph_efficiency']:.4f} at {out['edges_per_event']:.0f} edges/event; "
          f"scoring s/event: filter {out['filter s_per_event']:.2f}, context {out['context filter s_per_event']:.2f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


@torch.no_grad()
def downstream(args) -> None:
    """The campaign's GNN (trained on the per-edge filter's graphs) on the graphs each filter keeps:
    target-edge efficiency and edges per event after the filter and after the GNN's cut."""
    torch.set_num_threads(args.threads)
    base = load_model(args.base, "cpu").eval()
    ctx = ContextFilter(load_model(args.base, "cpu"), args.hidden)
    ctx.load_state_dict(load_checkpoint(args.model, "context filter")["state_dict"])
    ctx.eval()
    gnn = load_model(args.gnn, "cpu").eval()
    variants = [("filter, its stored cut", base, float(base.score_cut))]
    variants += [(f"context filter, cut {c:g}", ctx, c) for c in args.cuts]
    totals = {
        name: {"truth": 0, "filter_found": 0, "filter_edges": 0, "gnn_found": 0, "gnn_edges": 0}
        for name, _, _ in variants
    }
    n_events = 0
    for shard in args.shards:
        split, num = shard.split("/")
        ev_file = args.campaign / "events" / split / f"{num}.h5"
        gr_file = args.campaign / "graphs" / split / f"{num}.h5"
        f_items = load_items([ev_file], [gr_file], base.node_features, base.feature_scales, LossConfig())
        g_items = load_items([ev_file], [gr_file], gnn.node_features, gnn.feature_scales, LossConfig())
        truths = [len(truth_target_edges(ev)[0]) for ev in iter_events(ev_file, tables=("hits", "particles"))]
        for fi, gi, n_truth in zip(f_items, g_items, truths):
            n_events += 1
            yt = fi.y_target.numpy().astype(bool)
            for name, net, cut in variants:
                keep = torch.sigmoid(net(fi.x, fi.edge_index)) >= cut
                ei = gi.edge_index[:, keep]
                g = torch.sigmoid(gnn(gi.x, ei)) > args.gnn_cut
                t = totals[name]
                t["truth"] += n_truth
                t["filter_edges"] += int(keep.sum())
                t["filter_found"] += int(yt[keep.numpy()].sum())
                t["gnn_edges"] += int(g.sum())
                t["gnn_found"] += int(yt[keep.numpy()][g.numpy()].sum())
            print(
                f"{shard} event {n_events}: "
                + ", ".join(f"{k}: {v['gnn_found']}/{v['truth']}" for k, v in totals.items()),
                flush=True,
            )
    rows = []
    for name, t in totals.items():
        row = {
            "variant": name,
            "events": n_events,
            "filter_edges_per_event": t["filter_edges"] / n_events,
            "filter_efficiency": t["filter_found"] / t["truth"],
            "gnn_edges_per_event": t["gnn_edges"] / n_events,
            "gnn_efficiency": t["gnn_found"] / t["truth"],
        }
        rows.append(row)
        print(f"{name:32s} filter {row['filter_efficiency']:.4f} at {row['filter_edges_per_event']:.0f}; "
              f"GNN > {args.gnn_cut:g}: {row['gnn_efficiency']:.4f} at {row['gnn_edges_per_event']:.0f} edges/event")  # fmt: skip
    if args.json:
        out = {"gnn": str(args.gnn), "gnn_cut": args.gnn_cut, "shards": args.shards, "rows": rows}
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("train", "evaluate", "downstream"))
    ap.add_argument("--campaign", type=Path, required=True)
    ap.add_argument("--base", required=True, help="the trained filter the context filter starts from")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-events", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output", help="train: the model file")
    ap.add_argument("--model", help="evaluate: the trained context filter")
    ap.add_argument("--shard", default="test/5")
    ap.add_argument("--budgets", type=float, nargs="+", default=[120_000, 150_000, 172_000, 200_000])
    ap.add_argument("--gnn", help="downstream: the GNN applied after each filter")
    ap.add_argument("--gnn-cut", type=float, default=0.15, help="downstream: the GNN's edge cut")
    ap.add_argument(
        "--cuts", type=float, nargs="+", default=[0.0004437], help="downstream: context filter cuts"
    )
    ap.add_argument("--shards", nargs="+", default=["test/5", "test/6"], help="downstream: test shards")
    ap.add_argument("--json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    {"train": train, "evaluate": evaluate, "downstream": downstream}[args.mode](args)


if __name__ == "__main__":
    main()
