rule evaluate_model:
    input:
        config=RUN_FILE(paths.CONFIG_FILE),
        model=RUN_FILE(paths.MODEL_FILE),
        test=PREPARED_TEST,
        train=PREPARED_TRAIN,
        truth=truth_input,
        code=CODE["evaluate"],
    output:
        metrics=RUN_FILE(paths.METRICS_FILE),
        generated=RUN_FILE(paths.GENERATED_FILE),
        fixed_points=RUN_FILE(paths.FIXED_POINTS_FILE),
        cycles=RUN_FILE(paths.CYCLES_FILE),
        basins=RUN_FILE(paths.BASINS_FILE),
        lyapunov=RUN_FILE(paths.LYAPUNOV_FILE),
    params:
        evaluate=config["evaluate"],
        dt=subject_dt,
    log:
        "logs/sub-{subject}/model-{model}_seed-{seed}_evaluate.log",
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    script:
        "../scripts/evaluate_model.py"
