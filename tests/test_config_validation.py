"""Nonsense settings fail at start-up, with one message, in the library, the CLI and the workflow.

The allowed values of each stage setting are declared once, as a ``gnntrack.config.Rule`` in the
field's annotation. ``from_dict`` enforces them and ``workflow/schemas/make_schema.py`` turns them
into the JSON-schema keywords the workflow validates at start-up; these tests check both refuse
the same values with the same sentence, for every rule of every stage dataclass.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

import jsonschema
import pytest
import yaml

from gnntrack.cli import STAGE_CLASSES, WORKFLOW_KEYS, check_campaign, stage_class
from gnntrack.config import ConfigError, Rule, from_dict, load_yaml, to_dict

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def workflow_error(campaign: dict) -> str | None:
    """The start-up message of the workflow for ``campaign`` (as workflow/rules/common.smk words it)."""
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(SCHEMA).iter_errors(campaign))
    if error is None:
        return None
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{where.lstrip('.') or 'top level'}: {error.message}"


def library_error(campaign: dict) -> str | None:
    try:
        check_campaign(campaign)
    except ConfigError as exc:
        return str(exc)
    return None


def base_campaign() -> dict:
    """The workflow sections of the default campaign (required by the schema), no stage settings."""
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    return {k: cfg[k] for k in ("campaign", *WORKFLOW_KEYS) if k in cfg}


def nested(path: list, value) -> dict:
    """``{"a": {"b": value}}`` from ``["a", "b"]``; an int step is a list index (padded with value)."""
    for step in reversed(path):
        value = [value] * (step + 1) if isinstance(step, int) else {step: value}
    return value


# --------------------------------------------------------------------------- every rule, both ways
def _bad_values(rule: Rule) -> list:
    """Values just outside ``rule`` (of a type the field accepts)."""
    bad = []
    if rule.minimum is not None:
        bad.append(rule.minimum - 1)
    if rule.exclusive_minimum is not None:
        bad.append(rule.exclusive_minimum)
    if rule.maximum is not None:
        bad.append(rule.maximum + 1)
    if rule.exclusive_maximum is not None:
        bad.append(rule.exclusive_maximum)
    if rule.enum is not None:
        bad.append(987654 if isinstance(rule.enum[0], int) else "not-a-choice")
    if rule.pattern is not None:
        bad.append("..")
    return bad


def _ruled_settings(cls, path: list) -> list[tuple[list, Rule]]:
    """(key path, rule) of every ruled value under dataclass ``cls``, through lists, dicts and unions."""
    out = []

    def walk(tp, where):
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Annotated:
            out.extend((where, r) for r in tp.__metadata__ if isinstance(r, Rule))
            walk(args[0], where)
        elif origin in (typing.Union, types.UnionType):
            for alt in args:
                walk(alt, where)
        elif origin is list:
            walk(args[0], [*where, 0])
        elif origin is dict and len(args) == 2:
            walk(args[1], [*where, "some_key"])
        elif dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp, include_extras=True)
            for f in dataclasses.fields(tp):
                if f.init:
                    walk(hints[f.name], [*where, f.name])

    walk(cls, path)
    return out


CASES = [
    (path, bad)
    for section in STAGE_CLASSES
    for path, rule in _ruled_settings(stage_class(section), [section])
    for bad in _bad_values(rule)
]


def _case_id(case):
    path, bad = case
    return ".".join(map(str, path)) + f"={bad!r}"


def test_the_rules_cover_the_settings_the_issue_names():
    ruled = {".".join(map(str, path)) for path, _ in CASES}
    for key in (
        "gnn.train.epochs", "gnn.train.lr", "filter.train.epochs", "metric_learning.train.epochs",
        "simulation.n_events", "map_sample.n_events", "gnn.hidden", "gnn.n_graph_iters", "filter.n_layers",
        "metric_learning.hidden", "filter.score_cut", "gnn.score_cut", "inference.filter_cut",
        "inference.track_building.score_cut", "evaluation.matching_fraction", "evaluation.score_cuts.some_key",
        "graph_construction.tolerance", "inference.module_map_tolerance", "bench.threads",
        "simulation.hard_process", "graph_construction.backend", "gnn.activation", "bench.variants.0",
        "simulation.hit_inefficiency", "gnn.train.max_steps_per_epoch",
    ):  # fmt: skip
        assert key in ruled, key
    assert len(CASES) > 150


@pytest.mark.parametrize("path, bad", CASES, ids=[_case_id(c) for c in CASES])
def test_every_rule_is_enforced_by_library_and_workflow_with_one_message(path, bad):
    section = nested(path[1:], bad)
    with pytest.raises(ConfigError) as exc:
        from_dict(stage_class(path[0]), section, path[0])
    message = str(exc.value)
    key = path[0] + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[1:])
    assert message.startswith(f"{key}: {bad!r} "), message
    assert workflow_error({**base_campaign(), path[0]: section}) == message
    assert library_error({path[0]: section}) == message


# --------------------------------------------------------------------------- the issue's examples
@pytest.mark.parametrize(
    "campaign, message",
    [
        ({"gnn": {"train": {"epochs": -1}}}, "gnn.train.epochs: -1 is less than the minimum of 1"),
        ({"simulation": {"n_events": -5}}, "simulation.n_events: -5 is less than the minimum of 1"),
        ({"campaign": ".."}, "campaign: '..' does not match '^[A-Za-z0-9][A-Za-z0-9._-]*$"),
        ({"gnn": {"train": {"lr": 0}}}, "gnn.train.lr: 0 is less than or equal to the minimum of 0"),
        ({"filter": {"score_cut": 1.0}}, "filter.score_cut: 1.0 is greater than or equal to the maximum of 1"),
        (
            {"inference": {"track_building": {"score_cut": 1.5}}},
            "inference.track_building.score_cut: 1.5 is greater than the maximum of 1",
        ),
        ({"graph_construction": {"tolerance": -0.1}}, "graph_construction.tolerance: -0.1 is less than the minimum of 0"),
        ({"bench": {"threads": 0}}, "bench.threads: 0 is less than the minimum of 1"),
        ({"gnn": {"aggregation": "max"}}, "gnn.aggregation: 'max' is not one of ['sum', 'mean']"),
        ({"convert": {"compression": "zstd"}}, "convert.compression: 'zstd' is not one of ['lzf', 'gzip']"),
        ({"evaluation": {"score_cuts": {"gnn": 2}}}, "evaluation.score_cuts.gnn: 2 is greater than the maximum of 1"),
        ({"gnn": {"edge_features": ["dr", "kink"]}}, "gnn.edge_features[1]: 'kink' is not one of"),
    ],
)  # fmt: skip
def test_bad_values_name_the_key_identically(campaign, message):
    assert library_error(campaign).startswith(message)
    assert workflow_error({**base_campaign(), **campaign}).startswith(message)
    assert library_error(campaign) == workflow_error({**base_campaign(), **campaign})


@pytest.mark.parametrize("name", ["..", ".", "", "../benchmarks", "a/b", "-x", ".hidden", "a b", "x\n"])
def test_campaign_name_must_be_one_plain_folder(name):
    assert library_error({"campaign": name}).startswith("campaign: ")
    assert workflow_error({**base_campaign(), "campaign": name}).startswith("campaign: ")


@pytest.mark.parametrize("name", ["default", "test_tiny", "itk_mu200", "run-2.v3", "A1"])
def test_plain_campaign_names_pass(name):
    assert library_error({"campaign": name}) is None
    assert workflow_error({**base_campaign(), "campaign": name}) is None


def test_values_on_the_limits_pass():
    ok = {
        "gnn": {"train": {"epochs": 1, "lr": 1e-9, "momentum": 0.0, "max_steps_per_epoch": None}, "score_cut": 1.0},
        "filter": {"score_cut": 0.0, "dropout": 0.0},
        "simulation": {"n_events": 1, "mu": 0.0, "hit_inefficiency": 1.0, "noise_rate": 0},
        "map_sample": {"shards": 0},
        "graph_construction": {"tolerance": 0.0, "k_max": None},
        "inference": {"filter_cut": 0.0, "track_building": {"score_cut": 0.0}},
        "bench": {"threads": 1, "warmup": 0},
        "campaign": "x",
    }  # fmt: skip
    assert library_error(ok) is None
    assert workflow_error({**base_campaign(), **ok}) is None


def test_defaults_obey_their_own_rules():
    """No default moved: every stage's defaults pass its rules (the schema's defaults too)."""
    for section in STAGE_CLASSES:
        cls = stage_class(section)
        assert to_dict(from_dict(cls, to_dict(cls()), section)) == to_dict(cls())
    assert workflow_error(base_campaign()) is None


def test_shipped_campaign_files_validate():
    files = sorted((REPO / "config").glob("*.yaml"))
    assert {f.name for f in files} >= {"config.yaml", "test_tiny.yaml", "itk_mu200.yaml"}
    for path in files:
        campaign = load_yaml(path)
        assert library_error(campaign) is None, path
        merged = yaml.safe_load((REPO / "config/config.yaml").read_text())
        merged.update(campaign)  # top-level merge is enough: each stage section is checked whole
        assert workflow_error(merged) is None, path


def test_unknown_top_level_key_is_refused_like_the_workflow():
    assert "gnn_settings" in library_error({"gnn_settings": {"hidden": 4}})
    assert "gnn_settings" in workflow_error({**base_campaign(), "gnn_settings": {"hidden": 4}})


def test_campaign_keys_agree_with_the_schema():
    assert set(SCHEMA["properties"]) == {"campaign", *WORKFLOW_KEYS, *STAGE_CLASSES}


def test_direct_library_use_refuses_too(tmp_path):
    from gnntrack.simulation import run_simulate

    out = tmp_path / "sim.root"
    with pytest.raises(ConfigError, match=r"^simulation\.n_events: -5 is less than the minimum of 1$"):
        run_simulate(out, {"n_events": -5}, shard=0)
    assert not out.exists()
