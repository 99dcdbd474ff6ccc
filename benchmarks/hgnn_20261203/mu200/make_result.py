#!/usr/bin/env python
"""The <mu> = 200 result table of benchmarks/hgnn_20261203/README.md from hgnn_compare.py outputs.

    python benchmarks/hgnn_20261203/mu200/make_result.py DIR [NAME ...]

DIR holds ``{val,test}_base/compare.json`` (cc, walkthrough and the <mu> = 60 HGNN at every cut)
and ``{val,test}_NAME/compare.json`` for each NAME (a <mu> = 200 HGNN at every assignment cut;
default hgnn200). Settings
are chosen on the validation events: cc and walkthrough by the working-point rule of
``gnntrack.gnn.working_point`` (highest edge cut within 0.002 of the best two-way efficiency)
and, for the walkthrough, also by its best two-way efficiency; each HGNN by its best two-way
efficiency (ties: higher cut). Writes ``result.json`` (val and test rows) and prints the table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TOLERANCE = 0.002
#: the score cut stored in the campaign's models/gnn.pt (logs/gnn_working_point.log)
CAMPAIGN_CUT = 0.35


def rows(path: Path, method: str) -> list[dict]:
    return [r for r in json.loads(path.read_text())["rows"] if r["method"] == method]


def best(rs: list[dict]) -> dict:
    return max(rs, key=lambda r: (r["two_way_efficiency"], r["cut"]))


def rule(rs: list[dict]) -> dict:
    top = max(r["two_way_efficiency"] for r in rs)
    return max((r for r in rs if r["two_way_efficiency"] >= top - TOLERANCE), key=lambda r: r["cut"])


def at(rs: list[dict], cut: float) -> dict:
    return next(r for r in rs if abs(r["cut"] - cut) < 1e-9)


def main(d: Path, *names: str) -> None:
    picks = []  # (label, file stem, method, val row)
    for method in ("cc", "walkthrough"):
        val = rows(d / "val_base/compare.json", method)
        picks.append((f"{method} (working-point rule)", "base", method, rule(val)))
        if method == "walkthrough":
            picks.append(("walkthrough (best val two-way eff)", "base", method, best(val)))
            # the campaign's stored working point (chosen on 5 of the 10 validation events)
            picks.append(("walkthrough (campaign working point)", "base", method, at(val, CAMPAIGN_CUT)))
    for name in names or ("hgnn200",):
        val = rows(d / f"val_{name}/compare.json", "hgnn")
        picks.append((f"hgnn, <mu>=200 model ({name})", name, "hgnn", best(val)))
    picks.append(
        ("hgnn, <mu>=60 model (try6)", "base", "hgnn", best(rows(d / "val_base/compare.json", "hgnn")))
    )
    out = {}
    for split in ("val", "test"):
        table = []
        for label, stem, method, vrow in picks:
            r = at(rows(d / f"{split}_{stem}/compare.json", method), vrow["cut"])
            table.append({"label": label, **r})
        out[split] = {
            "n_events": json.loads((d / f"{split}_base/compare.json").read_text())["n_events"],
            "rows": table,
        }
    print(
        "| split | method | cut | two-way eff | two-way fake | ATLAS eff | ATLAS fake | ATLAS dup | tracks "
        "| CPU s/event | wall s/event |"
    )
    for split, v in out.items():
        for r in v["rows"]:
            tw, at_ = r["counts"]["two_way"], r["counts"]["ATLAS"]
            print(
                f"| {split} | {r['label']} | {r['cut']:.2f} "
                f"| {r['two_way_efficiency']:.4f} ({tw['n_target_reconstructed']}/{tw['n_target']}) "
                f"| {r['two_way_fake_rate']:.4f} ({tw['n_fake']}) "
                f"| {r['atlas_efficiency']:.4f} ({at_['n_target_reconstructed']}) "
                f"| {r['atlas_fake_rate']:.4f} ({at_['n_fake']}) | {r['atlas_duplicate_rate']:.4f} "
                f"| {r['tracks']} | {r['cpu_s_per_event']:.4f} | {r['wall_s_per_event']:.4f} |"
            )
    (d / "result.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), *sys.argv[2:])
