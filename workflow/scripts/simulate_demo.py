"""Simulate one demo subject (Lorenz-63 with its own rho) and its ground truth."""

from dsrpipe.cli import logged
from dsrpipe.config import DemoConfig, from_mapping
from dsrpipe.demo import simulate_demo_subject

with logged(snakemake.log[0]):
    cfg = from_mapping(DemoConfig, snakemake.params.demo, "demo")
    simulate_demo_subject(cfg, snakemake.wildcards.subject, snakemake.output.data, snakemake.output.truth)
