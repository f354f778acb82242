"""A hyperparameter grid times restarts through the workflow, several restarts per job:
settings as wildcards, restart selection by validation scores, the grid's values in the
group table, and each run of a multi-model job equal to its seed trained alone."""

import json

import pandas as pd
import pytest
import torch
import yaml

from dsrpipe.config import TrainConfig
from dsrpipe.training.run import train_file
from workflow_helpers import make_tiny_dataset, planned_jobs, snakemake

pytestmark = pytest.mark.slow


def test_grid_restarts_and_models_per_job_end_to_end(tmp_path):
    wd = make_tiny_dataset(tmp_path / "wd", subjects=(("01", 28.0),))
    cfg_path = wd / "config" / "config.yaml"
    config = yaml.safe_load(cfg_path.read_text())
    config["grid"] = {"hidden_dim": [4, 8]}
    config["seeds"] = [0, 1, 2]
    config["train"]["models_per_job"] = 2  # seeds 0-1 in one job, seed 2 in another
    cfg_path.write_text(yaml.safe_dump(config))

    dry = snakemake(wd, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    trains = sorted(rule for rule, _ in planned_jobs(dry) if rule.startswith("train"))
    assert trains == ["train_models_1", "train_models_1", "train_models_2", "train_models_2"]  # x 2 settings

    proc = snakemake(wd, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = pd.read_parquet(wd / "results/group/runs.parquet")
    assert len(runs) == 6
    assert sorted(set(runs["model"])) == ["shPLRNN-1", "shPLRNN-2"]
    assert set(runs["model_name"]) == {"shPLRNN"}
    assert dict(zip(runs["model"], runs["setting_hidden_dim"])) == {"shPLRNN-1": 4, "shPLRNN-2": 8}
    assert runs.groupby("model")["selected"].sum().tolist() == [1, 1]
    assert runs["best_setting"].sum() == 1
    assert runs["val_d_stsp"].notna().all()
    for _, group in runs.groupby("model"):  # the selected restart has the smallest validation D_stsp
        assert group.loc[group["selected"], "val_d_stsp"].item() == group["val_d_stsp"].min()

    run = wd / "results/sub-01/model-shPLRNN-2_seed-1"
    info = json.loads((run / "config.json").read_text())
    assert info["backend"] == "numba-many" and info["train"]["hidden_dim"] == 8
    alone = tmp_path / "alone"
    train_file(wd / "results/sub-01/data/sub-01_split-train.parquet", alone,
               TrainConfig(**{**info["train"], "models_per_job": 1}))
    a = torch.load(run / "model.pt", weights_only=True)
    b = torch.load(alone / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
