"""Train several restarts (seeds) of one subject and setting together in one job."""

from dataclasses import replace
from pathlib import Path

from dsrpipe.cli import logged
from dsrpipe.config import TrainConfig, from_mapping
from dsrpipe.training.run import train_file_many

with logged(snakemake.log[0]):
    cfg = from_mapping(TrainConfig, snakemake.params.train, "train")
    run_dirs = {int(s): Path(c).parent for s, c in zip(snakemake.params.seeds, snakemake.output.configs)}
    train_file_many(snakemake.input[0], run_dirs, replace(cfg, threads=1), threads=snakemake.threads)
