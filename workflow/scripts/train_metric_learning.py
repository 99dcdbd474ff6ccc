"""train_metric_learning: train/val events -> embedding model (resumes from <output>.last).

Runs on the ranks ``metric_learning.train.distributed`` asks for."""

from _common import device, start, train

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk, torch_threads=True)

train(
    smk,
    "metric_learning",
    "gnntrack.graph_construction:run_train_metric_learning",
    train_files=list(smk.input.train),
    val_files=list(smk.input.val),
    output=smk.output[0],
    cfg=dict(smk.params.cfg),
    device=device(smk),
)
