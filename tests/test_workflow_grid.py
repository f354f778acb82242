"""A hyperparameter grid times restarts through the workflow: settings as wildcards, restart
selection by validation scores, the grid's values in the group table."""

import pandas as pd
import pytest
import yaml

from workflow_helpers import make_tiny_dataset, planned_jobs, snakemake

pytestmark = pytest.mark.slow


def test_grid_and_restarts_end_to_end(tmp_path):
    wd = make_tiny_dataset(tmp_path, subjects=(("01", 28.0),))
    cfg_path = wd / "config" / "config.yaml"
    config = yaml.safe_load(cfg_path.read_text())
    config["grid"] = {"hidden_dim": [4, 8]}
    config["seeds"] = [0, 1]
    cfg_path.write_text(yaml.safe_dump(config))

    dry = snakemake(wd, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert sum(rule == "train_model" for rule, _ in planned_jobs(dry)) == 4  # 2 settings x 2 seeds

    proc = snakemake(wd, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = pd.read_parquet(wd / "results/group/runs.parquet")
    assert sorted(set(runs["model"])) == ["shPLRNN-1", "shPLRNN-2"]
    assert set(runs["model_name"]) == {"shPLRNN"}
    assert dict(zip(runs["model"], runs["setting_hidden_dim"])) == {"shPLRNN-1": 4, "shPLRNN-2": 8}
    assert runs.groupby("model")["selected"].sum().tolist() == [1, 1]
    assert runs["best_setting"].sum() == 1
    assert runs["val_d_stsp"].notna().all()
    chosen = runs[runs["selected"]]
    for _, group in runs.groupby("model"):  # the selected restart has the smallest validation D_stsp
        assert group.loc[group["selected"], "val_d_stsp"].item() == group["val_d_stsp"].min()
    assert len(chosen) == 2
    assert (wd / "results/sub-01/model-shPLRNN-2_seed-1/config.json").exists()


def test_restarts_trained_together_in_one_job(tmp_path):
    """models_per_job = 3 with 4 seeds: two jobs (seeds 0-2 and 3), each run equal to training
    its seed alone (same fused kernel, same seeded batches)."""
    import json

    import torch

    from dsrpipe.config import TrainConfig
    from dsrpipe.training.run import train_file

    wd = make_tiny_dataset(tmp_path / "wd", subjects=(("01", 28.0),))
    cfg_path = wd / "config" / "config.yaml"
    config = yaml.safe_load(cfg_path.read_text())
    config["seeds"] = [0, 1, 2, 3]
    config["train"]["models_per_job"] = 3
    cfg_path.write_text(yaml.safe_dump(config))
    proc = snakemake(wd, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = [rule for rule, _ in planned_jobs(proc)]
    assert sorted(j for j in jobs if j.startswith("train")) == ["train_models_1", "train_models_2"]
    assert len(pd.read_parquet(wd / "results/group/runs.parquet")) == 4
    run = wd / "results/sub-01/model-shPLRNN_seed-1"
    assert json.loads((run / "config.json").read_text())["backend"] == "numba-many"
    alone = tmp_path / "alone"
    train_cfg = TrainConfig(**{**config["train"], "seed": 1, "models_per_job": 1})
    train_file(wd / "results/sub-01/data/sub-01_split-train.parquet", alone, train_cfg)
    a = torch.load(run / "model.pt", weights_only=True)
    b = torch.load(alone / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
