#!/usr/bin/env python
"""GNN training recipes compared per CPU-second on one campaign's graphs.

    python benchmarks/bench_gnn_recipe.py --campaign results/default --recipes base acorn \
        --epochs 6 --threads 1 -o benchmarks/gnn_recipe_<date>

Trains the campaign's GNN (its ``gnn`` section of ``--config``) once per recipe, each recipe a set
of overrides of that section (``RECIPES`` below), on the campaign's training graphs, validating
after every epoch on ``--n-val`` validation events. Each recipe runs in its own process with
``--threads`` torch threads, so recipes run side by side (one per core); the clock is the
process's CPU time (``time.process_time``) spent in training steps, validation excluded. Every
recipe trains ``--epochs`` epochs (its schedule, e.g. cosine, spans them).

Writes ``DIR/<recipe>.json`` (per-epoch CPU seconds and validation metrics), and, once all
recipes are done, ``DIR/recipes.json``, ``DIR/recipes.md`` (a table at equal CPU time: the
metrics of each recipe's last epoch ending within the smallest budget every recipe reached) and
``DIR/recipes.png`` (validation target-edge efficiency at masked purity 0.95 and 0.90 vs CPU
seconds).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gnntrack.config import from_dict  # noqa: E402
from gnntrack.edge_classification.data import load_items  # noqa: E402
from gnntrack.edge_classification.task import EdgeClassifierTask  # noqa: E402
from gnntrack.gnn import GNNConfig  # noqa: E402
from gnntrack.models import InteractionGNN  # noqa: E402
from gnntrack.training.loop import fit  # noqa: E402

ACORN_STEPS = {"recurrent": False, "concat_inputs": True, "residual": False, "decoder": "edge"}
ACORN_OPT = {"amsgrad": True, "weight_decay": 0.01, "warmup_epochs": 1.0, "scheduler": "step", "step_size": 3,
             "gamma": 0.7}  # fmt: skip

#: overrides of the campaign's gnn section; "train" and "loss" merge key by key
RECIPES: dict[str, dict] = {
    "base": {},
    "fake0.1": {"loss": {"fake_weight": 0.1}},
    "acorn": {**ACORN_STEPS, "loss": {"fake_weight": 0.1}, "train": ACORN_OPT},
    "acorn_steps": ACORN_STEPS,
    "acorn_opt": {"train": ACORN_OPT},
    "concat_res": {"recurrent": False, "concat_inputs": True},
    "unshared": {"recurrent": False},
    "lr3e-3_cos": {"train": {"lr": 3e-3, "warmup_epochs": 0.5, "scheduler": "cosine", "min_lr": 1e-5}},
    "regions2x2": {"regions": {"n_eta": 2, "n_phi": 2}},
    "regions4x4": {"regions": {"n_eta": 4, "n_phi": 4}},
    "regions4x4_lr3e-3_cos": {
        "regions": {"n_eta": 4, "n_phi": 4},
        "train": {"lr": 3e-3, "warmup_epochs": 0.5, "scheduler": "cosine", "min_lr": 1e-5},
    },
    # target edges of high-pT particles (rare in tt-bar + pile-up) weighted up
    "regions4x4_ptweight": {
        "regions": {"n_eta": 4, "n_phi": 4},
        "loss": {
            "weighting": [
                {"weight": 0.0, "conditions": {"y": True}},
                {"weight": 1.0, "conditions": {"y_target": True}},
                {"weight": 3.0, "conditions": {"y_target": True, "pt": [">", 5.0]}},
            ]
        },
    },
    # true edges of non-target particles (mostly below 1 GeV) trained as true (weight 1)
    "regions4x4_nontarget1": {"regions": {"n_eta": 4, "n_phi": 4}, "loss": {"non_target_weight": 1.0}},
    "lr3e-3_cos_regions2x2": {
        "regions": {"n_eta": 2, "n_phi": 2},
        "train": {"lr": 3e-3, "warmup_epochs": 0.5, "scheduler": "cosine", "min_lr": 1e-5},
    },
    "acorn_lr3e-3": {
        **ACORN_STEPS,
        "loss": {"fake_weight": 0.1},
        "train": {**ACORN_OPT, "lr": 3e-3},
    },
}


def merged(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merged(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def shard_files(campaign: Path, split: str, n: int | None) -> tuple[list[Path], list[Path]]:
    graphs = sorted((campaign / "graphs" / split).glob("*.h5"), key=lambda p: int(p.stem))
    if n is not None:
        graphs = graphs[:n]
    return [campaign / "events" / split / g.name for g in graphs], graphs


class TimedTask(EdgeClassifierTask):
    """Records the CPU seconds spent in training steps up to each validation."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.cpu = 0.0
        self.t0 = time.process_time()
        self.marks: list[float] = []

    def evaluate(self, items, device):
        self.cpu += time.process_time() - self.t0
        self.marks.append(self.cpu)
        out = super().evaluate(items, device)
        print(f"epoch {len(self.marks)}: {self.cpu:.0f} CPU-s, eff@mp95 {out['eff_at_mp95']:.4f}", flush=True)
        self.t0 = time.process_time()
        return out


def run_one(args, name: str) -> dict:
    torch.set_num_threads(args.threads)
    with open(args.config) as fh:
        section = yaml.safe_load(fh).get("gnn", {})
    section = merged(section, RECIPES[name])
    section = merged(section, {"train": {"epochs": args.epochs, "progress": "off", "resume": False}})
    cfg = from_dict(GNNConfig, section, "gnn")
    torch.manual_seed(cfg.train.seed)
    model = InteractionGNN(cfg)
    tr_e, tr_g = shard_files(args.campaign, "train", args.train_shards)
    va_e, va_g = shard_files(args.campaign, "val", None)
    train = load_items(tr_e, tr_g, model.node_features, model.feature_scales, cfg.loss, cfg.regions)
    val = load_items(va_e, va_g, model.node_features, model.feature_scales, cfg.loss, None, args.n_val)
    model.fit_input_normalisation(item.x for item in train)
    task = TimedTask(model, score_cut=cfg.score_cut)
    out_dir = args.output / "runs" / name
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = fit(task, train, val, cfg.train, out_dir / "gnn.pt", device="cpu")
    history = []
    for row, cpu in zip(summary["history"], task.marks):
        history.append({**row, "cpu_s": cpu})
        print(f"{name} epoch {row['epoch']}: cpu {cpu:.0f} s, eff@mp95 {row['val_eff_at_mp95']:.4f}, "
              f"eff@mp90 {row['val_eff_at_mp90']:.4f}, eff@0.5 {row['val_efficiency']:.4f}", flush=True)  # fmt: skip
    result = {
        "recipe": name,
        "overrides": RECIPES[name],
        "gnn": section,
        "n_params": sum(p.numel() for p in model.parameters()),
        "n_train_items": len(train),
        "n_val_events": len(val),
        "threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor()}, {torch.get_num_threads()} torch threads",
        "history": history,
    }
    (args.output / f"{name}.json").write_text(json.dumps(result, indent=1))
    return result


def at_cpu(history: list[dict], cpu: float) -> dict:
    rows = [r for r in history if r["cpu_s"] <= cpu * 1.02]
    return rows[-1] if rows else history[0]


def report(args, names: list[str]) -> None:
    results = [json.loads((args.output / f"{n}.json").read_text()) for n in names]
    common = min(r["history"][-1]["cpu_s"] for r in results)
    lines = [
        f"Recipes at equal CPU time: the last epoch of each ending within {common:.0f} CPU-s "
        f"(validation events: {results[0]['n_val_events']}, training items: {results[0]['n_train_items']}, "
        f"{results[0]['threads']} thread(s) per recipe, {results[0]['machine']}).",
        "",
        "| recipe | params | epochs | CPU s | eff @ mp 0.95 | eff @ mp 0.90 | eff @ 0.5 | masked purity @ 0.5 | masked AUC |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        row = at_cpu(r["history"], common)
        lines.append(
            f"| {r['recipe']} | {r['n_params']} | {row['epoch']} | {row['cpu_s']:.0f} | "
            f"{row['val_eff_at_mp95']:.4f} | {row['val_eff_at_mp90']:.4f} | {row['val_efficiency']:.4f} | "
            f"{row['val_masked_purity']:.4f} | {row['val_masked_auc']:.5f} |"
        )
    lines += ["", "Full runs (every epoch):", ""]
    for r in results:
        lines.append(f"- {r['recipe']} ({json.dumps(r['overrides'])}): " + ", ".join(
            f"{h['cpu_s']:.0f} s → {h['val_eff_at_mp95']:.4f}/{h['val_eff_at_mp90']:.4f}" for h in r["history"]
        ))  # fmt: skip
    (args.output / "recipes.md").write_text("\n".join(lines) + "\n")
    (args.output / "recipes.json").write_text(
        json.dumps({"common_cpu_s": common, "results": results}, indent=1)
    )
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in zip(
        axes, ("val_eff_at_mp95", "val_eff_at_mp90"), ("masked purity 0.95", "masked purity 0.90")
    ):
        for r in results:
            ax.plot(
                [h["cpu_s"] for h in r["history"]], [h[key] for h in r["history"]], "o-", label=r["recipe"]
            )
        ax.set_xlabel("training CPU seconds")
        ax.set_ylabel("validation target-edge efficiency")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output / "recipes.png", dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaign", type=Path, default=ROOT / "results" / "default")
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    ap.add_argument("--recipes", nargs="+", default=["base", "acorn"], choices=sorted(RECIPES))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--train-shards", type=int, default=None, help="first N training shards (default all)")
    ap.add_argument("--n-val", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=2, help="recipes run at once (one process each)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one recipe in this process
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    if args.one:
        run_one(args, args.one)
        return 0
    if not args.report_only:
        base = [a for a in (argv if argv is not None else sys.argv[1:])]
        queue, running = list(args.recipes), []
        while queue or running:
            while queue and len(running) < args.parallel:
                name = queue.pop(0)
                log = open(args.output / f"{name}.log", "w")  # noqa: SIM115
                running.append(
                    subprocess.Popen([sys.executable, __file__, *base, "--one", name], stdout=log, stderr=log)
                )
            time.sleep(5)
            running = [p for p in running if p.poll() is None]
    report(args, args.recipes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
