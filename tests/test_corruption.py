"""Damaged artefacts never pass silently: seeded truncations and byte flips of every file type.

For each artefact the project writes and reads back (events HDF5, module map, graphs HDF5, model
.pt, tracks HDF5) a clean file is built from tiny synthetic events, then damaged copies are run
through the command a user runs on it (in-process ``gnntrack.cli.main``):

    events HDF5   gnntrack build-graphs EVENTS --module-map MAP     (reads hits, particles, truth)
    module map    gnntrack build-graphs EVENTS --module-map MAP
    graphs HDF5   gnntrack score-gnn EVENTS GRAPHS --model GNN
    model .pt     gnntrack score-gnn EVENTS GRAPHS --model GNN
    tracks HDF5   gnntrack reassociate EVENTS TRACKS -o DIR

Every case must end in one of two ways: exit status 2 with a one-line message naming the
damaged file and no output (nor temporary file) left behind, or exit status 0 with output
byte-identical to the clean run's (the flip hit bytes nothing reads: free space, a table the
command does not read, zip padding). Anything else (another exception, a different output)
fails the test. Flips are spread over the whole file and, for half of them, over the stored
payload itself (HDF5 dataset chunks, compressed or not; the tensor records of the zip).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from synthetic import make_event

from gnntrack.cli import main
from gnntrack.graph_construction.module_map import run_build_module_map
from gnntrack.io.event_store import write_events
from gnntrack.io.track_store import TrackRecord, write_tracks
from gnntrack.models.interaction_gnn import InteractionGNN
from gnntrack.models.registry import save_model
from gnntrack.tracks import Tracks

SEED = 14
N_TRUNCATIONS = 8
N_FLIPS = 26  # per artefact type: half anywhere in the file, half inside stored payload
SUMMARY: dict[str, Counter] = {}


# ------------------------------------------------------------------------------ clean artefacts
def _truth_tracks(ev) -> Tracks:
    p = np.asarray(ev.hits["particle_index"])
    rows = np.flatnonzero(p >= 0)
    rows = rows[np.argsort(p[rows], kind="stable")]
    counts = np.bincount(p[rows])
    offsets = np.concatenate([[0], np.cumsum(counts[counts > 0])]).astype(np.int64)
    return Tracks(rows.astype(np.int64), offsets)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    d = tmp_path_factory.mktemp("clean")
    events = [make_event(n_particles=12, n_noise=6, seed=s, event_number=s) for s in (1, 2)]
    write_events(d / "events.h5", events, compression="lzf")
    run_build_module_map([d / "events.h5"], d / "map.h5")
    torch_gnn = InteractionGNN(hidden=8, n_graph_iters=1, n_node_layers=1, n_edge_layers=1)
    save_model(torch_gnn, d / "gnn.pt")
    records = [
        TrackRecord(key=ev.key, tracks=_truth_tracks(ev), n_hits=ev.n_hits, timing={"total": 0.5})
        for ev in events
    ]
    write_tracks(d / "tracks.h5", records)
    assert (
        _cli(["build-graphs", str(d / "events.h5"), "--module-map", str(d / "map.h5")], d / "graphs.h5")[0]
        == 0
    )
    return d


def _cli(args: list[str], output: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main([*args, "-o", str(output), *(["--device", "cpu"] if args[0] != "reassociate" else [])])
    return rc, err.getvalue()


COMMANDS = {
    "events": lambda c, a: ["build-graphs", str(a), "--module-map", str(c / "map.h5")],
    "module_map": lambda c, a: ["build-graphs", str(c / "events.h5"), "--module-map", str(a)],
    "graphs": lambda c, a: ["score-gnn", str(c / "events.h5"), str(a), "--model", str(c / "gnn.pt")],
    "model": lambda c, a: ["score-gnn", str(c / "events.h5"), str(c / "graphs.h5"), "--model", str(a)],
    "tracks": lambda c, a: ["reassociate", str(c / "events.h5"), str(a)],
}
SOURCE = {
    "events": "events.h5",
    "module_map": "map.h5",
    "graphs": "graphs.h5",
    "model": "gnn.pt",
    "tracks": "tracks.h5",
}


# ------------------------------------------------------------------------------ where to damage
def _hdf5_payload(path: Path) -> list[tuple[int, int]]:
    """(offset, size) of every stored dataset chunk or contiguous block of an HDF5 file."""
    spans = []

    def visit(_name, obj):
        if not isinstance(obj, h5py.Dataset) or obj.id.get_storage_size() == 0:
            return
        if obj.chunks is None:
            spans.append((obj.id.get_offset(), obj.id.get_storage_size()))
        else:
            for i in range(obj.id.get_num_chunks()):
                info = obj.id.get_chunk_info(i)
                spans.append((info.byte_offset, info.size))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return [s for s in spans if s[0] is not None and s[1] > 0]


def _zip_payload(path: Path) -> list[tuple[int, int]]:
    """(offset, size) of the stored bytes of every member of a zip (torch) file."""
    spans = []
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            h = info.header_offset
            name_len = int.from_bytes(raw[h + 26 : h + 28], "little")
            extra_len = int.from_bytes(raw[h + 28 : h + 30], "little")
            if info.compress_size:
                spans.append((h + 30 + name_len + extra_len, info.compress_size))
    return spans


def _cases(kind: str, path: Path) -> list[tuple[str, int, int]]:
    """Seeded (what, offset, xor mask or -1 for a truncation) damages of one clean file."""
    rng = np.random.default_rng([SEED, len(kind)])
    size = path.stat().st_size
    spans = _zip_payload(path) if kind == "model" else _hdf5_payload(path)
    assert spans, f"no payload found in {path}"
    cuts = {0, 1, size // 2, size - 1, *rng.integers(2, size - 1, N_TRUNCATIONS - 4).tolist()}
    cases = [("truncate", int(n), -1) for n in sorted(cuts)]
    weights = np.array([s for _, s in spans], float)
    for i in range(N_FLIPS):
        if i % 2 == 0:
            pos = int(rng.integers(0, size))
            what = "flip-any"
        else:
            off, n = spans[rng.choice(len(spans), p=weights / weights.sum())]
            pos = int(off + rng.integers(0, n))
            what = "flip-payload"
        cases.append((what, pos, int(rng.integers(1, 256))))
    return cases


def _damage(src: Path, dst: Path, offset: int, mask: int) -> None:
    data = bytearray(src.read_bytes())
    if mask < 0:
        del data[offset:]
    else:
        data[offset] ^= mask
    dst.write_bytes(bytes(data))


def _snapshot(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {p.name: p.read_bytes() for p in sorted(path.iterdir())}
    return {path.name: path.read_bytes()} if path.exists() else {}


# ------------------------------------------------------------------------------ the test
@pytest.mark.parametrize("kind", list(COMMANDS))
def test_damaged_artefact_is_a_named_error_or_harmless(kind, clean, tmp_path, capsys):
    src = clean / SOURCE[kind]
    out_name = "out" if kind == "tracks" else "out.h5"
    rc, message = _cli(COMMANDS[kind](clean, src), tmp_path / "clean_run" / out_name)
    assert rc == 0, message
    reference = _snapshot(tmp_path / "clean_run" / out_name)
    assert reference

    outcomes, failures = Counter(), []
    for i, (what, offset, mask) in enumerate(_cases(kind, src)):
        case = tmp_path / f"case{i}"
        case.mkdir()
        bad = case / src.name
        _damage(src, bad, offset, mask)
        out = case / "run" / out_name
        label = f"{what}@{offset}" + (f"^{mask:#04x}" if mask >= 0 else "")
        try:
            rc, message = _cli(COMMANDS[kind](clean, bad), out)
        except BaseException as exc:  # noqa: BLE001 - any escape is what this test looks for
            failures.append(f"{label}: {type(exc).__name__}: {exc}")
            outcomes["traceback"] += 1
            continue
        left = sorted(p.name for p in case.rglob("*") if p != bad and p.is_file())
        if rc == 2 and str(bad) in message and message.count("\n") == 1 and not left:
            outcomes[f"{what}: named error"] += 1
        elif rc == 0 and _snapshot(out) == reference:
            outcomes[f"{what}: identical output"] += 1
        else:
            failures.append(f"{label}: rc={rc} left={left} message={message.strip()[:300]!r}")
            outcomes["wrong"] += 1
        shutil.rmtree(case)
    SUMMARY[kind] = outcomes
    with capsys.disabled():
        total = sum(outcomes.values())
        detail = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        print(f"\n[corruption] {kind} ({src.stat().st_size} bytes): {total} cases: {detail}")
    assert not failures, "\n".join(failures)
    assert sum(v for k, v in outcomes.items() if "named error" in k) > 0


def test_case_counts_cover_every_artefact_type(clean):
    counts = {kind: len(_cases(kind, clean / SOURCE[kind])) for kind in COMMANDS}
    assert sum(counts.values()) >= 150, counts
    for kind in COMMANDS:
        assert sum(w == "flip-payload" for w, _, _ in _cases(kind, clean / SOURCE[kind])) >= 10


def test_reassociate_leaves_no_output_folder_on_a_damaged_input(clean, tmp_path):
    """The h5py error of a damaged events file is a named error, and no (partial) folder stays."""
    bad = tmp_path / "events.h5"
    with h5py.File(clean / "events.h5", "r") as f:
        key = next(iter(f["events"]))
        info = f[f"events/{key}/clusters/x"].id.get_chunk_info(0)
    _damage(clean / "events.h5", bad, info.byte_offset + info.size // 2, 0x33)
    rc, message = _cli(["reassociate", str(bad), str(clean / "tracks.h5")], tmp_path / "athena")
    assert rc == 2 and str(bad) in message and "clusters/x" in message and key in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.h5"]
    # into an existing folder: nothing of this run appears in it on error, everything on success
    (tmp_path / "athena").mkdir()
    (tmp_path / "athena" / "keep.txt").write_text("x")
    rc, _ = _cli(["reassociate", str(bad), str(clean / "tracks.h5")], tmp_path / "athena")
    assert rc == 2 and [p.name for p in (tmp_path / "athena").iterdir()] == ["keep.txt"]
    rc, _ = _cli(["reassociate", str(clean / "events.h5"), str(clean / "tracks.h5")], tmp_path / "athena")
    assert rc == 0 and (tmp_path / "athena" / "tracks.h5").exists()
    assert len(list((tmp_path / "athena").glob("track_*.csv"))) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["athena", "events.h5"]
