"""Shared fixtures; makes ``tests/`` importable so tests can ``from synthetic import make_event``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import make_event  # noqa: E402

TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def synthetic_event():
    return make_event()


@pytest.fixture
def trackml_sample() -> Path:
    """One real TrackML event (5,527 hits, gzipped CSV, with detectors.csv.gz) kept in the repository."""
    return TEST_DATA / "trackml_sample"
