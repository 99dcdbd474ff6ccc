"""GNN4ITk ROOT writer/reader: exact round-trip, TTree and RNTuple, both branch encodings, clear
errors on bad input, byte-identical shards across processes, stale temporaries cleaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot
from test_io_rawgen import make_raw_event

from gnntrack.conversion.convert import event_from_gnn4itk, run_convert
from gnntrack.conversion.root_reader import _events_of_chunk, _plan, iter_gnn4itk, read_gnn4itk
from gnntrack.io import gnn4itk_schema as S
from gnntrack.io.errors import InputError
from gnntrack.io.root_writer import CHECKSUM, LINK_COUNT, LINK_FLAT, write_gnn4itk

_DTYPES = {**S.PARTICLE_BRANCHES, **S.SPACEPOINT_BRANCHES, **S.CLUSTER_BRANCHES, **S.JET_BRANCHES}


def atlas_columns(events, drop=()) -> dict:
    """Events as the columns of a real dump: ``vector<string>`` hardware, ``vector<vector<int>>`` links."""
    fields = {}
    for name in S.ALL_BRANCHES:
        if name in drop or not all(name in ev for ev in events):
            continue
        vals = [ev[name] for ev in events]
        if name == "CLhardware":
            fields[name] = ak.Array([np.asarray(v).astype(str).tolist() for v in vals])
        elif name in S.CLUSTER_LINK_BRANCHES:
            fields[name] = ak.values_astype(ak.Array([[x.tolist() for x in v] for v in vals]), np.int32)
        elif name in S.EVENT_BRANCHES:
            fields[name] = np.array(vals, dtype=S.EVENT_BRANCHES[name])
        else:
            fields[name] = ak.values_astype(ak.Array([np.asarray(v).tolist() for v in vals]), _DTYPES[name])
    return fields


def write_rntuple(path, events, drop=()) -> Path:
    """A GNN4ITk RNTuple with the ATLAS types (uproot writes RNTuple, not TTree, for these)."""
    cols = atlas_columns(events, drop)
    types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in cols.items()}
    with uproot.recreate(path) as f:
        f.mkrntuple(S.TREE_NAME, types).extend(cols)
    return Path(path)


def h5_contents(path) -> dict:
    """Every dataset (dtype, shape, bytes) and attribute of an HDF5 file, by its HDF5 path."""
    out = {}

    def visit(name, obj):
        out[name + "@attrs"] = {k: np.asarray(v).tolist() for k, v in obj.attrs.items()}
        if isinstance(obj, h5py.Dataset):
            data = obj[()]
            out[name] = (str(data.dtype), data.shape, np.asarray(data).tobytes())

    with h5py.File(path, "r") as f:
        visit("", f)
        f.visititems(visit)
    return out


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


def _rewrite(src, dst, drop=(), change=None, extra=None, tree=S.TREE_NAME, keep_checksum=False):
    """Copy a file's branches into a plain uproot TTree, with edits (to make bad or foreign files).

    The per-entry checksum is dropped unless ``keep_checksum`` (then edits no longer match it).
    """
    arrays = uproot.open(src)[S.TREE_NAME].arrays(library="ak")
    drop = tuple(drop) + (() if keep_checksum else (CHECKSUM,))
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


# --------------------------------------------------------------------------- TTree and RNTuple
def test_rntuple_and_ttree_give_identical_events(tmp_path):
    events = [make_raw_event(seed=s, event_number=s, merge_distance=8.0) for s in range(3)]
    tree = tmp_path / "tree" / "dump.root"
    tree.parent.mkdir()
    write_gnn4itk(tree, events)
    ntuple = write_rntuple(tmp_path / "ntuple" / "dump.root", events)
    default = tmp_path / "default" / "dump.root"  # uproot >= 5.7: a dict assigned -> RNTuple
    default.parent.mkdir()
    with uproot.recreate(default) as f:
        f[S.TREE_NAME] = atlas_columns(events)
    ours = tmp_path / "ours" / "dump.root"  # root_writer's RNTuple: ATLAS types plus checksums
    write_gnn4itk(ours, events, kind="rntuple")
    kinds = {"TTree": uproot.behaviors.TTree.TTree, "RNTuple": uproot.behaviors.RNTuple.RNTuple}
    for path, kind in ((tree, "TTree"), (ntuple, "RNTuple"), (default, "RNTuple"), (ours, "RNTuple")):
        assert isinstance(uproot.open(path)[S.TREE_NAME], kinds[kind]), path
    assert "CLhardware" in set(uproot.open(ours)[S.TREE_NAME].keys())
    ref = read_gnn4itk(tree)
    assert any(len(x) > 1 for x in ref[0]["CLparticleLink_barcode"])  # vector<vector<int>> exercised
    for path in (ntuple, default, ours):
        back = read_gnn4itk(path)
        assert len(back) == len(ref)
        for a, b in zip(ref, back):
            _assert_same(a, b)
    # the converter reads identical events from all three: same shard contents
    shards = {}
    for path in (tree, ntuple, default, ours):
        out = path.parent / "events.h5"
        run_convert([path], out)
        shards[path] = h5_contents(out)
    assert shards[tree] == shards[ntuple] == shards[default] == shards[ours]
    assert sum(k.endswith("/hits/x") for k in shards[tree]) == 3


def test_dump_without_unused_branches_reads_and_converts_the_same(tmp_path):
    events = [make_raw_event(seed=s, event_number=s) for s in range(2)]
    full = write_rntuple(tmp_path / "full" / "dump.root", events)
    lean = write_rntuple(tmp_path / "lean" / "dump.root", events, drop=S.UNUSED_BRANCHES)
    fields = set(uproot.open(lean)[S.TREE_NAME].keys())
    assert "CLloc_direction1" not in fields and "SPx" in fields
    back = read_gnn4itk(lean)
    assert not set(S.UNUSED_BRANCHES) & set(back[0])
    for a, b in zip(read_gnn4itk(full), back):
        for name in S.UNUSED_BRANCHES:
            a.pop(name)
        _assert_same(a, b)
    for path in (full, lean):
        run_convert([path], path.parent / "events.h5")
    assert h5_contents(full.parent / "events.h5") == h5_contents(lean.parent / "events.h5")
    # the same for a TTree of the root_writer encoding
    good = tmp_path / "good.root"
    write_gnn4itk(good, events)
    lean_tree = tmp_path / "lean_tree.root"
    _rewrite(good, lean_tree, drop=S.UNUSED_BRANCHES)
    assert len(read_gnn4itk(lean_tree)) == 2


def test_required_branches_are_exactly_what_convert_reads():
    """REQUIRED_BRANCHES is not a guess: it is the set of branches event_from_gnn4itk looks up."""
    raw = make_raw_event(seed=5, event_number=5)  # nested-link form, as read_gnn4itk(links="lists")
    seen = set()

    class Recording(dict):
        def __getitem__(self, key):
            seen.add(key)
            return super().__getitem__(key)

        def get(self, key, default=None):
            seen.add(key)
            return super().get(key, default)

        def __contains__(self, key):
            seen.add(key)
            return super().__contains__(key)

    event_from_gnn4itk(Recording(raw))
    encodings = {LINK_COUNT, *LINK_FLAT.values()}
    used = {b for b in seen if b not in encodings and b not in S.JET_BRANCHES}
    assert used == set(S.REQUIRED_BRANCHES), used ^ set(S.REQUIRED_BRANCHES)
    assert not used & set(S.UNUSED_BRANCHES)


def test_rntuple_missing_required_field_and_wrong_object(tmp_path):
    events = [make_raw_event(seed=1, event_number=1)]
    path = write_rntuple(tmp_path / "nospz.root", events, drop=("SPz",))
    _expect(path, field="SPz", match="missing required branch")
    nolink = write_rntuple(tmp_path / "nolink.root", events, drop=("CLparticleLink_eventIndex",))
    _expect(nolink, field="CLparticleLink_eventIndex", match="missing required branch")
    hist = tmp_path / "hist.root"
    with uproot.recreate(hist) as f:
        f[S.TREE_NAME] = np.histogram(np.arange(10.0), bins=5)
    _expect(hist, field=S.TREE_NAME, match="not a TTree or an RNTuple")
    # an RNTuple whose hardware field is not strings: a named error, not a library traceback
    cols = atlas_columns(events)
    cols["CLhardware"] = ak.values_astype(ak.ones_like(cols["CLx"]), np.float32)
    wrong = tmp_path / "wrong.root"
    with uproot.recreate(wrong) as f:
        f.mkrntuple(
            S.TREE_NAME,
            {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in cols.items()},
        ).extend(cols)
    _expect(wrong, field="CLhardware", match="strings")


# --------------------------------------------------------------------------- reproducible, atomic shards
_WRITE_SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
from test_io_rawgen import make_raw_event
from gnntrack.io.root_writer import write_gnn4itk
write_gnn4itk(sys.argv[1], [make_raw_event(seed=s, event_number=s) for s in range(2)], kind=sys.argv[2])
print(os.getpid())
"""


def _python_env():
    env = dict(os.environ)
    src = str(Path(S.__file__).resolve().parents[2])  # the gnntrack package under test
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("SOURCE_DATE_EPOCH", None)
    return env


@pytest.mark.parametrize("kind", ["ttree", "rntuple"])
def test_same_events_give_identical_bytes_in_two_processes(tmp_path, kind):
    """The temporary name (with the writer's PID) must not reach the file: ROOT records the name."""
    script = _WRITE_SCRIPT.format(tests=str(Path(__file__).parent))
    outputs, pids = [], set()
    for d in ("one", "two"):
        out = tmp_path / d / "shard.root"
        res = subprocess.run(
            [sys.executable, "-c", script, str(out), kind],
            env=_python_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        pids.add(res.stdout.strip())
        outputs.append(out.read_bytes())
    assert len(pids) == 2  # really two processes
    assert outputs[0] == outputs[1]
    # and the same bytes as a write in this process
    here = tmp_path / "three" / "shard.root"
    write_gnn4itk(here, [make_raw_event(seed=s, event_number=s) for s in range(2)], kind=kind)
    assert here.read_bytes() == outputs[0]
    assert sorted(p.name for p in here.parent.iterdir()) == ["shard.root"]  # no temporary left


_KILLED_SCRIPT = """
import sys, time
from gnntrack.io.atomic import atomic_output
with atomic_output(sys.argv[1], keep_name=sys.argv[2] == "dir") as tmp:
    tmp.write_bytes(b"half a file")
    print(tmp, flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_stale_temporary_of_a_killed_writer_is_removed_on_the_next_write(tmp_path, kind):
    out = tmp_path / "shard.root"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SCRIPT, str(out), kind],
        env=_python_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        tmp = Path(proc.stdout.readline().strip())
        assert tmp.exists() and str(proc.pid) in str(tmp)
        # a temporary of a live process is left alone
        write_gnn4itk(out, [make_raw_event(seed=1)])
        assert tmp.exists()
        out.unlink()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()  # reaped: the PID no longer exists
        proc.stdout.close()
    stale = tmp if kind == "file" else tmp.parent
    assert stale.name.startswith(".shard.root.tmp-") and stale.exists() and not out.exists()
    # old-style name of a dead process, and one of another host (its PID means nothing here)
    legacy = tmp_path / f".shard.root.tmp-{proc.pid}"
    legacy.write_bytes(b"x")
    other_host = tmp_path / f".shard.root.tmp-otherhost.example-{proc.pid}"
    other_host.write_bytes(b"x")
    write_gnn4itk(out, [make_raw_event(seed=1)])
    assert not stale.exists() and not legacy.exists()
    assert other_host.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, other_host.name])
    assert len(read_gnn4itk(out)) == 1


def test_checksum_catches_damage_that_decodes_as_valid_data(good_file, tmp_path):
    """A flipped bit in an uncompressed basket (no zlib check: ROOT stores a basket raw when
    compression does not shrink it, or with compression=None) is caught by the entry CRC."""
    plain = tmp_path / "plain" / good_file.name
    write_gnn4itk(plain, [make_raw_event(seed=s, event_number=10 + s) for s in range(2)], compression=None)
    branch = uproot.open(plain)[S.TREE_NAME]["SPx"]
    assert branch.basket(0).compressed_bytes == branch.basket(0).uncompressed_bytes
    seek = int(branch.member("fBasketSeek")[0])
    data = bytearray(plain.read_bytes())
    data[seek + branch.basket(0).member("fKeylen") + 3] ^= 0x01  # low mantissa bit: still plausible
    bad = tmp_path / "flip" / good_file.name
    bad.parent.mkdir()
    bad.write_bytes(bytes(data))
    t = uproot.open(bad)[S.TREE_NAME]
    before, after = uproot.open(plain)[S.TREE_NAME]["SPx"].array(), t["SPx"].array()
    assert ak.any(before != after) and ak.all(np.isfinite(ak.flatten(after)))  # decodes, differs
    _expect(bad, field=CHECKSUM, match="checksum")
    # an edited value with the old checksum kept: caught and named
    y = uproot.open(good_file)[S.TREE_NAME]["CLz"].array().to_list()
    y[1][0] += 1.0
    edited = tmp_path / "edited.root"
    _rewrite(good_file, edited, change={"CLz": ak.Array(y)}, keep_checksum=True)
    _expect(edited, field=CHECKSUM, event="42_11")
