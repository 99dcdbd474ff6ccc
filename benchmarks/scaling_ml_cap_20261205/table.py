"""Tables of this record from its JSON files: per cap and <mu>, spacepoints, edges built and into
the GNN, wall and CPU seconds (--no-trim run), RSS rise (trimmed run), two-way track efficiency
and fake rate (gnntrack evaluate); then the log-log slopes.

python benchmarks/scaling_ml_cap_20261205/table.py
"""

from __future__ import annotations

import json
from pathlib import Path

D = Path(__file__).resolve().parent
CAPS = (48, 24, 16)


def main() -> None:
    print("| k_max | <mu> | spacepoints | edges built (/sp) | edges into the GNN | wall s | CPU s | RSS rise MB "
          "| two-way eff. | two-way fake | ATLAS eff. |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    fits = {}
    for k in CAPS:
        time_run = json.loads((D / f"scaling_k{k}.json").read_text())
        mem_run = json.loads((D / f"memory_k{k}.json").read_text())
        fits[k] = (time_run["fits"], mem_run["fits"])
        gnn_edges = {}
        for ev in time_run["events"]:
            gnn_edges.setdefault(ev["mu"], []).append(
                ev.get("n_edges_gnn", ev.get("edges_gnn", float("nan")))
            )
        for row, mrow in zip(time_run["summary"], mem_run["summary"], strict=True):
            mu = int(row["mu"])
            tr = json.loads((D / f"summary_k{k}_mu{mu}.json").read_text())["tracking"]
            g = gnn_edges.get(row["mu"], [float("nan")])
            print(
                f"| {k} | {mu} | {row['n_hits']:.0f} | {row['edges_built']:.0f} ({row['edges_built'] / row['n_hits']:.1f}) "
                f"| {sum(g) / len(g):.0f} | {row['wall_s']['total']:.2f} | {row['cpu_s']:.2f} | {mrow['rss_rise_mb']:.0f} "
                f"| {tr['two_way']['efficiency']['value']:.4f} | {tr['two_way']['fake_rate']['value']:.4f} "
                f"| {tr['ATLAS']['efficiency']['value']:.4f} |"
            )
    print()
    print(
        "| k_max | CPU s | wall s | edges built | edges into the GNN | build edges CPU | filter CPU | GNN CPU | RSS rise |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for k, (f, m) in fits.items():

        def fmt(d):
            return f"{d['slope']:.2f} ± {d['stderr']:.2f}"

        st = f["stage_cpu_s"]
        print(
            f"| {k} | {fmt(f['cpu_s'])} | {fmt(f['total_wall_s'])} | {fmt(f['edges_built'])} | {fmt(f['edges_gnn'])} "
            f"| {fmt(st['build_edges'])} | {fmt(st['filtering'])} | {fmt(st['gnn'])} | {fmt(m['rss_rise_bytes'])} |"
        )


if __name__ == "__main__":
    main()
