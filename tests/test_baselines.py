"""Baselines (training mean, VAR(1)) and their place in evaluation and the group table."""

import numpy as np
import pytest
import torch

from dsrpipe.analysis.baselines import MeanBaseline, VAR1Baseline
from dsrpipe.analysis import prediction_error
from dsrpipe.config import EvaluateConfig
from dsrpipe.evaluation import evaluate_model
from dsrpipe.io import TimeSeries


def test_var1_recovers_a_known_linear_system():
    rng = np.random.default_rng(0)
    A = np.array([[0.9, -0.2], [0.1, 0.8]])
    c = np.array([0.3, -0.1])
    x = np.zeros((5000, 2))
    for t in range(1, len(x)):
        x[t] = A @ x[t - 1] + c + 0.1 * rng.standard_normal(2)
    fit = VAR1Baseline.fit(x)
    np.testing.assert_allclose(fit.A.numpy(), A, atol=0.02)
    np.testing.assert_allclose(fit.c.numpy(), c, atol=0.06)  # the intercept is the noisiest estimate
    z = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    J = fit.jacobian(z)[0].numpy()
    np.testing.assert_allclose(J, fit.A.numpy())


def test_mean_baseline_prediction_error_is_the_variance_around_the_training_mean():
    rng = np.random.default_rng(1)
    train, test = rng.normal(2.0, 1.0, (400, 3)), rng.normal(2.5, 2.0, (300, 3))
    mean = train.mean(0)
    expected = np.mean((test[5:] - mean) ** 2)
    assert prediction_error(MeanBaseline.fit(train), test, n=5) == pytest.approx(expected, rel=1e-12)


def test_evaluation_reports_baselines_and_a_trained_like_model_beats_them():
    """The true linear map, evaluated as a model, beats the mean baseline and ties the fitted VAR(1)."""
    rng = np.random.default_rng(2)
    theta = 0.2
    R = 0.999 * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    x = np.zeros((3000, 2))
    x[0] = [1.0, 0.0]
    for t in range(1, len(x)):
        x[t] = R @ x[t - 1] + 0.01 * rng.standard_normal(2)
    cfg = EvaluateConfig(lyapunov_steps=500, fixed_point_inits=10, n_bins=10)
    train_ts = TimeSeries(x[:2400], ["a", "b"], dt=1.0)
    test_ts = TimeSeries(x[2400:], ["a", "b"], dt=1.0)
    metrics, _, _ = evaluate_model(VAR1Baseline(R, np.zeros(2)), test_ts, cfg, train=train_ts)
    assert set(metrics["baselines"]) == {"mean", "var1"}
    for name in ("mean", "var1"):
        assert {"d_stsp", "d_h", "pe_20"} <= set(metrics["baselines"][name])
    assert metrics["pe_20"] < metrics["baselines"]["mean"]["pe_20"]
    # the VAR(1) fitted on this linear data is nearly the true map
    assert metrics["baselines"]["var1"]["pe_20"] == pytest.approx(metrics["pe_20"], rel=0.2)
