"""train_filter: train/val events + graphs -> edge filter model (resumes from <output>.last).

Runs on the ranks ``filter.train.distributed`` asks for."""

from _common import device, start, train

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk, torch_threads=True)

train(
    smk,
    "filter",
    "gnntrack.edge_filter:run_train_filter",
    train_events=list(smk.input.train_events),
    train_graphs=list(smk.input.train_graphs),
    val_events=list(smk.input.val_events),
    val_graphs=list(smk.input.val_graphs),
    output=smk.output[0],
    cfg=dict(smk.params.cfg),
    device=device(smk),
)
