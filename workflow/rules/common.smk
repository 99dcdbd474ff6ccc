"""Campaign bookkeeping shared by all rules: config validation, shards, paths, stage params.

Everything that decides *which* files exist lives here, so the stage rules only wire files to
one library call each.
"""

import glob
from pathlib import Path

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from gnntrack.campaign import rule_params, sorted_keys, stage_params

SCHEMA = Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"


def validate_campaign(config):
    """Stop on the first wrong key, type or value, named by its path; then fill in the stage defaults.

    The stage sections' limits come from the rules on the stage dataclasses, which the command
    line and the library enforce too, so the message is theirs: "gnn.train.epochs: -1 is less
    than the minimum of 1". Nothing is planned, so nothing is written, before this passes.
    """
    with open(SCHEMA) as fh:
        schema = yaml.safe_load(fh)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        message = f"invalid campaign config: {where.lstrip('.') or 'top level'}: {error.message}"
        if error.validator == "additionalProperties":
            message += f"; allowed keys: {', '.join(error.schema['properties'])}"
        raise WorkflowError(message)
    validate(config, schema=str(SCHEMA))


validate_campaign(config)

CAMPAIGN = config["campaign"]
RESULTS = f"results/{CAMPAIGN}"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
SPLITS = ("train", "val", "test")
ENV = "../../envs/gnntrack.yaml"
REPORT = "../report"

STEPS = config["steps"]
USE_FILTER = STEPS["filter"]


# --------------------------------------------------------------------------- stage configs
def stage_config(section):
    """One stage's effective config, every default filled in by the schema (the rule's ``params.cfg``).

    ``gnntrack.campaign.stage_params``: the section as the command line resolves it too
    (``gnntrack.campaign.resolve_campaign``), e.g. ``convert.input_format`` from ``input.source``
    and the inference settings left null from ``graph_construction``. Each rule receives only its
    own section, so Snakemake's params rerun-trigger fires exactly when a value that the stage
    sees changes; keys are sorted, so writing a default explicitly does not rerun a campaign. The
    schema is generated from the stage dataclasses, so a wrong key or type has already failed
    validation above, with its path.

    A training section's ``train.distributed`` (how many ranks train) is left out: it decides how
    a training job runs, not what it computes, so changing it reruns nothing; the training rules'
    resources and scripts read it from the config (``training_ranks``; ``gnntrack.campaign.rule_params``).
    """
    return rule_params(config, section)


GRAPH_METHOD = stage_config("graph_construction")["method"]


# --------------------------------------------------------------------------- inputs and shards
def _n_shards():
    return sum(config["shards"][s] for s in SPLITS)


def _chunk(items, n):
    """Split ``items`` into ``n`` contiguous, nearly equal chunks (every chunk non-empty)."""
    if len(items) < n:
        raise WorkflowError(f"{len(items)} input file(s) cannot fill {n} shards; lower 'shards'")
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        stop = start + size + (1 if i < extra else 0)
        out.append(items[start:stop])
        start = stop
    return out


def _input_files():
    """Real-data inputs of each shard, in shard order (None for the built-in simulation)."""
    source = config["input"]["source"]
    if source == "simulation":
        return None
    if source == "root":
        patterns = config["input"]["root_files"]
        patterns = [patterns] if isinstance(patterns, str) else patterns
        files = sorted({f for p in patterns for f in (glob.glob(p) or [p])})
    else:
        hits = sorted(glob.glob(str(Path(config["input"]["trackml_dir"]) / "event*-hits.csv*")))
        if not hits:
            raise WorkflowError(f"no event*-hits.csv[.gz] files in input.trackml_dir={config['input']['trackml_dir']}")
        files = hits
    return _chunk(files, _n_shards())


def _shards():
    """Shard names of each split: consecutive numbers, train first, so shard i <-> input chunk i."""
    shards, first = {}, 0
    for split in SPLITS:
        n = config["shards"][split]
        shards[split] = [str(i) for i in range(first, first + n)]
        first += n
    return shards


INPUT_CHUNKS = _input_files()
SHARDS = _shards()


def shard_split(shard):
    for split, shards in SHARDS.items():
        if shard in shards:
            return split
    raise WorkflowError(f"shard {shard} is not part of campaign {CAMPAIGN} ({SHARDS})")


def convert_inputs(wildcards):
    """Raw files of one shard: a simulated ROOT file or a slice of the real inputs."""
    if wildcards.split == "map_sample":
        return [map_sample_raw(wildcards.shard)]
    if shard_split(wildcards.shard) != wildcards.split:
        raise WorkflowError(f"shard {wildcards.shard} belongs to split {shard_split(wildcards.shard)}")
    if INPUT_CHUNKS is None:
        return [f"data/sim/{CAMPAIGN}/{wildcards.shard}.root"]
    return INPUT_CHUNKS[int(wildcards.shard)]


def convert_config():
    """The convert section, with the input format that ``input.source`` implies."""
    return stage_config("convert")


def inference_config():
    """The inference section, made to rebuild the graphs the filter and GNN were trained on.

    Graph-construction overrides the inference section leaves unset (null) are taken from the
    graph_construction section; the filter and GNN cuts are those stored in the model files (the
    ones apply_filter and the evaluation use), unless the inference section sets them.
    """
    return stage_config("inference")


def trackml_detectors():
    det = stage_config("convert").get("detectors")
    return [det] if config["input"]["source"] == "trackml" and det else []


# --------------------------------------------------------------------------- file names
def events(split, shard="{shard}"):
    return f"{RESULTS}/events/{split}/{shard}.h5"


def split_events(split):
    return [events(split, s) for s in SHARDS[split]]


def graphs(split, shard="{shard}"):
    return f"{RESULTS}/graphs/{split}/{shard}.h5"


def filtered(split, shard="{shard}"):
    return f"{RESULTS}/filtered/{split}/{shard}.h5"


def scored(split, shard="{shard}"):
    """A graphs shard with the GNN's edge scores (``score_gnn``)."""
    return f"{RESULTS}/scored/{split}/{shard}.h5"


def gnn_input_graphs(split, shard="{shard}"):
    """The graphs the GNN trains and is evaluated on: filtered when the filter runs."""
    return filtered(split, shard) if USE_FILTER else graphs(split, shard)


# --------------------------------------------------------------------------- module-map sample
def map_sample_shards():
    """Shards of particle-gun events that feed only the module map (built-in simulation only)."""
    used = config["input"]["source"] == "simulation" and GRAPH_METHOD == "module_map"
    return [str(i) for i in range(stage_config("map_sample")["shards"])] if used else []


def map_sample_raw(shard="{shard}"):
    return f"data/sim/{CAMPAIGN}/map_sample/{shard}.root"


def map_sample_simulation_config():
    """The map sample's simulation section: the campaign's detector response, gun events."""
    from gnntrack.simulation.map_sample import map_sample_simulation

    return sorted_keys(map_sample_simulation(stage_config("simulation"), stage_config("map_sample")))


def module_map_events():
    """Events the module map is built from: the training split, then the map sample."""
    return split_events("train") + [events("map_sample", s) for s in map_sample_shards()]


MODULE_MAP = f"{RESULTS}/module_map/module_map.h5"
MODELS = {
    "metric_learning": f"{RESULTS}/models/metric_learning.pt",
    "filter": f"{RESULTS}/models/filter.pt",
    "gnn": f"{RESULTS}/models/gnn.pt",  # with its working point
    "hgnn": f"{RESULTS}/models/hgnn.pt",  # HGNN track builder (track_building.method: hgnn)
}
TRAINED_GNN = f"{RESULTS}/models/gnn_trained.pt"  # before the working point is chosen


def gnn_training_config():
    """The ``gnn`` section without ``working_point``: choosing the cut does not retrain."""
    return {k: v for k, v in stage_config("gnn").items() if k != "working_point"}


def graph_builder_inputs():
    """What graph construction needs: the module map or the embedding model."""
    if GRAPH_METHOD == "module_map":
        return {"module_map": MODULE_MAP}
    return {"embedding": MODELS["metric_learning"]}


def inference_models():
    """Model inputs of the one-process inference chain (infer, bench), named as run_infer names them."""
    models = graph_builder_inputs()
    if USE_FILTER:
        models["filter_model"] = MODELS["filter"]
    models["gnn_model"] = MODELS["gnn"]
    if uses_hgnn():
        models["hgnn_model"] = MODELS["hgnn"]
    return models


def uses_hgnn():
    """The campaign builds its tracks with the HGNN (``inference.track_building.method: hgnn``)."""
    return stage_config("inference")["track_building"]["method"] == "hgnn"


def hgnn_training_config():
    """What the HGNN's training reads: ``track_building.hgnn`` and the candidates' ``min_hits``."""
    tb = stage_config("inference")["track_building"]
    return {"hgnn": tb["hgnn"], "min_hits": tb["min_hits"]}


def trained_models():
    """Models of this campaign's chain, in pipeline order (name -> checkpoint)."""
    names = ["metric_learning"] if GRAPH_METHOD == "metric_learning" else []
    names += ["filter"] if USE_FILTER else []
    return {name: MODELS[name] for name in names + ["gnn"]}


def export_outputs():
    return [f"{RESULTS}/export/{name}.{ext}" for name in trained_models() for ext in ("onnx", "ts.pt")]


def evaluation_graphs():
    """Graph files of each stage on the test split, keyed by stage name."""
    stages = {GRAPH_METHOD: [graphs("test", s) for s in SHARDS["test"]]}
    if USE_FILTER:
        stages["filter"] = [filtered("test", s) for s in SHARDS["test"]]
    stages["gnn"] = [scored("test", s) for s in SHARDS["test"]]
    return stages


def final_outputs():
    out = [
        f"{RESULTS}/eval/summary.json",
        f"{RESULTS}/eval/report.md",
        f"{RESULTS}/eval/plots",
    ]
    out += expand(f"{RESULTS}/athena/{{shard}}", shard=SHARDS["test"]) if STEPS["reassociate"] else []
    out += export_outputs() if STEPS["export"] else []
    out += [f"{RESULTS}/bench/bench.json"] if STEPS["bench"] else []
    return out


def campaign_info():
    """What the evaluation report prints about the campaign it summarises."""
    info = {
        "name": CAMPAIGN,
        "input": config["input"]["source"],
        "shards": dict(config["shards"]),
        "graph_construction": GRAPH_METHOD,
        "filter": USE_FILTER,
    }
    n_map_shards = len(map_sample_shards())
    if n_map_shards:
        info["map_sample"] = f"{n_map_shards} x {stage_config('map_sample')['n_events']} particle-gun events"
    if config["input"]["source"] == "simulation":
        info["mu"] = stage_config("simulation").get("mu")
    return info


# --------------------------------------------------------------------------- resources
GPU_RULES = {
    "train_metric_learning",
    "build_graphs",
    "train_filter",
    "apply_filter",
    "train_gnn",
    "gnn_working_point",
    "score_gnn",
    "infer",
    "bench",
}


def _resource_settings(name):
    """Merge resources: ``default`` < ``gpu`` (GPU rules) < the rule's own entry."""
    res = config["resources"]
    merged = dict(res.get("default", {}))
    if name in GPU_RULES:
        merged.update(res.get("gpu", {}))
    merged.update(res.get(name, {}))
    return merged


#: training rule -> its config section (``<section>.train.distributed`` sets its ranks)
TRAINING_RULES = {"train_metric_learning": "metric_learning", "train_filter": "filter", "train_gnn": "gnn"}


def training_ranks(name):
    """``(ranks, nodes)`` of a training rule, from its section's ``train.distributed``; stops on
    settings no job can run (fewer items per step than ranks, more nodes than ranks)."""
    section = TRAINING_RULES[name]
    train = stage_params(config, section)["train"]
    ranks, nodes = train["distributed"]["ranks"], train["distributed"]["nodes"]
    if ranks > train["batch_items"]:
        raise WorkflowError(
            f"{section}.train: batch_items = {train['batch_items']} for {ranks} ranks; every rank needs an "
            "item in each optimiser step (batch_items >= ranks)"
        )
    if nodes > ranks:
        raise WorkflowError(f"{section}.train.distributed: {nodes} nodes for {ranks} ranks")
    return ranks, nodes


def rule_resources(name):
    """Scheduler resources of ``rule``: runtime (min), mem_mb and, on GPU rules, gpu.

    A training rule with ``train.distributed.ranks`` > 1 asks for one task per rank (``tasks``;
    ``threads`` CPUs each) over ``nodes`` nodes, and on a GPU rule for one GPU per rank (``gpu``
    = ranks, ``tasks_per_gpu`` = 1); ``mpi: srun`` has the SLURM executor run the job's script
    in the batch step itself, where it starts the ranks as one ``srun`` step. ``mem_mb`` is per
    node (each rank holds the whole training set).
    """
    merged = _resource_settings(name)
    merged.pop("threads", None)
    if name in TRAINING_RULES:
        ranks, nodes = training_ranks(name)
        if ranks > 1:
            merged.update(tasks=ranks, mpi="srun")
            if merged.get("gpu", 0) > 1:
                raise WorkflowError(
                    f"{name}: resources gpu = {merged['gpu']} with {ranks} ranks; distributed training "
                    "uses one GPU per rank (gpu: 1)"
                )
            if merged.get("gpu", 0) == 1:
                merged.update(gpu=ranks, tasks_per_gpu=1)
        if nodes > 1:
            merged["nodes"] = nodes
    return merged


def rule_threads(name):
    return _resource_settings(name).get("threads", 1)
