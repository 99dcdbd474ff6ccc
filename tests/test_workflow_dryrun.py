"""The Snakemake workflow's plan: campaigns, config validation, rerun triggers, real inputs.

Each test runs the real Snakefile in a scratch folder that links to the repository's
Snakefile, workflow/ and config/, so results and .snakemake/ stay out of the checkout.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from snakemake.utils import update_config

REPO = Path(__file__).resolve().parents[1]


def make_workdir(path: Path, extra_config: dict | None = None) -> Path:
    """A campaign folder like a clone's root: links to the workflow, configs and profiles
    (``--profile local``/``slurm`` find them there), plus ``extra.yaml`` if given."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "local", "slurm"):
        link = path / name
        if not link.exists():
            link.symlink_to(REPO / name)
    if extra_config is not None:
        (path / "extra.yaml").write_text(yaml.safe_dump(extra_config))
    return path


def snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if check and res.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
        )
    return res


def planned_jobs(res: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    text = res.stdout + res.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    jobs = {}
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m or m.group(1) == "total":
            break
        jobs[m.group(1)] = int(m.group(2))
    return jobs


def dry_run(workdir: Path, *configfiles: str, extra: tuple[str, ...] = ()) -> dict[str, int]:
    args = ["-n", "--quiet", "rules"]
    if configfiles:
        args += ["--configfile", *configfiles]
    return planned_jobs(snakemake(workdir, *args, *extra))


def test_lint_is_clean(tmp_path):
    res = snakemake(make_workdir(tmp_path), "--lint", check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_default_campaign_plans_module_map_chain(tmp_path):
    jobs = dry_run(make_workdir(tmp_path))
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    n_shards, n_map_sample = sum(cfg["shards"].values()), cfg["map_sample"]["shards"]
    assert n_map_sample >= 1, "the default campaign's module map has a particle-gun sample"
    assert jobs["simulate"] == jobs["build_graphs"] == n_shards
    assert jobs["simulate_map_sample"] == n_map_sample and jobs["convert"] == n_shards + n_map_sample
    assert jobs["build_module_map"] == jobs["train_gnn"] == jobs["evaluate"] == 1
    assert jobs["infer"] == cfg["shards"]["test"]
    assert "train_metric_learning" not in jobs


def test_itk_mu200_campaign_uses_metric_learning_and_filter(tmp_path):
    jobs = dry_run(make_workdir(tmp_path), "config/itk_mu200.yaml")
    cfg = yaml.safe_load((REPO / "config/itk_mu200.yaml").read_text())
    n_shards = sum(cfg["shards"].values())
    assert n_shards >= 50, "the cluster campaign should have many shards"
    assert jobs["train_metric_learning"] == jobs["train_filter"] == jobs["train_gnn"] == 1
    assert jobs["apply_filter"] == jobs["build_graphs"] == n_shards
    assert "build_module_map" not in jobs and "simulate_map_sample" not in jobs
    assert jobs["bench"] == 1


def test_tiny_campaign_plans_every_stage(tmp_path):
    jobs = dry_run(make_workdir(tmp_path), "config/test_tiny.yaml")
    for rule in (
        "simulate",
        "simulate_map_sample",
        "convert",
        "build_module_map",
        "build_graphs",
        "train_filter",
        "apply_filter",
    ):
        assert jobs.get(rule, 0) >= 1, rule
    for rule in ("train_gnn", "score_gnn", "infer", "reassociate", "evaluate", "export"):
        assert jobs.get(rule, 0) >= 1, rule


def test_hgnn_track_building_plans_its_training_on_scored_train_and_val_graphs(tmp_path):
    """Only with ``method: hgnn``: score_gnn also runs on the train and val shards and train_hgnn
    feeds infer."""
    assert "train_hgnn" not in dry_run(make_workdir(tmp_path / "cc"), "config/test_tiny.yaml")
    extra = {"inference": {"track_building": {"method": "hgnn"}}}
    jobs = dry_run(make_workdir(tmp_path / "hgnn", extra), "config/test_tiny.yaml", "extra.yaml")
    assert jobs["train_hgnn"] == 1 and jobs["score_gnn"] == 3  # train, val and test shard
    assert jobs["infer"] >= 1


def test_slurm_profile_routes_gpu_rules_to_gpu_partition(tmp_path):
    """``--profile slurm`` as typed in a clone's root: jobs asking for GPUs go to the GPU partition."""
    res = snakemake(
        make_workdir(tmp_path), "-n", "--profile", "slurm", "--configfile", "config/test_tiny.yaml"
    )
    text = res.stdout + res.stderr
    jobs = [
        (m.group(1), re.search(r"^\s+resources: (.*)$", m.group(2), re.M).group(1))
        for m in re.finditer(r"^rule (\w+):\n((?:[ \t]+\S[^\n]*\n)+)", text, re.M)
    ]
    assert len(jobs) == sum(planned_jobs(res).values())
    gpu_rules = set(yaml.safe_load((REPO / "slurm/config.yaml").read_text())["set-resources"])
    for rule, resources in jobs:
        if rule in gpu_rules:
            assert "slurm_partition=gpu" in resources and re.search(r"\bgpu=1\b", resources), rule
        else:
            assert "slurm_partition=cpu" in resources and not re.search(r"\bgpu=", resources), rule
    assert {"train_gnn", "gnn_working_point", "convert"} <= {rule for rule, _ in jobs}


def test_local_profile_is_found_by_name(tmp_path):
    """``./run.sh campaign`` runs ``snakemake --profile local`` in the repository root."""
    res = snakemake(
        make_workdir(tmp_path), "-n", "--profile", "local", "--configfile", "config/test_tiny.yaml"
    )
    assert planned_jobs(res)["train_gnn"] == 1


def _schema_errors(overrides: dict) -> str:
    """Errors of config/config.yaml merged with ``overrides`` against the workflow schema."""
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    update_config(cfg, overrides)
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    return "\n".join(e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(cfg))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"gnn_settings": {"hidden": 4}}, "gnn_settings"),  # unknown top-level key
        ({"shards": {"train": "two"}}, "'two' is not of type 'integer'"),
        ({"steps": {"plots": True}}, "plots"),
        ({"gnn": {"not_a_gnn_setting": 3}}, "not_a_gnn_setting"),  # unknown key in a stage section
        ({"gnn": {"train": {"epochs": 1.5}}}, "1.5"),  # wrong type in a nested stage section
        ({"graph_construction": {"method": "knn"}}, "knn"),  # not one of the allowed values
        ({"input": {"source": "root"}}, "root_files"),  # real input without files
        ({"resources": {"train_gnn": {"gpus": 1}}}, "gpus"),
        ({"gnn": {"train": {"epochs": 0}}}, "0 is less than the minimum of 1"),  # a value out of range
        ({"filter": {"score_cut": -0.1}}, "-0.1 is less than the minimum of 0"),
        ({"metric_learning": {"activation": "swish"}}, "'swish' is not one of"),
        ({"shards": {"val": 0}}, "0 is less than the minimum of 1"),
    ],
)
def test_schema_rejects_wrong_keys_and_types(bad, message):
    assert message in _schema_errors(bad)


def test_every_campaign_file_is_valid():
    for campaign in ("test_tiny.yaml", "itk_mu200.yaml"):
        assert _schema_errors(yaml.safe_load((REPO / "config" / campaign).read_text())) == ""
    assert _schema_errors({}) == ""


def test_config_error_stops_snakemake_with_the_key_path(tmp_path):
    workdir = make_workdir(tmp_path, {"gnn": {"hiden": 3}})
    res = snakemake(workdir, "-n", "--configfile", "extra.yaml", check=False)
    err = res.stdout + res.stderr
    assert res.returncode != 0
    assert "invalid campaign config: gnn: " in err and "'hiden' was unexpected" in err, err[-3000:]
    assert "hidden" in err, "the message lists the allowed keys"
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"gnn": {"train": {"epochs": -1}}}, "gnn.train.epochs: -1 is less than the minimum of 1"),
        ({"simulation": {"n_events": -5}}, "simulation.n_events: -5 is less than the minimum of 1"),
        ({"campaign": ".."}, "campaign: '..' does not match"),
    ],
)
def test_nonsense_settings_stop_the_dry_run_before_planning(tmp_path, bad, message):
    """The issue's examples: each stops Snakemake at start-up, named, with nothing planned or written.

    ``campaign: '..'`` would put every output beside results/, the run's benchmarks into the
    tracked benchmarks/ folder.
    """
    workdir = make_workdir(tmp_path / "run", bad)
    res = snakemake(workdir, "-n", "--configfile", "extra.yaml", check=False)
    err = res.stdout + res.stderr
    assert res.returncode != 0
    assert f"invalid campaign config: {message}" in err, err[-3000:]
    assert "Traceback" not in err and "Job stats" not in err
    for folder in ("results", "benchmarks", "data", "events", "models"):
        assert not (workdir / folder).exists() and not (tmp_path / folder).exists(), folder


def test_schema_is_generated_from_stage_dataclasses():
    res = subprocess.run(
        [sys.executable, str(REPO / "workflow/schemas/make_schema.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())

    def closed(node, where):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, where
        for key in ("properties",):
            for name, sub in node.get(key, {}).items():
                closed(sub, f"{where}.{name}")

    closed(schema, "config")


def test_real_root_input_replaces_simulation(tmp_path):
    raw = tmp_path / "ntuples"
    raw.mkdir()
    for i in range(7):
        (raw / f"dump_{i}.root").write_bytes(b"")
    extra = {"input": {"source": "root", "root_files": [str(raw / "dump_*.root")]}, "campaign": "real"}
    workdir = make_workdir(tmp_path / "run", extra)
    res = snakemake(workdir, "-n", "--configfile", "config/test_tiny.yaml", "extra.yaml")
    jobs = planned_jobs(res)
    assert "simulate" not in jobs and "simulate_map_sample" not in jobs
    n_shards = sum(yaml.safe_load((REPO / "config/test_tiny.yaml").read_text())["shards"].values())
    assert jobs["convert"] == n_shards
    # 7 files over the shards in contiguous chunks: every file is the input of exactly one convert job
    inputs = re.findall(r"rule convert:\n\s+input: ([^\n]*)", res.stdout)
    used = sorted(f for line in inputs for f in re.findall(r"dump_(\d)\.root", line))
    assert used == [str(i) for i in range(7)]
    assert max(map(len, inputs)) - min(map(len, inputs)) <= len(str(raw / "dump_0.root")) + 2


def test_too_few_real_inputs_is_a_clear_error(tmp_path, trackml_sample):
    extra = {"input": {"source": "trackml", "trackml_dir": str(trackml_sample)}}
    res = snakemake(make_workdir(tmp_path, extra), "-n", "--configfile", "extra.yaml", check=False)
    assert res.returncode != 0
    assert "cannot fill" in res.stdout + res.stderr


def _touch_all_outputs(workdir: Path, *configfiles: str) -> None:
    """Create every planned output, then let Snakemake --touch record their metadata (params)."""
    res = snakemake(workdir, "--summary", "--configfile", *configfiles)
    for line in res.stdout.splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) < 3 or not fields[0].startswith(("results/", "data/")):
            continue
        path = workdir / fields[0]
        if fields[0].endswith(("/plots",)) or re.search(r"/athena/\d+$", fields[0]):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    snakemake(workdir, "--touch", "--forceall", "--configfile", *configfiles)
    assert dry_run(workdir, *configfiles) == {}, "touched campaign should be complete"


def test_changing_one_stage_reruns_it_and_its_descendants_only(tmp_path):
    workdir = make_workdir(tmp_path)
    _touch_all_outputs(workdir, "config/test_tiny.yaml")
    tiny = yaml.safe_load((REPO / "config/test_tiny.yaml").read_text())

    (workdir / "extra.yaml").write_text(yaml.safe_dump({"gnn": {"hidden": tiny["gnn"]["hidden"] * 2}}))
    jobs = dry_run(workdir, "config/test_tiny.yaml", "extra.yaml")
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

    # the track building re-chooses the GNN's working point without retraining it
    (workdir / "extra.yaml").write_text(yaml.safe_dump({"inference": {"track_building": {"min_hits": 5}}}))
    jobs = dry_run(workdir, "config/test_tiny.yaml", "extra.yaml")
    assert "train_gnn" not in jobs and jobs["gnn_working_point"] == 1
    assert {"score_gnn", "infer", "evaluate"} <= set(jobs)

    (workdir / "extra.yaml").write_text(yaml.safe_dump({"module_map": {"tolerance": 0.25}}))
    jobs = dry_run(workdir, "config/test_tiny.yaml", "extra.yaml")
    assert "simulate" not in jobs and "convert" not in jobs
    assert jobs["build_module_map"] == 1 and jobs["build_graphs"] == sum(tiny["shards"].values())

    # the map sample shares the detector response with the campaign's events, not their content
    (workdir / "extra.yaml").write_text(yaml.safe_dump({"simulation": {"mu": 7}}))
    jobs = dry_run(workdir, "config/test_tiny.yaml", "extra.yaml")
    assert jobs["simulate"] == sum(tiny["shards"].values()) and "simulate_map_sample" not in jobs
    (workdir / "extra.yaml").write_text(yaml.safe_dump({"simulation": {"strip_tolerance": 2.0}}))
    jobs = dry_run(workdir, "config/test_tiny.yaml", "extra.yaml")
    assert jobs["simulate_map_sample"] == tiny["map_sample"]["shards"]
    (workdir / "extra.yaml").write_text(yaml.safe_dump({"map_sample": {"gun": {"n_particles": 300}}}))
    jobs = dry_run(workdir, "config/test_tiny.yaml", "extra.yaml")
    assert "simulate" not in jobs and jobs["simulate_map_sample"] == tiny["map_sample"]["shards"]
    assert jobs["build_module_map"] == 1 and "train_metric_learning" not in jobs

    # an unchanged config still has nothing to do: the params comparison is stable
    assert dry_run(workdir, "config/test_tiny.yaml") == {}
    # ... also when a default is spelled out (it changes the key order of the section)
    (workdir / "extra.yaml").write_text(yaml.safe_dump({"module_map": {"n_sigma": 5.0}}))
    assert dry_run(workdir, "config/test_tiny.yaml", "extra.yaml") == {}
    # how many processes train (and how they meet) is not what they compute: nothing reruns
    distributed = {"backend": "gloo", "timeout_s": 60.0}
    (workdir / "extra.yaml").write_text(yaml.safe_dump({"gnn": {"train": {"distributed": distributed}}}))
    assert dry_run(workdir, "config/test_tiny.yaml", "extra.yaml") == {}


def _job_resources(text: str, rule: str) -> dict[str, str]:
    block = text.split(f"rule {rule}:", 1)[1]
    line = next(ln for ln in block.splitlines() if ln.strip().startswith("resources:"))
    return dict(kv.strip().split("=", 1) for kv in line.split(":", 1)[1].split(","))


def test_data_parallel_training_rule_asks_for_a_task_and_gpu_per_rank(tmp_path):
    extra = {"gnn": {"train": {"batch_items": 4, "distributed": {"ranks": 4, "nodes": 2}}}}
    res = snakemake(
        make_workdir(tmp_path, extra), "-n", "--configfile", "config/test_tiny.yaml", "extra.yaml"
    )
    text = res.stdout + res.stderr
    gnn = _job_resources(text, "train_gnn")
    assert (gnn["tasks"], gnn["gpu"], gnn["tasks_per_gpu"], gnn["nodes"], gnn["mpi"]) == (
        "4",
        "4",
        "1",
        "2",
        "srun",
    )
    for rule in ("train_filter", "gnn_working_point"):  # one rank: as before
        res_other = _job_resources(text, rule)
        assert res_other["gpu"] == "1" and "tasks" not in res_other and "mpi" not in res_other, rule


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"distributed": {"ranks": 2}}, "batch_items = 1 for 2 ranks"),
        ({"batch_items": 4, "distributed": {"ranks": 2, "nodes": 3}}, "3 nodes for 2 ranks"),
    ],
)
def test_impossible_rank_settings_stop_the_dry_run(tmp_path, train, message):
    workdir = make_workdir(tmp_path, {"filter": {"train": train}})
    res = snakemake(workdir, "-n", "--configfile", "config/test_tiny.yaml", "extra.yaml", check=False)
    assert res.returncode != 0 and message in res.stdout + res.stderr, res.stdout[-2000:] + res.stderr[-2000:]
