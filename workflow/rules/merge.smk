# A multimodal subject (several rows of the subjects table): its preprocessed recordings joined
# on one grid into one typed series. One-row subjects have no merge job.
rule merge_recordings:
    input:
        recordings=merge_inputs,
        code=CODE["prepare"] + package_code("preprocessing/merge.py"),
    output:
        MERGED,
    log:
        "logs/sub-{subject}/merge.log",
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/merge_recordings.py"
