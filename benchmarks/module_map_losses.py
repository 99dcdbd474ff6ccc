"""Where a module map loses target edges: held-out target doublets by detector region.

Builds the map from the training events (as the workflow does) or reads a built one, applies
it to held-out events and splits the target doublets (consecutive modules of a target
particle) by source/destination region (barrel/endcap x pixel/strip) into found, lost by a
window cut although the module pair is mapped, and lost because the pair is not in the map at
all (coverage).

    python benchmarks/module_map_losses.py --train results/default/events/train/*.h5 \
        --test results/default/events/test/9.h5 -o benchmarks/module_map_losses_mu60.json
    python benchmarks/module_map_losses.py --map results/default/module_map/module_map.h5 \
        --test mu200.h5 -o benchmarks/module_map_losses_mu200.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from gnntrack.graph_construction import ModuleMap, ModuleMapData, build_module_map
from gnntrack.graph_construction.geometry import module_ids_as_int64
from gnntrack.io.event_store import iter_events

HARDWARE = {0: "pixel", 1: "strip"}


def region(hits, i: np.ndarray) -> np.ndarray:
    part = np.where(np.asarray(hits["barrel_endcap"])[i] == 0, "barrel", "endcap")
    hw = np.vectorize(lambda c: HARDWARE.get(int(c), str(c)))(np.asarray(hits["hardware"])[i])
    return np.char.add(np.char.add(part, " "), hw)


def losses(mm: ModuleMap, events) -> dict:
    mapped = set(map(tuple, np.asarray(mm.data.modules).view(np.int64).tolist()))
    total, lost_window, lost_pair = Counter(), Counter(), Counter()
    n_edges = 0
    for ev in events:
        n = len(ev.hits["r"])
        e = mm.build_edges(ev.hits).cpu().numpy()
        found = set((e[0] * n + e[1]).tolist())
        n_edges += e.shape[1]
        edges = np.asarray(ev.truth_edges, np.int64)
        part = np.asarray(ev.truth_edge_particle, np.int64)
        target = np.asarray(ev.particles["is_target"], bool)
        keep = (part >= 0) & target[np.maximum(part, 0)]
        src, dst = edges[0, keep], edges[1, keep]
        mod = module_ids_as_int64(ev.hits["module_id"])
        step = mod[src] != mod[dst]
        src, dst = src[step], dst[step]
        key = np.char.add(np.char.add(region(ev.hits, src), " -> "), region(ev.hits, dst))
        for k, a, b in zip(key.tolist(), src.tolist(), dst.tolist()):
            total[k] += 1
            if a * n + b in found or b * n + a in found:
                continue
            if (mod[a], mod[b]) in mapped:
                lost_window[k] += 1
            else:
                lost_pair[k] += 1
    n_all = sum(total.values())
    n_lost = sum(lost_window.values()) + sum(lost_pair.values())
    rows = [
        {
            "region": k,
            "target_doublets": total[k],
            "efficiency": 1 - (lost_window[k] + lost_pair[k]) / total[k],
            "lost_window": lost_window[k],
            "lost_unmapped_pair": lost_pair[k],
            "share_of_all_losses": (lost_window[k] + lost_pair[k]) / max(n_lost, 1),
        }
        for k in sorted(total, key=lambda k: -(lost_window[k] + lost_pair[k]))
    ]
    return {
        "target_doublets": n_all,
        "efficiency": 1 - n_lost / n_all,
        "edges_per_event": n_edges / max(len(events), 1),
        "regions": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--train", nargs="+", help="build the map from these event shards")
    src.add_argument("--map", help="or read a built map (its own cut settings unless given)")
    ap.add_argument("--test", nargs="+", required=True)
    ap.add_argument("--symmetry", default="phi")
    ap.add_argument("--tolerance", type=float, default=None, help="default: the map's (built: 0.1)")
    ap.add_argument("--small-count-margin", type=float, default=None, help="default: the map's (built: 1)")
    ap.add_argument("-o", "--output", default="results/bench/module_map_losses.json")
    args = ap.parse_args()
    if args.map:
        data = ModuleMapData.read(args.map)
    else:
        data = build_module_map(
            args.train, {"symmetry": args.symmetry, "tolerance": 0.1, "small_count_margin": 1.0}
        )
    mm = ModuleMap(data, "cpu", tolerance=args.tolerance, small_count_margin=args.small_count_margin)
    events = [ev for f in args.test for ev in iter_events(f, tables=("hits", "particles"))]
    result = {"settings": vars(args), "n_train_events": data.n_events, **losses(mm, events)}
    print(
        f"target-edge efficiency {result['efficiency']:.4f} over {result['target_doublets']} doublets, "
        f"{result['edges_per_event']:.0f} edges/event"
    )
    print("| region | target doublets | efficiency | lost: window | lost: unmapped pair | share of losses |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in result["regions"]:
        print(
            f"| {r['region']} | {r['target_doublets']} | {r['efficiency']:.4f} | {r['lost_window']} | "
            f"{r['lost_unmapped_pair']} | {r['share_of_all_losses']:.3f} |"
        )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
