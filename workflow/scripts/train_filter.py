"""train_filter: train/val events + graphs -> edge filter model (resumes from <output>.last)."""

from _common import device, start

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk, torch_threads=True)

from gnntrack.edge_filter import run_train_filter  # noqa: E402

run_train_filter(
    list(smk.input.train_events),
    list(smk.input.train_graphs),
    list(smk.input.val_events),
    list(smk.input.val_graphs),
    smk.output[0],
    smk.params.cfg,
    device=device(smk),
)
