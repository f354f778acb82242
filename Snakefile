# dsrpipe: batch dynamical systems reconstruction with PLRNNs.
# `snakemake --cores all` runs the built-in demo; see README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/group.smk"


rule all:
    input:
        GROUP_OUTPUTS,
    default_target: True
