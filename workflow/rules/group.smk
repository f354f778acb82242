localrules:
    report_group,


rule report_group:
    input:
        metrics=all_runs(paths.METRICS_FILE),
        generated=all_runs(paths.GENERATED_FILE),
        train_logs=all_runs(paths.TRAIN_LOG_FILE),
        tests=all_tests(),
    output:
        table=GROUP_OUTPUTS[0],
        summary=GROUP_OUTPUTS[1],
        report=report(GROUP_OUTPUTS[2], caption="../report/group.rst", category="Group"),
    log:
        "logs/group/report.log",
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    script:
        "../scripts/report_group.py"
