"""convert: the raw files of one shard (ROOT or TrackML) -> events HDF5."""

from _common import start

smk = snakemake  # noqa: F821 - injected by Snakemake
start(smk)

from gnntrack.conversion.convert import run_convert  # noqa: E402

run_convert(list(smk.input.raw), smk.output[0], smk.params.cfg)
