"""The conda environment of the rules (envs/gnntrack.yaml) holds what pyproject.toml declares."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]

#: pyproject runtime dependencies a rule's environment does not need: the workflow engine runs
#: outside the rules' environments
ENGINE_ONLY = {"snakemake", "snakemake-executor-plugin-slurm"}
#: the environment pins what run.sh installs (a CPU build from the package index)
PINNED = {"torch": "==2.13.0"}


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*(#.*)?$", req)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def test_conda_env_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = dict(_split(r) for r in project["dependencies"])
    declared.update(_split(r) for r in project["optional-dependencies"]["pyg"])
    env = yaml.safe_load((REPO / "envs/gnntrack.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    in_env = dict(_split(r) for r in pip if not r.startswith("-"))
    expected = {k: PINNED.get(k, v) for k, v in declared.items() if k not in ENGINE_ONLY}
    assert in_env == expected, {
        "missing from env": sorted(set(expected) - set(in_env)),
        "not declared": sorted(set(in_env) - set(expected)),
        "different": {
            k: (in_env[k], expected[k]) for k in set(in_env) & set(expected) if in_env[k] != expected[k]
        },
    }
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python == "python=3.11"
