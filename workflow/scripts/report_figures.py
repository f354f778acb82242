"""One run's report figures (training, orbits, spectra, PE curve, Lyapunov, cycles, basins) as PNGs."""

from dsrpipe.cli import logged
from dsrpipe.reporting.run_figures import write_run_figures

with logged(snakemake.log[0]):
    write_run_figures(snakemake.input.metrics, snakemake.input.test, snakemake.output.figures,
                      label=snakemake.wildcards.model)
