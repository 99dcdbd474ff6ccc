"""Branches of the ATLAS ``GNN4ITk`` TTree or RNTuple (DumpObjects / acorn AthenaRootReader), with dtypes.

In-memory form of one event (what the simulation produces and the ROOT writer/reader exchange):
a dict ``branch -> value`` where event-level branches are Python/numpy scalars, per-object
branches are 1-D numpy arrays of the dtype below, ``CLhardware`` is a numpy array of str
(``"PIXEL"``/``"STRIP"``), and the two ``CLparticleLink_*`` branches are lists (one entry per
cluster) of 1-D int32 arrays (``vector<vector<int>>``). Units: mm, MeV, rad.
"""

from __future__ import annotations

import numpy as np

TREE_NAME = "GNN4ITk"

EVENT_BRANCHES = {"run_number": np.uint32, "event_number": np.uint64}

PARTICLE_BRANCHES = {
    "Part_event_number": np.int32,  # sub-event index (0 = hard scatter, 1.. = pile-up)
    "Part_barcode": np.int32,
    "Part_px": np.float32,
    "Part_py": np.float32,
    "Part_pz": np.float32,
    "Part_pt": np.float32,
    "Part_eta": np.float32,
    "Part_vx": np.float32,
    "Part_vy": np.float32,
    "Part_vz": np.float32,
    "Part_radius": np.float32,
    "Part_status": np.int32,
    "Part_charge": np.float32,
    "Part_pdg_id": np.int32,
    "Part_passed": np.int32,
    "Part_vProdNin": np.int32,
    "Part_vProdNout": np.int32,
    "Part_vProdStatus": np.int32,
    "Part_vProdBarcode": np.int32,
}

SPACEPOINT_BRANCHES = {
    "SPindex": np.int32,
    "SPx": np.float64,
    "SPy": np.float64,
    "SPz": np.float64,
    "SPCL1_index": np.int32,
    "SPCL2_index": np.int32,  # -1 for pixel spacepoints
    "SPisOverlap": np.int32,  # -1 pixel, 0 strip, 1 eta-overlap, 2 phi-overlap, 3 both
}

CLUSTER_BRANCHES = {
    "CLindex": np.int32,
    "CLhardware": str,  # "PIXEL" / "STRIP"
    "CLx": np.float64,
    "CLy": np.float64,
    "CLz": np.float64,
    "CLbarrel_endcap": np.int32,  # -2, 0, 2
    "CLlayer_disk": np.int32,
    "CLeta_module": np.int32,
    "CLphi_module": np.int32,
    "CLside": np.int32,
    "CLmoduleID": np.uint64,
    "CLpixel_count": np.int32,
    "CLcharge_count": np.int32,
    "CLloc_eta": np.float64,
    "CLloc_phi": np.float64,
    "CLloc_direction1": np.float64,
    "CLloc_direction2": np.float64,
    "CLloc_direction3": np.float64,
    "CLglob_eta": np.float64,
    "CLglob_phi": np.float64,
    "CLeta_angle": np.float64,
    "CLphi_angle": np.float64,
    "CLnorm_x": np.float64,
    "CLnorm_y": np.float64,
    "CLnorm_z": np.float64,
}

CLUSTER_LINK_BRANCHES = {
    "CLparticleLink_eventIndex": np.int32,  # vector<vector<int>>
    "CLparticleLink_barcode": np.int32,  # vector<vector<int>>
}

JET_BRANCHES = {"Jet_pt": np.float32, "Jet_eta": np.float32, "Jet_phi": np.float32}

#: Schema branches the convert stage never reads: a dump may lack them (read when present).
UNUSED_BRANCHES = (
    "Part_passed",
    "Part_vProdNin",
    "Part_vProdNout",
    "Part_vProdStatus",
    "Part_vProdBarcode",
    "CLloc_direction1",
    "CLloc_direction2",
    "CLloc_direction3",
)

#: Every branch of the schema (what ``root_writer`` writes and the simulation fills).
ALL_BRANCHES = (
    tuple(EVENT_BRANCHES)
    + tuple(PARTICLE_BRANCHES)
    + tuple(SPACEPOINT_BRANCHES)
    + tuple(CLUSTER_BRANCHES)
    + tuple(CLUSTER_LINK_BRANCHES)
    + tuple(JET_BRANCHES)
)

#: Branches a dump must have: all but the jets (events without them get no jets) and
#: ``UNUSED_BRANCHES``.
REQUIRED_BRANCHES = tuple(b for b in ALL_BRANCHES if b not in JET_BRANCHES and b not in UNUSED_BRANCHES)

#: Barcodes at or above this are secondaries (Geant4-style), below are generator particles.
SECONDARY_BARCODE = 200000
