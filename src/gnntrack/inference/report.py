"""Benchmark summaries: per-event records -> mean ± std table (Markdown), JSON and a bar plot.

The table follows the ATLAS GNN4ITk timing tables (one column per optimisation, cumulative from
left to right; rows per stage, then total, memory, graph sizes and physics), so each change's
effect can be read against the baseline measured in the same run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_output
from .timing import STAGE_LABELS, STAGES

#: A drop of track efficiency (in percentage points) beyond which a variant is flagged.
EFFICIENCY_DROP_FLAG = 0.2

EDGE_ROWS = {
    "build_edges": "Edges after graph construction",
    "filtering": "Edges after filter",
    "gnn": "Edges above GNN cut",
}


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0}


def summarise_variant(records: list[dict]) -> dict:
    """Reduce the per-event records of one variant (``EventRecord.as_dict()``) to statistics."""
    stages = {s: _mean_std([r["timing"].get(s, 0.0) for r in records]) for s in (*STAGES, "total")}
    edges = {k: _mean_std([r["edges"].get(k, 0) for r in records]) for k in EDGE_ROWS}
    host = [r["peak_host_rss_bytes"] for r in records if r.get("peak_host_rss_bytes") is not None]
    dev = [r["peak_device_bytes"] for r in records if r.get("peak_device_bytes") is not None]
    return {
        "n_events": len(records),
        "n_hits": _mean_std([r["n_hits"] for r in records]),
        "stages": stages,
        "edges": edges,
        "n_tracks": _mean_std([r["n_tracks"] for r in records]),
        "peak_host_rss_bytes": int(max(host)) if host else None,
        "peak_device_bytes": int(max(dev)) if dev else None,
    }


def compare_to_baseline(variants: list[dict]) -> None:
    """Add speed-up and efficiency change vs the first variant; flag drops > 0.2 points (in place)."""
    if not variants:
        return
    base = variants[0]
    base_total = base["summary"]["stages"]["total"]["mean"]
    base_eff = base.get("efficiency")
    for v in variants:
        total = v["summary"]["stages"]["total"]["mean"]
        v["speedup_vs_baseline"] = float(base_total / total) if total > 0 else None
        eff = v.get("efficiency")
        if eff is None or base_eff is None:
            v["efficiency_change_points"] = None
            v["efficiency_flag"] = False
        else:
            change = 100.0 * (eff - base_eff)
            v["efficiency_change_points"] = change
            v["efficiency_flag"] = bool(change < -EFFICIENCY_DROP_FLAG)


def _fmt_time(ms: dict[str, float]) -> str:
    m, s = ms["mean"], ms["std"]
    if not np.isfinite(m):
        return "–"
    if m == 0.0 and s == 0.0:
        return "–"
    digits = 4 if m < 0.01 else 3
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def format_table(result: dict) -> str:
    """The Markdown timing table: one column per variant, seconds/event as mean ± std."""
    variants = result["variants"]
    header = ["Stage (s/event)"] + [v["label"] for v in variants]
    rows = [header, ["---"] * len(header)]
    for stage in (*STAGES, "total"):
        cells = [_fmt_time(v["summary"]["stages"][stage]) for v in variants]
        name = STAGE_LABELS[stage]
        rows.append([f"**{name}**" if stage == "total" else name, *cells])
    rows.append(
        ["Speed-up vs baseline"]
        + [f"×{v['speedup_vs_baseline']:.2f}" if v.get("speedup_vs_baseline") else "–" for v in variants]
    )
    rows.append(["Peak host RSS"] + [_fmt_bytes(v["summary"]["peak_host_rss_bytes"]) for v in variants])
    rows.append(["Peak device memory"] + [_fmt_bytes(v["summary"]["peak_device_bytes"]) for v in variants])
    for key, label in EDGE_ROWS.items():
        cells = []
        for v in variants:
            e = v["summary"]["edges"][key]
            cells.append("–" if not np.isfinite(e["mean"]) else f"{e['mean']:.0f}")
        rows.append([label, *cells])
    eff_cells = []
    for v in variants:
        eff = v.get("efficiency")
        if eff is None:
            eff_cells.append("–")
            continue
        cell = f"{100 * eff:.2f} %"
        change = v.get("efficiency_change_points")
        if change is not None and v is not variants[0]:
            cell += f" ({change:+.2f})"
        if v.get("efficiency_flag"):
            cell += " ⚠"
        eff_cells.append(cell)
    rows.append(["Track efficiency", *eff_cells])
    rows.append(["Settings"] + [_settings_cell(v["settings"]) for v in variants])
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    notes = [
        "",
        f"{result['n_events']} events, ⟨hits⟩ = {result['mean_hits']:.0f}; "
        f"device: {result['machine']['device_name']}; {result['machine']['date']}.",
        f"⚠ = track efficiency more than {EFFICIENCY_DROP_FLAG} points below the baseline.",
    ]
    if "hold_memory" in result:
        notes.append(
            "Allocator: freed memory held for the next event (inference.hold_memory, as gnntrack infer)."
            if result["hold_memory"]
            else "Allocator: glibc defaults (freed memory returned to the system)."
        )
    for name, why in (result.get("skipped_variants") or {}).items():
        notes.append(f"Variant {name} not run: {why}.")
    for name, why in (result.get("failed_variants") or {}).items():
        notes.append(f"Variant {name} FAILED: {why}")
    if result.get("runtime_choice"):
        rc = result["runtime_choice"]
        parts = ", ".join(
            f"{k}: {v:.3f} s" if isinstance(v, float) else f"{k}: {v}" for k, v in rc["seconds"].items()
        )
        notes.append(f"CPU runtime candidates (learned stages, s/event): {parts}; chosen: {rc['chosen']}.")
        for cand, err in (rc.get("errors") or {}).items():
            notes.append(f"Runtime {cand} failed: {err}")
    return "\n".join(lines + notes) + "\n"


def _settings_cell(s: dict) -> str:
    amp = s.get("amp", "none")
    return (
        f"nn={s.get('neighbour_backend')}, cc={s.get('cc_backend')}, "
        f"{'fp32' if amp == 'none' else amp}, rt={s.get('runtime')}, "
        f"map={'device' if s.get('module_map_on_device') else 'cpu'}"
    )


def write_json(result: dict, path: str | Path) -> None:
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def plot_bars(result: dict, path: str | Path) -> None:
    """Stacked bars of the mean stage times per variant, error bar on the total."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = result["variants"]
    labels = [v["label"] for v in variants]
    x = np.arange(len(variants))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(variants) + 2), 4.5))
    bottom = np.zeros(len(variants))
    colours = plt.get_cmap("tab10").colors
    for i, stage in enumerate(STAGES):
        means = np.array([v["summary"]["stages"][stage]["mean"] for v in variants])
        if not np.any(means > 0):
            continue
        ax.bar(x, means, bottom=bottom, color=colours[i % len(colours)], label=STAGE_LABELS[stage])
        bottom += means
    totals = np.array([v["summary"]["stages"]["total"]["mean"] for v in variants])
    errs = np.array([v["summary"]["stages"]["total"]["std"] for v in variants])
    ax.errorbar(x, totals, yerr=errs, fmt="none", ecolor="black", capsize=4)
    for xi, t in zip(x, totals):
        ax.annotate(f"{t:.3g} s", (xi, t), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel("time per event [s]")
    ax.set_title(f"Inference per stage — {result['machine']['device_name']}, {result['n_events']} events")
    ax.legend(fontsize=8, frameon=False)
    ax.set_ylim(0, max(float(totals.max()) * 1.2, 1e-6) if totals.size else 1.0)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)
