"""evaluate: test events, tracks and stage graphs -> summary.json, report.md, plots."""

from pathlib import Path

from _common import start

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk)

from gnntrack.evaluation import run_evaluate  # noqa: E402

outdir = Path(smk.output.summary).parent
run_evaluate(
    list(smk.input.events),
    list(smk.input.tracks),
    {stage: list(smk.input[stage]) for stage in smk.params.stages},
    outdir,
    smk.params.cfg,
    campaign=smk.params.campaign,
    gnn_model=smk.input.gnn_model,
)
