"""Target-edge efficiency against edges per event on the 5 held-out test events, one curve per
embedding: the upper envelope of its (r_max, k_max) scan. Writes efficiency_vs_edges.png here.

    python benchmarks/metric_learning_margin_20261204/plot.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
SCANS = {
    "previous record (positive margin 0)": HERE.parent
    / "metric_learning_kdtree_20261203"
    / "scan_mu200.json",
    "A: + 20 k steps, positive margin 0": HERE / "runs" / "scan_test_A.json",
    "B: + 20 k steps, positive margin 0.05": HERE / "runs" / "scan_test_B.json",
    "C: from scratch, positive margin 0.05": HERE / "runs" / "scan_test_C.json",
    "D: + 20 k steps, positive margin 0.07": HERE / "runs" / "scan_test_D.json",
    "E: from scratch, 70 k steps, positive margin 0.07": HERE / "runs" / "scan_test_E.json",
}


def points(path: Path) -> list[tuple[float, float]]:
    out = []

    def walk(o):
        if isinstance(o, dict):
            if {"r_max", "k_max", "efficiency", "edges_per_event"} <= o.keys():
                out.append((o["edges_per_event"] / 1e6, o["efficiency"]))
                return
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(json.loads(path.read_text()))
    return out


def envelope(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats with fewer edges."""
    best, out = -1.0, []
    for e, eff in sorted(pts):
        if eff > best:
            out.append((e, eff))
            best = eff
    return out


def main() -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, path in SCANS.items():
        if not path.exists():
            continue
        env = envelope(points(path))
        ax.plot([p[0] for p in env], [p[1] for p in env], marker=".", label=label)
    ax.axhline(0.99, color="grey", lw=0.8, ls="--")
    ax.axvline(1.5, color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, 3.2)
    ax.set_ylim(0.94, 1.0)
    ax.set_xlabel("edges per event (M)")
    ax.set_ylabel("target-edge efficiency")
    ax.set_title("<mu> = 200 tt, 5 held-out events, best (r_max, k_max) per edge budget")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(HERE / "efficiency_vs_edges.png", dpi=120)


if __name__ == "__main__":
    main()
