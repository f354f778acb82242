"""Metrics, Lyapunov spectrum, fixed points, cycles and basins of one trained model on the test segment."""

from pathlib import Path

from dsrpipe.cli import logged
from dsrpipe.config import EvaluateConfig, from_mapping
from dsrpipe.evaluation import evaluate_run, read_inputs, read_truth

with logged(snakemake.log[0]):
    cfg = from_mapping(EvaluateConfig, snakemake.params.evaluate, "evaluate")
    truth = read_truth(snakemake.input.truth[0]) if snakemake.input.truth else None
    evaluate_run(Path(snakemake.input.config).parent, snakemake.input.test, cfg,
                 snakemake.output.metrics, generated_out=snakemake.output.generated,
                 fixed_points_out=snakemake.output.fixed_points, cycles_out=snakemake.output.cycles,
                 basins_out=snakemake.output.basins, lyapunov_out=snakemake.output.lyapunov,
                 dt=snakemake.params.dt, truth=truth, train=snakemake.input.train,
                 inputs=read_inputs(snakemake.input.test))
