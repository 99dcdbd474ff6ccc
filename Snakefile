"""gnntrack campaign: detector hits -> GNN track candidates -> physics evaluation.

Run a campaign with ``snakemake --cores all`` (default: config/config.yaml) or
``snakemake --configfile config/itk_mu200.yaml --profile slurm``. A campaign file is
merged over config/config.yaml; every output lands under ``results/<campaign>/``.
See docs/workflow.md.
"""

from snakemake.utils import min_version

min_version("8.20")


configfile: "config/config.yaml"


wildcard_constraints:
    split="train|val|test|map_sample",
    shard=r"\d+",


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/convert.smk"
include: "workflow/rules/graph_construction.smk"
include: "workflow/rules/filter.smk"
include: "workflow/rules/gnn.smk"
include: "workflow/rules/hgnn.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/reassociate.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/bench.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
