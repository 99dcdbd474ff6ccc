"""A campaign config -> every stage's effective config: the one resolver of the CLI and the workflow.

A campaign is a mapping as loaded from YAML (``config/config.yaml``, ``config/itk_mu200.yaml``, or
only part of one): the workflow's own keys (``WORKFLOW_KEYS``), ``campaign`` and one section per
stage (``STAGE_CLASSES``). ``resolve_campaign`` turns it into each stage's config dataclass;
``stage_params`` gives one stage's effective section as the plain dict the workflow passes to its
rule (``params.cfg``). Both go through ``effective_section``, so the ``gnntrack`` commands, the
Snakemake rules (workflow/rules/common.smk) and the schema generator
(workflow/schemas/make_schema.py, which reads the section table from here) cannot disagree on
what a campaign means.

A stage's effective section is, in this order:

1. the campaign's section as written (a missing or null section is empty); in the workflow the
   schema has already filled in every default, elsewhere ``from_dict`` does;
2. what the campaign implies for the stage: ``convert.input_format`` follows ``input.source``
   (``trackml`` for TrackML CSV input, else ``root``) when the campaign has one;
3. the command line's ``--set key=value`` overrides of that section (YAML values);
4. the ``inference`` settings left null that must agree with graph construction, taken from the
   ``graph_construction`` section (``INFERENCE_FROM_GRAPH_CONSTRUCTION``), so that inference
   rebuilds the graphs the filter and the GNN were trained on.

Who owns each cut (one owner each; the model file carries its working point):

- the edge filter's cut is stored in the filter model (``filter.score_cut`` at training, or with
  ``filter.target_efficiency`` the highest cut keeping that fraction of the validation target
  edges); ``apply_filter`` and inference use the stored cut. ``inference.filter_cut`` overrides
  it for inference only (null: the model's).
- the GNN's edge cut is stored in the GNN model by the working-point step (``gnn.working_point``,
  track candidates built with ``inference.track_building``); ``gnn.score_cut`` is only the cut of
  the per-epoch validation metrics and the ``fixed`` working point. Inference builds tracks at
  the stored cut unless ``inference.track_building.score_cut`` is set; the evaluation's edge
  metrics of the ``gnn`` and ``inference`` stages use it unless ``evaluation.score_cuts`` sets
  them.
- graph construction's cuts (module-map window, radius, neighbour cap) are owned by
  ``graph_construction`` (and the module map / embedding model it stores them in); the
  ``inference`` section repeats them only as overrides, null meaning "as graph construction".
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .config import STAGE_CLASSES, CampaignName, ConfigError, check_value, from_dict, load_yaml

__all__ = [
    "INFERENCE_FROM_GRAPH_CONSTRUCTION",
    "STAGE_CLASSES",
    "WORKFLOW_KEYS",
    "check_campaign",
    "effective_section",
    "load_campaign",
    "merge_campaigns",
    "resolve_campaign",
    "sorted_keys",
    "stage_class",
    "stage_params",
]

#: Top-level keys of a campaign that only the workflow reads (its schema checks them); with
#: "campaign" and the stage sections (``STAGE_CLASSES``), the keys a campaign file may have.
WORKFLOW_KEYS = ("device", "input", "shards", "steps", "resources")

#: inference setting <- the graph_construction setting it must agree with (when left null)
INFERENCE_FROM_GRAPH_CONSTRUCTION = {
    "module_map_cut": "cut",
    "module_map_tolerance": "tolerance",
    "module_map_n_sigma": "n_sigma",
    "r_max": "r_max",
    "k_max": "k_max",
}


def stage_class(section: str) -> type:
    """The config dataclass of a campaign section (imports the stage's module)."""
    if section not in STAGE_CLASSES:
        raise ConfigError(f"unknown config section {section!r}; sections: {list(STAGE_CLASSES)}")
    module, name = STAGE_CLASSES[section].split(":")
    return getattr(importlib.import_module(module), name)


# --------------------------------------------------------------------------- campaign files
def merge_campaigns(*campaigns: Mapping | None) -> dict:
    """Campaign mappings merged in order, later ones winning key by key.

    The merge of ``snakemake --configfile``: mappings are merged recursively, any other value
    (a list, a number, null) replaces the earlier one. The inputs are not modified.
    """

    def merge(base, over):
        out = dict(base) if isinstance(base, Mapping) else {}
        for key, value in over.items():
            out[key] = merge(out.get(key), value) if isinstance(value, Mapping) else value
        return out

    out: dict = {}
    for campaign in campaigns:
        if campaign is None:
            continue
        if not isinstance(campaign, Mapping):
            raise ConfigError(f"config: expected a mapping, got {campaign!r}")
        out = merge(out, campaign)
    return copy.deepcopy(out)


def load_campaign(paths: str | Path | Iterable[str | Path] | None) -> dict:
    """The campaign of one YAML file or of several merged in order (``merge_campaigns``).

    The workflow always starts from config/config.yaml and merges a ``--configfile`` over it;
    ``gnntrack -c config/config.yaml -c config/itk_mu200.yaml`` reads the same campaign.
    """
    if paths is None:
        return {}
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return merge_campaigns(*(load_yaml(p) for p in paths))


def check_campaign(campaign: Mapping) -> None:
    """Refuse a campaign mapping whose keys or values the workflow would refuse at start-up.

    Checks the top-level keys, the campaign name (a plain folder name under ``results/``) and
    every stage section present, with the rules declared on the stage dataclasses; raises
    ConfigError naming the key. The workflow-only sections are left to the workflow's schema.
    """
    if not isinstance(campaign, Mapping):
        raise ConfigError(f"config: expected a mapping, got {campaign!r}")
    allowed = ["campaign", *WORKFLOW_KEYS, *STAGE_CLASSES]
    unknown = sorted(set(campaign) - set(allowed))
    if unknown:
        raise ConfigError(f"config: unknown key(s) {unknown}; allowed: {allowed}")
    if "campaign" in campaign:
        check_value(campaign["campaign"], CampaignName, "campaign")
    for section in STAGE_CLASSES:
        if section in campaign:
            from_dict(stage_class(section), campaign[section], where=section)


# --------------------------------------------------------------------------- resolution
def _apply_overrides(data: dict, items: Sequence[str]) -> None:
    """``key=value`` items (dotted keys, YAML values) set in section mapping ``data``."""
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} is not a mapping")
        node[leaf] = yaml.safe_load(value)


def _written_section(campaign: Mapping, section: str, overrides: Mapping[str, Sequence[str]]) -> dict:
    """Steps 1-3 of the module docstring: the section as written, implied and overridden."""
    value = campaign.get(section)
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError(f"{section}: expected a mapping, got {value!r}")
    data = copy.deepcopy(dict(value or {}))
    given = campaign.get("input")
    source = given.get("source") if isinstance(given, Mapping) else None
    if section == "convert" and source is not None:
        data["input_format"] = "trackml" if source == "trackml" else "root"
    _apply_overrides(data, overrides.get(section) or ())
    return data


def effective_section(
    campaign: Mapping | None, section: str, overrides: Mapping[str, Sequence[str]] | None = None
) -> dict:
    """The mapping stage ``section`` runs with (see the module docstring), values as written.

    ``overrides``: section -> ``key=value`` items (the command line's ``--set``). Nothing is
    converted or defaulted here beyond the rules above: the result is plain data, the values as
    the campaign spells them, so that the workflow's params (``stage_params``) stay what the
    schema-filled config holds. ``resolve_campaign`` builds (and checks) the dataclasses from it.
    """
    campaign = {} if campaign is None else campaign
    if not isinstance(campaign, Mapping):
        raise ConfigError(f"config: expected a mapping, got {campaign!r}")
    if section not in STAGE_CLASSES:
        raise ConfigError(f"unknown config section {section!r}; sections: {list(STAGE_CLASSES)}")
    overrides = overrides or {}
    data = _written_section(campaign, section, overrides)
    if section == "inference":
        gc = _written_section(campaign, "graph_construction", overrides)
        if any(data.get(key) is None for key in INFERENCE_FROM_GRAPH_CONSTRUCTION):
            if not set(INFERENCE_FROM_GRAPH_CONSTRUCTION.values()) <= set(gc):
                # a partial section (in the workflow the schema has filled in every default):
                # the graph-construction stage's own defaults
                gc_cfg = from_dict(stage_class("graph_construction"), gc, where="graph_construction")
                gc = {key: getattr(gc_cfg, key) for key in INFERENCE_FROM_GRAPH_CONSTRUCTION.values()}
            for key, gc_key in INFERENCE_FROM_GRAPH_CONSTRUCTION.items():
                if data.get(key) is None and gc.get(gc_key) is not None:
                    data[key] = gc[gc_key]
    return data


def resolve_campaign(
    campaign: Mapping | None,
    overrides: Mapping[str, Sequence[str]] | None = None,
    sections: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Every stage's effective config dataclass, keyed by section (``STAGE_CLASSES`` order).

    ``campaign``: a campaign mapping, possibly partial (missing keys take the stage defaults);
    ``overrides``: section -> ``key=value`` items applied to that section (``--set``);
    ``sections``: only these sections (each imports its stage's module; default: all).
    Unknown keys, wrong types and values out of range raise ConfigError naming the key.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(STAGE_CLASSES))
    if unknown:
        raise ConfigError(f"overrides of unknown section(s) {unknown}; sections: {list(STAGE_CLASSES)}")
    names = list(STAGE_CLASSES if sections is None else sections)
    return {
        section: from_dict(
            stage_class(section), effective_section(campaign, section, overrides), where=section
        )
        for section in names
    }


def sorted_keys(value: Any) -> Any:
    """``value`` with the keys of every mapping in it sorted (lists and scalars as they are).

    Snakemake compares a rule's params by their ``repr``, key order included, and the order of a
    section depends on which keys a config file spells out (the schema appends the defaults), so
    writing a default explicitly must not rerun a campaign.
    """
    if isinstance(value, Mapping):
        return {k: sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(v) for v in value]
    return value


def stage_params(campaign: Mapping, section: str) -> dict:
    """One stage's effective section as a plain dict, keys sorted: the workflow's ``params.cfg``.

    Meant for the workflow's schema-filled config (every default present), where it imports no
    stage module; ``from_dict(stage_class(section), stage_params(...))`` is then the dataclass
    ``resolve_campaign`` builds from the same campaign.
    """
    return sorted_keys(effective_section(campaign, section))


#: settings of how a stage runs, not what it computes: no part of a workflow rule's params
RUN_ONLY_SETTINGS = (("train", "distributed"),)


def rule_params(campaign: Mapping, section: str) -> dict:
    """``stage_params`` without the settings that change how a job runs but not what it computes
    (``train.distributed``: how many processes train): the workflow rule's ``params.cfg``, so that
    changing them reruns nothing. The training rules read them from the campaign itself."""
    params = stage_params(campaign, section)
    for outer, inner in RUN_ONLY_SETTINGS:
        sub = params.get(outer)
        if isinstance(sub, dict) and inner in sub:
            params = {**params, outer: {k: v for k, v in sub.items() if k != inner}}
    return params
