rule train_model:
    input:
        PREPARED_TRAIN,
        code=CODE["train"],
    output:
        model=RUN_FILE(paths.MODEL_FILE),
        config=RUN_FILE(paths.CONFIG_FILE),
        log=RUN_FILE(paths.TRAIN_LOG_FILE),
    params:
        train=lambda wc: SETTINGS[wc.model],
    threads: config["train"]["threads"]
    log:
        "logs/sub-{subject}/model-{model}_seed-{seed}_train.log",
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 60 * attempt,
        **TRAIN_GPU,
    script:
        "../scripts/train_model.py"
