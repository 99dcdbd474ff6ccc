"""build_module_map: train events -> module map (doublets with cut ranges)."""

from _common import start

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk)

from gnntrack.graph_construction import run_build_module_map  # noqa: E402

run_build_module_map(list(smk.input.events), smk.output[0], smk.params.cfg)
