"""A small synthetic GNN4ITk raw event (in-memory dict) for the I/O tests, plus its sanity tests.

Barrel-only ITk-like geometry: 5 pixel layers and 4 double-sided strip layers; helical tracks in
a 2 T field from a smeared beam spot, a few secondaries produced at larger radius, merged pixel
clusters (two particle links), strip spacepoints from every pair of clusters on the two sides of
a module (so ghosts appear when two particles cross one module), noise clusters. Units mm, MeV.
Row order of clusters and spacepoints is shuffled so that readers must map indices, not rows.
"""

from __future__ import annotations

import numpy as np

from gnntrack.io import gnn4itk_schema as S

PIXEL_R = (34.0, 99.0, 160.0, 228.0, 291.0)
STRIP_R = (405.0, 562.0, 762.0, 1000.0)
PIXEL_HALF_Z, STRIP_HALF_Z = 700.0, 1370.0
STRIP_GAP = 2.0  # mm between the two sides of a strip module
B_FIELD = 2.0


def _module_id(hw, layer, eta_mod, phi_mod, side):
    return (
        (np.uint64(hw) << np.uint64(60))
        | (np.asarray(layer, np.uint64) << np.uint64(52))
        | (np.asarray(eta_mod, np.uint64) << np.uint64(32))
        | (np.asarray(phi_mod, np.uint64) << np.uint64(8))
        | np.asarray(side, np.uint64)
    )


def _crossing(r, pt, phi0, eta, q, vz):
    """Helix (from the z axis) crossing the cylinder of radius r: (x, y, z), or None if it curls."""
    radius = pt / (0.3 * B_FIELD)  # mm for pt in MeV
    if r >= 2 * radius:
        return None
    alpha = np.arcsin(r / (2 * radius))
    phi = phi0 - q * alpha
    z = vz + 2 * radius * alpha * np.sinh(eta)
    return r * np.cos(phi), r * np.sin(phi), z


def make_raw_event(
    seed: int = 0,
    n_particles: int = 60,
    n_noise: int = 20,
    merge_distance: float = 3.0,
    event_number: int = 7,
    run_number: int = 42,
    with_jets: bool = True,
) -> dict:
    rng = np.random.default_rng(seed)
    n = n_particles
    n_sec = max(1, n // 10)
    pt = 400.0 + rng.exponential(1500.0, n)
    eta = rng.uniform(-1.2, 1.2, n)
    phi0 = rng.uniform(-np.pi, np.pi, n)
    q = rng.choice([-1.0, 1.0], n)
    vz = rng.normal(0, 30.0, n)
    prod_r = np.zeros(n)
    prod_r[-n_sec:] = rng.uniform(20.0, 120.0, n_sec)
    barcode = np.arange(1, n + 1, dtype=np.int32)
    barcode[-n_sec:] = 200001 + np.arange(n_sec)
    subevent = np.where(np.arange(n) < n // 2, 0, rng.integers(1, 5, n)).astype(np.int32)
    pdg = rng.choice([211, -211, 321, 2212, 11, -13], n, p=[0.35, 0.35, 0.1, 0.1, 0.05, 0.05]).astype(
        np.int32
    )

    vx, vy, vzz = rng.normal(0, 0.01, n), rng.normal(0, 0.01, n), vz.copy()
    for i in np.flatnonzero(prod_r > 0):
        x, y, z = _crossing(prod_r[i], pt[i], phi0[i], eta[i], q[i], vz[i]) or (0.0, 0.0, vz[i])
        vx[i], vy[i], vzz[i] = x, y, z

    clusters = []  # dicts: x,y,z, hw, layer, eta_mod, phi_mod, side, links
    for i in range(n):
        link = (int(subevent[i]), int(barcode[i]))
        for layer, r in enumerate(PIXEL_R):
            c = _crossing(r, pt[i], phi0[i], eta[i], q[i], vz[i])
            if r <= prod_r[i] or c is None or abs(c[2]) > PIXEL_HALF_Z or rng.random() < 0.02:
                continue
            clusters.append(
                dict(pos=c, hw="PIXEL", layer=layer, r=r, links=[link], side=0, pitch=(20.0, 40.0))
            )
        for layer, r in enumerate(STRIP_R):
            for side, rr in ((0, r), (1, r + STRIP_GAP)):
                c = _crossing(rr, pt[i], phi0[i], eta[i], q[i], vz[i])
                if rr <= prod_r[i] or c is None or abs(c[2]) > STRIP_HALF_Z or rng.random() < 0.02:
                    continue
                clusters.append(
                    dict(pos=c, hw="STRIP", layer=layer, r=r, links=[link], side=side, pitch=(100, 100))
                )
    for _ in range(n_noise):
        layer = int(rng.integers(0, len(PIXEL_R)))
        ph, z = rng.uniform(-np.pi, np.pi), rng.uniform(-PIXEL_HALF_Z, PIXEL_HALF_Z)
        r = PIXEL_R[layer]
        clusters.append(
            dict(
                pos=(r * np.cos(ph), r * np.sin(ph), z),
                hw="PIXEL",
                layer=layer,
                r=r,
                links=[],
                side=0,
                pitch=(20, 40),
            )
        )

    for c in clusters:
        x, y, z = c["pos"]
        pu, pz = c["pitch"]
        c["phi_mod"] = int(np.floor((np.arctan2(y, x) + np.pi) * c["r"] / pu))
        c["eta_mod"] = int(np.floor((z + STRIP_HALF_Z) / pz))
        c["module"] = (c["hw"], c["layer"], c["eta_mod"], c["phi_mod"])

    # merge nearby pixel clusters of one module: one cluster, two particle links
    merged = set()
    pix = [k for k, c in enumerate(clusters) if c["hw"] == "PIXEL"]
    for a_i, a in enumerate(pix):
        for b in pix[a_i + 1 :]:
            ca, cb = clusters[a], clusters[b]
            if (
                a in merged
                or b in merged
                or ca["module"] != cb["module"]
                or not ca["links"]
                or not cb["links"]
            ):
                continue
            if np.linalg.norm(np.subtract(ca["pos"], cb["pos"])) < merge_distance:
                ca["pos"] = tuple((np.add(ca["pos"], cb["pos"])) / 2)
                ca["links"] = ca["links"] + cb["links"]
                merged.add(b)
    clusters = [c for k, c in enumerate(clusters) if k not in merged]

    # spacepoints: every pixel cluster; strip: every (side 0, side 1) pair of one module
    sps = [(k, -1) for k, c in enumerate(clusters) if c["hw"] == "PIXEL"]
    by_module: dict = {}
    for k, c in enumerate(clusters):
        if c["hw"] == "STRIP":
            by_module.setdefault(c["module"], ([], []))[c["side"]].append(k)
    for side0, side1 in by_module.values():
        sps += [(a, b) for a in side0 for b in side1]

    n_cl = len(clusters)
    cl_perm = rng.permutation(n_cl)  # row of cluster k
    cl_index = rng.permutation(n_cl).astype(np.int32) + 100  # CLindex of row
    ev: dict = {"run_number": np.uint32(run_number), "event_number": np.uint64(event_number)}
    rows = np.empty(n_cl, np.int64)
    rows[cl_perm] = np.arange(n_cl)
    ordered = [clusters[k] for k in rows]  # cluster at each row
    pos = np.array([c["pos"] for c in ordered], float).reshape(-1, 3)
    hw_code = np.array([c["hw"] == "STRIP" for c in ordered], int)
    ev["CLindex"] = cl_index
    ev["CLhardware"] = np.array([c["hw"] for c in ordered])
    ev["CLx"], ev["CLy"], ev["CLz"] = pos[:, 0], pos[:, 1], pos[:, 2]
    ev["CLbarrel_endcap"] = np.zeros(n_cl, np.int32)
    ev["CLlayer_disk"] = np.array([c["layer"] for c in ordered], np.int32)
    ev["CLeta_module"] = np.array([c["eta_mod"] for c in ordered], np.int32)
    ev["CLphi_module"] = np.array([c["phi_mod"] for c in ordered], np.int32)
    ev["CLside"] = np.array([c["side"] for c in ordered], np.int32)
    ev["CLmoduleID"] = _module_id(
        hw_code, ev["CLlayer_disk"], ev["CLeta_module"], ev["CLphi_module"], ev["CLside"]
    )
    ev["CLpixel_count"] = rng.integers(1, 6, n_cl).astype(np.int32)
    ev["CLcharge_count"] = rng.integers(5, 80, n_cl).astype(np.int32)
    r_cl = np.hypot(pos[:, 0], pos[:, 1])
    for name in ("CLloc_eta", "CLloc_phi", "CLloc_direction1", "CLloc_direction2", "CLloc_direction3"):
        ev[name] = rng.normal(0, 1, n_cl)
    ev["CLglob_eta"] = np.arcsinh(pos[:, 2] / r_cl) + rng.normal(0, 0.05, n_cl)
    ev["CLglob_phi"] = np.arctan2(pos[:, 1], pos[:, 0]) + rng.normal(0, 0.05, n_cl)
    ev["CLeta_angle"] = rng.normal(0, 0.5, n_cl)
    ev["CLphi_angle"] = rng.normal(0, 0.5, n_cl)
    ev["CLnorm_x"], ev["CLnorm_y"] = pos[:, 0] / r_cl, pos[:, 1] / r_cl
    ev["CLnorm_z"] = np.zeros(n_cl)
    ev["CLparticleLink_eventIndex"] = [np.array([lk[0] for lk in c["links"]], np.int32) for c in ordered]
    ev["CLparticleLink_barcode"] = [np.array([lk[1] for lk in c["links"]], np.int32) for c in ordered]

    n_sp = len(sps)
    sp_order = rng.permutation(n_sp)
    sps = [sps[k] for k in sp_order]
    c1 = np.array([cl_index[cl_perm[a]] for a, _ in sps], np.int32)
    c2 = np.array([cl_index[cl_perm[b]] if b >= 0 else -1 for _, b in sps], np.int32)
    p1 = np.array([clusters[a]["pos"] for a, _ in sps], float).reshape(-1, 3)
    p2 = np.array([clusters[b]["pos"] if b >= 0 else clusters[a]["pos"] for a, b in sps], float).reshape(
        -1, 3
    )
    sp_pos = (p1 + p2) / 2
    ev["SPindex"] = np.arange(n_sp, dtype=np.int32)
    ev["SPx"], ev["SPy"], ev["SPz"] = sp_pos[:, 0], sp_pos[:, 1], sp_pos[:, 2]
    ev["SPCL1_index"], ev["SPCL2_index"] = c1, c2
    ev["SPisOverlap"] = np.where(c2 < 0, -1, 0).astype(np.int32)

    ev["Part_event_number"] = subevent
    ev["Part_barcode"] = barcode
    ev["Part_px"] = (pt * np.cos(phi0)).astype(np.float32)
    ev["Part_py"] = (pt * np.sin(phi0)).astype(np.float32)
    ev["Part_pz"] = (pt * np.sinh(eta)).astype(np.float32)
    ev["Part_pt"] = pt.astype(np.float32)
    ev["Part_eta"] = eta.astype(np.float32)
    ev["Part_vx"], ev["Part_vy"], ev["Part_vz"] = (v.astype(np.float32) for v in (vx, vy, vzz))
    ev["Part_radius"] = np.hypot(vx, vy).astype(np.float32)
    ev["Part_status"] = np.ones(n, np.int32)
    ev["Part_charge"] = q.astype(np.float32)
    ev["Part_pdg_id"] = pdg
    ev["Part_passed"] = np.ones(n, np.int32)
    for name in ("Part_vProdNin", "Part_vProdNout", "Part_vProdStatus", "Part_vProdBarcode"):
        ev[name] = np.zeros(n, np.int32)
    if with_jets:
        ev["Jet_pt"] = np.array([85e3, 40e3], np.float32)
        ev["Jet_eta"] = np.array([0.3, -0.8], np.float32)
        ev["Jet_phi"] = np.array([1.0, -2.0], np.float32)
    for group in (S.PARTICLE_BRANCHES, S.SPACEPOINT_BRANCHES, S.CLUSTER_BRANCHES, S.JET_BRANCHES):
        for name, dt in group.items():
            if name in ev and dt is not str:
                ev[name] = np.asarray(ev[name]).astype(dt)
    return ev


def test_raw_event_is_schema_complete_and_consistent():
    ev = make_raw_event(seed=1, n_particles=80)
    for name in S.REQUIRED_BRANCHES:
        assert name in ev, name
    n_cl = len(ev["CLindex"])
    assert all(len(ev[b]) == n_cl for b in S.CLUSTER_BRANCHES)
    assert len(ev["CLparticleLink_barcode"]) == n_cl
    assert set(ev["SPCL1_index"]) <= set(ev["CLindex"])
    strip = ev["SPCL2_index"] >= 0
    assert strip.any() and (~strip).any()
    assert set(ev["SPCL2_index"][strip]) <= set(ev["CLindex"])
    # helix hits lie on the layer radii
    r = np.hypot(ev["CLx"], ev["CLy"])
    radii = np.array(PIXEL_R + STRIP_R + tuple(x + STRIP_GAP for x in STRIP_R))
    assert np.all(np.min(np.abs(r[:, None] - radii[None, :]), axis=1) < 1.6)


def test_raw_event_has_merged_clusters_and_ghosts():
    ev = make_raw_event(seed=3, n_particles=200, merge_distance=8.0)
    n_links = np.array([len(x) for x in ev["CLparticleLink_barcode"]])
    assert (n_links >= 2).any() and (n_links == 0).any()
    idx = {int(c): k for k, c in enumerate(ev["CLindex"])}
    strip = np.flatnonzero(ev["SPCL2_index"] >= 0)
    ghosts = [
        s
        for s in strip
        if not set(ev["CLparticleLink_barcode"][idx[int(ev["SPCL1_index"][s])]])
        & set(ev["CLparticleLink_barcode"][idx[int(ev["SPCL2_index"][s])]])
    ]
    assert ghosts
