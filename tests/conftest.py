"""Shared fixtures; makes ``tests/`` importable so tests can ``from synthetic import make_event``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import make_event  # noqa: E402

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def synthetic_event():
    return make_event()


@pytest.fixture
def shared_dir() -> Path:
    return SHARED_DIR
