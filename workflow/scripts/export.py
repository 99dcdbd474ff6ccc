"""export: trained models -> ONNX and TorchScript, checked against PyTorch on a sample event."""

from pathlib import Path

from _common import start

smk = snakemake  # noqa: F821 - injected by Snakemake
log = start(smk)

from gnntrack.export import run_export  # noqa: E402

# named inputs besides the sample files are the models (Namedlist `in` tests values, not names)
models = {
    name: Path(smk.input.get(name)) for name in ("metric_learning", "filter", "gnn") if smk.input.get(name)
}
checks = run_export(models, Path(smk.output[0]).parent, smk.input.sample_events, smk.input.sample_graphs)
log.info("export checks: %s", checks)
