MODELS_PER_JOB = config["train"]["models_per_job"]


if MODELS_PER_JOB == 1:

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

else:
    # Restarts trained together: one job per subject, setting and chunk of `models_per_job`
    # seeds (one rule per chunk, as a rule's outputs must follow from its wildcards).
    for _i, _chunk in enumerate(SEEDS[j : j + MODELS_PER_JOB] for j in range(0, len(SEEDS), MODELS_PER_JOB)):

        rule:
            name:
                f"train_models_{_i + 1}"
            input:
                PREPARED_TRAIN,
                code=CODE["train"],
            output:
                models=expand(RUN_FILE(paths.MODEL_FILE), seed=_chunk, allow_missing=True),
                configs=expand(RUN_FILE(paths.CONFIG_FILE), seed=_chunk, allow_missing=True),
                logs=expand(RUN_FILE(paths.TRAIN_LOG_FILE), seed=_chunk, allow_missing=True),
            params:
                train=lambda wc: SETTINGS[wc.model],
                seeds=_chunk,
            threads: len(_chunk)
            log:
                f"logs/sub-{{subject}}/model-{{model}}_seeds-{_chunk[0]}-{_chunk[-1]}_train.log",
            resources:
                mem_mb=1000 + 200 * len(_chunk),
                runtime=60 * max(1, len(_chunk) // 4),
            script:
                "../scripts/train_models.py"
