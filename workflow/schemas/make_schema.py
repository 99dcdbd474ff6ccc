"""Write workflow/schemas/config.schema.yaml from the stage dataclasses (run after changing one).

The stage sections of the campaign schema are derived from the stage config dataclasses, so the
schema that Snakemake validates at start-up can never drift from what the stages accept; the
workflow's own sections (input, shards, steps, resources) are declared here. The section table
and the top-level keys come from ``gnntrack.campaign``, the resolver the command line and the
workflow's rules read a campaign with. A field's allowed values (``gnntrack.config.Rule`` in its
annotation: minimum, maximum, enum, pattern) become the same JSON-schema keywords, so a value
that ``gnntrack.config.from_dict`` refuses also stops the workflow at start-up, with the same
message. A test checks that the committed schema equals this script's output.

Usage: python workflow/schemas/make_schema.py [--check]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path

import yaml

from gnntrack.campaign import STAGE_CLASSES, WORKFLOW_KEYS, stage_class
from gnntrack.config import CampaignName, Rule

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")

#: Rules whose scheduler resources a campaign may set (plus the "default" and "gpu" groups).
RULES = [
    "simulate", "simulate_map_sample", "convert", "build_module_map", "train_metric_learning", "build_graphs",
    "train_filter", "apply_filter", "train_gnn", "gnn_working_point", "score_gnn", "train_hgnn", "infer",
    "reassociate",
    "evaluate", "export", "bench",
]  # fmt: skip

_RESOURCE = {
    "type": "object",
    "description": "scheduler resources; runtime in minutes",
    "additionalProperties": False,
    "properties": {
        "threads": {"type": "integer", "minimum": 1},
        "runtime": {"type": "integer", "minimum": 1},
        "mem_mb": {"type": "integer", "minimum": 1},
        "gpu": {"type": "integer", "minimum": 0},
    },
}

WORKFLOW_SECTIONS = {
    "campaign": {
        "type": "string",
        **CampaignName.__metadata__[0].keywords(),
        "description": "name of the campaign, one plain folder name; outputs go to results/<campaign>/",
    },
    "device": {
        "type": "string",
        "pattern": "^(auto|cpu|cuda(:[0-9]+)?)$",
        "default": "auto",
        "description": "torch device of the GPU rules; auto = CUDA when present, else CPU",
    },
    "input": {
        "type": "object",
        "additionalProperties": False,
        "required": ["source"],
        "properties": {
            "source": {"enum": ["simulation", "root", "trackml"]},
            "root_files": {
                "description": "GNN4ITk ROOT ntuples (paths or globs) when source is root",
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
            },
            "trackml_dir": {
                "type": "string",
                "description": "folder of event*-hits.csv[.gz] etc. (detectors file: convert.detectors)",
            },
        },
        "allOf": [
            {"if": {"properties": {"source": {"const": "root"}}}, "then": {"required": ["root_files"]}},
            {"if": {"properties": {"source": {"const": "trackml"}}}, "then": {"required": ["trackml_dir"]}},
        ],
    },
    "shards": {
        "type": "object",
        "description": "number of shards (one job per stage each) per split",
        "additionalProperties": False,
        "required": ["train", "val", "test"],
        "properties": {s: {"type": "integer", "minimum": 1} for s in ("train", "val", "test")},
    },
    "steps": {
        "type": "object",
        "description": "optional pipeline steps",
        "additionalProperties": False,
        "required": ["filter", "reassociate", "export", "bench"],
        "properties": {s: {"type": "boolean"} for s in ("filter", "reassociate", "export", "bench")},
    },
    "resources": {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: _RESOURCE for name in ["default", "gpu", *RULES]},
    },
}


def _json_type(tp) -> dict:
    """JSON schema of one dataclass field type (the types gnntrack.config.from_dict accepts)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is typing.Any:
        return {}
    if origin is typing.Annotated:
        schema = _json_type(args[0])
        for rule in tp.__metadata__:
            if isinstance(rule, Rule):
                schema.update(rule.keywords())
        return schema
    if origin in (typing.Union, types.UnionType):
        alts = [_json_type(a) for a in args]
        return {"anyOf": alts}
    if tp is type(None):
        return {"type": "null"}
    if dataclasses.is_dataclass(tp):
        return dataclass_schema(tp)
    if origin is typing.Literal:
        # typed, so that in an X | None union jsonschema reports the enum error, not "any of"
        types_ = {"string" if isinstance(a, str) else "integer" for a in args}
        return {"type": types_.pop(), "enum": list(args)} if len(types_) == 1 else {"enum": list(args)}
    if origin in (list, tuple):
        return {"type": "array", "items": _json_type(args[0]) if args else {}}
    if origin is dict or tp is dict:
        return {"type": "object", "additionalProperties": _json_type(args[1]) if len(args) == 2 else {}}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp in (str, Path):
        return {"type": "string"}
    if tp is list:
        return {"type": "array"}
    raise TypeError(f"no JSON schema for field type {tp!r}")


def _json_value(value):
    """A default as plain YAML data (tuples -> lists, paths -> strings, dataclasses -> dicts)."""
    if dataclasses.is_dataclass(value):
        return _json_value(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def dataclass_schema(cls) -> dict:
    """Schema of a stage dataclass: closed, typed, and carrying its defaults.

    Snakemake's ``validate`` fills the defaults in, so every rule's ``params.cfg`` is the full
    stage config without importing the (torch-heavy) stage modules at parse time.
    """
    hints = typing.get_type_hints(cls, include_extras=True)
    props, required = {}, []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        props[f.name] = _json_type(hints[f.name])
        if f.default is not dataclasses.MISSING:
            props[f.name]["default"] = _json_value(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            props[f.name]["default"] = _json_value(f.default_factory())
        else:
            required.append(f.name)
    schema = {
        "type": "object",
        "description": f"{cls.__module__}.{cls.__qualname__}",
        "additionalProperties": False,
        "properties": props,
    }
    if required:
        schema["required"] = required
    return schema


def build_schema() -> dict:
    # the command line accepts (and skips) the same workflow sections when it reads a campaign
    assert set(WORKFLOW_SECTIONS) == {"campaign", *WORKFLOW_KEYS}, "update gnntrack.campaign.WORKFLOW_KEYS"
    props = dict(WORKFLOW_SECTIONS)
    for section in STAGE_CLASSES:
        props[section] = {**dataclass_schema(stage_class(section)), "default": {}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "gnntrack campaign config",
        "description": "Generated by workflow/schemas/make_schema.py from the stage dataclasses; do not edit.",
        "type": "object",
        "additionalProperties": False,
        "required": ["campaign", "input", "shards", "steps", "resources"],
        "properties": props,
    }


def render() -> str:
    header = "# Generated by workflow/schemas/make_schema.py -- edit the stage dataclasses, then rerun it.\n"
    return header + yaml.safe_dump(build_schema(), sort_keys=False, width=100)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed schema is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if SCHEMA_PATH.read_text() != text:
            print(f"{SCHEMA_PATH} is out of date: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
