"""train_hgnn: train/val events + GNN-scored graphs -> HGNN track builder (resumes from <output>.last)."""

from _common import device, start

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk, torch_threads=True)

from gnntrack.track_building.hgnn import run_train_hgnn  # noqa: E402

run_train_hgnn(
    list(smk.input.train_events),
    list(smk.input.train_graphs),
    list(smk.input.val_events),
    list(smk.input.val_graphs),
    smk.output[0],
    dict(smk.params.cfg["hgnn"]),
    device=device(smk),
    min_hits=smk.params.cfg["min_hits"],
)
