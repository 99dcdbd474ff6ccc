"""bench: per-stage inference timing of the test shards -> bench.json, bench.md (the table)."""

from pathlib import Path

from _common import device, start

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk, torch_threads=True)

from gnntrack.inference import run_bench  # noqa: E402

run_bench(
    list(smk.input.events),
    Path(smk.output.json).parent,
    smk.params.cfg,
    smk.params.inference,
    module_map=smk.input.get("module_map"),
    embedding=smk.input.get("embedding"),
    filter_model=smk.input.get("filter_model"),
    gnn_model=smk.input.gnn_model,
    device=device(smk),
    hgnn_model=smk.input.get("hgnn_model"),
    own_process=True,  # the rule's job runs only this: process-wide settings (inference.hold_memory) apply
)
