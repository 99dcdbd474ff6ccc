"""The shipped reference models (models/reference/): they load, their files match their cards,
and the chain they make reproduces each card's numbers on its check event."""

from __future__ import annotations

from pathlib import Path

import pytest

from gnntrack.reference import CARD, CHECK_METRICS, MODEL_FILES, Reference

REFERENCE = Path(__file__).resolve().parents[1] / "models" / "reference"
BUNDLES = sorted(p.parent for p in REFERENCE.glob(f"*/{CARD}"))
#: the issue's limit on what the repository carries
MAX_BYTES = 25_000_000


def test_reference_models_are_shipped():
    assert [b.name for b in BUNDLES] == ["physics_mu200"]


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_reference_bundle_reproduces_its_card(bundle):
    ref = Reference.load(bundle)  # every file against its SHA-256
    card = ref.card
    assert sum(f["bytes"] for f in card["files"].values()) <= MAX_BYTES
    for name in ("module_map", "gnn"):
        assert ref.path(name) is not None, f"{name} missing from {bundle}"
        assert card["files"][MODEL_FILES[name][0]]["bytes"] > 0
    wp = card["models"]["gnn"]["working_point"]
    assert 0 < wp["score_cut"] < 1
    # the card's test numbers are the evaluation's, on held-out events
    assert card["test"]["events"] >= 20
    assert card["test"]["ATLAS"]["target_particles"] > 0

    result = ref.check("cpu")  # raises when a number is off the card by more than its tolerance
    assert {f"{s}_{n}" for s, n in CHECK_METRICS} <= set(result)
    card_eff, now_eff = result["ATLAS_efficiency"]
    assert now_eff > 0.5, "the check event's efficiency is not that of a working chain"
