"""Preprocess one subject's recording with its modality's module (EEG, fMRI, spikes, behaviour or a table)."""

from dsrpipe.cli import logged
from dsrpipe.config import from_mapping
from dsrpipe.preprocessing.dispatch import config_class, preprocess_recording

with logged(snakemake.log[0]):
    modality, rec = snakemake.wildcards.modality, snakemake.params.recording
    configs = {}
    if modality != "timeseries":
        configs[modality] = from_mapping(config_class(modality), snakemake.params.modality_config, modality)
    preprocess_recording(rec["path"], snakemake.output[0], modality=modality, subject=snakemake.wildcards.subject,
                         dt=rec["dt"], session=rec["session"], atlas=rec["atlas"], masks=rec["masks"],
                         confounds=rec["confounds"], reference=rec.get("reference"),
                         participant=rec["participant"], **configs)
