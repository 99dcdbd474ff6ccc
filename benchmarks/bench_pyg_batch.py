#!/usr/bin/env python
"""Mini-batch collation of edge-classifier items: PyG ``Batch.from_data_list`` vs plain torch.

    python benchmarks/bench_pyg_batch.py [-o benchmarks/pyg_batch.json] [--repeat 30]

Training items (``edge_classification.data.GraphItem``: node features, edge_index, labels,
weights) are built from the test suite's synthetic events (``tests/synthetic.py``) with random
fake edges added, at two sizes: whole small events and large events (~2e5 edges), and the
η-φ regions of the large events (the small items region training makes). For batches of k
items it times merging them into one disjoint graph (node features and edge arrays
concatenated, edge_index shifted by the node offsets):

- ``torch``: each edge_index shifted by its node offset, then ``torch.cat``, on the GraphItems
  as they are (``collate_torch``);
- ``pyg``: ``torch_geometric.data.Batch.from_data_list`` on ``Data`` objects made beforehand
  (what a PyG ``DataLoader`` collates);
- ``pyg+wrap``: the same, including wrapping each GraphItem in a ``Data``.

Both results are checked to be equal. Prints a markdown table (median ms per collation) and
writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from synthetic import make_event  # noqa: E402

from gnntrack.edge_classification.data import GraphItem, make_item, split_item  # noqa: E402
from gnntrack.edge_classification.regions import RegionConfig  # noqa: E402
from gnntrack.io.features import DEFAULT_NODE_FEATURES, DEFAULT_SCALES  # noqa: E402
from gnntrack.io.graph_store import make_graph  # noqa: E402
from gnntrack.models.losses import LossConfig  # noqa: E402


def items_of(n_events: int, n_particles: int, fakes_per_hit: int, seed: int = 0) -> tuple[list, list]:
    """GraphItems of synthetic events with ``fakes_per_hit`` random edges per hit, and the events."""
    rng = np.random.default_rng(seed)
    items, events = [], []
    for i in range(n_events):
        ev = make_event(n_particles=n_particles, n_noise=n_particles // 2, seed=seed + i, event_number=i)
        n = ev.n_hits
        ei = np.concatenate([ev.truth_edges, rng.integers(0, n, (2, fakes_per_hit * n))], axis=1)
        g = make_graph(ei, ev)
        items.append(make_item(ev, g, DEFAULT_NODE_FEATURES, DEFAULT_SCALES, LossConfig()))
        events.append(ev)
    return items, events


def collate_torch(items: list[GraphItem]) -> GraphItem:
    """One disjoint graph of ``items``: features and edge arrays concatenated, edges shifted."""
    offsets, n = [], 0
    for it in items:
        offsets.append(n)
        n += it.x.shape[0]
    return GraphItem(
        key="+".join(it.key for it in items),
        x=torch.cat([it.x for it in items]),
        edge_index=torch.cat(
            [it.edge_index + off if off else it.edge_index for it, off in zip(items, offsets)], 1
        ),
        y=torch.cat([it.y for it in items]),
        y_target=torch.cat([it.y_target for it in items]),
        weight=torch.cat([it.weight for it in items]),
    )


def to_data(item: GraphItem):
    from torch_geometric.data import Data

    return Data(x=item.x, edge_index=item.edge_index, y=item.y, y_target=item.y_target, weight=item.weight)


def collate_pyg(datas):
    from torch_geometric.data import Batch

    return Batch.from_data_list(datas)


def _median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def measure(name: str, items: list[GraphItem], k: int, repeat: int) -> dict:
    batch = items[:k]
    datas = [to_data(it) for it in batch]
    ours, theirs = collate_torch(batch), collate_pyg(datas)
    for attr in ("x", "edge_index", "y", "y_target", "weight"):
        assert torch.equal(getattr(ours, attr), getattr(theirs, attr)), attr
    row = {
        "items": name,
        "k": k,
        "nodes": int(ours.x.shape[0]),
        "edges": int(ours.n_edges),
        "torch_ms": _median_ms(lambda: collate_torch(batch), repeat),
        "pyg_ms": _median_ms(lambda: collate_pyg(datas), repeat),
        "pyg_wrap_ms": _median_ms(lambda: collate_pyg([to_data(it) for it in batch]), repeat),
    }
    row["pyg_over_torch"] = row["pyg_ms"] / row["torch_ms"]
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", type=Path, default=ROOT / "benchmarks" / "pyg_batch.json")
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = p.parse_args(argv)
    import torch_geometric

    torch.set_num_threads(args.threads)
    small, _ = items_of(16, 40, 2)
    large, large_events = items_of(4, 4000, 6)
    regions = []
    cfg = RegionConfig(n_eta=2, n_phi=4, eta_min=-0.5, eta_max=0.5)
    for it, ev in zip(large, large_events):
        regions += split_item(it, ev.hits["eta"], ev.hits["phi"], cfg)
    rows = []
    for name, items, ks in (
        ("small events", small, (4, 16)),
        ("regions", regions, (4, 16)),
        ("large events", large, (4,)),
    ):
        for k in ks:
            rows.append(measure(name, items, k, args.repeat))
    header = (
        "| items | k | nodes | edges | torch [ms] | PyG Batch [ms] | PyG incl. Data() [ms] | PyG / torch |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['items']} | {r['k']} | {r['nodes']} | {r['edges']} | {r['torch_ms']:.3f} | "
            f"{r['pyg_ms']:.3f} | {r['pyg_wrap_ms']:.3f} | {r['pyg_over_torch']:.1f}x |"
        )
    print("\n".join(lines))
    out = {
        "benchmark": "mini-batch collation of edge-classifier items",
        "command": "python benchmarks/bench_pyg_batch.py " + " ".join(argv or sys.argv[1:]),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "threads": args.threads,
        "repeat": args.repeat,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "statistic": "median wall time of one collation",
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
