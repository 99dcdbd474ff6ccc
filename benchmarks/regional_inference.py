#!/usr/bin/env python
"""Regional against whole-event inference on a campaign's test events (``InferenceConfig.regions``).

    PYTHONPATH=src python benchmarks/regional_inference.py --campaign results/default \\
        --config config/config.yaml --n-events 10 -o benchmarks/regional_inference_20261203

Every setting (whole event, 2x2 and 4x4 grids with the ``RegionConfig`` default margins and with a
wider margin) runs in its own process, so host peak RSS of one setting is not inflated by the heap
another left behind. Per setting: two-way and ATLAS efficiency, fake and duplicate rates (target
selection ``conditions.DEFAULT_TARGET``, tracks of >= 3 spacepoints, matching fraction 0.5, as in
``gnntrack evaluate``), edges of the whole-event graph the regional union lacks (and how many of
them join two hits of one particle), time per event (after one untimed warm-up event), and the peak memory of one graph + filter +
GNN call (a region's; the whole event's): host peak RSS (``inference.timing.PeakMemory``) and
its rise over the RSS at the call's start. The rise is the call's own memory only if freed
memory goes back to the system: with glibc's default the heap keeps what earlier (larger) calls
freed and later calls reuse it without raising RSS, so the workers run with
``MALLOC_MMAP_THRESHOLD_=65536`` (``--mmap-threshold``): every block of 64 KiB or more is its
own mapping, returned at free, and the rise counts the call's live large tensors.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gnntrack.campaign import load_campaign, resolve_campaign  # noqa: E402
from gnntrack.conditions import DEFAULT_TARGET, select  # noqa: E402
from gnntrack.edge_classification import RegionConfig  # noqa: E402
from gnntrack.inference import Pipeline  # noqa: E402
from gnntrack.inference.timing import PeakMemory, StageTimer, host_rss_bytes  # noqa: E402
from gnntrack.io.event_store import event_keys, iter_events  # noqa: E402
from gnntrack.metrics.tracks import Rates, apply_style, event_rates, filter_tracks, match_pairs  # noqa: E402

WIDE = {"eta_margin": 0.4, "phi_margin": 0.3}
SETTINGS = {
    "whole": None,
    "2x2": {"n_eta": 2, "n_phi": 2},
    "2x2_wide": {"n_eta": 2, "n_phi": 2, **WIDE},
    "4x4": {"n_eta": 4, "n_phi": 4},
    "4x4_wide": {"n_eta": 4, "n_phi": 4, **WIDE},
}
MIN_TRACK_LENGTH, MATCHING_FRACTION = 3, 0.5


def worker(args) -> None:
    """One setting on the first ``n_events`` test events; writes JSON + the edge sets (npz)."""
    camp = Path(args.campaign)
    cfg = resolve_campaign(load_campaign(args.config), sections=["inference"])["inference"]
    regions = SETTINGS[args.setting]
    cfg = dataclasses.replace(cfg, regions=RegionConfig(**regions) if regions is not None else RegionConfig())
    pipe = Pipeline.from_files(
        cfg, module_map=camp / "module_map/module_map.h5", gnn_model=camp / "models/gnn.pt", device="cpu"
    )
    shard = camp / "events/test/9.h5"
    keys = event_keys(shard)[: args.n_events]
    rates = {s: Rates() for s in ("two_way", "ATLAS")}
    per_event, edges = [], {}
    warm = next(iter_events(shard, keys[:1]))
    pipe.run_event(warm)  # lazy initialisation, untimed, every setting alike
    for event in iter_events(shard, keys):
        timer = StageTimer(pipe.device)
        calls = []  # (peak RSS, rise over the call's starting RSS, hits) per graph+GNN call
        with timer.stage("data_loading"):
            ev = pipe.load(event.hits, event.key)
        with torch.inference_mode():
            if regions is None:
                start = host_rss_bytes()
                with PeakMemory() as pm:
                    for stage in pipe.stages[:-1]:
                        stage(ev, timer)
                calls.append((pm.host, pm.host - start, ev.n_hits))
            else:
                with timer.stage("regions"):
                    masks = pipe.region_masks(ev)
                parts = []
                for rows, core in masks:
                    start = host_rss_bytes()
                    with PeakMemory() as pm:
                        parts.append(pipe.run_region(ev, rows, core, timer))
                    calls.append((pm.host, pm.host - start, int(rows.numel())))
                with timer.stage("regions"):
                    pipe.merge_regions(ev, parts)
            pipe.stages[-1](ev, timer)
        t = timer.as_dict()
        ei = ev.edge_index.numpy()
        code = ei[0] * event.n_hits + ei[1]
        edges[event.key] = code
        links = np.asarray(event.hit_particle)  # (2, L) hit row, particle row
        pid = np.full(event.n_hits, -1, np.int64)
        pid[links[0]] = links[1]  # one particle per hit (a shared hit: one of them)
        edges[event.key + "/pid"] = pid
        tracks = filter_tracks(ev.tracks.numpy(), MIN_TRACK_LENGTH)
        target = select(event.particles, DEFAULT_TARGET, len(event.particles["pt"]))
        pairs = match_pairs(tracks, links, event.n_hits, len(target))
        for s in rates:
            rates[s].add(event_rates(apply_style(pairs, s, MATCHING_FRACTION), target))
        per_event.append({
            "key": event.key, "n_hits": event.n_hits, "n_edges": int(ei.shape[1]),
            "n_duplicate_edges": int(len(code) - len(np.unique(code))), "timing": t,
            "calls": [{"peak_rss": a, "rise": b, "hits": c} for a, b, c in calls],
        })  # fmt: skip
    out = {
        "setting": args.setting,
        "regions": regions,
        "region_config": dataclasses.asdict(cfg.regions) if regions is not None else None,
        "rates": {s: dataclasses.asdict(r) for s, r in rates.items()},
        "events": per_event,
    }
    Path(args.json).write_text(json.dumps(out, indent=1))
    np.savez(args.edges, **edges)


def summarise(res: dict, ref_edges, edges) -> dict:
    r2, ra = Rates(**res["rates"]["two_way"]), Rates(**res["rates"]["ATLAS"])
    lost = lost_true = extra = 0
    for e in res["events"]:
        a, b = ref_edges[e["key"]], edges[e["key"]]
        miss = np.setdiff1d(a, b)
        extra += len(np.setdiff1d(b, a))
        lost += len(miss)
        pid, n = edges[e["key"] + "/pid"], e["n_hits"]
        u, v = miss // n, miss % n
        lost_true += int(((pid[u] == pid[v]) & (pid[u] >= 0)).sum())
    n_ref = sum(len(ref_edges[e["key"]]) for e in res["events"])
    calls = [c for e in res["events"] for c in e["calls"]]
    return {
        "setting": res["setting"],
        "eff_two_way": r2.efficiency, "eff_atlas": ra.efficiency,
        "fake_two_way": r2.fake_rate, "fake_atlas": ra.fake_rate, "dup_atlas": ra.duplicate_rate,
        "edges_lost": lost, "edges_lost_frac": lost / max(n_ref, 1), "edges_lost_true": lost_true,
        "edges_extra": extra,
        "duplicate_edges": sum(e["n_duplicate_edges"] for e in res["events"]),
        "s_per_event": float(np.mean([e["timing"]["total"] for e in res["events"]])),
        "max_call_peak_rss_mb": max(c["peak_rss"] for c in calls) / 2**20,
        "max_call_rise_mb": max(c["rise"] for c in calls) / 2**20,
        "mean_call_rise_mb": float(np.mean([c["rise"] for c in calls])) / 2**20,
        "max_call_hits": max(c["hits"] for c in calls),
        "mean_event_hits": float(np.mean([e["n_hits"] for e in res["events"]])),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaign", default="results/default", help="campaign results directory")
    ap.add_argument(
        "--config", default=None, help="campaign config (default: CAMPAIGN/../../config/config.yaml)"
    )
    ap.add_argument("--n-events", type=int, default=3)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("-o", "--output", default="benchmarks/regional_inference_out")
    ap.add_argument(
        "--mmap-threshold",
        type=int,
        default=65536,
        help="glibc MALLOC_MMAP_THRESHOLD_ of the workers (0: glibc default); see the module doc",
    )
    ap.add_argument("--setting", help=argparse.SUPPRESS)  # worker mode
    ap.add_argument("--json", help=argparse.SUPPRESS)
    ap.add_argument("--edges", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.config is None:
        args.config = str(Path(args.campaign).resolve().parents[1] / "config/config.yaml")
    if args.setting:
        worker(args)
        return
    settings = ["whole", *(s for s in args.settings if s != "whole")]
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    raw, edges = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for s in settings:
            t0 = time.perf_counter()
            js, ed = Path(tmp) / f"{s}.json", Path(tmp) / f"{s}.npz"
            cmd = [sys.executable, __file__, "--campaign", args.campaign, "--config", args.config,
                   "--n-events", str(args.n_events), "--setting", s, "--json", str(js), "--edges", str(ed)]  # fmt: skip
            env = dict(os.environ)
            if args.mmap_threshold:
                env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
            subprocess.run(cmd, check=True, env=env)
            raw[s] = json.loads(js.read_text())
            with np.load(ed) as z:
                edges[s] = {k: z[k] for k in z.files}
            print(f"{s}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rows = [summarise(raw[s], edges["whole"], edges[s]) for s in settings]
    whole = rows[0]
    cols = ("setting", "eff_two_way", "eff_atlas", "fake_two_way", "fake_atlas", "dup_atlas", "edges_lost",
            "edges_lost_true", "duplicate_edges", "s_per_event", "max_call_peak_rss_mb", "max_call_rise_mb",
            "max_call_hits")  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for r in rows:
        cells = [f"{r[c]:.4f}" if isinstance(r[c], float) and c.startswith(("eff", "fake", "dup"))
                 else f"{r[c]:.1f}" if isinstance(r[c], float) and c.endswith("_mb")
                 else f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    for r in rows[1:]:
        print(
            f"{r['setting']}: Δeff two-way {100 * (r['eff_two_way'] - whole['eff_two_way']):+.2f} pts, "
            f"ATLAS {100 * (r['eff_atlas'] - whole['eff_atlas']):+.2f} pts; "
            f"edges lost {r['edges_lost']} ({100 * r['edges_lost_frac']:.3f} %); "
            f"max call RSS rise / whole {r['max_call_rise_mb'] / max(whole['max_call_rise_mb'], 1e-9):.2f}, "
            f"max call peak RSS / whole {r['max_call_peak_rss_mb'] / whole['max_call_peak_rss_mb']:.2f}"
        )
    (out / "regional_inference.json").write_text(
        json.dumps(
            {
                "command": sys.argv,
                "n_events": args.n_events,
                "mmap_threshold": args.mmap_threshold,
                "summary": rows,
                "raw": raw,
            },
            indent=1,
        )  # fmt: skip
    )
    (out / "table.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
