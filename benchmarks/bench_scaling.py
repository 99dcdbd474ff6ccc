#!/usr/bin/env python
"""Inference time and memory against the number of spacepoints (issue #17): is the growth linear?

    PYTHONPATH=src .venv/bin/python benchmarks/bench_scaling.py \\
        benchmarks/tmp/scaling/mu50.h5 benchmarks/tmp/scaling/mu100.h5 \\
        benchmarks/tmp/scaling/mu200.h5 benchmarks/tmp/scaling/mu300.h5 \\
        --reference models/reference/physics_mu200 --threads 1 --repeats 3 \\
        -o benchmarks/scaling_mu_20261203/scaling.json --plot benchmarks/scaling_mu_20261203/scaling.png

A campaign's own models instead of a bundle (``-c`` campaign files merged as ``gnntrack -c``
merges them, ``--gnn-model`` and ``--module-map`` or ``--embedding`` [``--filter-model``]), e.g.
the metric-learning chain, as ``gnntrack infer -c ... --embedding ...`` runs it:

    PYTHONPATH=src .venv/bin/python benchmarks/bench_scaling.py benchmarks/tmp/scaling/mu*.h5 \
        -c config/config.yaml -c config/physics_mu200.yaml -c config/physics_mu200_ml.yaml \
        --embedding E.pt --filter-model F.pt --gnn-model G.pt --threads 2 -o ml.json

Runs the one-process inference chain that ``gnntrack infer --reference`` runs
(``gnntrack.inference.Pipeline`` with the bundle's models and its campaign's inference settings:
eager fp32 on the CPU unless ``--set`` changes them) on every event of the given events files,
one event at a time, and records per event: spacepoints, edges built, edges above the GNN cut,
the per-stage wall seconds of the chain's ``StageTimer`` (data loading = reading the event's hit
columns from the file + building the tensors, as in ``gnntrack bench``), the per-stage process
CPU seconds (``time.process_time`` at the same stage boundaries), the total, the process CPU
seconds of the whole event and the peak host RSS (``VmHWM``, reset per event, as the chain's
``PeakMemory``) and its rise over the RSS at the start of the event.

Events are run interleaved over the files (event 0 of every file, then event 1, ...), so that
load from other work on a shared machine hits every file alike; ``--repeats`` passes over all
events, the per-event numbers are the medians over the passes. One untimed warm-up event first
(the first event of the last file). Before each event the garbage collector runs and glibc's
``malloc_trim(0)`` hands freed heap back to the kernel, so that a small event after a large one
still shows its own RSS rise (without it the rise is a lower bound). ``--no-trim`` times the
chain as ``gnntrack infer`` runs it: no trim, and the allocator keeps freed memory for the next
event as the ``infer`` process does (``inference.hold_memory``, glibc ``mallopt``), so no event
pays page faults for memory an earlier one had; the RSS columns are then not per-event.

The fits: least-squares slope of log(y) against log(spacepoints) over all events, y = the
per-event wall total, the process CPU seconds, each stage's wall and CPU seconds, the edges and
the RSS rise; a slope <= 1 means growth no faster than linear. Prints a table per file and the
slopes; writes the JSON (``-o``) and, with ``--plot``, a PNG.

Two side modes: ``--refit JSON`` recomputes the summary, fits, tables and plot of a finished run
(no events needed); ``--graph-only`` runs only the module-map graph building of each event, with
and without the triplet cuts (doublets in, edges out, CPU seconds of each), to split the
build_edges stage into the doublet search and the triplet search:

    PYTHONPATH=src .venv/bin/python benchmarks/bench_scaling.py benchmarks/tmp/scaling/mu*.h5 \
        --threads 1 --graph-only -o benchmarks/scaling_mu_20261203/graph.json
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import gc
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gnntrack.campaign import load_campaign, merge_campaigns  # noqa: E402
from gnntrack.cli import stage_config  # noqa: E402
from gnntrack.config import to_dict  # noqa: E402
from gnntrack.device import cpu_name  # noqa: E402
from gnntrack.inference import Pipeline, StageTimer  # noqa: E402
from gnntrack.inference.timing import host_peak_rss_bytes, host_rss_bytes, reset_host_peak  # noqa: E402
from gnntrack.io.event_store import event_keys, read_event  # noqa: E402
from gnntrack.reference import Reference  # noqa: E402

#: stage rows of the table (the chain's StageTimer names; a stage that did not run reads 0)
STAGE_ROWS = ("data_loading", "embedding", "build_edges", "filtering", "gnn", "labelling")


class CPUStageTimer(StageTimer):
    """The chain's StageTimer that also sums process CPU seconds per stage (``cpu_seconds``)."""

    def __init__(self, device=None):
        super().__init__(device)
        self.cpu_seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str):
        start = time.process_time()
        try:
            with super().stage(name):
                yield
        finally:
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + time.process_time() - start


def _trim_heap() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _label(path: Path) -> str:
    return path.stem


def _mu(path: Path) -> float | None:
    m = re.search(r"mu(\d+(?:\.\d+)?)", path.stem)
    return float(m.group(1)) if m else None


def run_event(pipe: Pipeline, path: Path, key: str, columns: dict, trim: bool = True) -> dict:
    """One event through the chain: counts, stage wall and CPU seconds, CPU total, peak RSS."""
    if trim:
        _trim_heap()
    rss0 = host_rss_bytes()
    reset_host_peak()
    timer = CPUStageTimer(pipe.device)
    times0 = os.times()
    cpu0 = time.process_time()
    with timer.stage("data_loading"):
        event = read_event(path, key, tables=("hits",), columns=columns, truth=False)
        pipe.check_hits(event.hits, path, key)
        ev = pipe.load(event.hits, event.key, event.run_number, event.event_number)
    res = pipe.run_tensors(ev, timer)
    cpu = time.process_time() - cpu0
    times1 = os.times()
    peak = host_peak_rss_bytes()
    return {
        "n_hits": int(res.n_hits),
        "edges_built": int(res.n_edges["build_edges"]),
        "edges_gnn": int(res.n_edges["filtering"]),
        "edges_above_cut": int(res.n_edges["gnn"]),
        "n_tracks": len(res.tracks),
        "wall_s": res.timing,
        "cpu_stage_s": {s: float(timer.cpu_seconds.get(s, 0.0)) for s in res.timing if s != "total"},
        "cpu_s": float(cpu),
        "user_s": float(times1.user - times0.user),  # os.times: 10 ms resolution
        "sys_s": float(times1.system - times0.system),
        "rss_start_bytes": int(rss0),
        "peak_rss_bytes": int(peak),
        "rss_rise_bytes": int(max(peak - rss0, 0)),
    }


def _median_record(runs: list[dict]) -> dict:
    """Per-event record of several passes: counts of the first, timings and memory medians."""
    out = dict(runs[0])
    out["wall_s"] = {k: float(np.median([r["wall_s"].get(k, 0.0) for r in runs])) for k in runs[0]["wall_s"]}
    out["cpu_stage_s"] = {
        k: float(np.median([r["cpu_stage_s"].get(k, 0.0) for r in runs])) for k in runs[0]["cpu_stage_s"]
    }
    for k in ("cpu_s", "user_s", "sys_s", "rss_start_bytes", "peak_rss_bytes", "rss_rise_bytes"):
        out[k] = float(np.median([r[k] for r in runs]))
    out["passes"] = [{k: r[k] for k in ("wall_s", "cpu_s", "cpu_stage_s", "rss_rise_bytes")} for r in runs]
    return out


def loglog_slope(x, y) -> dict:
    """Least-squares slope of log y on log x, its standard error and the prefactor; None if < 3 points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0)
    if ok.sum() < 3:
        return {"slope": None, "stderr": None, "n": int(ok.sum())}
    lx, ly = np.log(x[ok]), np.log(y[ok])
    a, b = np.polyfit(lx, ly, 1)
    resid = ly - (a * lx + b)
    dof = len(lx) - 2
    sxx = float(((lx - lx.mean()) ** 2).sum())
    se = float(np.sqrt((resid**2).sum() / dof / sxx)) if dof > 0 and sxx > 0 else None
    return {"slope": float(a), "stderr": se, "log_prefactor": float(b), "n": int(ok.sum())}


def fits(records: list[dict]) -> dict:
    x = [r["n_hits"] for r in records]
    stages = [s for s in STAGE_ROWS if any(r["wall_s"].get(s, 0.0) > 0 for r in records)]
    out = {
        "total_wall_s": loglog_slope(x, [r["wall_s"]["total"] for r in records]),
        "cpu_s": loglog_slope(x, [r["cpu_s"] for r in records]),
        "rss_rise_bytes": loglog_slope(x, [r["rss_rise_bytes"] for r in records]),
        "peak_rss_bytes": loglog_slope(x, [r["peak_rss_bytes"] for r in records]),
        "edges_built": loglog_slope(x, [r["edges_built"] for r in records]),
        "edges_above_cut": loglog_slope(x, [r["edges_above_cut"] for r in records]),
        "edges_gnn": loglog_slope(x, [r["edges_gnn"] for r in records]),
        "stage_wall_s": {s: loglog_slope(x, [r["wall_s"].get(s, 0.0) for r in records]) for s in stages},
        "stage_cpu_s": {s: loglog_slope(x, [r["cpu_stage_s"].get(s, 0.0) for r in records]) for s in stages},
    }
    # against the graph instead of the spacepoints: is a stage linear in the edges it handles?
    edges = [r["edges_built"] for r in records]
    out["stage_cpu_s_vs_edges_built"] = {
        s: loglog_slope(edges, [r["cpu_stage_s"].get(s, 0.0) for r in records])
        for s in ("build_edges", "gnn")
    }
    return out


def local_slopes(summary: list[dict]) -> list[dict]:
    """Slopes between consecutive files' means (sorted by spacepoints): where growth steepens."""
    s = sorted(summary, key=lambda p: p["n_hits"])
    out = []
    for a, b in zip(s[:-1], s[1:]):
        lx = np.log(b["n_hits"] / a["n_hits"])

        def sl(fa, fb, lx=lx):
            return float(np.log(fb / fa) / lx) if fa > 0 and fb > 0 and lx != 0 else None

        row = {"from": a["label"], "to": b["label"], "cpu_s": sl(a["cpu_s"], b["cpu_s"])}
        row["total_wall_s"] = sl(a["wall_s"]["total"], b["wall_s"]["total"])
        row["edges_built"] = sl(a["edges_built"], b["edges_built"])
        row["rss_rise"] = sl(a["rss_rise_mb"], b["rss_rise_mb"])
        row["stage_cpu_s"] = {k: sl(a["cpu_stage_s"][k], b["cpu_stage_s"][k]) for k in a["cpu_stage_s"]}
        out.append(row)
    return out


def summarise(label: str, mu: float | None, recs: list[dict]) -> dict:
    def mean(f):
        return float(np.mean([f(r) for r in recs]))

    def std(f):
        return float(np.std([f(r) for r in recs], ddof=1)) if len(recs) > 1 else 0.0

    stages = sorted({s for r in recs for s in r["wall_s"] if s != "total"})
    return {
        "label": label,
        "mu": mu,
        "events": len(recs),
        "n_hits": mean(lambda r: r["n_hits"]),
        "n_hits_std": std(lambda r: r["n_hits"]),
        "edges_built": mean(lambda r: r["edges_built"]),
        "edges_above_cut": mean(lambda r: r["edges_above_cut"]),
        "n_tracks": mean(lambda r: r["n_tracks"]),
        "wall_s": {s: mean(lambda r, s=s: r["wall_s"].get(s, 0.0)) for s in [*stages, "total"]},
        "wall_total_std": std(lambda r: r["wall_s"]["total"]),
        "cpu_stage_s": {s: mean(lambda r, s=s: r["cpu_stage_s"].get(s, 0.0)) for s in stages},
        "cpu_s": mean(lambda r: r["cpu_s"]),
        "cpu_s_std": std(lambda r: r["cpu_s"]),
        "sys_s": mean(lambda r: r.get("sys_s", float("nan"))),
        "cpu_s_per_1k_hits": mean(lambda r: 1000 * r["cpu_s"] / r["n_hits"]),
        "wall_s_per_1k_hits": mean(lambda r: 1000 * r["wall_s"]["total"] / r["n_hits"]),
        "rss_rise_mb": mean(lambda r: r["rss_rise_bytes"] / 2**20),
        "peak_rss_mb": mean(lambda r: r["peak_rss_bytes"] / 2**20),
        "rss_rise_kb_per_hit": mean(lambda r: r["rss_rise_bytes"] / 1024 / r["n_hits"]),
    }


def format_tables(summary: list[dict], fit: dict) -> str:
    stages = [s for s in STAGE_ROWS if any(p["wall_s"].get(s, 0.0) > 0 for p in summary)]
    head = ["file", "<mu>", "events", "spacepoints", "edges built", "edges > cut"]
    head += [f"{s} s" for s in stages] + ["total s", "CPU s (sys)", "CPU s/1k sp", "wall s/1k sp", "RSS rise MB", "peak RSS MB"]  # fmt: skip
    rows = []
    for p in summary:
        row = [p["label"], "-" if p["mu"] is None else f"{p['mu']:g}", str(p["events"])]
        row += [f"{p['n_hits']:.0f}", f"{p['edges_built']:.0f}", f"{p['edges_above_cut']:.0f}"]
        row += [f"{p['wall_s'][s]:.3f} ({p['cpu_stage_s'][s]:.3f})" for s in stages]
        cpu = f"{p['cpu_s']:.3f}" + ("" if np.isnan(p.get("sys_s", np.nan)) else f" ({p['sys_s']:.2f})")
        row += [f"{p['wall_s']['total']:.3f}", cpu, f"{p['cpu_s_per_1k_hits']:.4f}"]
        row += [f"{p['wall_s_per_1k_hits']:.4f}", f"{p['rss_rise_mb']:.0f}", f"{p['peak_rss_mb']:.0f}"]
        rows.append(row)
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "stage cells: wall s (process CPU s); CPU s (of which system s); means over the events", ""]

    def cell(f):
        if f["slope"] is None:
            return "n/a"
        return f"{f['slope']:.3f} ± {f['stderr']:.3f}" if f["stderr"] is not None else f"{f['slope']:.3f}"

    lines += [
        "| quantity vs spacepoints | log-log slope (wall) | log-log slope (CPU) |",
        "| --- | --- | --- |",
    ]
    lines.append(f"| total per event | {cell(fit['total_wall_s'])} | {cell(fit['cpu_s'])} |")
    for s in fit["stage_wall_s"]:
        lines.append(f"| {s} | {cell(fit['stage_wall_s'][s])} | {cell(fit['stage_cpu_s'][s])} |")
    for k in ("edges_built", "edges_above_cut", "rss_rise_bytes", "peak_rss_bytes"):
        lines.append(f"| {k} | {cell(fit[k])} | |")
    for k, f in fit.get("stage_cpu_s_vs_edges_built", {}).items():
        lines.append(f"| {k} CPU s vs edges built (not spacepoints) | | {cell(f)} |")
    loc = fit.get("local", [])
    if loc:
        st = [k for k in STAGE_ROWS if loc[0]["stage_cpu_s"].get(k) is not None]

        def num(v):
            return "n/a" if v is None else f"{v:.2f}"

        lines += ["", "slopes between consecutive files' means (CPU unless marked):", ""]
        lines.append("| between | total CPU | total wall | " + " | ".join(st) + " | edges built | RSS rise |")
        lines.append("|" + " --- |" * (5 + len(st)))
        for r in loc:
            cells = [f"{r['from']} -> {r['to']}", num(r["cpu_s"]), num(r["total_wall_s"])]
            cells += [num(r["stage_cpu_s"][k]) for k in st] + [num(r["edges_built"]), num(r["rss_rise"])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(records: list[dict], fit: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({r["label"] for r in records}, key=lambda lab: next(r["n_hits"] for r in records if r["label"] == lab))  # fmt: skip
    colours = dict(zip(labels, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    x = np.array([r["n_hits"] for r in records], float)
    xs = np.geomspace(x.min() * 0.9, x.max() * 1.1, 50)
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.8))

    def line(ax, f, style, label):
        if f["slope"] is not None:
            ax.plot(
                xs,
                np.exp(f["log_prefactor"]) * xs ** f["slope"],
                style,
                label=f"{label}: slope {f['slope']:.2f}",
            )

    def linear_ref(ax, y0):
        ax.plot(xs, y0 * xs / xs[0], ":", color="grey", label="linear (slope 1)")

    ax = axes[0]
    for lab in labels:
        rs = [r for r in records if r["label"] == lab]
        ax.scatter([r["n_hits"] for r in rs], [r["cpu_s"] for r in rs], color=colours[lab], marker="o", label=f"{lab} CPU s")  # fmt: skip
        ax.scatter([r["n_hits"] for r in rs], [r["wall_s"]["total"] for r in rs], color=colours[lab], marker="x")  # fmt: skip
    line(ax, fit["cpu_s"], "k-", "CPU s")
    line(ax, fit["total_wall_s"], "k--", "wall s (x)")
    linear_ref(ax, np.exp(fit["cpu_s"]["log_prefactor"]) * xs[0] ** fit["cpu_s"]["slope"])
    ax.set(xscale="log", yscale="log", xlabel="spacepoints per event", ylabel="seconds per event", title="per event: process CPU (o) and wall (x)")  # fmt: skip
    ax.legend(fontsize=7)

    ax = axes[1]
    for s, f in fit["stage_cpu_s"].items():
        ys = [r["cpu_stage_s"].get(s, 0.0) for r in records]
        pts = ax.scatter(x, ys, s=12)
        if f["slope"] is not None:
            ax.plot(xs, np.exp(f["log_prefactor"]) * xs ** f["slope"], color=pts.get_facecolor()[0], label=f"{s}: slope {f['slope']:.2f}")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="spacepoints per event", ylabel="process CPU seconds", title="per stage (CPU)")  # fmt: skip
    ax.legend(fontsize=7)

    ax = axes[2]
    for lab in labels:
        rs = [r for r in records if r["label"] == lab]
        ax.scatter([r["n_hits"] for r in rs], [r["rss_rise_bytes"] / 2**20 for r in rs], color=colours[lab], label=lab)  # fmt: skip
    f = fit["rss_rise_bytes"]
    if f["slope"] is not None:
        ax.plot(xs, np.exp(f["log_prefactor"]) * xs ** f["slope"] / 2**20, "k-", label=f"fit: slope {f['slope']:.2f}")  # fmt: skip
        linear_ref(ax, np.exp(f["log_prefactor"]) * xs[0] ** f["slope"] / 2**20)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="spacepoints per event",
        ylabel="MB",
        title="peak RSS rise per event",
    )
    ax.legend(fontsize=7)

    ax = axes[3]
    for key, name in (("edges_built", "edges built"), ("edges_above_cut", "edges above the GNN cut")):
        pts = ax.scatter(x, [r[key] for r in records], s=12)
        f = fit[key]
        if f["slope"] is not None:
            ax.plot(xs, np.exp(f["log_prefactor"]) * xs ** f["slope"], color=pts.get_facecolor()[0], label=f"{name}: slope {f['slope']:.2f}")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="spacepoints per event", ylabel="edges per event", title="graph size")  # fmt: skip
    ax.legend(fontsize=7)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ticks = [
        t for t in (10_000, 20_000, 50_000, 100_000, 200_000, 500_000) if x.min() / 2 <= t <= x.max() * 2
    ]
    for ax in axes:
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(ticks, [f"{t // 1000}k" for t in ticks])
        ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine() -> dict:
    cpu = cpu_name()
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load": list(os.getloadavg()),
        # allocator and threading settings from the environment change the system time measured
        "env": {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "OMP_", "MKL_", "GLIBC_"))},
    }


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None


def analyse(records: list[dict], files: list[str]) -> tuple[list[dict], dict, str]:
    """Per-file summary (in ``files`` order), fits and the printed tables of per-event records."""
    summary = []
    for f in files:
        recs = [r for r in records if r["file"] == f]
        summary.append(summarise(recs[0]["label"], recs[0]["mu"], recs))
    fit = fits(records)
    fit["local"] = local_slopes(summary)
    return summary, fit, format_tables(summary, fit)


def refit(src: Path, output: Path, plot_path: Path | None) -> dict:
    result = json.loads(src.read_text())
    records = result["events"]
    files = list(dict.fromkeys(r["file"] for r in records))
    result["summary"], result["fits"], result["table_md"] = analyse(records, files)
    result["refit_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    print(result["table_md"])
    output.write_text(json.dumps(result, indent=1) + "\n")
    if plot_path:
        plot(records, result["fits"], plot_path)
    return result


def graph_decomposition(pipe: Pipeline, files: list[Path], columns: dict, max_events, output: Path) -> dict:
    """``--graph-only``: the module-map graph building alone, with and without the triplet cuts.

    Per event: the doublets that pass the doublet windows (the map with ``triplets=False``, the
    input of the triplet search) and the edges the triplet map keeps, each with the process CPU
    seconds of ``ModuleMap.build_edges`` (hits already on the device; one warm-up call first).
    The difference of the two times is the triplet search's share of the build_edges stage.
    """
    maps = {"triplet": pipe.module_map, "doublet": pipe.module_map.with_cuts(triplets=False)}
    records = []
    for i, path in enumerate(files):
        for key in event_keys(path)[:max_events]:
            event = read_event(path, key, tables=("hits",), columns=columns, truth=False)
            ev = pipe.load(event.hits, event.key)
            rec = {"file": str(path), "label": _label(path), "mu": _mu(path), "key": key, "n_hits": ev.n_hits}
            with torch.inference_mode():
                if i == 0 and not records:
                    for m in maps.values():
                        m.build_edges(ev.hits)
                for name, m in maps.items():
                    _trim_heap()
                    t0 = time.process_time()
                    rec[f"{name}_edges"] = int(m.build_edges(ev.hits).shape[1])
                    rec[f"{name}_cpu_s"] = time.process_time() - t0
            print(
                f"{rec['label']}/{key}: {rec['n_hits']} sp, {rec['doublet_edges']} doublets "
                f"({rec['doublet_cpu_s']:.2f} s) -> {rec['triplet_edges']} edges ({rec['triplet_cpu_s']:.2f} s)",
                flush=True,
            )
            records.append(rec)
    x = [r["n_hits"] for r in records]
    fit = {k: loglog_slope(x, [r[k] for r in records]) for k in ("doublet_edges", "triplet_edges", "doublet_cpu_s", "triplet_cpu_s")}  # fmt: skip
    fit["triplet_search_cpu_s"] = loglog_slope(x, [r["triplet_cpu_s"] - r["doublet_cpu_s"] for r in records])
    lines = [
        "| file | events | spacepoints | doublets | doublet CPU s | edges (triplet map) | triplet map CPU s |"
    ]
    lines.append("|" + " --- |" * 7)
    for f in dict.fromkeys(r["file"] for r in records):
        rs = [r for r in records if r["file"] == f]

        def mean(k, rs=rs):
            return float(np.mean([r[k] for r in rs]))

        lines.append(
            f"| {rs[0]['label']} | {len(rs)} | {mean('n_hits'):.0f} | {mean('doublet_edges'):.0f} | "
            f"{mean('doublet_cpu_s'):.3f} | {mean('triplet_edges'):.0f} | {mean('triplet_cpu_s'):.3f} |"
        )
    lines += ["", "| vs spacepoints | log-log slope |", "| --- | --- |"]
    lines += [f"| {k} | {f['slope']:.3f} ± {f['stderr']:.3f} |" for k, f in fit.items()]
    table = "\n".join(lines)
    print(table)
    result = {"command": " ".join(sys.argv), "git_commit": git_commit(), "machine": machine()}
    result.update(threads=torch.get_num_threads(), events=records, fits=fit, table_md=table)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "events", nargs="*", type=Path, help="events HDF5 files (label = file stem; <mu> from 'muN')"
    )
    ap.add_argument("--reference", type=Path, default=ROOT / "models/reference/physics_mu200")
    ap.add_argument(
        "-c", "--config", action="append", type=Path, default=[],
        help="instead of --reference: campaign YAMLs (merged in order, as gnntrack -c) with the models below",
    )  # fmt: skip
    ap.add_argument("--module-map", type=Path, help="with -c: module map")
    ap.add_argument("--embedding", type=Path, help="with -c: metric-learning model")
    ap.add_argument("--filter-model", type=Path, help="with -c: edge filter")
    ap.add_argument("--gnn-model", type=Path, help="with -c: GNN")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="inference setting override"
    )
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--repeats", type=int, default=1, help="passes over all events (medians per event)")
    ap.add_argument("--max-events", type=int, help="at most this many events per file")
    ap.add_argument("-o", "--output", type=Path, required=True, help="JSON output")
    ap.add_argument("--plot", type=Path, help="PNG of the fits")
    ap.add_argument("--no-trim", action="store_true", help="no gc + malloc_trim(0) before each event")
    ap.add_argument(
        "--graph-only",
        action="store_true",
        help="only graph building: doublets before and edges after the triplet cuts, CPU s of each",
    )
    ap.add_argument("--refit", type=Path, help="no run: recompute summary, fits, table, plot from this JSON")
    args = ap.parse_args(argv)
    if args.refit:
        return refit(args.refit, args.output, args.plot)
    if not args.events:
        ap.error("give events files (or --refit JSON)")

    torch.set_num_threads(args.threads)
    if args.config:  # a campaign's own models (e.g. the metric-learning chain)
        if args.gnn_model is None:
            ap.error("-c needs --gnn-model (and --module-map or --embedding)")
        cfg = stage_config("inference", load_campaign(args.config), args.set)
        models = {"module_map": args.module_map, "embedding": args.embedding, "filter": args.filter_model, "gnn": args.gnn_model}  # fmt: skip
        source = {
            "config": [str(c) for c in args.config],
            "models": {k: str(v) for k, v in models.items() if v},
        }
    else:
        ref = Reference.load(args.reference)
        cfg = stage_config("inference", merge_campaigns(ref.campaign, {}), args.set)
        models = {k: ref.path(k) for k in ("module_map", "embedding", "filter", "gnn")}
        source = {"reference": str(args.reference)}
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    mach0 = machine()
    t0 = time.perf_counter()
    pipe = Pipeline.from_files(
        cfg,
        module_map=models["module_map"],
        embedding=models["embedding"],
        filter_model=models["filter"],
        gnn_model=models["gnn"],
        device="cpu",
    )
    load_s = time.perf_counter() - t0
    held = False
    if args.no_trim and pipe.cfg.hold_memory:  # as the infer process (run_infer(own_process=True))
        from gnntrack.inference.allocator import hold_freed_memory

        held = hold_freed_memory()
    columns = {"hits": pipe.required_hit_columns()}
    if args.graph_only:
        return graph_decomposition(pipe, args.events, columns, args.max_events, args.output)
    keys = {p: event_keys(p)[: args.max_events] for p in args.events}
    order = [(p, keys[p][i]) for i in range(max(len(k) for k in keys.values())) for p in args.events if i < len(keys[p])]  # fmt: skip
    print(f"models loaded in {load_s:.1f} s; {len(order)} events, {args.repeats} pass(es), {args.threads} thread(s)", flush=True)  # fmt: skip

    warm = args.events[-1], keys[args.events[-1]][0]
    w = run_event(pipe, *warm, columns, trim=not args.no_trim)
    print(f"warm-up {_label(warm[0])}/{warm[1]}: {w['n_hits']} sp, {w['wall_s']['total']:.2f} s", flush=True)

    runs: dict[tuple, list[dict]] = {}
    for rep in range(args.repeats):
        for path, key in order:
            r = run_event(pipe, path, key, columns, trim=not args.no_trim)
            runs.setdefault((path, key), []).append(r)
            print(
                f"pass {rep} {_label(path)}/{key}: {r['n_hits']} sp, {r['edges_built']} -> {r['edges_above_cut']} edges, "  # fmt: skip
                f"wall {r['wall_s']['total']:.2f} s, CPU {r['cpu_s']:.2f} s, RSS rise {r['rss_rise_bytes'] / 2**20:.0f} MB",  # fmt: skip
                flush=True,
            )
    records = []
    for (path, key), rs in runs.items():
        rec = _median_record(rs)
        rec.update(file=str(path), label=_label(path), mu=_mu(path), key=key)
        records.append(rec)
    summary, fit, table = analyse(records, [str(p) for p in args.events])
    print(table)
    result = {
        "started_utc": started,
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "git_commit": git_commit(),
        "machine_start": mach0,
        "machine_end": machine(),
        "threads": args.threads,
        "repeats": args.repeats,
        "trim": not args.no_trim,
        "hold_memory": held,
        **source,
        "inference": to_dict(cfg),
        "model_load_s": load_s,
        "warmup": {"file": str(warm[0]), "key": warm[1], "wall_s": w["wall_s"], "cpu_s": w["cpu_s"]},
        "summary": summary,
        "fits": fit,
        "events": records,
        "table_md": table,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    if args.plot:
        plot(records, fit, args.plot)
    return result


if __name__ == "__main__":
    main()
