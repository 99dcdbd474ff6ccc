"""GNN4ITk ROOT writer/reader: exact round-trip, both branch encodings, clear errors on bad input."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot
from test_io_rawgen import make_raw_event

from gnntrack.io import gnn4itk_schema as S
from gnntrack.io.convert import run_convert
from gnntrack.io.errors import InputError
from gnntrack.io.root_reader import _events_of_chunk, _plan, iter_gnn4itk, read_gnn4itk
from gnntrack.io.root_writer import write_gnn4itk


def _assert_same(a: dict, b: dict):
    assert set(a) == set(b), set(a) ^ set(b)
    for k, va in a.items():
        vb = b[k]
        if isinstance(va, list):
            assert len(va) == len(vb), k
            for x, y in zip(va, vb):
                assert x.dtype == y.dtype and np.array_equal(x, y), k
        elif k == "CLhardware":
            assert np.asarray(va).astype(str).tolist() == np.asarray(vb).tolist()
        else:
            va, vb = np.asarray(va), np.asarray(vb)
            assert va.dtype == vb.dtype, (k, va.dtype, vb.dtype)
            assert np.array_equal(va, vb), k


def test_write_read_round_trip_is_exact(tmp_path):
    events = [make_raw_event(seed=s, event_number=s, merge_distance=8.0) for s in range(3)]
    events[1] = make_raw_event(seed=1, event_number=1, with_jets=False)
    path = tmp_path / "shard.root"
    write_gnn4itk(path, events)
    back = read_gnn4itk(path)
    assert len(back) == 3
    for i, (a, b) in enumerate(zip(events, back)):
        if i == 1:  # events without jets come back with empty jet collections
            assert all(len(b.pop(j)) == 0 for j in S.JET_BRANCHES)
        _assert_same(a, b)
    assert any(len(x) > 1 for x in back[0]["CLparticleLink_barcode"])  # merged clusters survive
    # flat link form carries the same links
    flat = next(iter_gnn4itk(path, links="flat"))
    assert np.array_equal(
        flat["CLparticleLink_barcode_flat"], np.concatenate(events[0]["CLparticleLink_barcode"])
    )
    assert not list(tmp_path.glob(".*tmp*"))


def _rewrite(src, dst, drop=(), change=None, extra=None, tree=S.TREE_NAME):
    """Copy a file's branches into a plain uproot TTree, with edits (to make bad or foreign files)."""
    arrays = uproot.open(src)[S.TREE_NAME].arrays(library="ak")
    data = {f: arrays[f] for f in arrays.fields if not f.startswith("n") and f not in drop}
    data.update(change or {})
    data.update(extra or {})
    types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in data.items()}
    with uproot.recreate(dst) as f:
        f.mktree(tree, types).extend(data)


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.root"
    write_gnn4itk(path, [make_raw_event(seed=s, event_number=10 + s) for s in range(2)])
    return path


def test_reader_ignores_extra_branches_and_missing_jets(good_file, tmp_path):
    other = tmp_path / "other.root"
    n_sp = ak.num(uproot.open(good_file)[S.TREE_NAME]["SPx"].array())
    extra = {
        "SPfoo": ak.values_astype(ak.ones_like(uproot.open(good_file)[S.TREE_NAME]["SPx"].array()), np.int32)
    }
    extra["Event_weight"] = np.ones(len(n_sp), np.float32)
    _rewrite(good_file, other, drop=tuple(S.JET_BRANCHES), extra=extra)
    back = read_gnn4itk(other)
    ref = read_gnn4itk(good_file)
    for a, b in zip(ref, back):
        for j in S.JET_BRANCHES:
            a.pop(j)
        _assert_same(a, b)


def test_reader_accepts_real_atlas_types():
    """vector<string> hardware and vector<vector<int>> links, as uproot reads real dumps."""
    events = [make_raw_event(seed=s, event_number=s, merge_distance=8.0) for s in range(2)]
    fields = {}
    for name in S.ALL_BRANCHES:
        vals = [ev[name] for ev in events]
        if name == "CLhardware":
            fields[name] = ak.Array([v.tolist() for v in vals])
        elif name in S.CLUSTER_LINK_BRANCHES:
            fields[name] = ak.Array([[x.tolist() for x in v] for v in vals])
        elif name in S.EVENT_BRANCHES:
            fields[name] = np.array(vals)
        else:
            fields[name] = ak.Array([np.asarray(v) for v in vals])
    chunk = ak.Array(fields)
    assert str(chunk.type.content.fields) and "string" in str(ak.type(chunk["CLhardware"]))

    class FakeTree:
        def keys(self):
            return list(fields) + ["unrelated_branch"]

    plan = _plan(FakeTree(), "dump.root")
    assert plan["hardware"] == "strings" and plan["links"] == "nested"
    back = list(_events_of_chunk(chunk, plan, "dump.root", 0, "lists"))
    for a, b in zip(events, back):
        _assert_same(a, b)
    # a cluster whose barcode list is longer than its event-index list: named event and branch
    links = [[x.tolist() for x in ev["CLparticleLink_barcode"]] for ev in events]
    links[1][0] = links[1][0] + [12345]
    bad = ak.with_field(chunk, ak.Array(links), "CLparticleLink_barcode")
    with pytest.raises(InputError) as info:
        list(_events_of_chunk(bad, plan, "dump.root", 0, "lists"))
    assert info.value.event == "42_1" and info.value.field == "CLparticleLink_barcode"


def _expect(path, field=None, event=None, match=None):
    with pytest.raises(InputError) as info:
        read_gnn4itk(path)
    err = info.value
    assert err.file == str(path)
    if field is not None:
        assert err.field == field, str(err)
    if event is not None:
        assert err.event == event, str(err)
    if match is not None:
        assert match in str(err)
    # the convert stage reports the same error and leaves no output (not even a temporary)
    out = path.parent / "converted" / "shard.h5"
    with pytest.raises(InputError) as info2:
        run_convert([path], out)
    assert str(info2.value) == str(err)
    assert not out.parent.exists() or not list(out.parent.iterdir())
    return err


def test_missing_and_garbage_files(tmp_path):
    _expect(tmp_path / "nope.root", match="does not exist")
    junk = tmp_path / "junk.root"
    junk.write_bytes(b"this is not a ROOT file at all" * 10)
    _expect(junk, match="not a readable ROOT file")


def test_truncated_file(good_file, tmp_path):
    data = good_file.read_bytes()
    cut = tmp_path / "cut.root"
    cut.write_bytes(data[: len(data) // 2])
    _expect(cut)


def test_missing_tree_and_branch(good_file, tmp_path):
    other = tmp_path / "tree.root"
    _rewrite(good_file, other, tree="Events")
    _expect(other, field="GNN4ITk", match="no TTree")
    nobranch = tmp_path / "branch.root"
    _rewrite(good_file, nobranch, drop=("SPz",))
    _expect(nobranch, field="SPz", match="missing required branch")
    nolinks = tmp_path / "links.root"
    _rewrite(good_file, nolinks, drop=("CLparticleLink_barcode_flat",))
    _expect(nolinks, field="CLparticleLink_barcode_flat")


def test_jagged_length_mismatch_names_event_and_branch(good_file, tmp_path):
    arr = uproot.open(good_file)[S.TREE_NAME]["CLz"].array()
    shorter = ak.Array([arr[0].to_list(), arr[1].to_list()[:-1]])
    bad = tmp_path / "mismatch.root"
    _rewrite(good_file, bad, change={"CLz": shorter})
    _expect(bad, field="CLz", event="42_11", match="!=")


def test_empty_event_and_nan_coordinates(good_file, tmp_path):
    t = uproot.open(good_file)[S.TREE_NAME]
    empty = tmp_path / "empty.root"
    sp = {b: t[b].array() for b in S.SPACEPOINT_BRANCHES}
    _rewrite(
        good_file, empty, change={b: ak.Array([v[0].to_list(), v[1].to_list()[:0]]) for b, v in sp.items()}
    )
    _expect(empty, field="SPindex", event="42_11", match="no spacepoints")
    nan = tmp_path / "nan.root"
    y = t["SPy"].array().to_list()
    y[0][3] = float("nan")
    _rewrite(good_file, nan, change={"SPy": ak.Array(y)})
    _expect(nan, field="SPy", event="42_10", match="non-finite")


def test_bad_cluster_reference_and_hardware(good_file, tmp_path):
    t = uproot.open(good_file)[S.TREE_NAME]
    c1 = t["SPCL1_index"].array().to_list()
    c1[1][0] = 99999
    bad = tmp_path / "ref.root"
    _rewrite(good_file, bad, change={"SPCL1_index": ak.values_astype(ak.Array(c1), np.int32)})
    _expect(bad, field="SPCL1_index", event="42_11")
    chars = t["CLhardware_chars"].array().to_list()
    chars[0][0] = ord("Q")
    hw = tmp_path / "hw.root"
    _rewrite(good_file, hw, change={"CLhardware_chars": ak.values_astype(ak.Array(chars), np.uint8)})
    _expect(hw, field="CLhardware", event="42_10", match="has hardware 'Q")


def test_writer_rejects_inconsistent_event_and_leaves_no_file(tmp_path):
    ev = make_raw_event(seed=2)
    ev["SPz"] = ev["SPz"][:-1]
    path = tmp_path / "bad.root"
    with pytest.raises(InputError) as info:
        write_gnn4itk(path, [make_raw_event(seed=1), ev])
    assert info.value.field == "SPz"
    assert not path.exists() and not list(tmp_path.iterdir())
