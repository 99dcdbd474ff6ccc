"""Small, schema-complete synthetic events for unit tests of the stages after ``convert``.

Tracks are exact helices from the beam line through barrel cylinders (no material, no
endcaps), so tests of later stages run in milliseconds and know the right answer. Physics
realism is the simulation's job; this is only a fixture.
"""

from __future__ import annotations

import numpy as np

from gnntrack.io.event_store import CLUSTER_COLUMNS, CLUSTER_FEATURES, HIT_COLUMNS, PARTICLE_COLUMNS, Event

RADII = np.array([34.0, 99.0, 160.0, 228.0, 291.0, 405.0, 562.0, 762.0, 1000.0])
N_PIXEL_LAYERS = 5
PHI_MODULES = np.array([16, 32, 48, 64, 80, 56, 72, 96, 128])
Z_HALF = 1400.0
Z_MODULES = 14
B_FIELD = 2.0


def _module_ids(layer, phi, z):
    phi_mod = np.floor((phi + np.pi) / (2 * np.pi) * PHI_MODULES[layer]).astype(np.int64) % PHI_MODULES[layer]
    eta_mod = np.clip(np.floor((z + Z_HALF) / (2 * Z_HALF) * Z_MODULES), 0, Z_MODULES - 1).astype(np.int64)
    module_id = (layer.astype(np.uint64) << np.uint64(24)) | (phi_mod.astype(np.uint64) << np.uint64(8))
    module_id |= eta_mod.astype(np.uint64)
    return module_id, phi_mod, eta_mod


def make_event(
    n_particles: int = 40,
    n_noise: int = 20,
    seed: int = 0,
    run_number: int = 1,
    event_number: int = 0,
    pt_range: tuple[float, float] = (0.5, 10.0),
    eta_max: float = 1.0,
) -> Event:
    """An event with ``n_particles`` helical tracks, one hit per crossed layer, and noise hits."""
    rng = np.random.default_rng(seed)
    pt = np.exp(rng.uniform(np.log(pt_range[0]), np.log(pt_range[1]), n_particles))
    eta = rng.uniform(-eta_max, eta_max, n_particles)
    phi0 = rng.uniform(-np.pi, np.pi, n_particles)
    charge = rng.choice([-1.0, 1.0], n_particles)
    vz = rng.normal(0, 30.0, n_particles)
    radius_of_curvature = pt / (0.3 * B_FIELD) * 1000.0  # mm

    hit_rows = []  # (particle, layer, x, y, z)
    for p in range(n_particles):
        for layer, r in enumerate(RADII):
            if r >= 2 * radius_of_curvature[p]:
                break
            # helix from the origin: phi(r) = phi0 - q * asin(r / 2R)
            phi = phi0[p] - charge[p] * np.arcsin(r / (2 * radius_of_curvature[p]))
            s = 2 * radius_of_curvature[p] * np.arcsin(r / (2 * radius_of_curvature[p]))
            z = vz[p] + s * np.sinh(eta[p])
            if abs(z) > Z_HALF:
                break
            hit_rows.append((p, layer, r * np.cos(phi), r * np.sin(phi), z))
    for _ in range(n_noise):
        layer = int(rng.integers(0, len(RADII)))
        phi = rng.uniform(-np.pi, np.pi)
        hit_rows.append(
            (-1, layer, RADII[layer] * np.cos(phi), RADII[layer] * np.sin(phi), rng.uniform(-Z_HALF, Z_HALF))
        )
    rows = np.array(hit_rows, dtype=np.float64).reshape(-1, 5)
    rows = rows[rng.permutation(len(rows))]
    particle_index = rows[:, 0].astype(np.int64)
    layer = rows[:, 1].astype(np.int64)
    x, y, z = rows[:, 2], rows[:, 3], rows[:, 4]
    n = len(rows)
    r = np.hypot(x, y)
    phi = np.arctan2(y, x)
    theta = np.arctan2(r, z)
    heta = -np.log(np.tan(theta / 2))
    module_id, phi_mod, eta_mod = _module_ids(layer, phi, z)
    strip = layer >= N_PIXEL_LAYERS

    hits = {
        "hit_id": np.arange(n, dtype=np.int64),
        "x": x.astype(np.float32), "y": y.astype(np.float32), "z": z.astype(np.float32),
        "r": r.astype(np.float32), "phi": phi.astype(np.float32), "eta": heta.astype(np.float32),
        "module_id": module_id,
        "hardware": strip.astype(np.int8),
        "barrel_endcap": np.zeros(n, np.int8),
        "layer_disk": np.where(strip, layer - N_PIXEL_LAYERS, layer).astype(np.int8),
        "eta_module": eta_mod.astype(np.int16),
        "phi_module": phi_mod.astype(np.int16),
        "is_overlap": np.where(strip, 0, -1).astype(np.int8),
        "particle_index": particle_index,
    }  # fmt: skip
    # clusters: one per pixel hit, two per strip hit (sides 0 and 1 at the same position)
    n_cl = n + int(strip.sum())
    cl1 = np.arange(n, dtype=np.int64)
    cl2 = np.full(n, -1, np.int64)
    cl2[strip] = n + np.arange(int(strip.sum()))
    owner = np.concatenate([np.arange(n), np.flatnonzero(strip)])
    side = np.concatenate([np.zeros(n, np.int8), np.ones(int(strip.sum()), np.int8)])
    hits["cluster_index_1"] = cl1
    hits["cluster_index_2"] = cl2
    clusters = {
        "cluster_id": np.arange(n_cl, dtype=np.int64),
        "hardware": hits["hardware"][owner],
        "x": hits["x"][owner], "y": hits["y"][owner], "z": hits["z"][owner],
        "barrel_endcap": np.zeros(n_cl, np.int8),
        "layer_disk": hits["layer_disk"][owner],
        "eta_module": hits["eta_module"][owner], "phi_module": hits["phi_module"][owner],
        "side": side,
        "module_id": module_id[owner],
        "pixel_count": rng.integers(1, 6, n_cl).astype(np.int32),
        "charge_count": rng.integers(5, 60, n_cl).astype(np.int32),
        "loc_eta": rng.normal(0, 1, n_cl).astype(np.float32),
        "loc_phi": rng.normal(0, 1, n_cl).astype(np.float32),
        "glob_eta": heta[owner].astype(np.float32),
        "glob_phi": phi[owner].astype(np.float32),
        "eta_angle": rng.normal(0, 0.3, n_cl).astype(np.float32),
        "phi_angle": rng.normal(0, 0.3, n_cl).astype(np.float32),
        "norm_x": np.cos(phi[owner]).astype(np.float32),
        "norm_y": np.sin(phi[owner]).astype(np.float32),
        "norm_z": np.zeros(n_cl, np.float32),
        "particle_index": particle_index[owner],
    }  # fmt: skip
    cl_r = np.hypot(clusters["x"], clusters["y"])
    derived = {
        "r": cl_r, "phi": np.arctan2(clusters["y"], clusters["x"]),
        "eta": -np.log(np.tan(np.arctan2(cl_r, clusters["z"]) / 2)),
    }  # fmt: skip
    for prefix, idx in (("cl1", cl1), ("cl2", np.where(cl2 >= 0, cl2, cl1))):
        for feat in CLUSTER_FEATURES:
            src = derived[feat] if feat in derived else clusters[feat]
            hits[f"{prefix}_{feat}"] = np.asarray(src)[idx].astype(np.float32)

    true = particle_index >= 0
    n_sp = np.bincount(particle_index[true], minlength=n_particles)
    particles = {
        "subevent": np.zeros(n_particles, np.int32),
        "barcode": np.arange(1, n_particles + 1, dtype=np.int64),
        "px": (pt * np.cos(phi0)).astype(np.float32), "py": (pt * np.sin(phi0)).astype(np.float32),
        "pz": (pt * np.sinh(eta)).astype(np.float32), "pt": pt.astype(np.float32),
        "eta": eta.astype(np.float32), "phi": phi0.astype(np.float32),
        "vx": np.zeros(n_particles, np.float32), "vy": np.zeros(n_particles, np.float32),
        "vz": vz.astype(np.float32), "radius": np.zeros(n_particles, np.float32),
        "charge": charge.astype(np.float32), "pdg_id": (211 * charge).astype(np.int32),
        "status": np.ones(n_particles, np.int32), "is_primary": np.ones(n_particles, bool),
        "n_spacepoints": n_sp.astype(np.int32), "n_modules": n_sp.astype(np.int32),
        "is_target": (pt > 1.0) & (n_sp >= 3),
        "jet_dr": rng.uniform(0.05, 3.0, n_particles).astype(np.float32),
        "jet_pt": rng.uniform(20, 200, n_particles).astype(np.float32),
    }  # fmt: skip

    # truth graph: consecutive layers along each particle (one hit per layer here)
    order = np.lexsort((layer, particle_index))
    p_sorted, h_sorted = particle_index[order], order
    same = (p_sorted[1:] == p_sorted[:-1]) & (p_sorted[1:] >= 0)
    edges = np.stack([h_sorted[:-1][same], h_sorted[1:][same]]).astype(np.int64)
    ev = Event(
        run_number=run_number,
        event_number=event_number,
        hits=hits,
        clusters=clusters,
        particles=particles,
        jets={
            "pt": np.array([50.0], np.float32),
            "eta": np.array([0.1], np.float32),
            "phi": np.array([0.2], np.float32),
        },
        truth_edges=edges,
        truth_edge_particle=particle_index[edges[0]],
        hit_particle=np.stack([np.flatnonzero(true), particle_index[true]]).astype(np.int64),
    )
    assert set(HIT_COLUMNS) <= set(ev.hits) and set(CLUSTER_COLUMNS) <= set(ev.clusters)
    assert set(PARTICLE_COLUMNS) <= set(ev.particles)
    ev.validate()
    return ev


#: metric-learning settings small enough for a test to train in seconds (shared by its tests)
SMALL_EMBEDDING = {
    "hidden": 48,
    "n_layers": 2,
    "emb_dim": 6,
    "margin": 0.2,
    "r_max": 0.2,
    "k_max": 16,
    "knn": 8,
    "train": {"epochs": 6, "lr": 0.005, "seed": 1, "progress": "off"},
}
