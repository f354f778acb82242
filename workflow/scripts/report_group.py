"""Group table, summary (median, MAD) and the self-contained HTML report."""

from dsrpipe.cli import logged
from dsrpipe.config import ReportConfig, from_mapping
from dsrpipe.reporting.stage import run_group

with logged(snakemake.log[0]):
    run_group(snakemake.input.metrics, snakemake.input.tests, table_out=snakemake.output.table,
              summary_out=snakemake.output.summary, report_out=snakemake.output.report,
              failed=snakemake.params.failed, settings=snakemake.params.settings,
              report=from_mapping(ReportConfig, snakemake.params.report, "report"),
              covariates=snakemake.params.covariates,
              figure_dirs=getattr(snakemake.output, "figures", None),  # report_available: HTML only
              scatter_dir=getattr(snakemake.output, "scatter", None))
