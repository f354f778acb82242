"""Typed, per-stage configuration.

Each stage reads only its own section of ``config/config.yaml``. The defaults
live here, once (the modality sections ``eeg``, ``fmri``, ``spikes``, ``behaviour`` and the
dataset section ``bids`` in their modules: :class:`dsrpipe.preprocessing.eeg.EEGConfig`, ...); ``workflow/schemas/config.schema.yaml`` documents the same
keys and a test checks that schema, YAML and these dataclasses agree.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from dsrpipe import DsrpipeError

T = TypeVar("T")


@dataclass(frozen=True)
class PrepareConfig:
    """How a raw table becomes standardised train and test segments."""

    test_fraction: float = 0.2
    standardise: bool = True
    min_samples: int = 200
    dt: float | None = None
    smooth_sigma: float = 0.0

    def __post_init__(self) -> None:
        _check(0 < self.test_fraction < 1, "prepare.test_fraction must be in (0, 1)")
        _check(self.smooth_sigma >= 0, "prepare.smooth_sigma must be >= 0 (samples; 0: off)")
        _check(self.min_samples >= 10, "prepare.min_samples must be >= 10")
        _check(self.dt is None or self.dt > 0, "prepare.dt must be positive")


@dataclass(frozen=True)
class TrainConfig:
    """Model, readout, teacher-forcing and optimiser settings of one training run.

    ``method`` gtf trains on the continuous and count channels with (generalized or
    sparse) teacher forcing; mtf trains a multimodal PLRNN (encoder, latent model,
    one decoder per channel type; :mod:`dsrpipe.training.mtf_run`) with the
    ``mtf_*`` keys on top of the shared ones.
    """

    method: str = "gtf"
    model: str = "shPLRNN"
    latent_dim: int | None = None
    hidden_dim: int = 50
    n_bases: int = 20
    n_relu: int = 2
    readout: str = "identity"
    forcing: str = "gtf"
    alpha: float = 0.125
    alpha_mode: str = "fixed"
    alpha_every: int = 5
    stf_tau: int | None = None
    epochs: int = 2000
    batches_per_epoch: int = 50
    batch_size: int = 16
    seq_len: int = 75
    lr: float = 1e-3
    lr_end: float = 1e-5
    lr_schedule: str = "exponential"
    grad_clip_norm: float | None = 10.0
    teacher_noise: float = 0.0
    l2: float = 0.0
    mar_fraction: float = 0.0
    mar_lambda: float = 1.0
    validation_fraction: float = 0.1
    on_divergence: str = "lower_lr"
    max_retries: int = 2
    seed: int = 0
    threads: int = 1
    models_per_job: int = 1
    backend: str = "auto"
    device: str = "cpu"
    log_every: int = 25
    checkpoint_every: int = 100
    mtf_forcing_dim: int | None = None
    mtf_encoder_kernel: int = 1
    mtf_w_rec: float = 1.0
    mtf_w_pred: float = 1.0
    mtf_w_latent: float = 1.0
    mtf_hrf: bool = True

    def __post_init__(self) -> None:
        from dsrpipe.models.registry import MODELS

        _check(self.model in MODELS, f"train.model must be one of {', '.join(sorted(MODELS))}, got {self.model!r}")
        _check(0 <= self.alpha <= 1, "train.alpha must be in [0, 1]")
        for key in ("hidden_dim", "n_bases", "epochs", "batches_per_epoch", "batch_size", "seq_len", "threads",
                    "log_every", "alpha_every"):
            _check(getattr(self, key) >= 1, f"train.{key} must be >= 1")
        _check(self.n_relu >= 0, "train.n_relu must be >= 0")
        _check(self.latent_dim is None or self.latent_dim >= 1, "train.latent_dim must be >= 1")
        _check(self.lr > 0 and self.lr_end > 0, "train.lr and train.lr_end must be positive")
        _check(self.teacher_noise >= 0, "train.teacher_noise must be >= 0")
        _check(self.checkpoint_every >= 0, "train.checkpoint_every must be >= 0")
        _check(self.device in ("cpu", "cuda"), "train.device must be cpu or cuda")
        _check(self.backend in ("auto", "numba", "torch"), "train.backend must be auto, numba or torch")
        _check(self.readout in ("identity", "affine"), "train.readout must be identity or affine")
        _check(self.forcing in ("gtf", "stf"), "train.forcing must be gtf or stf")
        _check(self.alpha_mode in ("fixed", "adaptive"), "train.alpha_mode must be fixed or adaptive")
        _check(self.stf_tau is None or self.stf_tau >= 1, "train.stf_tau must be >= 1 (or null: estimate it)")
        _check(self.lr_schedule in ("exponential", "cosine", "constant"),
               "train.lr_schedule must be exponential, cosine or constant")
        _check(self.l2 >= 0 and self.mar_lambda >= 0, "train.l2 and train.mar_lambda must be >= 0")
        _check(0 <= self.mar_fraction <= 1, "train.mar_fraction must be in [0, 1]")
        _check(0 <= self.validation_fraction < 0.5, "train.validation_fraction must be in [0, 0.5)")
        _check(self.on_divergence in ("lower_lr", "reseed", "fail"),
               "train.on_divergence must be lower_lr, reseed or fail")
        _check(self.max_retries >= 0, "train.max_retries must be >= 0")
        _check(self.models_per_job >= 1, "train.models_per_job must be >= 1")
        _check(self.method in ("gtf", "mtf"), f"train.method must be gtf or mtf, got {self.method!r}")
        _check(self.mtf_forcing_dim is None or self.mtf_forcing_dim >= 1, "train.mtf_forcing_dim must be >= 1")
        _check(self.mtf_forcing_dim is None or self.latent_dim is None or self.mtf_forcing_dim <= self.latent_dim,
               "train.mtf_forcing_dim must be <= train.latent_dim")
        _check(self.mtf_encoder_kernel >= 1 and self.mtf_encoder_kernel % 2 == 1,
               "train.mtf_encoder_kernel must be an odd number >= 1")
        _check(min(self.mtf_w_rec, self.mtf_w_pred, self.mtf_w_latent) >= 0,
               "train.mtf_w_rec, train.mtf_w_pred and train.mtf_w_latent must be >= 0")
        if self.method == "mtf":
            unsupported = {"alpha_mode": (self.alpha_mode, "fixed"), "lr_schedule": (self.lr_schedule, "exponential"),
                           "l2": (self.l2, 0.0), "mar_fraction": (self.mar_fraction, 0.0), "device": (self.device, "cpu")}
            for key, (value, supported) in unsupported.items():
                _check(value == supported, f"train.{key} = {value!r} is not available with train.method mtf "
                                           f"(MTF trains with {key} {supported!r}); change one of the two")
            _check(self.alpha > 0, "train.alpha must be > 0 with train.method mtf")
            _check(self.forcing == "gtf" or self.stf_tau is not None,
                   "train.method mtf with train.forcing stf needs train.stf_tau (the forcing interval) set")


@dataclass(frozen=True)
class EvaluateConfig:
    """Validation metrics and invariants of a trained model."""

    d_stsp_method: str = "binning"
    n_bins: int = 30
    gmm_scaling: float = 1.0
    psd_sigma: float = 20.0
    pe_steps: int = 20
    lyapunov_steps: int = 100_000
    lyapunov_transient: int = 1_000
    fixed_point_method: str = "scyfi"
    fixed_point_inits: int = 300
    max_cycle_order: int = 2
    virtual_fixed_points: bool = False
    pe_curve_steps: int = 20
    lyapunov_trace: int = 100
    classify_rel_tol: float = 0.01
    basin_grid: int = 20
    basin_inits: str = "grid"
    basin_transient: int = 1000
    basin_record: int = 1000
    basin_dist_tol: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.d_stsp_method in ("binning", "gmm"), "evaluate.d_stsp_method must be 'binning' or 'gmm'")
        _check(self.n_bins >= 2, "evaluate.n_bins must be >= 2")
        _check(self.gmm_scaling > 0, "evaluate.gmm_scaling must be positive")
        _check(self.pe_steps >= 1, "evaluate.pe_steps must be >= 1")
        _check(self.lyapunov_steps >= 100, "evaluate.lyapunov_steps must be >= 100")
        _check(self.fixed_point_method in ("scyfi", "exhaustive"),
               "evaluate.fixed_point_method must be 'scyfi' or 'exhaustive'")
        _check(self.max_cycle_order >= 1, "evaluate.max_cycle_order must be >= 1")
        _check(self.pe_curve_steps >= 1, "evaluate.pe_curve_steps must be >= 1")
        _check(self.lyapunov_trace >= 1, "evaluate.lyapunov_trace must be >= 1")
        _check(self.classify_rel_tol >= 0, "evaluate.classify_rel_tol must be >= 0")
        _check(self.basin_grid == 0 or self.basin_grid >= 2, "evaluate.basin_grid must be 0 (off) or >= 2")
        _check(self.basin_inits in ("grid", "data"), "evaluate.basin_inits must be 'grid' or 'data'")
        _check(self.basin_transient >= 0 and self.basin_record >= 2,
               "evaluate.basin_transient must be >= 0 and evaluate.basin_record >= 2")
        _check(self.basin_dist_tol > 0, "evaluate.basin_dist_tol must be positive")


@dataclass(frozen=True)
class ReportConfig:
    """Group report: grouped summaries, a group comparison and metric-vs-covariate scatter plots
    (``scatter_covariates``: None draws every numeric covariate, an empty tuple none)."""

    group_by: tuple[str, ...] = ()
    compare_column: str | None = None
    compare_groups: tuple[str, ...] = ()
    compare_metric: str = "d_stsp"
    permutations: int = 10_000
    scatter_metrics: tuple[str, ...] = ("max_lyapunov", "d_stsp")
    scatter_covariates: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "group_by", tuple(self.group_by))
        object.__setattr__(self, "scatter_metrics", tuple(self.scatter_metrics))
        if self.scatter_covariates is not None:
            object.__setattr__(self, "scatter_covariates", tuple(self.scatter_covariates))
        object.__setattr__(self, "compare_groups", tuple(str(g) for g in self.compare_groups))
        _check(self.compare_column is None or len(self.compare_groups) == 2,
               "report.compare_groups must name exactly two groups when report.compare_column is set")
        _check(self.permutations >= 100, "report.permutations must be >= 100")


@dataclass(frozen=True)
class DemoSubject:
    id: str
    rho: float


@dataclass(frozen=True)
class DemoConfig:
    """The built-in demo: Lorenz-63 orbits with subject-specific rho."""

    subjects: tuple[DemoSubject, ...] = (
        DemoSubject("01", 28.0),
        DemoSubject("02", 35.0),
        DemoSubject("03", 45.0),
        DemoSubject("04", 160.0),
    )
    n_samples: int = 50_000
    dt: float = 0.01
    noise: float = 0.05
    seed: int = 1

    def __post_init__(self) -> None:
        _check(len(self.subjects) >= 1, "demo.subjects must not be empty")
        _check(self.n_samples >= 500, "demo.n_samples must be >= 500")
        _check(self.dt > 0, "demo.dt must be positive")
        _check(self.noise >= 0, "demo.noise must be >= 0")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise DsrpipeError(message)


def from_mapping(cls: type[T], mapping: Mapping[str, Any] | None, section: str) -> T:
    """Build the dataclass ``cls`` from ``mapping``, rejecting unknown keys."""
    mapping = dict(mapping or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - names)
    if unknown:
        raise DsrpipeError(
            f"unknown key(s) in config section '{section}': {', '.join(unknown)}; "
            f"valid keys are: {', '.join(sorted(names))}"
        )
    if cls is DemoConfig and "subjects" in mapping:
        mapping["subjects"] = tuple(
            DemoSubject(id=str(s["id"]), rho=float(s["rho"])) for s in mapping["subjects"]
        )
    try:
        return cls(**mapping)
    except TypeError as exc:
        raise DsrpipeError(f"config section '{section}': {_wrong_type(cls, mapping, section) or exc}") from exc


def _wrong_type(cls: type, mapping: Mapping[str, Any], section: str) -> str | None:
    """Name the first key whose value has the wrong type (for a TypeError from ``cls``), or None."""
    import typing

    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: keep the original message
        return None
    checks = {type(None): lambda v: v is None, bool: lambda v: isinstance(v, bool),
              int: lambda v: isinstance(v, int) and not isinstance(v, bool),
              float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              str: lambda v: isinstance(v, str)}
    for key, value in mapping.items():
        allowed = typing.get_args(hints[key]) or (hints[key],)  # int | None -> (int, NoneType)
        if all(t in checks for t in allowed) and not any(checks[t](value) for t in allowed):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            return (f"{section}.{key} must be {names}, got {value!r}; "
                    f"fix {key} in the config file or --set {key}=<{names}>")
    return None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass."""
    return dataclasses.asdict(cfg)


_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
# top-level keys of a full config (workflow/schemas/config.schema.yaml)
TOP_LEVEL_KEYS = ("subjects", "bids", "results_dir", "seeds", "grid", "demo", "eeg", "fmri", "spikes", "behaviour", "prepare",
                  "train", "evaluate", "report")


#: columns of a subjects table with a meaning; every other column is a subject covariate
SUBJECT_COLUMNS = ("subject", "path", "session", "modality", "dt", "atlas", "masks", "confounds")


def subject_covariate_columns(columns, source: str) -> list[str]:
    """The covariate columns of a subjects table (every column that is not one of
    :data:`SUBJECT_COLUMNS`, e.g. ``age`` or ``group``; they are joined onto the group table).

    A column that looks like a misspelt known column (``modalty``, ``Path``) is an error
    naming ``source`` rather than a silent covariate.
    """
    import difflib

    extra = [str(c) for c in columns if str(c) not in SUBJECT_COLUMNS]
    for column in extra:
        close = difflib.get_close_matches(column.lower(), SUBJECT_COLUMNS, n=1, cutoff=0.75)
        if close:
            raise DsrpipeError(
                f"{source}: column '{column}' is not a subjects-table column; did you mean '{close[0]}'? "
                f"(other columns are kept as subject covariates: rename it if it is one)"
            )
    return extra


def read_covariates(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Subject covariates from a TSV: a subjects table (column ``subject``) or a BIDS
    ``participants.tsv`` (``participant_id``, ``sub-`` dropped); every column that is not a
    subjects-table column (:data:`SUBJECT_COLUMNS`) is a covariate. subject -> {column: value}."""
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_csv(path, sep="\t", dtype={"subject": str, "participant_id": str})
    except FileNotFoundError:
        raise DsrpipeError(f"{path}: covariates table not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DsrpipeError(f"{path}: cannot read the covariates table ({exc})") from exc
    if "subject" in table.columns:
        subjects = table["subject"]
    elif "participant_id" in table.columns:
        subjects = table["participant_id"].str.removeprefix("sub-")
        table = table.drop(columns="participant_id")
    else:
        raise DsrpipeError(f"{path}: a covariates table needs a 'subject' or 'participant_id' column")
    columns = subject_covariate_columns(table.columns, str(path))
    table = table.astype(object).where(table.notna(), None)
    return {str(s): {c: row[c] for c in columns} for s, (_, row) in zip(subjects, table.iterrows())}


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value with YAML rules (numbers, booleans, null, lists)."""
    if _SCIENTIFIC.fullmatch(text.strip()):
        return float(text)  # YAML 1.1 reads 1e-4 (no dot) as a string
    return yaml.safe_load(text)


def load_section(
    cls: type[T],
    section: str,
    config_file: str | os.PathLike | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> T:
    """Read one stage's config from a YAML file plus ``key=value`` overrides.

    The file may be a full dsrpipe config (the section is taken from it) or
    hold just the section's keys. Overrides accept ``key=value`` or
    ``section.key=value``.
    """
    values: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise DsrpipeError(f"{path}: config file not found") from None
        except yaml.YAMLError as exc:
            raise DsrpipeError(f"{path}: invalid YAML ({' '.join(str(exc).split())}); fix the syntax at the "
                               "line named") from exc
        if not isinstance(loaded, dict):
            raise DsrpipeError(f"{path}: expected a mapping at the top level")
        fields = {f.name for f in dataclasses.fields(cls)}
        full = any(key in TOP_LEVEL_KEYS and key not in fields for key in loaded)
        stray = sorted(set(loaded) - set(TOP_LEVEL_KEYS)) if full else []
        if stray:
            raise DsrpipeError(f"{path}: unknown top-level key(s) {', '.join(stray)}; "
                               f"valid keys are: {', '.join(TOP_LEVEL_KEYS)}")
        values = (loaded.get(section) or {}) if full else loaded  # a full config may omit the section
        if not isinstance(values, dict):
            raise DsrpipeError(f"{path}: section '{section}' must be a mapping")
        values = dict(values)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise DsrpipeError(f"--set expects key=value, got {item!r}")
        key = key.strip()
        if key.startswith(section + "."):
            key = key[len(section) + 1:]
        values[key] = parse_value(raw)
    return from_mapping(cls, values, section)
