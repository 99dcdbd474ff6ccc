"""One campaign, one config per stage: the command line and the workflow resolve a campaign alike.

``gnntrack.campaign`` resolves a campaign mapping into every stage's config; the ``gnntrack``
commands call it (``stage_config``, ``gnntrack bench``) and so do the workflow's rules
(workflow/rules/common.smk: ``stage_config``, ``inference_config``). These tests take the params
the real Snakefile gives its rules for each committed campaign file (the workflow parsed in a
subprocess with ``--configfile``) and check that the commands, given the same files
(``-c config/config.yaml -c FILE``: the workflow always merges a campaign file over
config/config.yaml), build the same configs, inference's graph-construction settings included.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config, validate

import gnntrack.inference
import gnntrack.inference.bench
from gnntrack.campaign import (
    INFERENCE_FROM_GRAPH_CONSTRUCTION,
    STAGE_CLASSES,
    load_campaign,
    merge_campaigns,
    resolve_campaign,
    rule_params,
    stage_class,
    stage_params,
)
from gnntrack.cli import main, stage_config
from gnntrack.config import ConfigError, from_dict, to_dict
from gnntrack.inference import InferenceConfig

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "config/config.yaml"
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
CAMPAIGNS = sorted((REPO / "config").glob("*.yaml"))
CAMPAIGN_IDS = [p.name for p in CAMPAIGNS]

#: rule -> {param: campaign section it is}: the rules whose params are one stage's section
RULE_SECTIONS = {
    "simulate": {"cfg": "simulation"},
    "convert": {"cfg": "convert"},
    "build_module_map": {"cfg": "module_map"},
    "train_metric_learning": {"cfg": "metric_learning"},
    "build_graphs": {"cfg": "graph_construction"},
    "train_filter": {"cfg": "filter"},
    "apply_filter": {"cfg": "filter"},
    "gnn_working_point": {"cfg": "gnn"},
    "infer": {"cfg": "inference"},
    "bench": {"cfg": "bench", "inference": "inference"},
    "reassociate": {"cfg": "reassociation"},
    "evaluate": {"cfg": "evaluation"},
}

#: parses the Snakefile in the current folder with the --configfile arguments, prints every rule's params
PARSE_WORKFLOW = """
import sys
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.settings.enums import Quietness
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
    workflow = api.workflow(
        resource_settings=ResourceSettings(cores=1),
        config_settings=ConfigSettings(configfiles=[Path(f) for f in sys.argv[1:]]),
        snakefile=Path("Snakefile"),
        workdir=Path.cwd(),
    )._workflow
    params = {r.name: {k: getattr(r.params, k) for k in r.params.keys()} for r in workflow.rules}
print("PARAMS=" + repr(params))
"""


def cli_files(*paths: Path) -> list[Path]:
    """The campaign files the workflow reads for ``--configfile paths``, in its merge order."""
    return [BASE, *(p for p in paths if p != BASE)]


def config_args(*paths: Path) -> list[str]:
    return [arg for f in cli_files(*paths) for arg in ("-c", str(f))]


def workflow_config(path: Path, extra: dict | None = None) -> dict:
    """The config common.smk's rules read for ``--configfile path [extra]``: config/config.yaml
    with the files merged over it as Snakemake merges them, validated with the schema defaults
    filled in by ``snakemake.utils.validate`` (common.smk's ``validate_campaign``)."""
    config: dict = {}
    for f in cli_files(path):
        update_config(config, yaml.safe_load(f.read_text()))
    if extra:
        update_config(config, extra)
    validate(config, str(SCHEMA))
    return config


@pytest.fixture(scope="module")
def workflow_params(tmp_path_factory):
    """Campaign file -> rule -> param -> value, as the real Snakefile sets them."""
    cache: dict[tuple[Path, ...], dict] = {}

    def params(*paths: Path) -> dict:
        if paths not in cache:
            workdir = tmp_path_factory.mktemp(paths[-1].stem)
            for name in ("Snakefile", "workflow", "config"):
                (workdir / name).symlink_to(REPO / name)
            args = [str(p) for p in paths if p != BASE]
            res = subprocess.run(
                [sys.executable, "-c", PARSE_WORKFLOW, *args],
                cwd=workdir,
                capture_output=True,
                text=True,
                timeout=300,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
            line = next((ln for ln in res.stdout.splitlines() if ln.startswith("PARAMS=")), None)
            assert res.returncode == 0 and line, res.stdout[-3000:] + res.stderr[-3000:]
            cache[paths] = ast.literal_eval(line.removeprefix("PARAMS="))
        return cache[paths]

    return params


class Captured(Exception):
    """Raised by a stage call stand-in: the command got as far as calling the library."""

    def __init__(self, *args, **kwargs):
        super().__init__("captured")
        self.call_args, self.call_kwargs = args, kwargs


def _capture(*args, **kwargs):
    raise Captured(*args, **kwargs)


# --------------------------------------------------------------------------- CLI == workflow
@pytest.mark.parametrize("path", CAMPAIGNS, ids=CAMPAIGN_IDS)
def test_gnntrack_infer_builds_the_inference_config_of_the_infer_rule(
    path, workflow_params, monkeypatch, tmp_path
):
    monkeypatch.setattr(gnntrack.inference, "run_infer", _capture)
    argv = ["infer", str(tmp_path / "events.h5"), "--module-map", str(tmp_path / "map.h5"),
            "--gnn-model", str(tmp_path / "gnn.pt"), "-o", str(tmp_path / "tracks.h5"), *config_args(path)]  # fmt: skip
    with pytest.raises(Captured) as call:
        main(argv)
    cli_cfg = call.value.call_args[2]
    rule_cfg = workflow_params(path)["infer"]["cfg"]
    assert isinstance(cli_cfg, InferenceConfig)
    assert cli_cfg == from_dict(InferenceConfig, rule_cfg, "inference")
    # the rule's params are the resolver's plain form of the same campaign, exactly (repr included)
    assert repr(stage_params(workflow_config(path), "inference")) == repr(rule_cfg)


@pytest.mark.parametrize("path", CAMPAIGNS, ids=CAMPAIGN_IDS)
def test_gnntrack_bench_builds_the_configs_of_the_bench_rule(path, workflow_params, monkeypatch, tmp_path):
    monkeypatch.setattr(gnntrack.inference.bench, "run_bench", _capture)
    argv = ["bench", str(tmp_path / "events.h5"), "--module-map", str(tmp_path / "map.h5"),
            "--gnn-model", str(tmp_path / "gnn.pt"), "-o", str(tmp_path / "bench"), *config_args(path)]  # fmt: skip
    with pytest.raises(Captured) as call:
        main(argv)
    bench_cfg, inference_cfg = call.value.call_args[2:4]
    rule = workflow_params(path)["bench"]
    assert bench_cfg == from_dict(stage_class("bench"), rule["cfg"], "bench")
    assert inference_cfg == from_dict(InferenceConfig, rule["inference"], "inference")


@pytest.mark.parametrize("path", CAMPAIGNS, ids=CAMPAIGN_IDS)
def test_every_stage_of_a_campaign_resolves_alike(path, workflow_params):
    """Every rule's section params are ``rule_params`` (``stage_params`` without the run-only
    ``train.distributed``); the CLI's dataclasses are built from ``stage_params``."""
    config = workflow_config(path)
    params = workflow_params(path)
    for rule, names in RULE_SECTIONS.items():
        for name, section in names.items():
            assert repr(params[rule][name]) == repr(rule_params(config, section)), (rule, name)
            full = stage_params(config, section)
            if "distributed" in full.get("train", {}):
                assert {
                    **params[rule][name],
                    "train": {**params[rule][name]["train"], "distributed": full["train"]["distributed"]},
                } == full
    resolved = resolve_campaign(load_campaign(cli_files(path)))
    assert list(resolved) == list(STAGE_CLASSES)
    for section, cfg in resolved.items():
        assert cfg == from_dict(stage_class(section), stage_params(config, section), section), section
        assert cfg == stage_config(section, load_campaign(cli_files(path))), section


def test_graph_construction_settings_reach_inference_in_both(workflow_params, monkeypatch, tmp_path):
    """A campaign that sets graph construction's module-map window: the infer rule and
    ``gnntrack infer`` both rebuild the graphs with it (the inference section leaves it null)."""
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        yaml.safe_dump(
            {"graph_construction": {"cut": "mean_rms", "tolerance": 0.1}, "inference": {"k_max": 7}}
        )
    )
    tiny = REPO / "config/test_tiny.yaml"
    rule_cfg = workflow_params(tiny, extra)["infer"]["cfg"]
    assert (rule_cfg["module_map_cut"], rule_cfg["module_map_tolerance"], rule_cfg["k_max"]) == (
        "mean_rms",
        0.1,
        7,
    )
    monkeypatch.setattr(gnntrack.inference, "run_infer", _capture)
    argv = ["infer", str(tmp_path / "events.h5"), "--module-map", str(tmp_path / "map.h5"),
            "--gnn-model", str(tmp_path / "gnn.pt"), "-o", str(tmp_path / "tracks.h5"), *config_args(tiny, extra)]  # fmt: skip
    with pytest.raises(Captured) as call:
        main(argv)
    assert call.value.call_args[2] == from_dict(InferenceConfig, rule_cfg, "inference")


def test_the_workflow_merges_a_campaign_file_over_the_default_one():
    """Why the command line is given config/config.yaml first: a campaign file states only what
    differs (config/itk_mu200.yaml has no inference section; the default campaign's track
    building applies to it in the workflow)."""
    itk = REPO / "config/itk_mu200.yaml"
    assert "inference" not in load_campaign(itk)
    merged = resolve_campaign(load_campaign([BASE, itk]), sections=["inference"])["inference"]
    alone = resolve_campaign(load_campaign(itk), sections=["inference"])["inference"]
    default = yaml.safe_load(BASE.read_text())["inference"]["track_building"]
    assert {k: getattr(merged.track_building, k) for k in default} == default
    assert merged.track_building != alone.track_building


@pytest.mark.parametrize(
    "base, over",
    [
        ({"a": {"b": 1, "c": [1, 2]}, "d": 1}, {"a": {"c": [3]}, "e": {"f": None}}),
        ({"a": {"b": 1}}, {"a": None}),  # null replaces a section (the schema then refuses it)
        ({"a": None}, {"a": {"b": 2}}),
        ({"a": [1]}, {"a": {"b": 2}}),
    ],
)
def test_campaign_files_merge_as_snakemake_merges_them(base, over):
    expected: dict = {}
    update_config(expected, yaml.safe_load(yaml.safe_dump(base)))
    update_config(expected, yaml.safe_load(yaml.safe_dump(over)))
    before = yaml.safe_dump([base, over])
    assert merge_campaigns(base, over) == expected
    assert yaml.safe_dump([base, over]) == before, "the inputs are not modified"


# --------------------------------------------------------------------------- inference <- graph construction
@pytest.mark.parametrize(
    "extra, expected",
    [
        # graph construction's module-map window and radius fill inference's nulls
        (
            {"graph_construction": {"cut": "mean_rms", "tolerance": 0.1, "n_sigma": 4.0}},
            {"module_map_cut": "mean_rms", "module_map_tolerance": 0.1, "module_map_n_sigma": 4.0},
        ),
        (
            {"graph_construction": {"method": "metric_learning", "r_max": 0.2, "k_max": 50}},
            {"r_max": 0.2, "k_max": 50},
        ),
        # an inference setting given explicitly wins
        (
            {"graph_construction": {"tolerance": 0.1}, "inference": {"module_map_tolerance": 0.3}},
            {"module_map_tolerance": 0.3},
        ),
        # nothing given: the stores' settings (null) stay
        ({}, dict.fromkeys(INFERENCE_FROM_GRAPH_CONSTRUCTION)),
    ],
)
def test_inference_takes_graph_construction_settings_it_leaves_null(extra, expected):
    cli = stage_config("inference", merge_campaigns(load_campaign(BASE), extra))
    assert {k: getattr(cli, k) for k in expected} == expected
    # partial campaign (no schema defaults): the same
    partial = stage_config("inference", extra)
    assert {k: getattr(partial, k) for k in expected} == expected
    # the workflow's params for the same campaign
    workflow = stage_params(workflow_config(BASE, extra), "inference")
    assert from_dict(InferenceConfig, workflow, "inference") == cli


def test_set_overrides_apply_before_the_graph_construction_settings_are_filled_in():
    campaign = {"graph_construction": {"method": "metric_learning", "r_max": 0.2}}
    assert stage_config("inference", campaign, ["r_max=0.3"]).r_max == 0.3
    assert stage_config("inference", {**campaign, "inference": {"r_max": 0.3}}, ["r_max=null"]).r_max == 0.2
    cfg = stage_config("inference", campaign, ["track_building.min_hits=5", "amp=bf16"])
    assert (cfg.r_max, cfg.track_building.min_hits, cfg.amp) == (0.2, 5, "bf16")
    # --set reaches only the command's own section
    assert stage_config("graph_construction", campaign, ["r_max=0.5"]).r_max == 0.5
    assert stage_config("inference", campaign).r_max == 0.2
    # a campaign mapping is not modified by resolving it
    assert campaign == {"graph_construction": {"method": "metric_learning", "r_max": 0.2}}


def test_unknown_keys_and_bad_values_are_refused_with_their_path():
    with pytest.raises(ConfigError, match=r"^inference: unknown key\(s\) \['r_mx'\]"):
        stage_config("inference", {"inference": {"r_mx": 0.1}})
    with pytest.raises(ConfigError, match=r"^inference: unknown key\(s\) \['r_mx'\]"):
        stage_config("inference", {}, ["r_mx=0.1"])
    with pytest.raises(ConfigError, match=r"^inference\.track_building: unknown key\(s\) \['min_hit'\]"):
        stage_config("inference", {}, ["track_building.min_hit=4"])
    with pytest.raises(ConfigError, match="key=value"):
        stage_config("inference", {}, ["r_max"])
    # graph construction's section is read (and checked) when inference takes settings from it
    with pytest.raises(ConfigError, match=r"^graph_construction: unknown key\(s\) \['tolerence'\]"):
        stage_config("inference", {"graph_construction": {"tolerence": 0.1}})
    with pytest.raises(ConfigError, match=r"^graph_construction\.r_max: -1\.0 is less than or equal"):
        stage_config("inference", {"graph_construction": {"r_max": -1.0}})
    with pytest.raises(ConfigError, match="unknown section"):
        resolve_campaign({}, {"inferenc": ["r_max=1"]})
    with pytest.raises(ConfigError, match="expected a mapping"):
        resolve_campaign({"inference": [1, 2]}, sections=["inference"])


def test_partial_sections_take_the_stage_defaults():
    resolved = resolve_campaign({"gnn": {"hidden": 16}, "inference": None})
    for section, cfg in resolved.items():
        assert to_dict(cfg) == to_dict(stage_class(section)()) or section == "gnn", section
    assert resolved["gnn"].hidden == 16
    assert to_dict(resolved["gnn"]) == {**to_dict(stage_class("gnn")()), "hidden": 16}


# --------------------------------------------------------------------------- other campaign rules
@pytest.mark.parametrize("source, fmt", [("simulation", "root"), ("root", "root"), ("trackml", "trackml")])
def test_convert_reads_the_input_format_the_campaign_input_implies(source, fmt):
    campaign = {
        "input": {"source": source},
        "convert": {"input_format": "trackml" if fmt == "root" else "root"},
    }
    assert stage_config("convert", campaign).input_format == fmt
    assert stage_config("convert", {}).input_format == "root"  # no input section: the stage default
    assert stage_config("convert", campaign, [f"input_format={fmt}"]).input_format == fmt


@pytest.mark.parametrize("path", CAMPAIGNS, ids=CAMPAIGN_IDS)
def test_committed_campaigns_leave_the_cuts_to_the_models(path):
    """Each cut has one owner: the filter's and the GNN's working points are stored in their
    model files; the committed campaigns do not override them for inference or evaluation."""
    resolved = resolve_campaign(load_campaign(cli_files(path)), sections=["inference", "evaluation"])
    assert resolved["inference"].filter_cut is None
    assert resolved["inference"].track_building.score_cut is None
    assert (
        "gnn" not in resolved["evaluation"].score_cuts
        and "inference" not in resolved["evaluation"].score_cuts
    )


def test_params_do_not_change_when_a_default_is_written_out():
    """Snakemake compares params by repr, key order included: sorted keys, values as written."""
    default = stage_params(workflow_config(BASE), "module_map")
    spelled = stage_params(
        workflow_config(BASE, {"module_map": {"n_sigma": default["n_sigma"]}}), "module_map"
    )
    assert repr(spelled) == repr(default)
    tiny = stage_params(workflow_config(REPO / "config/test_tiny.yaml"), "inference")

    def keys_sorted(value) -> bool:
        if isinstance(value, dict):
            return list(value) == sorted(value) and all(map(keys_sorted, value.values()))
        return all(map(keys_sorted, value)) if isinstance(value, list) else True

    assert keys_sorted(tiny) and keys_sorted(stage_params(workflow_config(BASE), "evaluation"))
