"""score_gnn: one test graphs shard -> the same graphs with GNN edge scores (edge-level evaluation)."""

from _common import device, start

smk = snakemake  # noqa: F821 - injected by Snakemake
log = start(smk, torch_threads=True)

from gnntrack.edge_classification import run_score_graphs  # noqa: E402

metrics = run_score_graphs(
    smk.input.events,
    smk.input.graphs,
    smk.input.model,
    smk.output[0],
    "gnn",
    device=device(smk),
)
log.info("GNN edge metrics at the model's working point: %s", metrics)
