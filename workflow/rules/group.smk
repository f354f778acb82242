# Subject covariates for the group table: extra columns of the subjects table, participants.tsv in BIDS mode.
from dsrpipe.config import SUBJECT_COLUMNS

COVARIATE_COLUMNS = [c for c in SUBJECTS.columns if c not in SUBJECT_COLUMNS]
COVARIATES = {str(s): {**{c: SUBJECTS.loc[s, c] for c in COVARIATE_COLUMNS}, **PARTICIPANTS.get(str(s), {})}
              for s in SUBJECTS["subject"]}


localrules:
    report_group,
    report_available,


from dsrpipe.reporting.run_figures import FIGURES_DIR


# The group report draws every run's figures once (one process: the plotting stack is imported once),
# embeds them in report.html and writes them to each run's figures/ folder for `snakemake --report`.
rule report_group:
    input:
        metrics=all_runs(paths.METRICS_FILE),
        generated=all_runs(paths.GENERATED_FILE),
        train_logs=all_runs(paths.TRAIN_LOG_FILE),
        cycles=all_runs(paths.CYCLES_FILE),
        basins=all_runs(paths.BASINS_FILE),
        lyapunov=all_runs(paths.LYAPUNOV_FILE),
        tests=all_tests(),
        code=CODE["report"],
    output:
        table=GROUP_OUTPUTS[0],
        summary=GROUP_OUTPUTS[1],
        report=report(GROUP_OUTPUTS[2], caption="../report/group.rst", category="Group"),
        # metric-vs-covariate scatter plots (report.scatter_*); empty when no numeric covariate is drawn
        scatter=report(
            directory(str(paths.group_file("scatter", RESULTS))),
            patterns=["{figure}.png"],
            caption="../report/scatter.rst",
            category="Group",
            subcategory="metrics vs covariates",
            labels={"figure": "{figure}"},
        ),
        # each run's figures folder (in the order of all_runs), in `snakemake --report` by subject and run
        figures=[
            report(
                directory(RUN_FILE(FIGURES_DIR).format(subject=s, model=m, seed=n)),
                patterns=["{figure}.png"],
                caption="../report/run_figures.rst",
                category=f"sub-{s}",
                subcategory=f"model-{m} seed-{n}",
                labels={"subject": str(s), "model": str(m), "seed": str(n), "figure": "{figure}"},
            )
            for s in SUBJECTS["subject"]
            for m in SETTINGS
            for n in SEEDS
        ],
    params:
        failed=[],
        settings=SETTINGS,
        report=config["report"],
        covariates=COVARIATES,
    log:
        "logs/group/report.log",
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    script:
        "../scripts/report_group.py"


# After a run with failed subjects (--keep-going):  snakemake --cores 1 report_available
# reports every run that finished and lists each missing one with the error from its log.
AVAILABLE, MISSING = available_runs()
from dsrpipe.reporting.failures import describe_missing_run

FAILED = [describe_missing_run(s, m, n, SUBJECTS.loc[s, "modality"]) for s in SUBJECTS["subject"]
          for m in SETTINGS for n in SEEDS if (s, m, n) not in AVAILABLE]


rule report_available:
    input:
        metrics=[RUN_FILE(paths.METRICS_FILE).format(subject=s, model=m, seed=n) for s, m, n in AVAILABLE],
        tests=[PREPARED_TEST.format(subject=s) for s, _, _ in AVAILABLE],
        code=CODE["report"],
    output:
        table=str(paths.group_file("available_runs.parquet", RESULTS)),
        summary=str(paths.group_file("available_summary.parquet", RESULTS)),
        report=str(paths.group_file("available_report.html", RESULTS)),
    params:
        failed=FAILED,
        settings=SETTINGS,
        report=config["report"],
        covariates=COVARIATES,
    log:
        "logs/group/report_available.log",
    script:
        "../scripts/report_group.py"
