"""The one config mechanism: YAML campaign files -> strict per-stage dataclasses.

Every stage owns a ``@dataclass`` of its settings with defaults. ``from_dict`` builds it from a
mapping and rejects unknown keys and wrong types with the dotted path of the offending key, so a
typo in a campaign file fails at start-up instead of being silently ignored.

A setting's allowed values are declared once, in its annotation: ``Annotated[int, Rule(minimum=1)]``
(or one of the aliases below, e.g. ``Count``). ``from_dict`` enforces the rule, and the workflow's
schema generator turns it into the same JSON-schema keywords, so the workflow, the command line and
direct library use refuse the same values with the same message, e.g.
``gnn.train.epochs: -1 is less than the minimum of 1``.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml

T = TypeVar("T")


#: Campaign config section -> stage dataclass ("module:Class"). The command line, the workflow
#: and its schema generator read this mapping (through ``gnntrack.campaign``, which resolves a
#: campaign into these dataclasses), so a stage's section has one name everywhere.
STAGE_CLASSES = {
    "simulation": "gnntrack.simulation:SimulationConfig",
    "map_sample": "gnntrack.simulation.map_sample:MapSampleConfig",
    "convert": "gnntrack.conversion.convert:ConvertConfig",
    "module_map": "gnntrack.graph_construction:ModuleMapConfig",
    "metric_learning": "gnntrack.graph_construction:MetricLearningConfig",
    "graph_construction": "gnntrack.graph_construction:GraphConstructionConfig",
    "filter": "gnntrack.edge_filter:FilterConfig",
    "gnn": "gnntrack.gnn:GNNConfig",
    "inference": "gnntrack.inference:InferenceConfig",
    "reassociation": "gnntrack.reassociation:ReassociationConfig",
    "evaluation": "gnntrack.evaluation:EvaluationConfig",
    "bench": "gnntrack.inference:BenchConfig",
}


class ConfigError(ValueError):
    """A campaign or stage config with an unknown key, a wrong type or a value out of range."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """Allowed values of one setting, as JSON-schema keywords; attach with ``Annotated[tp, Rule(...)]``.

    ``violation`` words its message as ``jsonschema`` does for the same keyword, so the workflow
    (which validates the generated schema) and ``from_dict`` print the same sentence.
    """

    minimum: float | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    exclusive_maximum: float | None = None
    enum: tuple | None = None
    pattern: str | None = None

    def keywords(self) -> dict:
        """The JSON-schema keywords of this rule."""
        names = {
            "minimum": "minimum",
            "exclusive_minimum": "exclusiveMinimum",
            "maximum": "maximum",
            "exclusive_maximum": "exclusiveMaximum",
            "enum": "enum",
            "pattern": "pattern",
        }
        out = {}
        for attr, keyword in names.items():
            value = getattr(self, attr)
            if value is not None:
                out[keyword] = list(value) if attr == "enum" else value
        return out

    def violation(self, value: Any) -> str | None:
        """Why ``value`` (already of the right type) breaks the rule, or None."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                return f"{value!r} is less than the minimum of {self.minimum!r}"
            if self.exclusive_minimum is not None and value <= self.exclusive_minimum:
                return f"{value!r} is less than or equal to the minimum of {self.exclusive_minimum!r}"
            if self.maximum is not None and value > self.maximum:
                return f"{value!r} is greater than the maximum of {self.maximum!r}"
            if self.exclusive_maximum is not None and value >= self.exclusive_maximum:
                return f"{value!r} is greater than or equal to the maximum of {self.exclusive_maximum!r}"
        if self.enum is not None and value not in self.enum:
            return f"{value!r} is not one of {list(self.enum)!r}"
        if self.pattern is not None and isinstance(value, str) and not re.search(self.pattern, value):
            return f"{value!r} does not match {self.pattern!r}"
        return None


def one_of(choices) -> Rule:
    """Rule of a name setting whose choices live in a table (a tuple or the keys of a dict)."""
    return Rule(enum=tuple(choices))


#: counts, sizes, layers, iterations: at least 1
Count = Annotated[int, Rule(minimum=1)]
#: counts where 0 means none, seeds, run numbers
NonNegativeInt = Annotated[int, Rule(minimum=0)]
#: scales, radii, learning rates: strictly positive
Positive = Annotated[float, Rule(exclusive_minimum=0)]
#: tolerances, widths, weights, rates: zero or more
NonNegative = Annotated[float, Rule(minimum=0)]
#: probabilities, efficiencies and edge score cuts
Probability = Annotated[float, Rule(minimum=0, maximum=1)]
#: fractions that must stay below 1: dropout, cuts applied with ">=", matching fractions
ProperFraction = Annotated[float, Rule(minimum=0, exclusive_maximum=1)]
#: a name that becomes one plain folder (``results/<campaign>/``): no separators, not "." or "..";
#: "(?!\n)" because Python's "$" (jsonschema searches with Python's re) also matches before a final newline
CampaignName = Annotated[str, Rule(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$(?!\n)")]


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    return data


def check_value(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against annotation ``tp`` (types, Literal choices, ``Rule``s), converted.

    Raises ConfigError naming ``where``, the dotted path of the key.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        out = check_value(value, args[0], where)
        for rule in tp.__metadata__:
            why = rule.violation(value) if isinstance(rule, Rule) else None
            if why is not None:
                raise ConfigError(f"{where}: {why}")
        return out
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        alts = [alt for alt in args if alt is not type(None)]
        if len(alts) == 1:  # X | None: report what is wrong with the value as an X
            return check_value(value, alts[0], where)
        for alt in alts:
            try:
                return check_value(value, alt, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} does not match {tp}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, where)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        out = [check_value(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return out if origin is list else tuple(out)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: check_value(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _section_of(cls: type) -> str:
    """The campaign section whose stage dataclass is ``cls`` ("config" for any other class)."""
    for section, path in STAGE_CLASSES.items():
        if path.rsplit(":", 1)[1] == cls.__qualname__:
            return section
    return "config"


def from_dict(cls: type[T], data: dict | None, where: str | None = None) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys, wrong types and values a field's
    ``Rule`` forbids raise ConfigError naming the key (``where``: the path of ``data``; default:
    the campaign section of a stage dataclass)."""
    where = _section_of(cls) if where is None else where
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    kwargs = {k: check_value(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as exc:  # a stage's own cross-field check: same one-line ConfigError
        raise ConfigError(f"{where}: {exc}") from None


def to_dict(obj: Any) -> dict:
    """Plain-dict form of a stage config (for checkpoints, JSON and Snakemake params)."""
    return dataclasses.asdict(obj)
