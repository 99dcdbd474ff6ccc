"""Plot the training curve (validation efficiency vs training CPU seconds) and the r_max/k_max
scan (efficiency vs edges/event) of this record.

    python benchmarks/metric_learning_cpu_20261203/plot.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent


def main() -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, label in (
        ("training_curve_pilot.csv", "pilot: 200 steps/epoch, lr 3e-3"),
        ("training_curve.csv", "main: 2400 steps/epoch, lr 5e-3"),
    ):
        path = HERE / name
        if not path.exists():
            continue
        rows = list(csv.DictReader(path.open()))
        a.plot(
            [float(r["train_cpu_s_total"]) for r in rows],
            [float(r["val_eff"]) for r in rows],
            "o-",
            label=label,
        )
    a.set_xlabel("training CPU seconds (one thread; validation excluded)")
    a.set_ylabel("target-edge efficiency (1 val event, r 0.1, k_max 64)")
    a.set_title("<mu> = 200: training on 2k-hit samples")
    a.grid(alpha=0.3)
    a.legend()
    scan = json.loads((HERE / "scan_mu200.json").read_text())["metric_learning"]
    for k in sorted({r["k_max"] for r in scan}):
        rows = sorted((r for r in scan if r["k_max"] == k), key=lambda r: r["r_max"])
        b.plot(
            [r["edges_per_event"] / 1e6 for r in rows],
            [r["efficiency"] for r in rows],
            "o-",
            label=f"k_max {k}",
        )
        for r in rows:
            b.annotate(f"{r['r_max']:g}", (r["edges_per_event"] / 1e6, r["efficiency"]), fontsize=7)
    b.set_ylim(0.85, 1.0)  # r_max 0.02 and 0.03 (efficiency 0.09, 0.59) lie below
    b.axhline(0.99, color="k", lw=0.8, ls="--")
    b.axvline(1.5, color="k", lw=0.8, ls=":")
    b.set_xlabel("edges / event (M)")
    b.set_ylabel("target-edge efficiency (held-out test events)")
    b.set_title("r_max x k_max scan, 2 test events (labels: r_max)")
    b.grid(alpha=0.3)
    b.legend()
    fig.tight_layout()
    fig.savefig(HERE / "metric_learning_mu200.png", dpi=90)


if __name__ == "__main__":
    main()
