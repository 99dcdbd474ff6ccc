"""Physics summary of simulated events: the numbers the simulation is validated against.

Works on the GNN4ITk in-memory dict directly (no conversion step), so the simulation can be
checked on its own: particles leaving hits, spacepoints, target particles and spacepoints per
target particle versus eta (the evaluation's target definition; a strip
spacepoint belongs to a particle only when both its clusters link to it).
"""

from __future__ import annotations

import numpy as np

from gnntrack.io.gnn4itk_schema import SECONDARY_BARCODE

ETA_BINS = np.array(
    [-4.0, -3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
)


def _key(sub: np.ndarray, bc: np.ndarray) -> np.ndarray:
    return sub.astype(np.int64) * (1 << 32) + (bc.astype(np.int64) & 0xFFFFFFFF)


def spacepoint_truth(ev: dict) -> tuple[np.ndarray, np.ndarray]:
    """(spacepoint index, particle key) pairs of truth-matched spacepoints."""
    n_links = np.array([len(x) for x in ev["CLparticleLink_barcode"]], np.int64)
    sub = np.concatenate([np.zeros(0, np.int32), *ev["CLparticleLink_eventIndex"]])
    bc = np.concatenate([np.zeros(0, np.int32), *ev["CLparticleLink_barcode"]])
    cl_of_link = np.repeat(np.arange(len(n_links)), n_links)
    link_key = _key(sub, bc)
    cl1 = ev["SPCL1_index"].astype(np.int64)
    cl2 = ev["SPCL2_index"].astype(np.int64)
    # links of each spacepoint's first cluster
    starts = np.concatenate([[0], np.cumsum(n_links)])
    cnt1 = n_links[cl1]
    sp_rep = np.repeat(np.arange(len(cl1)), cnt1)
    pos = np.repeat(starts[cl1], cnt1) + (np.arange(cnt1.sum()) - np.repeat(np.cumsum(cnt1) - cnt1, cnt1))
    k1 = link_key[pos]
    strip = cl2[sp_rep] >= 0
    keep = ~strip
    if strip.any():
        # strip: the particle must also be linked to the second cluster; (cluster, sub, barcode)
        # packed in one int64 (cluster < 2^24, sub-event < 2^12, barcode < 2^22)
        def pack(cl, s, b):
            return (cl.astype(np.int64) << 34) | (s.astype(np.int64) << 22) | b.astype(np.int64)

        have = pack(cl_of_link, sub, bc)
        s1, b1 = k1 >> 32, k1 & 0xFFFFFFFF
        want = pack(cl2[sp_rep[strip]], s1[strip], b1[strip])
        keep[np.flatnonzero(strip)[np.isin(want, have)]] = True
    return sp_rep[keep], k1[keep]


def event_summary(ev: dict, pt_min_mev: float = 1000.0) -> dict:
    """Counts and per-target spacepoint numbers of one event."""
    sp_idx, sp_key = spacepoint_truth(ev)
    pkey = _key(ev["Part_event_number"], ev["Part_barcode"])
    uniq, n_sp = np.unique(sp_key, return_counts=True)
    pos = np.searchsorted(uniq, pkey)
    pos = np.minimum(pos, max(len(uniq) - 1, 0))
    part_sp = np.where((len(uniq) > 0) & (uniq[pos] == pkey), n_sp[pos] if len(uniq) else 0, 0)
    cl_links = np.concatenate([np.zeros(0, np.int32), *ev["CLparticleLink_barcode"]])
    has_cluster = np.isin(
        pkey, _key(np.concatenate([np.zeros(0, np.int32), *ev["CLparticleLink_eventIndex"]]), cl_links)
    )
    target = (
        (ev["Part_barcode"] < SECONDARY_BARCODE)
        & (np.abs(ev["Part_pdg_id"]) != 11)
        & (ev["Part_pt"] > pt_min_mev)
        & (ev["Part_radius"] < 260.0)
        & (np.abs(ev["Part_eta"]) < 4.0)
        & (part_sp >= 3)
    )
    eta = ev["Part_eta"][target]
    central = np.abs(eta) < 2.5
    which = np.digitize(eta, ETA_BINS) - 1
    per_bin = [
        float(part_sp[target][which == b].mean()) if np.any(which == b) else float("nan")
        for b in range(len(ETA_BINS) - 1)
    ]
    is_pix = ev["CLhardware"] == "PIXEL"
    return {
        "n_particles": int(len(pkey)),
        "n_particles_with_hits": int(has_cluster.sum()),
        "n_secondaries": int((ev["Part_barcode"] >= SECONDARY_BARCODE).sum()),
        "n_clusters": int(len(ev["CLx"])),
        "n_pixel_clusters": int(is_pix.sum()),
        "n_strip_clusters": int((~is_pix).sum()),
        "n_spacepoints": int(len(ev["SPx"])),
        "n_strip_spacepoints": int((ev["SPCL2_index"] >= 0).sum()),
        "n_true_spacepoints": int(len(np.unique(sp_idx))),
        "n_merged_clusters": int(sum(len(x) > 1 for x in ev["CLparticleLink_barcode"])),
        "n_noise_clusters": int(sum(len(x) == 0 for x in ev["CLparticleLink_barcode"])),
        "n_target": int(target.sum()),
        "sp_per_target_central": float(part_sp[target][central].mean()) if central.any() else float("nan"),
        "sp_per_target_vs_eta": per_bin,
        "n_jets": int(len(ev.get("Jet_pt", []))),
    }
