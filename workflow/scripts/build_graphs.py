"""build_graphs: one events shard + module map or embedding -> graphs HDF5."""

from _common import device, start

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk, torch_threads=True)

from gnntrack.graph_construction import run_build_graphs  # noqa: E402

run_build_graphs(
    smk.input.events,
    smk.output[0],
    smk.params.cfg,
    module_map=smk.input.get("module_map"),
    model=smk.input.get("embedding"),
    device=device(smk),
)
