"""train_gnn: train/val events + (filtered) graphs -> GNN edge classifier (resumes from <output>.last).

Runs on the ranks ``gnn.train.distributed`` asks for. The working point is chosen by the next
rule (gnn_working_point)."""

from _common import device, start, train

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk, torch_threads=True)

train(
    smk,
    "gnn",
    "gnntrack.gnn:run_train_gnn",
    train_events=list(smk.input.train_events),
    train_graphs=list(smk.input.train_graphs),
    val_events=list(smk.input.val_events),
    val_graphs=list(smk.input.val_graphs),
    output=smk.output[0],
    cfg=dict(smk.params.cfg),
    device=device(smk),
    choose_cut=False,
)
