"""Hyperparameter grids expand into labelled, validated training settings."""

import pytest

from dsrpipe import DsrpipeError
from dsrpipe.settings import expand_grid, settings_table


def test_no_grid_is_one_setting_named_by_the_model():
    settings = expand_grid({"model": "ALRNN", "epochs": 3}, None)
    assert list(settings) == ["ALRNN"] and settings["ALRNN"]["epochs"] == 3


def test_grid_is_the_cartesian_product_with_stable_labels():
    settings = expand_grid({"epochs": 3}, {"hidden_dim": [10, 20, 30], "alpha": [0.1, 0.2]})
    assert list(settings) == [f"shPLRNN-{i}" for i in range(1, 7)]
    assert [(s["hidden_dim"], s["alpha"]) for s in settings.values()] == [
        (10, 0.1), (10, 0.2), (20, 0.1), (20, 0.2), (30, 0.1), (30, 0.2)]
    assert all(s["epochs"] == 3 for s in settings.values())
    table = settings_table(settings)
    assert list(table.columns) == ["setting", "hidden_dim", "alpha"] and len(table) == 6


def test_grid_over_models_labels_each_by_its_model():
    settings = expand_grid({}, {"model": ["PLRNN", "dendPLRNN"]})
    assert list(settings) == ["PLRNN-1", "dendPLRNN-2"]


@pytest.mark.parametrize("grid, message", [
    ({"hiden_dim": [1]}, "unknown train key 'hiden_dim'"),
    ({"seed": [1, 2]}, "restarts come from `seeds`"),
    ({"alpha": []}, "non-empty list"),
    ({"alpha": [0.1, 1.5]}, r"combination \{'alpha': 1.5\}.*alpha must be in \[0, 1\]"),
])
def test_bad_grids_name_the_problem(grid, message):
    with pytest.raises(DsrpipeError, match=message):
        expand_grid({}, grid)
