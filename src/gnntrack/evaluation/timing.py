"""Per-stage inference timing table from the tracks files' ``/timing`` records.

Rows follow the ATLAS GNN4ITk timing tables (data loading, embedding / module map, build edges,
filtering, GNN, labelling, total); values are mean ± standard deviation over events, in seconds.
"""

from __future__ import annotations

import numpy as np

#: (stage key in the tracks files, row label), in pipeline order.
TIMING_ROWS = (
    ("data_loading", "Data loading"),
    ("embedding", "Embedding / module map"),
    ("build_edges", "Build edges"),
    ("filtering", "Filtering"),
    ("gnn", "GNN"),
    ("labelling", "Labelling"),
    ("total", "Total"),
)


def timing_table(per_event: list[dict[str, float]]) -> list[dict]:
    """Rows {stage, label, mean, std, n} for every stage seen; ``total`` = sum of stages if absent."""
    known = [k for k, _ in TIMING_ROWS]
    extra = sorted({s for t in per_event for s in t} - set(known))
    rows = []
    for key, label in [*TIMING_ROWS[:-1], *((s, s) for s in extra), TIMING_ROWS[-1]]:
        if key == "total":
            values = [t["total"] if "total" in t else sum(t.values()) for t in per_event if t]
        else:
            values = [t[key] for t in per_event if key in t]
        if not values:
            continue
        v = np.asarray(values, dtype=np.float64)
        rows.append({"stage": key, "label": label, "mean": float(v.mean()),
                     "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)})  # fmt: skip
    return rows


def timing_markdown(rows: list[dict]) -> str:
    if not rows:
        return "_No per-stage timings in the tracks files._\n"
    lines = ["| Stage | Time per event [s] | Events |", "|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['mean']:.4f} ± {r['std']:.4f} | {r['n']} |")
    return "\n".join(lines) + "\n"
