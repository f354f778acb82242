rule simulate_demo:
    input:
        code=CODE["demo"],
    output:
        data="resources/demo/sub-{subject}_timeseries.parquet",
        truth="resources/demo/sub-{subject}_truth.json",
    params:
        demo=config["demo"],
    log:
        "logs/demo/sub-{subject}.log",
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/simulate_demo.py"
