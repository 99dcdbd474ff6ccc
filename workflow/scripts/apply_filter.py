"""apply_filter: one graphs shard -> edges above the filter cut, with filter scores."""

from _common import device, start

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk, torch_threads=True)

from gnntrack.edge_filter import run_apply_filter  # noqa: E402

run_apply_filter(
    smk.input.events, smk.input.graphs, smk.input.model, smk.output[0], smk.params.cfg, device=device(smk)
)
