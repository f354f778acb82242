"""The ``dsrpipe`` command line: one subcommand per pipeline stage."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path

from dsrpipe import DsrpipeError, __version__

log = logging.getLogger("dsrpipe")


def setup_logging(logfile: str | None = None, verbose: bool = False) -> None:
    """Log to stderr (and to ``logfile`` when given) with timestamps."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile:
        Path(logfile).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(logfile, mode="w"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    logging.getLogger("numba").setLevel(logging.WARNING)


def cmd_demo(args) -> None:
    from dsrpipe.config import DemoConfig, load_section
    from dsrpipe.demo import simulate_demo_subject

    cfg = load_section(DemoConfig, "demo", args.config, args.set)
    out = Path(args.out_dir)
    ids = args.subject or [s.id for s in cfg.subjects]
    for sid in ids:
        simulate_demo_subject(cfg, sid, out / f"sub-{sid}_timeseries.parquet", out / f"sub-{sid}_truth.json")


def cmd_prepare(args) -> None:
    from dsrpipe.config import PrepareConfig, load_section
    from dsrpipe.preprocessing import prepare_file

    cfg = load_section(PrepareConfig, "prepare", args.config, args.set)
    prepare_file(args.input, args.train_out, args.test_out, subject=args.subject, cfg=cfg)


def cmd_preprocess(args) -> None:
    from dsrpipe.config import load_section
    from dsrpipe.preprocessing.dispatch import config_class, preprocess_recording

    configs = {}
    if args.modality != "timeseries":
        configs[args.modality] = load_section(config_class(args.modality), args.modality, args.config, args.set)
    elif args.set:
        raise DsrpipeError("--set: modality timeseries has no config section (use --dt for the sampling interval)")
    ts = preprocess_recording(args.input, args.out, modality=args.modality,
                              subject=args.subject or Path(args.input).name.split(".")[0], dt=args.dt,
                              atlas=args.atlas, masks=args.mask, confounds=args.confounds, reference=args.reference,
                              **configs)
    print(f"{args.out}: {ts.modality}, {ts.n_samples} samples x {ts.n_channels} channels, dt {ts.dt} s")


def cmd_merge(args) -> None:
    from dsrpipe.preprocessing.merge import merge_files

    ts = merge_files(args.inputs, args.out, subject=args.subject, modality=args.modality)
    print(f"{args.out}: {ts.modality}, {ts.n_samples} samples x {ts.n_channels} channels "
          f"({', '.join(sorted(set(ts.channel_types)))})")


def cmd_train(args) -> None:
    from dsrpipe.config import TrainConfig, load_section
    from dsrpipe.training.run import train_file, train_file_many

    cfg = load_section(TrainConfig, "train", args.config, args.set)
    if not args.seeds:
        train_file(args.data, args.out, cfg)
        return
    if "{seed}" not in args.out:
        raise DsrpipeError(f"--seeds trains one run per seed: --out must contain '{{seed}}', got {args.out!r}")
    train_file_many(args.data, {s: args.out.format(seed=s) for s in args.seeds}, cfg)


def cmd_evaluate(args) -> None:
    from dsrpipe.config import EvaluateConfig, load_section
    from dsrpipe.evaluation import evaluate_run, read_inputs, read_truth
    from dsrpipe.io.timeseries import load_series
    from dsrpipe.paths import FIXED_POINTS_FILE, GENERATED_FILE
    from dsrpipe.training.checkpoint import is_multimodal_run

    cfg = load_section(EvaluateConfig, "evaluate", args.config, args.set)
    # an MTF run decodes every channel type of the test series; a GTF run the modelled ones
    test = load_series(args.test, dt=args.dt, **({"types": None} if is_multimodal_run(args.run_dir) else {}))
    truth = read_truth(args.truth) if args.truth else None
    train = load_series(args.train) if args.train else None
    out = Path(args.out)
    metrics = evaluate_run(args.run_dir, test, cfg, out,
                           generated_out=args.generated or out.parent / GENERATED_FILE,
                           fixed_points_out=args.fixed_points or out.parent / FIXED_POINTS_FILE,
                           dt=args.dt, truth=truth, train=train, inputs=read_inputs(args.test))
    print(json.dumps({k: metrics[k] for k in ("d_stsp", "d_h", f"pe_{cfg.pe_steps}", "max_lyapunov",
                                              "kaplan_yorke_dimension")}, indent=2))


def cmd_select(args) -> None:
    from dsrpipe.training.selection import select_restart

    result = select_restart(args.run_dirs, args.out)
    print(f"selected {result['selected']} (seed {result['seed']}): {result['rule']}")


def cmd_report(args) -> None:
    from dsrpipe.config import ReportConfig, load_section, read_covariates
    from dsrpipe.reporting.stage import run_group

    report = load_section(ReportConfig, "report", args.config, args.set)
    covariates = read_covariates(args.covariates) if args.covariates else None
    run_group(args.metrics, args.test, table_out=args.table, summary_out=args.summary, report_out=args.out,
              report=report, covariates=covariates, scatter_dir=args.scatter_dir)


def cmd_warm_up(args) -> None:
    from dsrpipe.jit import warm_up

    print(f"Numba kernels compiled or loaded from cache in {warm_up():.1f} s")


def cmd_figures(args) -> None:
    from dsrpipe.reporting.run_figures import write_run_figures

    for path in write_run_figures(args.metrics, args.test, args.out, label=args.label):
        print(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsrpipe", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dsrpipe {__version__}")
    parser.add_argument("--log", help="also write the log to this file")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p):
        p.add_argument("--config", help="YAML config (a full dsrpipe config or just this stage's section)")
        p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="override config keys")
        return p

    p = with_config(sub.add_parser("demo", help="simulate the built-in Lorenz-63 demo subjects"))
    p.add_argument("--out-dir", required=True)
    p.add_argument("--subject", nargs="+", help="subject ids (default: all in demo.subjects)")
    p.set_defaults(func=cmd_demo)

    p = with_config(sub.add_parser("prepare", help="check, split and standardise a T x N table"))
    p.add_argument("input")
    p.add_argument("--subject", required=True)
    p.add_argument("--train-out", required=True)
    p.add_argument("--test-out", required=True)
    p.set_defaults(func=cmd_prepare)

    p = with_config(sub.add_parser("preprocess", help="one EEG, fMRI, spike or behaviour recording (or a table) "
                                                      "to a dsrpipe Parquet series"))
    p.add_argument("--modality", required=True, choices=["eeg", "fmri", "spikes", "behaviour", "timeseries"],
                   help="--config/--set apply to this modality's section")
    p.add_argument("input", help="the recording")
    p.add_argument("--out", required=True, help="Parquet file to write")
    p.add_argument("--subject", help="subject id (default: the file name up to its first dot)")
    p.add_argument("--atlas", help="fMRI: 3-D label atlas on the BOLD grid")
    p.add_argument("--mask", nargs="+", default=[], help="fMRI: binary 3-D masks, one ROI each")
    p.add_argument("--confounds", help="fMRI: confounds table, one row per volume")
    p.add_argument("--dt", type=float, help="timeseries: sampling interval in seconds")
    p.add_argument("--reference", help="behaviour: a preprocessed recording (Parquet) whose sampling grid "
                                       "(dt, length) the labels and inputs are aligned to")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("merge", help="join a subject's preprocessed recordings on one grid into one typed series "
                                     "(for train.method mtf)")
    p.add_argument("inputs", nargs="+", help="dsrpipe Parquet series of equal length and sampling interval")
    p.add_argument("--out", required=True, help="Parquet file to write")
    p.add_argument("--subject", help="subject id (default: the first input's)")
    p.add_argument("--modality", help="modality of the result (default: the first non-behaviour input's)")
    p.set_defaults(func=cmd_merge)

    p = with_config(sub.add_parser("train", help="train a model on a (prepared) time series"))
    p.add_argument("data")
    p.add_argument("--out", required=True, help="run directory (with --seeds: a pattern containing {seed})")
    p.add_argument("--seeds", nargs="+", type=int, help="train these restarts together in one process "
                                                         "(the fused kernel's loop over models)")
    p.set_defaults(func=cmd_train)

    p = with_config(sub.add_parser("evaluate", help="metrics and invariants of a trained model"))
    p.add_argument("run_dir")
    p.add_argument("--test", required=True, help="held-out test series")
    p.add_argument("--out", required=True, help="metrics.json to write")
    p.add_argument("--dt", type=float, help="sampling interval (exponents per time unit)")
    p.add_argument("--truth", help="ground-truth JSON (the demo writes one per subject)")
    p.add_argument("--train", help="training series: adds the metrics of a mean and a VAR(1) baseline")
    p.add_argument("--generated", help="where to write the generated orbit (default beside --out)")
    p.add_argument("--fixed-points", help="where to write the fixed-point table (default beside --out)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("select", help="pick the best of a subject's restarts by validation D_stsp "
                                      "(training data only)")
    p.add_argument("run_dirs", nargs="+", help="run directories of one subject and setting")
    p.add_argument("--out", help="selection JSON to write")
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("report", help="group table, summary and HTML report")
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--test", nargs="+", required=True, help="test series, in the order of --metrics")
    p.add_argument("--table", required=True)
    p.add_argument("--summary", required=True)
    p.add_argument("--out", required=True, help="report.html")
    p.add_argument("--covariates", help="TSV of subject covariates (a subjects table or a BIDS participants.tsv): "
                                        "joined onto the table, plotted against the metrics")
    p.add_argument("--scatter-dir", help="folder for the metric-vs-covariate PNGs")
    p.add_argument("--config", help="YAML with a report section (or a full dsrpipe config)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="report overrides, e.g. group_by=[group]")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("figures", help="one run's report figures as PNGs (training, orbits, spectra, PE curve, "
                                       "Lyapunov, cycles, basins)")
    p.add_argument("metrics", help="the run's metrics.json (its other files are read from beside it)")
    p.add_argument("--test", required=True, help="the test series the run was evaluated on")
    p.add_argument("--out", required=True, help="folder to write <figure>.png into (replaced if it exists)")
    p.add_argument("--label", help="setting label in the titles (default: the model name)")
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("warm-up", help="compile the Numba kernels into their on-disk cache once (e.g. after "
                                       "installing on a cluster, before submitting many jobs)")
    p.set_defaults(func=cmd_warm_up)
    return parser


@contextlib.contextmanager
def logged(logfile: str | None):
    """For workflow scripts: log to ``logfile``; record any error there before failing the job."""
    setup_logging(logfile)
    try:
        yield
    except DsrpipeError as exc:
        log.error("%s", exc)
        raise SystemExit(1) from None
    except Exception:
        log.exception("unexpected error")
        raise


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log, args.verbose)
    start = time.perf_counter()
    try:
        args.func(args)
    except DsrpipeError as exc:
        log.error("%s", exc)
        return 2
    log.debug("%s finished in %.1f s", args.command, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
