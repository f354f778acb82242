rule preprocess_recording:
    input:
        recording_files,
        code=preprocess_code,
    output:
        PREPROCESSED,
    params:
        recording=recording_options,
        modality_config=modality_config,
    log:
        "logs/sub-{subject}/preprocess_{modality}.log",
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 20 * attempt,
    script:
        "../scripts/preprocess_recording.py"
