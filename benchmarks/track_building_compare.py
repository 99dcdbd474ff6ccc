#!/usr/bin/env python
"""Connected components vs walkthrough on the same GNN scores, over a range of edge cuts.

    python benchmarks/track_building_compare.py --campaign results/default -o DIR

Reads the campaign's GNN-scored test graphs (``scored/test``) and test events, builds track
candidates with each method at every cut, and writes ``DIR/track_building.json`` and
``DIR/track_building.md``: two-way and ATLAS efficiency and fake rate per method and cut, the
best cut of each method by two-way efficiency, and the model's stored working point.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gnntrack.io.event_store import read_event  # noqa: E402
from gnntrack.io.graph_store import iter_graphs  # noqa: E402
from gnntrack.models.registry import read_model_info  # noqa: E402
from gnntrack.training.working_point import DEFAULT_CUTS, WorkingPointConfig, scan_cuts  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--campaign", type=Path, default=ROOT / "results" / "default")
    ap.add_argument("--cuts", type=float, nargs="+", default=list(DEFAULT_CUTS))
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args(argv)
    c = args.campaign
    scored = []
    for f in sorted((c / "scored" / "test").glob("*.h5")):
        for g in iter_graphs(f):
            event = read_event(c / "events" / "test" / f.name, g.key, tables=("hits", "particles"))
            scored.append((event, g, g.scores["gnn"]))
    wp = read_model_info(c / "models" / "gnn.pt").get("working_point") or {}
    out = {"campaign": str(c), "n_events": len(scored), "stored_cut": wp.get("score_cut"), "methods": {}}
    for method in ("cc", "walkthrough"):
        t0 = time.process_time()
        rows = scan_cuts(scored, WorkingPointConfig(cuts=args.cuts, method=method))
        cpu = time.process_time() - t0
        best = max(rows, key=lambda r: (r["two_way_efficiency"] or 0.0, r["cut"]))
        out["methods"][method] = {
            "rows": rows,
            "best": best,
            "cpu_s_per_event_per_cut": cpu / len(scored) / len(rows),
        }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "track_building.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [
        f"Track building on the GNN scores of {len(scored)} test events ({c}); stored working point "
        f"{wp.get('score_cut')}",
        "",
        "| method | cut | two-way eff | two-way fake | ATLAS eff | ATLAS fake |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for method, m in out["methods"].items():
        for r in m["rows"]:
            mark = " **best**" if r is m["best"] else ""
            lines.append(
                f"| {method}{mark} | {r['cut']:.2f} | {r['two_way_efficiency']:.4f} | {r['two_way_fake_rate']:.4f} | "
                f"{r['atlas_efficiency']:.4f} | {r['atlas_fake_rate']:.4f} |"
            )
    (args.output / "track_building.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
