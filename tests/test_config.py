"""Schema, config.yaml and the typed configs agree; every option is documented; loading and overrides."""

import copy
import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from dsrpipe import DsrpipeError
from dsrpipe.preprocessing.eeg import EEGConfig
from dsrpipe.preprocessing.fmri import FMRIConfig
from dsrpipe.preprocessing.spikes import SpikesConfig
from dsrpipe.preprocessing.behaviour import BehaviourConfig
from dsrpipe.preprocessing.bids import BIDSConfig
from dsrpipe.config import (
    SUBJECT_COLUMNS,
    TOP_LEVEL_KEYS,
    DemoConfig,
    EvaluateConfig,
    ReportConfig,
    PrepareConfig,
    TrainConfig,
    from_mapping,
    load_section,
    parse_value,
    subject_covariate_columns,
    to_dict,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILE = ROOT / "config" / "config.yaml"
SCHEMA_FILE = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SUBJECTS_SCHEMA_FILE = ROOT / "workflow" / "schemas" / "subjects.schema.yaml"

SECTIONS = {"demo": DemoConfig, "eeg": EEGConfig, "fmri": FMRIConfig, "spikes": SpikesConfig,
            "behaviour": BehaviourConfig, "bids": BIDSConfig,
            "prepare": PrepareConfig, "train": TrainConfig, "evaluate": EvaluateConfig, "report": ReportConfig}


@pytest.fixture(scope="module")
def schema():
    return yaml.safe_load(SCHEMA_FILE.read_text())


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load(CONFIG_FILE.read_text())


def _field_defaults(cls):
    return {f.name: f.default for f in dataclasses.fields(cls)}


def _same(a, b):
    """Equal and of the same kind (a bool is not an int here; a tuple default is a YAML list)."""
    a, b = (list(v) if isinstance(v, tuple) else v for v in (a, b))
    return a == b and isinstance(a, bool) == isinstance(b, bool)


# ---------------------------------------------------------------- (a) one set of defaults


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_schema_defaults_equal_dataclass_and_yaml(schema, config, section):
    props = schema["properties"][section]["properties"]
    defaults = _field_defaults(SECTIONS[section])
    for name, prop in props.items():
        if section == "demo" and name == "subjects":
            as_yaml = [{"id": s.id, "rho": s.rho} for s in defaults["subjects"]]
            assert as_yaml == config["demo"]["subjects"]
            assert "default" not in prop or prop["default"] == as_yaml
            continue
        assert "default" in prop, f"{section}.{name} has no default in the schema"
        assert _same(prop["default"], defaults[name]), f"{section}.{name}: schema vs dataclass"
        assert _same(prop["default"], config[section][name]), f"{section}.{name}: schema vs config.yaml"


def test_top_level_defaults_equal_yaml(schema, config):
    for name, prop in schema["properties"].items():
        if name not in SECTIONS:
            assert _same(prop["default"], config[name]), name


def test_config_yaml_builds_default_configs(config):
    for section, cls in SECTIONS.items():
        assert from_mapping(cls, config[section], section) == cls()


# ---------------------------------------------------------------- (b) documented


def _undocumented(node, where):
    missing = []
    for name, prop in node.get("properties", {}).items():
        if not str(prop.get("description", "")).strip():
            missing.append(f"{where}.{name}")
        missing += _undocumented(prop, f"{where}.{name}")
    if isinstance(node.get("items"), dict):
        missing += _undocumented(node["items"], f"{where}[]")
    return missing


@pytest.mark.parametrize("path", [SCHEMA_FILE, SUBJECTS_SCHEMA_FILE], ids=lambda p: p.name)
def test_every_schema_property_has_a_description(path):
    assert _undocumented(yaml.safe_load(path.read_text()), "") == []


def test_description_check_can_fail():
    node = {"properties": {"a": {"description": "ok", "items": {"properties": {"b": {"type": "string"}}}},
                           "c": {"description": " "}}}
    assert _undocumented(node, "") == [".a[].b", ".c"]


def test_schemas_are_strict(schema):
    assert schema["additionalProperties"] is False
    for section in SECTIONS:
        assert schema["properties"][section]["additionalProperties"] is False


def test_subjects_table_columns_match_the_schema():
    # the schema's named columns are exactly the known ones; other columns pass as covariates
    subjects_schema = yaml.safe_load(SUBJECTS_SCHEMA_FILE.read_text())
    assert set(subjects_schema["properties"]) == set(SUBJECT_COLUMNS)
    assert subjects_schema["additionalProperties"] is True


def test_subject_covariate_columns_keeps_extras_and_rejects_misspellings():
    assert subject_covariate_columns(["subject", "path", "modality", "age", "group"], "s.tsv") == ["age", "group"]
    assert subject_covariate_columns(["subject", "path"], "s.tsv") == []
    for typo, meant in (("modalty", "modality"), ("Path", "path"), ("confound", "confounds")):
        with pytest.raises(DsrpipeError, match=f"s.tsv: column '{typo}'.*did you mean '{meant}'"):
            subject_covariate_columns(["subject", "path", typo], "s.tsv")


# ---------------------------------------------------------------- (c) same keys everywhere


def test_top_level_keys(schema, config):
    assert set(config) == set(schema["properties"]) == set(TOP_LEVEL_KEYS)


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_section_keys_agree(schema, config, section):
    fields = {f.name for f in dataclasses.fields(SECTIONS[section])}
    assert set(config[section]) == set(schema["properties"][section]["properties"]) == fields


# ---------------------------------------------------------------- (d) commented config.yaml

KEY_LINE = re.compile(r"^(\s*)[a-z_][a-z0-9_]*:")


def _uncommented_keys(lines):
    """Top-level and section-level keys without a comment on the line directly above."""
    missing = []
    for i, line in enumerate(lines):
        m = KEY_LINE.match(line)
        if m and len(m.group(1)) <= 2 and not (i > 0 and lines[i - 1].lstrip().startswith("#")):
            missing.append(line.strip())
    return missing


def test_every_config_key_is_commented():
    lines = CONFIG_FILE.read_text().splitlines()
    assert _uncommented_keys(lines) == []
    n_keys = sum(1 for line in lines if KEY_LINE.match(line) and len(KEY_LINE.match(line).group(1)) <= 2)
    # subjects, results_dir, seeds, grid, then every section with its keys
    assert n_keys == 4 + sum(1 + len(dataclasses.fields(cls)) for cls in SECTIONS.values())


def test_comment_check_can_fail():
    lines = ["# documented", "a: 1", "", "b: 2", "sec:", "  # fine", "  c: 3", "  d: 4", "  - {id: x}"]
    assert _uncommented_keys(lines) == ["b: 2", "sec:", "d: 4"]


# ---------------------------------------------------------------- (e) loading


def test_from_mapping_rejects_unknown_keys():
    with pytest.raises(DsrpipeError) as err:
        from_mapping(TrainConfig, {"epochs": 2, "epoch": 3, "lerning_rate": 1}, "train")
    msg = str(err.value)
    assert "epoch," in msg and "lerning_rate" in msg
    for f in dataclasses.fields(TrainConfig):
        assert f.name in msg.split("valid keys are:")[1]


def test_from_mapping_demo_subjects():
    cfg = from_mapping(DemoConfig, {"subjects": [{"id": 7, "rho": 30}]}, "demo")
    assert [(s.id, s.rho) for s in cfg.subjects] == [("7", 30.0)]
    assert list(to_dict(cfg)["subjects"]) == [{"id": "7", "rho": 30.0}]


@pytest.mark.parametrize(
    "text, value",
    [("3", 3), ("0.5", 0.5), ("null", None), ("true", True), ("false", False), ("gmm", "gmm"),
     ("1e-4", 1e-4), ("-2.5E3", -2500.0), ("1.0e-05", 1e-5), ("[1, 2]", [1, 2])],
)
def test_parse_value_yaml_types(text, value):
    got = parse_value(text)
    assert _same(got, value) and type(got) is type(value)


def test_load_section_overrides():
    cfg = load_section(TrainConfig, "train", None, ["epochs=3", "train.alpha=0.5", "grad_clip_norm=null",
                                                    "lr=1e-4", "backend=torch"])
    assert (cfg.epochs, cfg.alpha, cfg.grad_clip_norm, cfg.lr, cfg.backend) == (3, 0.5, None, 1e-4, "torch")
    assert isinstance(cfg.epochs, int)
    assert cfg.hidden_dim == TrainConfig().hidden_dim


def test_load_section_bad_override():
    with pytest.raises(DsrpipeError, match="key=value"):
        load_section(TrainConfig, "train", None, ["epochs"])
    with pytest.raises(DsrpipeError, match="unknown key"):
        load_section(TrainConfig, "train", None, ["prepare.dt=0.1"])


def test_load_section_full_config_file(tmp_path, config):
    full = copy.deepcopy(config)
    full["train"]["epochs"] = 7
    full["prepare"]["test_fraction"] = 0.3
    path = tmp_path / "full.yaml"
    path.write_text(yaml.safe_dump(full))
    assert load_section(TrainConfig, "train", path).epochs == 7
    assert load_section(PrepareConfig, "prepare", path).test_fraction == 0.3
    assert load_section(TrainConfig, "train", path, ["epochs=9"]).epochs == 9
    assert load_section(EvaluateConfig, "evaluate", path) == EvaluateConfig()
    assert load_section(DemoConfig, "demo", path) == DemoConfig()


def test_load_section_full_config_without_or_with_empty_section(tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("results_dir: out\ntrain:\n  epochs: 4\nprepare:\n")
    assert load_section(PrepareConfig, "prepare", path) == PrepareConfig()
    assert load_section(EvaluateConfig, "evaluate", path) == EvaluateConfig()
    assert load_section(TrainConfig, "train", path).epochs == 4
    path.write_text("seeds: [0]\ndemo:\n  n_samples: 1000\n")
    assert load_section(DemoConfig, "demo", path).n_samples == 1000


def test_load_section_section_only_file(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("epochs: 5\nalpha: 0.2\n")
    cfg = load_section(TrainConfig, "train", path)
    assert (cfg.epochs, cfg.alpha) == (5, 0.2)
    path = tmp_path / "demo.yaml"
    path.write_text('subjects:\n  - {id: "09", rho: 99.0}\nn_samples: 600\n')
    cfg = load_section(DemoConfig, "demo", path)
    assert [(s.id, s.rho) for s in cfg.subjects] == [("09", 99.0)] and cfg.n_samples == 600


def test_load_section_file_errors(tmp_path):
    with pytest.raises(DsrpipeError, match="not found"):
        load_section(TrainConfig, "train", tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1\n")
    with pytest.raises(DsrpipeError, match="invalid YAML"):
        load_section(TrainConfig, "train", bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(DsrpipeError, match="mapping"):
        load_section(TrainConfig, "train", bad)
    bad.write_text("train: 3\n")
    with pytest.raises(DsrpipeError, match="mapping"):
        load_section(TrainConfig, "train", bad)
    bad.write_text("seeds: [0]\nepochs: 3\n")  # section keys at the top of a full config
    with pytest.raises(DsrpipeError, match="unknown top-level key.*epochs"):
        load_section(TrainConfig, "train", bad)


@pytest.mark.parametrize(
    "cls, section, override",
    [(TrainConfig, "train", "alpha=2"), (TrainConfig, "train", "epochs=0"), (TrainConfig, "train", "backend=jax"),
     (TrainConfig, "train", "lr=-1"), (TrainConfig, "train", "latent_dim=0"),
     (PrepareConfig, "prepare", "test_fraction=1.5"), (PrepareConfig, "prepare", "test_fraction=0"),
     (PrepareConfig, "prepare", "min_samples=5"), (PrepareConfig, "prepare", "dt=0"),
     (EvaluateConfig, "evaluate", "d_stsp_method=kde"), (EvaluateConfig, "evaluate", "n_bins=1"),
     (EvaluateConfig, "evaluate", "fixed_point_method=newton"), (EvaluateConfig, "evaluate", "lyapunov_steps=10"),
     (EEGConfig, "eeg", "h_freq=0.1"), (EEGConfig, "eeg", "pca_components=0"),
     (FMRIConfig, "fmri", "tr=0"), (FMRIConfig, "fmri", "detrend=quadratic"),
     (SpikesConfig, "spikes", "bin_width=0"), (SpikesConfig, "spikes", "segments=[-1]"),
     (DemoConfig, "demo", "subjects=[]"), (DemoConfig, "demo", "n_samples=100"), (DemoConfig, "demo", "noise=-1")],
)
def test_invalid_values_raise(cls, section, override):
    key = override.split("=")[0]
    with pytest.raises(DsrpipeError, match=key):
        load_section(cls, section, None, [override])


def test_wrong_type_raises_dsrpipe_error():
    # the dataclasses do not check types; the comparison in __post_init__ fails and from_mapping reports it
    with pytest.raises(DsrpipeError, match="train"):
        load_section(TrainConfig, "train", None, ["alpha=abc"])


# ---------------------------------------------------------------- (f) Snakemake validation


def test_snakemake_validate_accepts_config_yaml(config):
    validate(copy.deepcopy(config), str(SCHEMA_FILE))


def test_snakemake_validate_fills_defaults():
    cfg = {"subjects": None}
    validate(cfg, str(SCHEMA_FILE))
    assert cfg["results_dir"] == "results" and cfg["seeds"] == [0]
    assert cfg["train"]["epochs"] == TrainConfig().epochs


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.update(colour="blue"),
        lambda c: c["train"].update(learning_rate=0.1),
        lambda c: c["demo"]["subjects"][0].update(sigma=10),
        lambda c: c["train"].update(epochs="many"),
        lambda c: c["prepare"].update(standardise="yes"),
        lambda c: c.update(seeds=0),
        lambda c: c["evaluate"].update(d_stsp_method="kde"),
        lambda c: c["prepare"].update(test_fraction=1.5),
        lambda c: c["eeg"].update(highpass=1.0),
        lambda c: c["fmri"].update(detrend="quadratic"),
        lambda c: c["spikes"].update(bin_width=0),
    ],
    ids=["unknown-top", "unknown-train", "unknown-demo-subject", "type-epochs", "type-standardise",
         "type-seeds", "enum", "range", "unknown-eeg", "enum-fmri", "range-spikes"],
)
def test_snakemake_validate_rejects(config, change):
    bad = copy.deepcopy(config)
    change(bad)
    with pytest.raises(Exception, match="ValidationError|validat"):
        validate(bad, str(SCHEMA_FILE))
