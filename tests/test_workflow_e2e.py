"""The tiny campaign run for real, end to end, then changed and interrupted like a user would.

One module-scoped run of config/test_tiny.yaml (a few minutes on 2 cores) feeds all tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import yaml
from test_workflow_dryrun import dry_run, make_workdir, snakemake

pytestmark = pytest.mark.slow

CAMPAIGN = "test_tiny"
TINY = "config/test_tiny.yaml"


def tiny_config() -> dict:
    base = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/config.yaml").read_text())
    tiny = yaml.safe_load((Path(__file__).resolve().parents[1] / TINY).read_text())
    return {**base, **tiny}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Path:
    workdir = make_workdir(tmp_path_factory.mktemp("tiny"))
    snakemake(workdir, "--cores", "2", "--configfile", TINY, timeout=1800)
    return workdir


def test_tiny_campaign_reaches_evaluation(campaign):
    cfg = tiny_config()
    res = campaign / "results" / CAMPAIGN
    n_test_events = cfg["shards"]["test"] * cfg["simulation"]["n_events"]

    summary = json.loads((res / "eval/summary.json").read_text())
    text = json.dumps(summary)
    assert "efficiency" in text and "fake" in text
    assert (res / "eval/report.md").read_text().startswith("#")
    assert list((res / "eval/plots").glob("*.png")), "evaluation made no plots"

    # every test event went through inference and re-association
    n_tracks_events = 0
    for f in (res / "tracks").glob("*.h5"):
        with h5py.File(f) as h5:
            n_tracks_events += len(h5["tracks"])
    assert n_tracks_events == n_test_events
    csvs = list((res / "athena").glob("*/track_*.csv"))
    assert len(csvs) == n_test_events

    for name in ("filter", "gnn"):
        for ext in ("onnx", "ts.pt"):
            assert (res / "export" / f"{name}.{ext}").stat().st_size > 0
    bench = json.loads((res / "bench/bench.json").read_text())
    assert bench["variants"] and bench["variants"][0]["summary"]
    # per-rule logs and benchmarks exist for the report and for cluster sizing
    assert (res / "logs/train_gnn.log").read_text()
    assert (res / "benchmarks/train_gnn.tsv").read_text().startswith("s\t")

    # a finished campaign has nothing left to do
    assert dry_run(campaign, TINY) == {}


def test_html_report_holds_the_evaluation(campaign):
    snakemake(campaign, "--configfile", TINY, "--report", "report.html")
    html = (campaign / "report.html").read_text(errors="replace")
    assert "summary.json" in html and "Evaluation" in html


def test_reference_bundle_packs_checks_and_runs(campaign, tmp_path):
    """A finished campaign packed into a reference bundle: the card's check numbers come back
    when the bundle is rerun, a damaged file is refused, and infer --reference makes tracks."""
    from gnntrack.campaign import load_campaign
    from gnntrack.cli import main
    from gnntrack.io.errors import InputError
    from gnntrack.io.event_store import event_keys
    from gnntrack.reference import CHECK_METRICS, Reference, pack_reference

    res = campaign / "results" / CAMPAIGN
    check_events = sorted((res / "events" / "test").glob("*.h5"))[0]
    cfg = load_campaign([campaign / "config/config.yaml", campaign / TINY])
    bundle = tmp_path / "bundle"
    card = pack_reference(
        res, cfg, bundle, check_events=check_events, command="snakemake --configfile " + TINY
    )
    assert set(card["files"]) >= {"module_map.h5", "filter.pt", "gnn.pt", "campaign.yaml", "check.h5"}
    assert card["test"]["ATLAS"]["target_particles"] > 0
    assert card["models"]["gnn"]["working_point"]["score_cut"] > 0
    assert card["models"]["gnn"]["training_seconds"] > 0
    assert (bundle / "card.md").read_text().startswith("# Reference models: test_tiny")

    ref = Reference.load(bundle)
    result = ref.check("cpu")
    assert {f"{s}_{n}" for s, n in CHECK_METRICS} <= set(result)
    # the check on the same machine reproduces the card exactly
    assert all(card_v == now for card_v, now in result.values())

    out = tmp_path / "tracks.h5"
    assert (
        main(["infer", "--reference", str(bundle), "--device", "cpu", str(check_events), "-o", str(out)]) == 0
    )
    with h5py.File(out) as h5:
        assert len(h5["tracks"]) == len(event_keys(check_events))

    # a changed model file no longer matches the card
    gnn = bundle / "gnn.pt"
    gnn.write_bytes(gnn.read_bytes() + b"x")
    with pytest.raises(InputError, match="SHA-256"):
        Reference.load(bundle)
    assert main(["infer", "--reference", str(bundle), str(check_events), "-o", str(tmp_path / "t2.h5")]) == 2
    assert not (tmp_path / "t2.h5").exists()


def test_gnn_change_reruns_gnn_and_descendants_only(campaign):
    gnn = tiny_config()["gnn"]
    (campaign / "extra.yaml").write_text(yaml.safe_dump({"gnn": {"hidden": gnn["hidden"] + 8}}))
    jobs = dry_run(campaign, TINY, "extra.yaml")
    assert set(jobs) == {
        "train_gnn",
        "gnn_working_point",
        "score_gnn",
        "infer",
        "reassociate",
        "evaluate",
        "export",
        "bench",
        "all",
    }


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"snakemake exited ({proc.returncode}) before {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_interrupted_training_resumes_from_checkpoint(campaign):
    res = campaign / "results" / CAMPAIGN
    gnn = tiny_config()["gnn"]
    # a longer training from scratch, interrupted (Ctrl-C) after its first epoch's checkpoint;
    # 20 epochs (~0.5 s each) so that a loaded machine cannot finish it before the signal lands
    extra = {"gnn": {"train": {**gnn.get("train", {}), "epochs": 20}}}
    (campaign / "extra.yaml").write_text(yaml.safe_dump(extra))
    model, last = res / "models/gnn_trained.pt", res / "models/gnn_trained.pt.last"
    last.unlink()  # else the longer run would continue the campaign's 1-epoch training
    log = res / "logs/train_gnn.log"
    started = time.time()
    target = str(model.relative_to(campaign))
    cmd = [sys.executable, "-m", "snakemake", target, "--cores", "1", "--configfile", TINY, "extra.yaml"]
    with open(campaign / "interrupted.out", "w") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=campaign,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # a shell runs background jobs with SIGINT ignored, and children inherit that: give
            # snakemake the disposition a terminal's Ctrl-C meets
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            _wait_for(
                lambda: last.exists() and last.stat().st_mtime > started,
                600,
                "the first epoch checkpoint",
                proc,
            )
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert "resuming" not in log.read_text()
    # the interrupted job is not taken for finished: it is planned again
    jobs = dry_run(campaign, TINY, "extra.yaml", extra=("--rerun-incomplete",))
    assert "train_gnn" in jobs

    snakemake(campaign, target, "--rerun-incomplete", "--configfile", TINY, "extra.yaml")
    text = log.read_text()
    assert "resuming" in text, text[-3000:]
    assert "epoch 20:" in text and "epoch 1:" not in text, "the resumed run must not redo the first epoch"
    assert model.exists()
