"""simulate: one shard of built-in simulation -> GNN4ITk ROOT ntuple."""

from _common import start

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk)

from gnntrack.simulation import run_simulate  # noqa: E402

run_simulate(smk.output[0], smk.params.cfg, shard=int(smk.wildcards.shard))
