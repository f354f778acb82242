"""Join a multimodal subject's preprocessed recordings (the neural one first) into one typed series."""

from dsrpipe.cli import logged
from dsrpipe.preprocessing.merge import merge_files

with logged(snakemake.log[0]):
    merge_files(list(snakemake.input.recordings), snakemake.output[0],
                subject=snakemake.wildcards.subject)
