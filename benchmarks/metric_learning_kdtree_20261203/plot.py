"""Plot this record's training curve against the previous record's (validation efficiency vs
training CPU seconds) and both r_max x k_max scans (efficiency vs edges/event, held-out events).

    python benchmarks/metric_learning_kdtree_20261203/plot.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
BEFORE = HERE.parent / "metric_learning_cpu_20261203"


def main() -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.6))
    for path, label in (
        (BEFORE / "training_curve.csv", "before: 128 x 3, 4 events, faiss k-NN"),
        (HERE / "training_curve.csv", "now: 256 x 3, 20 events, k-d tree k-NN, non-target weight 0"),
    ):
        rows = list(csv.DictReader(path.open()))
        a.plot(
            [float(r["train_cpu_s_total"]) for r in rows],
            [float(r["val_eff"]) for r in rows],
            "o-",
            label=label,
        )
        for r in rows:
            a.annotate(
                f"{float(r['val_edges_per_event']) / 1e6:.1f}M",
                (float(r["train_cpu_s_total"]), float(r["val_eff"])),
                fontsize=6,
            )
    a.set_xlabel("training CPU seconds (one thread; validation excluded)")
    a.set_ylabel("target-edge efficiency (1 val event, r 0.1, k_max 64)")
    a.set_title("<mu> = 200 training (labels: edges/event)")
    a.set_ylim(0.6, 1.0)
    a.grid(alpha=0.3)
    a.legend(fontsize=7)
    for path, style, tag in (
        (BEFORE / "scan_mu200.json", ":", "before"),
        (HERE / "scan_mu200.json", "-", "now"),
    ):
        scan = json.loads(path.read_text())["metric_learning"]
        for k in (16, 32, 64):
            rows = sorted((r for r in scan if r["k_max"] == k), key=lambda r: r["r_max"])
            b.plot(
                [r["edges_per_event"] / 1e6 for r in rows],
                [r["efficiency"] for r in rows],
                "o" + style,
                ms=3,
                label=f"{tag}, k_max {k}",
            )
    b.set_ylim(0.85, 1.0)
    b.set_xlim(0, 5)
    b.axhline(0.99, color="k", lw=0.8, ls="--")
    b.axvline(1.5, color="k", lw=0.8, ls=":")
    b.set_xlabel("edges / event (M)")
    b.set_ylabel("target-edge efficiency (held-out test events)")
    b.set_title("r_max scan per k_max (before: 2 test events, now: 5)")
    b.grid(alpha=0.3)
    b.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(HERE / "metric_learning_mu200.png", dpi=90)


if __name__ == "__main__":
    main()
