"""Check, split and standardise one subject's recording."""

from dataclasses import replace

from dsrpipe.cli import logged
from dsrpipe.config import PrepareConfig, from_mapping
from dsrpipe.preprocessing import prepare_file

with logged(snakemake.log[0]):
    cfg = from_mapping(PrepareConfig, snakemake.params.prepare, "prepare")
    if snakemake.params.dt is not None:
        cfg = replace(cfg, dt=float(snakemake.params.dt))
    prepare_file(snakemake.input[0], snakemake.output.train, snakemake.output.test,
                 subject=snakemake.wildcards.subject, cfg=cfg)
