#!/usr/bin/env python
"""Does this code reproduce a finished campaign's outputs? Stage by stage, on the same inputs.

    python benchmarks/stage_equivalence.py --campaign results/default --split test --shard 9 -o DIR

A refactoring that promises "behaviour unchanged" is checked against a campaign run by the code
before it: this script reruns, with the code it is run with, graph building
(``run_build_graphs``), GNN scoring (``run_score_graphs``), the working point
(``run_choose_working_point`` on the validation shard with the campaign's settings), the
one-process chain (``run_infer``) and the evaluation (``run_evaluate``), each on the campaign's own
inputs and models, and compares every output with the campaign's file: edges and labels exactly,
scores to the largest absolute difference, track candidates exactly, the working point and the
evaluation's numbers (timings excluded). Writes ``DIR/equivalence.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gnntrack.campaign import load_campaign, resolve_campaign  # noqa: E402
from gnntrack.edge_classification import run_score_graphs  # noqa: E402
from gnntrack.evaluation import run_evaluate  # noqa: E402
from gnntrack.gnn import run_choose_working_point  # noqa: E402
from gnntrack.graph_construction import run_build_graphs  # noqa: E402
from gnntrack.inference import run_infer  # noqa: E402
from gnntrack.io.graph_store import read_graphs  # noqa: E402
from gnntrack.io.track_store import read_tracks  # noqa: E402
from gnntrack.models.registry import read_model_info  # noqa: E402


def _graphs_equal(a_file, b_file, score: str | None = None) -> dict:
    a, b = read_graphs(a_file), read_graphs(b_file)
    same_edges = len(a) == len(b) and all(
        x.key == y.key and np.array_equal(x.edge_index, y.edge_index) and np.array_equal(x.y, y.y)
        for x, y in zip(a, b)
    )
    out = {
        "events": len(a),
        "edges": int(sum(x.edge_index.shape[1] for x in a)),
        "edges_and_labels_equal": same_edges,
    }
    if score is not None and same_edges:
        out["max_abs_score_diff"] = float(
            max(np.abs(x.scores[score] - y.scores[score]).max(initial=0) for x, y in zip(a, b))
        )
    return out


def _tracks_equal(a_file, b_file) -> dict:
    a, b = read_tracks(a_file), read_tracks(b_file)
    equal = len(a) == len(b) and all(
        x.key == y.key
        and np.array_equal(x.tracks.hits, y.tracks.hits)
        and np.array_equal(x.tracks.offsets, y.tracks.offsets)
        for x, y in zip(a, b)
    )
    return {"events": len(a), "tracks": int(sum(len(x.tracks) for x in a)), "candidates_equal": equal}


def _numbers(summary: dict) -> dict:
    """The evaluation's tracking and edge numbers (no timings, no paths)."""
    keep = {}
    for style, d in summary["tracking"].items():
        for k in ("efficiency", "fake_rate", "duplicate_rate"):
            keep[f"{style}.{k}"] = d[k]["value"]
    for stage, d in summary.get("edges", {}).items():
        for k, v in d.items():
            if isinstance(v, dict) and "value" in v:
                keep[f"edges.{stage}.{k}"] = v["value"]
    return keep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaign", type=Path, default=ROOT / "results" / "default")
    ap.add_argument("--config", type=Path, nargs="+", default=[ROOT / "config" / "config.yaml"])
    ap.add_argument("--split", default="test")
    ap.add_argument("--shard", default="9")
    ap.add_argument("--val-shard", default="8")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args(argv)
    c, out = args.campaign, args.output
    out.mkdir(parents=True, exist_ok=True)
    cfg = resolve_campaign(load_campaign(args.config))
    events = c / "events" / args.split / f"{args.shard}.h5"
    mm, gnn_trained, gnn = (
        c / "module_map" / "module_map.h5",
        c / "models" / "gnn_trained.pt",
        c / "models" / "gnn.pt",
    )
    rows = {}

    run_build_graphs(events, out / "graphs.h5", cfg["graph_construction"], module_map=mm, device="cpu")
    rows["build_graphs"] = _graphs_equal(c / "graphs" / args.split / f"{args.shard}.h5", out / "graphs.h5")

    run_score_graphs(
        events, c / "graphs" / args.split / f"{args.shard}.h5", gnn, out / "scored.h5", "gnn", "cpu"
    )
    rows["score_gnn"] = _graphs_equal(
        c / "scored" / args.split / f"{args.shard}.h5", out / "scored.h5", "gnn"
    )

    val_e, val_g = (
        c / "events" / "val" / f"{args.val_shard}.h5",
        c / "graphs" / "val" / f"{args.val_shard}.h5",
    )
    wp = run_choose_working_point(
        gnn_trained, [val_e], [val_g], out / "gnn.pt", cfg["gnn"], cfg["inference"].track_building, "cpu"
    )
    ref_wp = read_model_info(gnn)["working_point"]
    rows["working_point"] = {
        "score_cut": wp["score_cut"],
        "campaign_score_cut": ref_wp["score_cut"],
        "scan_equal": [{k: v for k, v in r.items()} for r in wp["scan"]] == ref_wp["scan"],
    }

    run_infer(events, out / "tracks.h5", cfg["inference"], module_map=mm, gnn_model=gnn, device="cpu")
    rows["infer"] = _tracks_equal(c / "tracks" / f"{args.shard}.h5", out / "tracks.h5")

    summary = run_evaluate(
        [events], [out / "tracks.h5"], {"module_map": [c / "graphs" / args.split / f"{args.shard}.h5"],
                                         "gnn": [out / "scored.h5"]},
        out / "eval", cfg["evaluation"], gnn_model=gnn,
    )  # fmt: skip
    ref = json.loads((c / "eval" / "summary.json").read_text())
    mine, theirs = _numbers(summary), _numbers(ref)
    common = sorted(set(mine) & set(theirs))
    diff = {k: (mine[k], theirs[k]) for k in common if mine[k] != theirs[k]}
    rows["evaluate"] = {
        "numbers_compared": len(common),
        "numbers_equal": not diff,
        "differences": diff,
        "only_here": sorted(set(mine) - set(theirs)),  # numbers this code adds (new metrics)
        "only_there": sorted(set(theirs) - set(mine)),
    }

    (out / "equivalence.json").write_text(json.dumps({"campaign": str(c), "stages": rows}, indent=1) + "\n")
    for stage, r in rows.items():
        print(f"{stage:15s} {json.dumps(r)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
