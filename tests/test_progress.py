"""Progress of long loops: log lines off a terminal, a bar on one, nothing when off; stages log it."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import torch

from gnntrack.progress import (
    ENV_EVERY,
    ENV_VAR,
    Progress,
    format_duration,
    progress,
    resolve_every,
    resolve_mode,
    safe_total,
    shard_name,
)

LOGGER = "gnntrack.test_progress"
DETECTOR = str(Path(__file__).resolve().parents[1] / "config" / "detector" / "itk_like.yaml")


class FakeClock:
    """Seconds that only move when the test says so."""

    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv(ENV_EVERY, raising=False)


def _messages(caplog, name: str = LOGGER) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name]


def test_log_mode_writes_periodic_lines_with_rate_and_eta_and_a_final_line(caplog):
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    items = []
    for x in progress(
        range(5),
        desc="simulate shard 3",
        unit="events",
        logger=logging.getLogger(LOGGER),
        every_s=2.5,
        mode="log",
        clock=clock,
    ):
        clock.t += 1.0  # each item takes one second
        items.append(x)
    assert items == [0, 1, 2, 3, 4]
    assert _messages(caplog) == [
        "simulate shard 3: 3/5 events (60.0 %), 1 events/s, ETA 2.0s",
        "simulate shard 3: done, 5 events in 5.0s, 1 events/s",
    ]


def test_every_zero_logs_each_item_and_eta_shrinks(caplog):
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    log = logging.getLogger(LOGGER)
    for _ in progress(range(200), desc="d", unit="steps", logger=log, every_s=0, mode="log", clock=clock):
        clock.t += 0.5
    lines = _messages(caplog)
    assert len(lines) == 201
    assert lines[0] == "d: 1/200 steps (0.5 %), 2 steps/s, ETA 1m40s"
    assert lines[119] == "d: 120/200 steps (60.0 %), 2 steps/s, ETA 40s"
    assert lines[-1] == "d: done, 200 steps in 1m40s, 2 steps/s"


def test_no_line_before_every_s_only_the_final_one(caplog):
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    for _ in progress(
        range(3), desc="d", logger=logging.getLogger(LOGGER), every_s=30, mode="log", clock=clock
    ):
        clock.t += 1.0
    assert _messages(caplog) == ["d: done, 3 items in 3.0s, 1 items/s"]


def test_unknown_total_has_count_and_rate_but_no_eta(caplog):
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    gen = (i for i in range(4))
    for _ in progress(gen, desc="convert train/0.h5", unit="events", logger=logging.getLogger(LOGGER),
                      every_s=0, mode="log", clock=clock):  # fmt: skip
        clock.t += 2.0
    lines = _messages(caplog)
    assert lines[1] == "convert train/0.h5: 2 events, 0.5 events/s"
    assert lines[-1] == "convert train/0.h5: done, 4 events in 8.0s, 0.5 events/s"


def test_postfix_and_early_stop(caplog):
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    p = Progress(
        10, "train epoch 1/3", "steps", logging.getLogger(LOGGER), every_s=0, mode="log", clock=clock
    )
    for i in p.wrap(range(10), close=True):
        clock.t += 1.0
        p.set_postfix(loss=1.0 / (i + 1))
        if i == 3:
            break
    lines = _messages(caplog)
    assert lines[0] == "train epoch 1/3: 1/10 steps (10.0 %), 1 steps/s, ETA 9.0s, loss=1"
    assert lines[-1] == "train epoch 1/3: stopped at 3/10 steps (30.0 %) after 4.0s, 0.75 steps/s, loss=0.25"


def test_exception_in_the_iterable_passes_through_and_says_stopped(caplog):
    caplog.set_level(logging.INFO)

    def failing():
        yield 1
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        for _ in progress(failing(), total=5, desc="d", logger=logging.getLogger(LOGGER), mode="log"):
            pass
    assert _messages(caplog)[-1].startswith("d: stopped at 1/5 items (20.0 %) after")


def test_off_writes_nothing(caplog, monkeypatch, capsys):
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger(LOGGER)
    assert list(progress(range(50), desc="d", logger=log, every_s=0, mode="off")) == list(range(50))
    monkeypatch.setenv(ENV_VAR, "off")
    assert list(progress(range(50), desc="d", logger=log, every_s=0)) == list(range(50))
    assert _messages(caplog) == []
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("mode", ["bar", "log", "off"])
def test_items_pass_through_unchanged(mode):
    items = [{"a": 1}, None, (2, 3), "x", 0.5]
    stream = io.StringIO()
    out = list(progress(iter(items), desc="d", every_s=0, mode=mode, stream=stream))
    assert out == items and all(a is b for a, b in zip(out, items))
    assert (stream.getvalue() != "") == (mode == "bar")


def test_bar_mode_draws_tqdm_and_logs_the_final_line(caplog):
    caplog.set_level(logging.INFO)
    stream = Tty()
    p = Progress(3, "infer test/0.h5", "events", logging.getLogger(LOGGER), mode="auto", stream=stream)
    assert p.mode == "bar"
    for _ in p.wrap(range(3), close=True):
        p.set_postfix(loss=0.5)
    assert "infer test/0.h5" in stream.getvalue()
    assert len(_messages(caplog)) == 1 and "done, 3 events in" in _messages(caplog)[0]


def test_mode_resolution(monkeypatch, caplog):
    assert resolve_mode("auto", io.StringIO()) == "log"
    assert resolve_mode(None, Tty()) == "bar"
    assert resolve_mode("off", Tty()) == "off"
    monkeypatch.setenv(ENV_VAR, "log")
    assert resolve_mode("auto", Tty()) == "log"  # the environment decides "auto"
    assert resolve_mode("bar", io.StringIO()) == "bar"  # an explicit mode wins
    monkeypatch.setenv(ENV_VAR, "BAR")
    assert resolve_mode(None, io.StringIO()) == "bar"
    with pytest.raises(ValueError, match="progress mode"):
        resolve_mode("sometimes")
    monkeypatch.setenv(ENV_VAR, "sometimes")  # a typo in the environment must not fail a job
    with caplog.at_level(logging.WARNING, "gnntrack.progress"):
        assert resolve_mode(None, io.StringIO()) == "log"
    assert "ignoring GNNTRACK_PROGRESS='sometimes'" in caplog.text


def test_interval_resolution(monkeypatch):
    assert resolve_every() == 30.0
    assert resolve_every(2) == 2.0
    monkeypatch.setenv(ENV_EVERY, "5")
    assert resolve_every() == 5.0 and resolve_every(1) == 1.0
    monkeypatch.setenv(ENV_EVERY, "-1")
    assert resolve_every() == 30.0


def test_helpers():
    assert [format_duration(s) for s in (0.04, 9.94, 42.4, 181, 3599.6, 7500, float("inf"))] == [
        "0.0s", "9.9s", "42s", "3m01s", "1h00m", "2h05m", "?",
    ]  # fmt: skip
    assert shard_name("results/c/events/train/3.h5") == "train/3.h5"
    assert shard_name("3.h5") == "3.h5"
    assert safe_total(lambda: 7) == 7
    assert safe_total(lambda: len(open("/nonexistent/file"))) is None  # noqa: SIM115


# -- stages log progress -----------------------------------------------------------------------------


@pytest.fixture
def every_item(monkeypatch):
    """What a workflow job sees: log lines (not a terminal), here one per item."""
    monkeypatch.setenv(ENV_VAR, "log")
    monkeypatch.setenv(ENV_EVERY, "0")


def test_simulate_logs_progress(tmp_path, caplog, every_item):
    from gnntrack.simulation import SimulationConfig, run_simulate

    caplog.set_level(logging.INFO)
    cfg = SimulationConfig(hard_process="gun", mu=0.0, n_events=3, detector=DETECTOR)
    cfg.gun.n_particles = 20
    run_simulate(tmp_path / "2.root", cfg, shard=2)
    lines = _messages(caplog, "gnntrack.simulation.event")
    assert lines[0].startswith("simulate shard 2: 1/3 events (33.3 %), ")
    assert "events/s, ETA " in lines[0]
    assert lines[-1].startswith("simulate shard 2: done, 3 events in ")


def test_convert_logs_progress(trackml_sample, tmp_path, caplog, every_item):
    from gnntrack.conversion.convert import run_convert

    caplog.set_level(logging.INFO)
    info = run_convert(
        [trackml_sample / "event000000001"], tmp_path / "events" / "0.h5", {"input_format": "trackml"}
    )
    assert info["n_events"] == 1
    lines = _messages(caplog, "gnntrack.conversion.convert")
    assert lines[0].startswith("convert events/0.h5: 1/1 events (100.0 %), ")
    assert lines[-1].startswith("convert events/0.h5: done, 1 events in ")


def test_module_map_and_graph_building_log_progress(tmp_path, caplog, every_item):
    from synthetic import make_event

    from gnntrack.graph_construction import run_build_graphs, run_build_module_map
    from gnntrack.io.event_store import write_events

    caplog.set_level(logging.INFO)
    shard = tmp_path / "events" / "train" / "0.h5"
    write_events(shard, [make_event(n_particles=30, seed=s, event_number=s) for s in range(3)])
    run_build_module_map([shard], tmp_path / "map.h5", {"n_events": 2})
    lines = _messages(caplog, "gnntrack.graph_construction.module_map")
    assert lines[0].startswith("module map: 1/2 events (50.0 %), ")
    assert lines[-1].startswith("module map: done, 2 events in ")
    run_build_graphs(
        shard, tmp_path / "g.h5", {"method": "module_map"}, module_map=tmp_path / "map.h5", device="cpu"
    )
    lines = _messages(caplog, "gnntrack.graph_construction.build")
    assert [line.split(",")[0] for line in lines] == [
        "build graphs train/0.h5: 1/3 events (33.3 %)",
        "build graphs train/0.h5: 2/3 events (66.7 %)",
        "build graphs train/0.h5: 3/3 events (100.0 %)",
        "build graphs train/0.h5: done",
    ]


def test_inference_and_evaluation_log_progress(tmp_path, caplog, every_item):
    from synthetic import make_event

    from gnntrack.evaluation import run_evaluate
    from gnntrack.graph_construction import build_module_map
    from gnntrack.inference import run_infer
    from gnntrack.io.event_store import write_events
    from gnntrack.models import FilterModel, InteractionGNN, save_model

    caplog.set_level(logging.INFO)
    shard = tmp_path / "events" / "test" / "0.h5"
    events = [make_event(n_particles=30, seed=s, event_number=s) for s in range(2)]
    write_events(shard, events)
    build_module_map(events).write(tmp_path / "map.h5")
    torch.manual_seed(0)
    save_model(FilterModel(hidden=8, n_layers=2), tmp_path / "filter.pt")
    save_model(InteractionGNN(hidden=8, n_graph_iters=1), tmp_path / "gnn.pt")
    tracks = tmp_path / "tracks" / "0.h5"
    models = {"filter_model": tmp_path / "filter.pt", "gnn_model": tmp_path / "gnn.pt"}
    run_infer(shard, tracks, {}, module_map=tmp_path / "map.h5", device="cpu", **models)
    lines = [x for x in _messages(caplog, "gnntrack.inference.pipeline") if x.startswith("infer ")]
    assert lines[0].startswith("infer test/0.h5: 1/2 events (50.0 %), ")
    assert lines[-1].startswith("infer test/0.h5: done, 2 events in ")
    run_evaluate([shard], [tracks], {}, tmp_path / "eval", {"formats": ["png"]})
    lines = _messages(caplog, "gnntrack.evaluation.run")
    assert lines[0].startswith("evaluate: 1/2 events (50.0 %), ")
    assert lines[-1].startswith("evaluate: done, 2 events in ")


def test_training_logs_steps_within_each_epoch(tmp_path, caplog, every_item):
    from gnntrack.training import TrainConfig, fit

    class Task:
        def __init__(self):
            torch.manual_seed(0)
            self.model = torch.nn.Linear(2, 1)

        def model_config(self):
            return {}

        def loss(self, item, device):
            return ((self.model(item) - 1.0) ** 2).mean()

        def evaluate(self, items, device):
            return {"loss": float(sum(self.loss(x, device) for x in items)) / len(items)}

    caplog.set_level(logging.INFO)
    items = [torch.randn(4, 2, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    fit(Task(), items[:4], items[4:], TrainConfig(epochs=2), tmp_path / "m.pt", device="cpu")
    lines = _messages(caplog, "gnntrack.training.loop")
    steps = [x for x in lines if x.startswith("train epoch 2/2: ")]
    assert steps[0].startswith("train epoch 2/2: 1/4 steps (25.0 %), ")
    assert "steps/s, ETA " in steps[0] and ", loss=" in steps[0]
    assert steps[-1].startswith("train epoch 2/2: done, 4 steps in ")
    assert any(x.startswith("epoch 2: epoch=2, train_loss=") for x in lines)  # the epoch line stays


def test_train_config_off_is_silent(tmp_path, caplog, every_item):
    from test_training_loop import ToyTask, _data

    from gnntrack.training import TrainConfig, fit

    caplog.set_level(logging.INFO)
    train, val = _data()
    fit(ToyTask(), train, val, TrainConfig(epochs=1, progress="off"), tmp_path / "m.pt", device="cpu")
    assert not [x for x in _messages(caplog, "gnntrack.training.loop") if x.startswith("train epoch")]
