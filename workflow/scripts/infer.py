"""infer: one test events shard + all models -> track candidates with edge scores and stage timings."""

from _common import device, start

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk, torch_threads=True)

from gnntrack.inference import run_infer  # noqa: E402

run_infer(
    smk.input.events,
    smk.output[0],
    smk.params.cfg,
    module_map=smk.input.get("module_map"),
    embedding=smk.input.get("embedding"),
    filter_model=smk.input.get("filter_model"),
    gnn_model=smk.input.gnn_model,
    device=device(smk),
    hgnn_model=smk.input.get("hgnn_model"),
    own_process=True,  # one shard per job: process-wide settings (inference.hold_memory) apply
)
