"""Particle and edge selections written as conditions in config (acorn's syntax, extended).

A selection is a mapping ``column -> condition``; all conditions must hold:

- scalar ``v``                -> column == v
- ``[a, b]`` (two numbers)    -> a <= column <= b  (``.inf`` allowed)
- ``[op, value]``             -> op in: ``==, !=, <, <=, >, >=, in, not_in, within, not_within``
  (``within``/``not_within`` take ``[a, b]``)

A column name prefixed ``abs_`` applies to the absolute value (``abs_eta: [0, 4]``,
``abs_pdg_id: [not_in, [11]]``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

_OPS = {
    "==": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}


def _column(table: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name in table:
        return np.asarray(table[name])
    if name.startswith("abs_") and name[4:] in table:
        return np.abs(np.asarray(table[name[4:]]))
    raise KeyError(f"selection refers to unknown column {name!r}; available: {sorted(table)}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool)


def condition_mask(values: np.ndarray, cond) -> np.ndarray:
    """Boolean mask of ``values`` that satisfy one condition."""
    if isinstance(cond, (list, tuple)):
        if len(cond) == 2 and _is_number(cond[0]) and _is_number(cond[1]):
            return (values >= cond[0]) & (values <= cond[1])
        if len(cond) == 2 and isinstance(cond[0], str):
            op, arg = cond
            if op in _OPS:
                return _OPS[op](values, arg)
            if op == "in":
                return np.isin(values, list(arg))
            if op == "not_in":
                return ~np.isin(values, list(arg))
            if op == "within":
                return (values >= arg[0]) & (values <= arg[1])
            if op == "not_within":
                return (values < arg[0]) | (values > arg[1])
            raise ValueError(f"unknown condition operator {op!r}")
        raise ValueError(f"cannot interpret condition {cond!r}")
    return values == cond


def select(table: Mapping[str, np.ndarray], selection: Mapping | None, n: int | None = None) -> np.ndarray:
    """Mask of rows of ``table`` that pass every condition of ``selection``."""
    if n is None:
        n = len(next(iter(table.values()))) if table else 0
    mask = np.ones(n, dtype=bool)
    for name, cond in (selection or {}).items():
        mask &= condition_mask(_column(table, name), cond)
    return mask


#: Target particles (the evaluation report's definition) (momenta in GeV, lengths in mm).
DEFAULT_TARGET = {
    "is_primary": True,
    "abs_pdg_id": ["not_in", [11]],
    "pt": [">", 1.0],
    "radius": ["<", 260.0],
    "abs_eta": ["<", 4.0],
    "n_spacepoints": [">=", 3],
}
