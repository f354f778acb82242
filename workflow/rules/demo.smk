rule simulate_demo:
    output:
        data="resources/demo/sub-{subject}_timeseries.parquet",
        truth="resources/demo/sub-{subject}_truth.json",
    params:
        demo=config["demo"],
    log:
        "logs/demo/sub-{subject}.log",
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/simulate_demo.py"
