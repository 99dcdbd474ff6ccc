"""The prototype's trained context filter (benchmarks/filter_context_20261204) as a library
``FilterModel(context_hidden=64)``: same weights renamed (``base.*`` -> the filter's own,
``corr.*`` -> ``edge_net.*``), saved and loaded as a model file; logits compared on one event,
whole and in chunks of 300 k edges.

    PYTHONPATH=src python benchmarks/ml_campaign_context_filter_20261204/library_equivalence.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "filter_context_20261204"))
from context_filter import ContextFilter  # noqa: E402

from gnntrack.edge_classification.data import load_items  # noqa: E402
from gnntrack.models import FilterModel, load_model, save_model  # noqa: E402
from gnntrack.models.losses import LossConfig  # noqa: E402
from gnntrack.models.registry import load_checkpoint  # noqa: E402

BASE = ROOT / "benchmarks/metric_learning_margin_20261204/campaign/filter_mu200.pt"
PROTO = ROOT / "benchmarks/filter_context_20261204/context_filter_mu200.pt"
CAMPAIGN = ROOT / "results/physics_mu200_ml"


def main() -> None:
    torch.set_num_threads(2)
    proto = ContextFilter(load_model(BASE), 64)
    proto.load_state_dict(load_checkpoint(PROTO, "prototype")["state_dict"])
    proto.eval()
    lib = FilterModel(**{**load_model(BASE).config, "context_hidden": 64, "context_layers": 2})
    renamed = {}
    for k, v in proto.state_dict().items():
        k = k.removeprefix("base.")
        renamed["edge_net." + k.removeprefix("corr.") if k.startswith("corr.") else k] = v
    lib.load_state_dict(renamed, strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(lib, Path(tmp) / "context.pt")
        lib = load_model(Path(tmp) / "context.pt")
    items = load_items(
        [CAMPAIGN / "events/test/5.h5"], [CAMPAIGN / "graphs/test/5.h5"],
        lib.node_features, lib.feature_scales, LossConfig(), None, 1,
    )  # fmt: skip
    x, ei = items[0].x, items[0].edge_index
    with torch.inference_mode():
        a, b = proto(x, ei), lib(x, ei)
        c = lib.chunked_logits(x, ei, 300_000)
    print(f"{ei.shape[1]} edges: max |prototype - library| = {float((a - b).abs().max()):.3g}, "
          f"max |whole - chunked (300 k)| = {float((b - c).abs().max()):.3g} (logits)")  # fmt: skip


if __name__ == "__main__":
    main()
