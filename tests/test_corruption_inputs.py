"""Seeded truncations and byte flips of ROOT (TTree, RNTuple) and TrackML CSV inputs, through the CLI.

Every damaged input, converted with ``gnntrack convert``, must end in one of two ways:

- exit status 2 with a one-line message that names the damaged file, and no output (nor any
  temporary) left behind;
- success with an output whose contents equal the clean run's (the damage hit bytes that carry
  nothing the converter reads: a title, a time stamp, a gzip header field, an unused branch).

Anything else fails the test: a traceback (any exception escaping the CLI), another exit status,
or a successful run with different contents.

ROOT files come from ``root_writer`` (which adds a per-entry checksum: a basket or page stored
uncompressed has no check of its own). TrackML files are damaged in their distributed gzip form
(byte flips and cuts anywhere: gzip's CRC-32 and length cover the content) and as plain CSV, cut
inside a line. Plain CSV carries no integrity information at all, so a flipped digit, or a cut
exactly at a line end of a table nothing refers back to (cells, detectors, hit-less particles),
is another valid file that no reader can tell from the original; those cases are not generated.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_io_rawgen import make_raw_event
from test_io_root import h5_contents

from gnntrack.cli import main
from gnntrack.io.root_writer import write_gnn4itk

SEED = 1414
EVENT = "event000000001"
TRACKML_FILES = ("hits", "cells", "particles", "truth", "detectors")


def _file_name(kind: str, gz: bool) -> str:
    base = "detectors.csv" if kind == "detectors" else f"{EVENT}-{kind}.csv"
    return base + (".gz" if gz else "")


def _convert(inputs: list[Path], out: Path, trackml: bool) -> tuple[int, str]:
    argv = ["convert", *map(str, inputs), "-o", str(out)]
    if trackml:
        argv[1:1] = ["--set", "input_format=trackml"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, err.getvalue()


def _truncate(data: bytes, rng, inside_line: bool = False) -> tuple[bytes, str]:
    while True:
        cut = int(rng.integers(0, len(data)))
        if not inside_line or (cut > 0 and data[cut - 1 : cut] != b"\n"):
            return data[:cut], f"cut at {cut}/{len(data)}"


def _flip(data: bytes, rng) -> tuple[bytes, str]:
    pos, mask = int(rng.integers(0, len(data))), int(rng.integers(1, 256))
    damaged = bytearray(data)
    damaged[pos] ^= mask
    return bytes(damaged), f"byte {pos} ^= {mask:#04x}"


class Outcomes:
    def __init__(self):
        self.tried = self.errors = self.identical = 0
        self.failures: list[str] = []

    def check(self, label: str, damaged: Path, run, out: Path, clean: dict) -> None:
        """Run one case; record a failure unless it is a named error or an identical output."""
        self.tried += 1
        try:
            rc, err = run()
        except BaseException as exc:  # noqa: BLE001 - any escaping exception is the failure we look for
            self.failures.append(f"{label}: {type(exc).__name__} escaped: {exc}")
            return
        lines = [line for line in err.splitlines() if line.strip()]
        left = sorted(p.name for p in out.parent.iterdir()) if out.parent.exists() else []
        if rc == 2:
            if len(lines) != 1 or not lines[0].startswith("gnntrack convert: error: "):
                self.failures.append(f"{label}: not a one-line message: {err!r}")
            elif damaged.name not in lines[0]:
                self.failures.append(f"{label}: message does not name {damaged.name}: {lines[0]}")
            elif left:
                self.failures.append(f"{label}: failed run left {left}")
            else:
                self.errors += 1
        elif rc == 0:
            if h5_contents(out) != clean:
                self.failures.append(f"{label}: converted WITHOUT error to different contents")
            else:
                self.identical += 1
        else:
            self.failures.append(f"{label}: exit status {rc}: {err!r}")


@pytest.fixture(scope="module")
def root_inputs(tmp_path_factory) -> dict[str, Path]:
    """Small root_writer files: 2 events of 20 particles, as TTree and as RNTuple."""
    base = tmp_path_factory.mktemp("root_clean")
    events = [make_raw_event(seed=s, event_number=s, n_particles=20, n_noise=5) for s in range(2)]
    out = {}
    for kind in ("ttree", "rntuple"):
        out[kind] = base / kind / "dump.root"
        write_gnn4itk(out[kind], events, kind=kind)
    return out


def _run_root_cases(
    kind: str, clean_file: Path, base: Path, rng, outcomes: Outcomes, n_cut: int, n_flip: int
):
    ref_out = base / f"{kind}-clean" / "events.h5"
    rc, err = _convert([clean_file], ref_out, trackml=False)
    assert rc == 0, err
    clean = h5_contents(ref_out)
    data = clean_file.read_bytes()
    for i in range(n_cut + n_flip):
        damaged_bytes, how = _truncate(data, rng) if i < n_cut else _flip(data, rng)
        case = base / f"{kind}-{i}"
        case.mkdir()
        damaged = case / clean_file.name  # same name: the shard records its source's name
        damaged.write_bytes(damaged_bytes)
        out = case / "out" / "events.h5"
        outcomes.check(
            f"{kind} {how}", damaged, lambda d=damaged, o=out: _convert([d], o, trackml=False), out, clean
        )


def _trackml_layout(sample: Path, base: Path, gz: bool) -> Path:
    """The sample event (gzipped as shipped, or plain) in ``base``: detectors.csv one level up."""
    base.mkdir()
    for kind in TRACKML_FILES:
        src = sample / _file_name(kind, True)
        dst = base / _file_name(kind, gz)
        if gz:
            shutil.copyfile(src, dst)
        else:
            with gzip.open(src) as fin, open(dst, "wb") as fout:
                shutil.copyfileobj(fin, fout)
    return base


def _run_trackml_cases(sample: Path, base: Path, gz: bool, rng, outcomes: Outcomes, per_file: dict[str, int]):
    fmt = "gz" if gz else "csv"
    clean_dir = _trackml_layout(sample, base / f"trackml-{fmt}", gz)
    events_dir = clean_dir / "clean"
    events_dir.mkdir()
    for kind in TRACKML_FILES[:-1]:
        (events_dir / _file_name(kind, gz)).symlink_to(clean_dir / _file_name(kind, gz))
    ref_out = clean_dir / "clean-out" / "events.h5"
    rc, err = _convert([events_dir / EVENT], ref_out, trackml=True)
    assert rc == 0, err
    clean = h5_contents(ref_out)
    n = 0
    for kind in TRACKML_FILES:  # detectors last: a damaged one evicts the cached clean geometry
        data = (clean_dir / _file_name(kind, gz)).read_bytes()
        for j in range(per_file[kind]):
            if gz:
                damaged_bytes, how = _truncate(data, rng) if j % 3 == 0 else _flip(data, rng)
            else:
                damaged_bytes, how = _truncate(data, rng, inside_line=True)
            case = clean_dir / f"case{n}"
            n += 1
            case.mkdir()
            # the event's files in the case folder (damaged one written, the others linked);
            # detectors.csv is found next to the event, else in the parent (the clean one)
            for other in TRACKML_FILES[:-1]:
                if other != kind:
                    (case / _file_name(other, gz)).symlink_to(clean_dir / _file_name(other, gz))
            damaged = case / _file_name(kind, gz)
            damaged.write_bytes(damaged_bytes)
            out = case / "out" / "events.h5"
            outcomes.check(
                f"trackml {fmt} {kind} {how}",
                damaged,
                lambda c=case, o=out: _convert([c / EVENT], o, trackml=True),
                out,
                clean,
            )


def test_damaged_inputs_end_in_a_named_error_or_identical_output(
    root_inputs, trackml_sample, tmp_path, capsys
):
    rng = np.random.default_rng(SEED)
    outcomes = Outcomes()
    for kind, path in root_inputs.items():
        _run_root_cases(kind, path, tmp_path, rng, outcomes, n_cut=8, n_flip=16)
    _run_trackml_cases(
        trackml_sample,
        tmp_path,
        True,
        rng,
        outcomes,
        {"hits": 5, "cells": 5, "particles": 5, "truth": 5, "detectors": 3},
    )
    _run_trackml_cases(
        trackml_sample,
        tmp_path,
        False,
        rng,
        outcomes,
        {"hits": 3, "cells": 3, "particles": 3, "truth": 3, "detectors": 2},
    )
    summary = (
        f"corruption cases tried: {outcomes.tried}, named errors: {outcomes.errors}, "
        f"identical outputs: {outcomes.identical}, failures: {len(outcomes.failures)}"
    )
    with capsys.disabled():
        print(f"\n{summary}")
    assert not outcomes.failures, summary + "\n" + "\n".join(outcomes.failures)
    assert outcomes.tried >= 60 and outcomes.errors > outcomes.tried // 2
