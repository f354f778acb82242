rule prepare_data:
    input:
        prepare_input,
        code=CODE["prepare"],
    output:
        train=PREPARED_TRAIN,
        test=PREPARED_TEST,
    params:
        prepare=config["prepare"],
        dt=subject_dt,
    log:
        "logs/sub-{subject}/prepare.log",
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/prepare_data.py"
