"""The ``gnntrack`` command line: stage calls, config handling and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml

from gnntrack.cli import STAGE_CLASSES, build_parser, main, stage_class, stage_config
from gnntrack.config import ConfigError
from gnntrack.io.event_store import write_events
from gnntrack.io.graph_store import read_graphs

RULE_COMMANDS = {
    "simulate", "convert", "build-module-map", "train-metric-learning", "build-graphs", "train-filter",
    "apply-filter", "train-gnn", "working-point", "score-gnn", "infer", "reassociate", "evaluate", "export", "bench",
}  # fmt: skip
# no workflow rule: moving graphs to and from acorn; packing and checking reference model bundles
TOOL_COMMANDS = {"export-pyg", "import-pyg", "pack-reference", "check-reference", "train-hgnn"}


def test_every_stage_has_a_command():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == RULE_COMMANDS | TOOL_COMMANDS


def test_every_config_section_names_a_stage_dataclass():
    import dataclasses

    for section in STAGE_CLASSES:
        assert dataclasses.is_dataclass(stage_class(section)), section


def test_set_overrides_nested_keys_with_yaml_values():
    cfg = stage_config("gnn", {"gnn": {"hidden": 64}}, ["n_graph_iters=3", "train.epochs=2", "train.lr=0.01"])
    assert (cfg.hidden, cfg.n_graph_iters, cfg.train.epochs, cfg.train.lr) == (64, 3, 2, 0.01)
    with pytest.raises(ConfigError, match="key=value"):
        stage_config("gnn", {}, ["hidden"])
    with pytest.raises(ConfigError, match="hiden"):
        stage_config("gnn", {}, ["hiden=3"])


def test_config_error_is_one_line_and_exit_2(tmp_path, capsys):
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(yaml.safe_dump({"simulation": {"mu": 5, "n_event": 3}}))
    out = tmp_path / "sim.root"
    assert main(["simulate", "--config", str(campaign), "--shard", "0", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "n_event" in err and err.startswith("gnntrack simulate: error:")
    assert not out.exists()


def test_bad_input_file_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "garbage.root"
    bad.write_bytes(b"this is not a ROOT file" * 10)
    out = tmp_path / "events.h5"
    assert main(["convert", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "garbage.root" in err
    assert not out.exists(), "no partial output"

    assert main(["convert", str(tmp_path / "missing.root"), "-o", str(out)]) == 2
    assert "missing.root" in capsys.readouterr().err


def test_module_map_and_graphs_from_the_command_line(tmp_path, synthetic_event):
    """build-module-map then build-graphs on the same event find its target edges (same calls as the rules)."""
    events = tmp_path / "events.h5"
    write_events(events, [synthetic_event])
    mm, graphs = tmp_path / "module_map.h5", tmp_path / "graphs.h5"
    assert main(["build-module-map", str(events), "-o", str(mm)]) == 0
    assert (
        main(["build-graphs", str(events), "--module-map", str(mm), "-o", str(graphs), "--device", "cpu"])
        == 0
    )
    (graph,) = read_graphs(graphs)
    target = np.asarray(synthetic_event.particles["is_target"], bool)
    n_target_edges = int(target[synthetic_event.truth_edge_particle].sum())
    assert n_target_edges > 0
    # a map built on this very event must recover (nearly) all of its target edges
    assert graph.y_target.sum() >= 0.9 * n_target_edges


def test_python_dash_m_and_bench_help():
    res = subprocess.run([sys.executable, "-m", "gnntrack", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "build-module-map" in res.stdout
    res = subprocess.run(
        [sys.executable, "-m", "gnntrack", "bench", "--help"], capture_output=True, text=True
    )
    assert res.returncode == 0 and "--gnn-model" in res.stdout


# --------------------------------------------------------------------------- nonsense settings
#: the issue's examples: (campaign file, the one-line message, a command that would otherwise run)
BAD_CAMPAIGNS = [
    ({"gnn": {"train": {"epochs": -1}}}, "gnn.train.epochs: -1 is less than the minimum of 1", "train-gnn"),
    ({"simulation": {"n_events": -5}}, "simulation.n_events: -5 is less than the minimum of 1", "simulate"),
    ({"campaign": ".."}, "campaign: '..' does not match", "evaluate"),
]


def _argv(command: str, tmp_path) -> tuple[list[str], object]:
    """Arguments of ``command`` with inputs that do not exist: only the config check may answer."""
    out = tmp_path / "out" / "result"
    missing = str(tmp_path / "missing.h5")
    argv = {
        "train-gnn": ["--train-events", missing, "--train-graphs", missing, "--val-events", missing,
                      "--val-graphs", missing, "--device", "cpu"],
        "simulate": ["--shard", "0"],
        "evaluate": ["--events", missing, "--tracks", missing],
    }[command]  # fmt: skip
    return [command, *argv, "-o", str(out)], out


@pytest.mark.parametrize("campaign, message, command", BAD_CAMPAIGNS)
def test_nonsense_settings_fail_at_start_up_with_exit_2(campaign, message, command, tmp_path, capsys):
    config = tmp_path / "campaign.yaml"
    config.write_text(yaml.safe_dump(campaign))
    argv, out = _argv(command, tmp_path)
    assert main([*argv, "--config", str(config)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"gnntrack {command}: error: {message}"), captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""
    assert not out.exists() and not out.parent.exists()


@pytest.mark.parametrize("campaign, message, command", BAD_CAMPAIGNS)
def test_every_command_with_a_config_checks_the_whole_campaign(campaign, message, command, tmp_path, capsys):
    """A bad section fails every command given the file, not only the stage that reads it."""
    config = tmp_path / "campaign.yaml"
    config.write_text(yaml.safe_dump(campaign))
    other = {"train-gnn": "simulate", "simulate": "evaluate", "evaluate": "train-gnn"}[command]
    argv, out = _argv(other, tmp_path)
    assert main([*argv, "--config", str(config)]) == 2
    assert capsys.readouterr().err.startswith(f"gnntrack {other}: error: {message}")
    assert not out.exists()


def test_bench_checks_its_campaign_file(tmp_path, capsys):
    config = tmp_path / "campaign.yaml"
    config.write_text(yaml.safe_dump({"gnn": {"train": {"epochs": 0}}, "bench": {"n_events": 2}}))
    out = tmp_path / "bench"
    argv = ["bench", str(tmp_path / "missing.h5"), "--module-map", str(tmp_path / "m.h5"),
            "--gnn-model", str(tmp_path / "g.pt"), "-o", str(out), "--config", str(config)]  # fmt: skip
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == "gnntrack bench: error: gnn.train.epochs: 0 is less than the minimum of 1\n"
    assert captured.out == "" and not out.exists()


def test_set_overrides_obey_the_same_rules(tmp_path, capsys):
    argv, out = _argv("train-gnn", tmp_path)
    assert main([*argv, "--set", "train.lr=-0.1"]) == 2
    err = capsys.readouterr().err
    assert err == "gnntrack train-gnn: error: gnn.train.lr: -0.1 is less than or equal to the minimum of 0\n"
    with pytest.raises(ConfigError, match=r"^gnn\.n_graph_iters: 0 is less than the minimum of 1$"):
        stage_config("gnn", {}, ["n_graph_iters=0"])


def test_shipped_campaign_files_pass_the_cli_check():
    from pathlib import Path

    from gnntrack.cli import check_campaign
    from gnntrack.config import load_yaml

    for path in sorted((Path(__file__).resolve().parents[1] / "config").glob("*.yaml")):
        check_campaign(load_yaml(path))
