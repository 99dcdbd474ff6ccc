"""Two evaluations of the same test events side by side: edges and target-edge efficiency after
each stage, track efficiency / fake / duplicate rates (ATLAS, one-way, two-way) and the chain's
stage times, from each campaign's ``eval/summary.json``; prints a table and writes JSON.

    python benchmarks/ml_campaign_context_filter_20261204/compare.py \
        --label per-edge BEFORE/summary.json --label context AFTER/summary.json --json OUT.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(summary: dict) -> dict:
    out = {"events": summary["events"]}
    for stage, e in summary["edges"].items():
        out[f"edges/event after {stage}"] = e.get("edges_per_event")
        out[f"target-edge efficiency after {stage}"] = e["efficiency"]["value"]
    for style, t in summary["tracking"].items():
        for k in ("efficiency", "fake_rate", "duplicate_rate"):
            out[f"{style} {k}"] = t[k]["value"]
    for row in summary["timing"]:
        out[f"{row['stage']} s/event"] = row["mean"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", nargs=2, action="append", metavar=("NAME", "SUMMARY"), required=True)
    ap.add_argument("--json")
    args = ap.parse_args()
    table = {name: rows(json.loads(Path(path).read_text())) for name, path in args.label}
    names = list(table)
    keys = list(dict.fromkeys(k for t in table.values() for k in t))
    print(f"| quantity | {' | '.join(names)} |")
    print(f"| --- |{' --- |' * len(names)}")
    for k in keys:
        vals = [table[n].get(k) for n in names]
        cells = [
            "–"
            if v is None
            else (f"{v:.0f}" if isinstance(v, (int, float)) and abs(v) >= 100 else f"{v:.4f}")
            for v in vals
        ]
        print(f"| {k} | {' | '.join(cells)} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"inputs": dict(args.label), "table": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()
