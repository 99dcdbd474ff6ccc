"""gnn_working_point: trained GNN + validation events/graphs -> the GNN with its edge cut chosen."""

from _common import device, start

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk, torch_threads=True)

from gnntrack.gnn import run_choose_working_point  # noqa: E402

run_choose_working_point(
    smk.input.model,
    list(smk.input.val_events),
    list(smk.input.val_graphs),
    smk.output[0],
    smk.params.cfg,
    smk.params.track_building,
    device=device(smk),
)
