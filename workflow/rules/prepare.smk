rule prepare_data:
    input:
        raw_input,
    output:
        train=PREPARED_TRAIN,
        test=PREPARED_TEST,
    params:
        prepare=config["prepare"],
        dt=subject_dt,
    log:
        "logs/sub-{subject}/prepare.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/prepare_data.py"
