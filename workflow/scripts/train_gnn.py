"""train_gnn: train/val events + (filtered) graphs -> GNN edge classifier (resumes from <output>.last).

The working point is chosen by the next rule (gnn_working_point)."""

from _common import device, start

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk, torch_threads=True)

from gnntrack.gnn import run_train_gnn  # noqa: E402

run_train_gnn(
    list(smk.input.train_events),
    list(smk.input.train_graphs),
    list(smk.input.val_events),
    list(smk.input.val_graphs),
    smk.output[0],
    smk.params.cfg,
    device=device(smk),
    choose_cut=False,
)
