"""Spacepoint feature matrices for the learned stages, with the scales stored in each model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: Default node features: cylindrical coordinates and both clusters' shape features.
DEFAULT_NODE_FEATURES = (
    "r", "phi", "z", "eta",
    "cl1_r", "cl1_phi", "cl1_z", "cl1_eta", "cl1_pixel_count", "cl1_charge_count",
    "cl1_loc_eta", "cl1_loc_phi", "cl1_glob_eta", "cl1_glob_phi",
    "cl2_r", "cl2_phi", "cl2_z", "cl2_eta", "cl2_pixel_count", "cl2_charge_count",
    "cl2_loc_eta", "cl2_loc_phi", "cl2_glob_eta", "cl2_glob_phi",
)  # fmt: skip

#: Divisors that bring each feature to O(1) (mm, rad, counts).
DEFAULT_SCALES = {
    "r": 1000.0, "phi": np.pi, "z": 1000.0, "eta": 1.0,
    "cl1_r": 1000.0, "cl1_phi": np.pi, "cl1_z": 1000.0, "cl1_eta": 1.0,
    "cl2_r": 1000.0, "cl2_phi": np.pi, "cl2_z": 1000.0, "cl2_eta": 1.0,
    "cl1_pixel_count": 10.0, "cl2_pixel_count": 10.0,
    "cl1_charge_count": 1.0e4, "cl2_charge_count": 1.0e4,  # electrons
    "cl1_loc_eta": 20.0, "cl1_loc_phi": 20.0, "cl2_loc_eta": 20.0, "cl2_loc_phi": 20.0,  # mm on the module
    "cl1_glob_eta": 1.0, "cl1_glob_phi": np.pi, "cl2_glob_eta": 1.0, "cl2_glob_phi": np.pi,
}  # fmt: skip


def node_features(
    hits: Mapping[str, np.ndarray],
    names: Sequence[str] = DEFAULT_NODE_FEATURES,
    scales: Mapping[str, float] | None = None,
) -> np.ndarray:
    """(n_hits, len(names)) float32 matrix of scaled features; non-finite values become 0."""
    scales = DEFAULT_SCALES if scales is None else scales
    n = len(hits["x"])
    out = np.empty((n, len(names)), dtype=np.float32)
    for i, name in enumerate(names):
        out[:, i] = np.asarray(hits[name], dtype=np.float32) / np.float32(scales.get(name, 1.0))
    np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return out
