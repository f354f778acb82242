"""Train one model (subject x seed) with generalized teacher forcing."""

from dataclasses import replace
from pathlib import Path

from dsrpipe.cli import logged
from dsrpipe.config import TrainConfig, from_mapping
from dsrpipe.training.run import train_file

with logged(snakemake.log[0]):
    cfg = from_mapping(TrainConfig, snakemake.params.train, "train")
    cfg = replace(cfg, seed=int(snakemake.wildcards.seed), threads=snakemake.threads)
    train_file(snakemake.input[0], Path(snakemake.output.config).parent, cfg)
