"""Module map: recovers its own target edges, monotone cuts, file round trip, clear errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from synthetic import make_event

from gnntrack.graph_construction import (
    GraphConstructionConfig,
    ModuleMap,
    ModuleMapData,
    build_module_map,
    run_build_graphs,
    run_build_module_map,
)
from gnntrack.graph_construction.geometry import (
    DOUBLET_FEATURES,
    doublet_features,
    hits_to_tensors,
    module_ids_as_int64,
    orient_outward,
)
from gnntrack.graph_construction.module_map import _Accumulator, target_doublets
from gnntrack.graph_construction.module_symmetry import (
    Z_ODD_FEATURES,
    ModuleCatalogue,
    mirror_rings,
    ring_geometry,
    symmetrise,
)
from gnntrack.io.errors import InputError
from gnntrack.io.event_store import write_events
from gnntrack.io.graph_store import make_graph, read_graphs
from gnntrack.metrics import graph_metrics, truth_target_edges


@pytest.fixture(scope="module")
def events():
    return [make_event(n_particles=120, n_noise=60, seed=s, event_number=s) for s in range(10)]


def _edge_set(edges) -> set[tuple[int, int]]:
    return set(map(tuple, np.asarray(edges).T.tolist()))


@pytest.mark.parametrize("symmetry", ["none", "phi", "phi_z"])
def test_recovers_all_own_target_edges(events, symmetry):
    data = build_module_map(events[:4], {"symmetry": symmetry})
    assert data.n_events == 4 and data.n_pairs > 0 and data.symmetry == symmetry
    mm = ModuleMap(data, "cpu", cut="minmax", tolerance=0.0)
    for ev in events[:4]:
        edges = mm.build_edges(ev.hits)
        g = make_graph(edges.numpy(), ev)
        assert int(g.y_target.sum()) == len(truth_target_edges(ev)[0]) > 0
        # outward: source nearer the beam line, and no duplicates
        r = ev.hits["r"]
        assert np.all(r[edges[0].numpy()] <= r[edges[1].numpy()])
        assert len(_edge_set(edges)) == edges.shape[1]


def test_wider_cuts_never_lose_an_edge(events):
    data = build_module_map(events[:5])
    held_out = events[7]
    previous = set()
    for tol in (0.0, 0.05, 0.2, 1.0):
        edges = _edge_set(ModuleMap(data, "cpu", tolerance=tol).build_edges(held_out.hits))
        assert previous <= edges
        previous = edges
    previous = set()
    for k in (0.0, 0.5, 2.0, 8.0):
        edges = _edge_set(ModuleMap(data, "cpu", small_count_margin=k).build_edges(held_out.hits))
        assert previous <= edges
        previous = edges
    previous = set()
    for n_sigma in (0.5, 2.0, 5.0):
        edges = _edge_set(ModuleMap(data, "cpu", cut="mean_rms", n_sigma=n_sigma).build_edges(held_out.hits))
        assert previous <= edges
        previous = edges


def test_small_count_margin_widens_rare_pairs_by_the_layer_prior(events, tmp_path):
    data = build_module_map(events[:3])
    assert data.width_prior.shape == data.min.shape and np.all(data.width_prior >= 0)
    assert data.cuts["small_count_margin"] == 1.0
    plain, wide = (
        ModuleMap(data, "cpu", small_count_margin=0.0),
        ModuleMap(data, "cpu", small_count_margin=2.0),
    )
    extra = (plain.lo - wide.lo).double().numpy()  # per pair and feature, >= 0
    expect = 2.0 * data.width_prior / (data.count[:, None] + 1.0)
    np.testing.assert_allclose(extra, expect, rtol=1e-3, atol=1e-3 * np.abs(plain.lo.numpy()).max())
    assert (data.count == 1).any() and (data.width_prior[data.count == 1] > 0).any()
    # held out: more target edges with the margin (rarely seen pairs were too narrow)
    test = events[5:]
    effs = []
    for mm in (plain, wide):
        graphs = [make_graph(mm.build_edges(ev.hits).numpy(), ev) for ev in test]
        effs.append(graph_metrics(graphs, test, truth_cc=False)["efficiency"])
    assert effs[1] > effs[0]
    # round trip keeps the prior; a map file without it (older format) applies no margin
    path = tmp_path / "mm.h5"
    data.write(path)
    back = ModuleMapData.read(path)
    np.testing.assert_array_equal(back.width_prior, data.width_prior)
    with h5py.File(path, "r+") as f:
        del f["doublets/width_prior"]
        for g in (f, f["doublets"]):  # older files carry no content digest either
            del g.attrs["digest"], g.attrs["manifest"]
    old = ModuleMap.load(path, "cpu")
    assert torch.equal(old.build_edges(events[6].hits), plain.build_edges(events[6].hits))


def test_more_training_events_raise_held_out_efficiency(events):
    test = events[8:]
    eff = []
    for n in (1, 7):
        mm = ModuleMap(build_module_map(events[:8], {"n_events": n}), "cpu", tolerance=0.1)
        graphs = [make_graph(mm.build_edges(ev.hits).numpy(), ev) for ev in test]
        eff.append(graph_metrics(graphs, test, truth_cc=False)["efficiency"])
    assert eff[1] > eff[0]


def test_chunking_and_tensor_input_give_the_same_edges(events):
    data = build_module_map(events[:4])
    ev = events[4]
    ref = ModuleMap(data, "cpu").build_edges(ev.hits)
    small = ModuleMap(data, "cpu", chunk_size=7).build_edges(ev.hits)
    assert torch.equal(ref, small)
    tensors = {k: torch.as_tensor(np.asarray(ev.hits[k], np.float32)) for k in ("r", "phi", "z", "eta")}
    tensors["module_id"] = torch.from_numpy(ev.hits["module_id"].view(np.int64))
    assert torch.equal(ModuleMap(data, "cpu").build_edges(tensors), ref)


def _dense_reference_edges(mm: ModuleMap, hits) -> set[tuple[int, int]]:
    """Every hit pair of every mapped module pair, cut on all quantities: what ``build_edges``
    must return (its φ search may only skip candidates that fail the φ window)."""
    h = hits_to_tensors(hits, mm.hit_columns)
    mod = h["module_id"]
    src, dst, pid = [], [], []
    for p, (a, b) in enumerate(zip(mm.pair_src.tolist(), mm.pair_dst.tolist())):
        ia = torch.nonzero(mod == mm.modules[a]).squeeze(1)
        ib = torch.nonzero(mod == mm.modules[b]).squeeze(1)
        if len(ia) and len(ib):
            src.append(ia.repeat_interleave(len(ib)))
            dst.append(ib.repeat(len(ia)))
            pid.append(torch.full((len(ia) * len(ib),), p))
    src, dst, pid = torch.cat(src), torch.cat(dst), torch.cat(pid)
    q = doublet_features(h, src, dst)
    ok = ((q >= mm.lo[pid]) & (q <= mm.hi[pid])).all(1)
    edges = torch.stack([src[ok], dst[ok]])
    return _edge_set(orient_outward(edges, h))


@pytest.mark.parametrize("rotation", [0.0, 3.0])
def test_phi_search_returns_exactly_the_dense_edge_set(events, rotation):
    """Including modules across the ±π seam (rotated events) and pairs whose φ window is too
    wide to search (they take the whole destination module)."""
    rot = []
    for ev in events[:5]:
        hits = dict(ev.hits)
        hits["phi"] = np.angle(np.exp(1j * (np.asarray(hits["phi"], np.float64) + rotation)))
        rot.append(hits)
    data = build_module_map(events[:4], {"symmetry": "none"})
    i = DOUBLET_FEATURES.index("dphi")
    data.min[::7, i] -= 2.0  # some windows wider than the search handles
    seam = False
    for tol in (0.0, 0.5):
        mm = ModuleMap(data, "cpu", tolerance=tol, small_count_margin=0.0)
        for hits in rot:
            phi = torch.as_tensor(np.asarray(hits["phi"]))
            mod = torch.as_tensor(module_ids_as_int64(hits["module_id"]))
            _, inv = torch.unique(mod, return_inverse=True)
            lo = torch.full((int(inv.max()) + 1,), 9.0, dtype=phi.dtype).scatter_reduce(0, inv, phi, "amin")
            hi = torch.full_like(lo, -9.0).scatter_reduce(0, inv, phi, "amax")
            seam |= bool(((hi - lo) > np.pi).any())
            assert _edge_set(mm.build_edges(hits)) == _dense_reference_edges(mm, hits)
    assert seam or rotation == 0.0  # the rotated events really put modules across ±π


def test_file_round_trip_and_stage(tmp_path, events):
    shard = tmp_path / "train.h5"
    write_events(shard, events[:5])
    out = tmp_path / "mm" / "module_map.h5"
    run_build_module_map([shard], out, {"tolerance": 0.05, "cut": "minmax"})
    mm = ModuleMap.load(out, "cpu")
    assert mm.n_events == 5 and mm.tolerance == 0.05
    direct = ModuleMap(build_module_map(events[:5]), "cpu", tolerance=0.05)
    assert torch.equal(mm.build_edges(events[6].hits), direct.build_edges(events[6].hits))
    # build_graphs stage: labelled graphs for every event of a shard
    test_shard = tmp_path / "test.h5"
    write_events(test_shard, events[5:7])
    graphs_out = tmp_path / "graphs.h5"
    run_build_graphs(test_shard, graphs_out, GraphConstructionConfig(method="module_map"), module_map=mm)
    graphs = read_graphs(graphs_out)
    assert [g.key for g in graphs] == [e.key for e in events[5:7]]
    assert graphs[0].n_edges == mm.build_edges(events[5].hits).shape[1]
    assert graphs[0].y_target.any()


def test_malformed_map_files_raise_input_error(tmp_path, events):
    with pytest.raises(InputError, match="does not exist"):
        ModuleMap.load(tmp_path / "missing.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match="not a readable HDF5"):
        ModuleMap.load(junk)
    good = tmp_path / "good.h5"
    build_module_map(events[:2]).write(good)
    for name, mutate in {
        "format": lambda f: f.attrs.__setitem__("format", "something-else"),
        "doublets/max": lambda f: f["doublets/max"].__setitem__(slice(None), -1e9),
        "doublets/rms": lambda f: f.__delitem__("doublets/rms"),
        "doublets/min": lambda f: f["doublets/min"].__setitem__((0, 0), np.nan),
        "doublets/width_prior": lambda f: f["doublets/width_prior"].__setitem__((0, 1), np.inf),
    }.items():
        bad = tmp_path / f"bad_{name.replace('/', '_')}.h5"
        bad.write_bytes(good.read_bytes())
        with h5py.File(bad, "r+") as f:
            mutate(f)
        with pytest.raises(InputError) as exc:
            ModuleMapData.read(bad)
        assert exc.value.field == name and str(bad) in str(exc.value)


def test_empty_training_set_is_an_input_error(tmp_path):
    ev = make_event(n_particles=0, n_noise=10)
    shard = tmp_path / "empty.h5"
    write_events(shard, [ev])
    with pytest.raises(InputError):
        run_build_module_map([shard], tmp_path / "mm.h5")
    assert not (tmp_path / "mm.h5").exists()


def _rotated(ev, angle: float):
    """A copy of ``ev`` rotated about the beam axis (hit positions and module identifiers)."""
    import copy

    from synthetic import N_PIXEL_LAYERS, _module_ids

    out = copy.deepcopy(ev)
    h = out.hits
    phi = np.arctan2(np.sin(h["phi"] + angle), np.cos(h["phi"] + angle)).astype(np.float32)
    h["phi"], h["x"], h["y"] = phi, h["r"] * np.cos(phi), h["r"] * np.sin(phi)
    layer = h["layer_disk"].astype(np.int64) + np.where(h["hardware"] == 1, N_PIXEL_LAYERS, 0)
    module_id, phi_mod, _ = _module_ids(layer, phi.astype(np.float64), h["z"].astype(np.float64))
    h["module_id"], h["phi_module"] = module_id, phi_mod.astype(np.int16)
    return out


def test_phi_symmetry_generalises_to_rotated_events(events):
    train = events[:3]
    rotated = [_rotated(ev, 2 * np.pi / 8) for ev in events[3:5]]  # every ring has 8k phi modules
    n_truth = sum(len(truth_target_edges(ev)[0]) for ev in rotated)

    def found(symmetry):
        mm = ModuleMap(build_module_map(train, {"symmetry": symmetry}), "cpu", tolerance=0.01)
        return sum(int(make_graph(mm.build_edges(ev.hits).numpy(), ev).y_target.sum()) for ev in rotated), mm

    plain, mm_plain = found("none")
    sym, mm_sym = found("phi")
    assert sym > plain
    # a rotated copy of a training event: every target edge is recovered unless one of its
    # modules was never hit in the training events (only seen modules can be enumerated)
    copy0 = _rotated(train[0], 2 * np.pi / 8)
    seen = set()
    for ev in train:
        seen |= set(module_ids_as_int64(ev.hits["module_id"]).tolist())
    g = make_graph(mm_sym.build_edges(copy0.hits).numpy(), copy0)
    mod = module_ids_as_int64(copy0.hits["module_id"])
    t = copy0.truth_edges[:, copy0.particles["is_target"][copy0.truth_edge_particle]]
    found_codes = set(map(tuple, np.sort(g.edge_index[:, g.y_target], axis=0).T.tolist()))
    expected = {tuple(sorted(e)) for e in t.T.tolist() if mod[e[0]] in seen and mod[e[1]] in seen}
    assert len(expected) > 0.3 * t.shape[1]
    assert expected <= found_codes
    # the symmetric map only adds pairs and widens windows: a superset of the plain map's edges
    for ev in events[5:7]:
        assert _edge_set(mm_plain.build_edges(ev.hits)) <= _edge_set(mm_sym.build_edges(ev.hits))
    assert n_truth > 0


def _training_stats(events, keep=None):
    """Target-doublet pairs and statistics as ``build_module_map`` accumulates them; ``keep``
    selects pairs by their (P, 2) int64 module ids."""
    acc = _Accumulator(len(DOUBLET_FEATURES))
    for ev in events:
        pairs, feats = target_doublets(ev)
        sel = np.ones(len(pairs), bool) if keep is None else keep(pairs)
        acc.add(pairs[sel], feats[sel])
    return acc.pairs, {"count": acc.count, "min": acc.min, "max": acc.max, "sum": acc.sum, "sumsq": acc.sumsq}


class _Hits:
    """Just the ``hits`` table of an event, for ``ModuleCatalogue.add``."""

    def __init__(self, hits):
        self.hits = hits


def _eta(module_ids):
    return np.asarray(module_ids) & 0xFF  # synthetic layout: layer << 24 | phi << 8 | eta (0..13)


def test_phi_z_mirrors_pairs_seen_on_one_side_only(events):
    train = events[:4]
    # the -z side numbers its rings differently (eta 20..26, increasing with z, instead of
    # 0..6): the mirror rings must be found from the hit positions, not the indices
    cat = ModuleCatalogue()
    for ev in train:
        h = dict(ev.hits)
        neg = _eta(module_ids_as_int64(h["module_id"])) < 7
        h["eta_module"] = np.where(neg, 20 + h["eta_module"], h["eta_module"]).astype(np.int16)
        cat.add(_Hits(h))
    mirror = mirror_rings(cat)
    key = ring_geometry(cat)["key"]  # hardware, barrel_endcap, layer_disk, eta_module
    ok = mirror >= 0
    assert ok.sum() > 0.5 * len(mirror)
    assert np.all(key[mirror[ok], :3] == key[ok, :3])
    pos = ok & (key[:, 3] < 20)
    assert np.all(key[mirror[pos], 3] == 20 + 13 - key[pos, 3])  # synthetic: z -> -z is eta -> 13 - eta
    assert np.all(mirror[mirror[ok]] == np.flatnonzero(ok))  # mutual

    # training doublets on the +z side only
    pairs, stats = _training_stats(train, keep=lambda p: (_eta(p) >= 7).all(1))
    p_phi, s_phi = symmetrise(pairs, stats, cat)
    p_z, s_z = symmetrise(pairs, stats, cat, z_mirror=True)
    assert (_eta(p_phi) >= 7).all() and (_eta(p_z) < 7).all(1).any()
    # the +z side is exactly the phi map ...
    index = {tuple(p): i for i, p in enumerate(p_z.tolist())}
    at = np.array([index[tuple(p)] for p in p_phi.tolist()])
    for k in s_phi:
        np.testing.assert_array_equal(s_z[k][at], s_phi[k])
    # ... and every pair of it with mirrored rings has its mirror image on the -z side
    modules, ring, _, _ = cat.table()
    ring_at = dict(zip(modules.tolist(), ring.tolist()))
    mirrored = np.bitwise_and(p_phi, ~np.int64(0xFF)) | (13 - _eta(p_phi))
    has = np.array(
        [
            all(m in ring_at and ok[ring_at[m]] for m in (*p, *q))
            for p, q in zip(p_phi.tolist(), mirrored.tolist())
        ]
    )
    assert has.sum() > 100
    src = at[has]
    dst = np.array([index[tuple(m)] for m in mirrored[has].tolist()])
    odd = np.array([f in Z_ODD_FEATURES for f in DOUBLET_FEATURES])
    assert odd.sum() == 3 and not odd[DOUBLET_FEATURES.index("dphi")]
    np.testing.assert_array_equal(s_z["count"][dst], s_z["count"][src])
    np.testing.assert_array_equal(s_z["min"][dst][:, odd], -s_z["max"][src][:, odd])
    np.testing.assert_array_equal(s_z["max"][dst][:, odd], -s_z["min"][src][:, odd])
    np.testing.assert_array_equal(s_z["min"][dst][:, ~odd], s_z["min"][src][:, ~odd])
    np.testing.assert_array_equal(s_z["max"][dst][:, ~odd], s_z["max"][src][:, ~odd])
    np.testing.assert_array_equal(s_z["sum"][dst], s_z["sum"][src] * np.where(odd, -1.0, 1.0))
    np.testing.assert_array_equal(s_z["sumsq"][dst], s_z["sumsq"][src])
    # the mirrored windows find held-out target edges on the -z side, which phi cannot
    found = {}
    for name, (p, s) in {"phi": (p_phi, s_phi), "phi_z": (p_z, s_z)}.items():
        data = ModuleMapData(
            modules=p.view(np.uint64), count=s["count"], min=s["min"], max=s["max"],
            mean=(s["sum"] / s["count"][:, None]).astype(np.float32),
            rms=np.zeros_like(s["min"]), n_events=len(train), symmetry=name,
        )  # fmt: skip
        mm = ModuleMap(data, "cpu", tolerance=0.1)
        found[name] = n_neg = 0
        for ev in events[5:8]:
            z = ev.hits["z"]
            g = make_graph(mm.build_edges(ev.hits).numpy(), ev)
            found[name] += int((g.y_target & (z[g.edge_index] < 0).all(0)).sum())
            code = truth_target_edges(ev)[0]
            n_neg += int(((z[code // ev.n_hits] < 0) & (z[code % ev.n_hits] < 0)).sum())
    assert found["phi"] == 0 < n_neg
    assert found["phi_z"] > 0.3 * n_neg


def test_phi_z_without_mirror_rings_equals_phi(events):
    train = events[:4]
    cat = ModuleCatalogue()  # no -z hits: no ring has a mirror
    for ev in train:
        cat.add(_Hits({k: v[ev.hits["z"] > 0] for k, v in ev.hits.items()}))
    assert (mirror_rings(cat) < 0).all()
    pairs, stats = _training_stats(train)
    p_phi, s_phi = symmetrise(pairs, stats, cat)
    p_z, s_z = symmetrise(pairs, stats, cat, z_mirror=True)
    np.testing.assert_array_equal(p_z, p_phi)
    for k in s_phi:
        np.testing.assert_array_equal(s_z[k], s_phi[k])


def test_phi_z_self_mirror_ring_gets_symmetric_windows(events):
    train = events[:4]
    # relabel: the two barrel z-rings next to z = 0 (eta 6, 7) as one ring straddling z = 0
    cat = ModuleCatalogue()
    for ev in train:
        h = dict(ev.hits)
        h["eta_module"] = np.where(np.isin(h["eta_module"], (6, 7)), 50, h["eta_module"]).astype(np.int16)
        cat.add(_Hits(h))
    mirror = mirror_rings(cat)
    key = ring_geometry(cat)["key"]
    central = np.flatnonzero(key[:, 3] == 50)
    assert len(central) >= 4 and np.all(mirror[central] == central)
    pairs, stats = _training_stats(train, keep=lambda p: np.isin(_eta(p), (6, 7)).all(1))
    p_phi, s_phi = symmetrise(pairs, stats, cat)
    p_z, s_z = symmetrise(pairs, stats, cat, z_mirror=True)
    np.testing.assert_array_equal(p_z, p_phi)  # the class is its own mirror: no new pairs
    odd = np.array([f in Z_ODD_FEATURES for f in DOUBLET_FEATURES])
    np.testing.assert_array_equal(s_z["count"], s_phi["count"])
    np.testing.assert_array_equal(s_z["min"][:, odd], -s_z["max"][:, odd])
    np.testing.assert_array_equal(
        s_z["min"], np.minimum(s_phi["min"], np.where(odd, -s_phi["max"], s_phi["min"]))
    )
    np.testing.assert_array_equal(s_z["sum"][:, odd], 0.0)
    np.testing.assert_array_equal(s_z["sum"][:, ~odd], s_phi["sum"][:, ~odd])
