"""reassociate: track candidates -> ordered cluster lists and per-event CSVs for the track fit."""

from _common import start

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk)

from gnntrack.reassociation import run_reassociate  # noqa: E402

run_reassociate(smk.input.events, smk.input.tracks, smk.output[0], smk.params.cfg)
