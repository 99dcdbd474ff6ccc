"""train_metric_learning: train/val events -> embedding model (resumes from <output>.last)."""

from _common import device, start

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk, torch_threads=True)

from gnntrack.graph_construction import run_train_metric_learning  # noqa: E402

run_train_metric_learning(
    list(smk.input.train), list(smk.input.val), smk.output[0], smk.params.cfg, device=device(smk)
)
