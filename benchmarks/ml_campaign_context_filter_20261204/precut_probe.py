"""How much of the context filter's correction could a pre-cut on the per-edge score skip? On the
first 3 events of test/5: the fraction of edges whose per-edge score (the first pass) is below q,
and how many of them (and how many target edges) pass the stored cut after the correction.

    PYTHONPATH=src python benchmarks/ml_campaign_context_filter_20261204/precut_probe.py
"""

import time

import torch

from gnntrack.edge_classification.data import load_items
from gnntrack.models import load_model
from gnntrack.models.losses import LossConfig

torch.set_num_threads(2)
m = load_model(
    "benchmarks/ml_campaign_context_filter_20261204/models/filter_context_q0_mu200.pt"
)  # this campaign's
cut = m.score_cut
items = load_items(
    ["results/physics_mu200_ml/events/test/5.h5"],
    ["results/physics_mu200_ml/graphs/test/5.h5"],
    m.node_features,
    m.feature_scales,
    LossConfig(),
    None,
    3,
)
for it in items:
    x, ei, yt = it.x, it.edge_index, it.y_target.numpy().astype(bool)
    with torch.inference_mode():
        t0 = time.perf_counter()
        lat, lg = m.edge_pass(x, ei)
        t1 = time.perf_counter()
        sums = m.weighted_sums(x, ei, lat, lg)
        ctx = m.node_net(sums)
        t2 = time.perf_counter()
        full = lg + m.correction(ctx, ei, lat)
        t3 = time.perf_counter()
    p0 = torch.sigmoid(lg).numpy()
    pf = torch.sigmoid(full).numpy()
    keep = pf >= cut
    print(
        f"E {len(p0)} times edge_pass {t1 - t0:.2f} sums+node {t2 - t1:.2f} corr {t3 - t2:.2f}; kept {keep.sum()} target kept {keep[yt].sum()}/{yt.sum()}"
    )
    for q in (1e-5, 1e-4, 3e-4):
        below = p0 < q
        print(
            f"  base<{q:g}: {below.mean():.3f} of edges; kept-after-correction among them {int((keep & below).sum())}, target {int((keep & below)[yt].sum())}"
        )
