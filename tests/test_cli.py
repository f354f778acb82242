"""The command line: train and evaluate on a small Lorenz-63 orbit; metrics.json keys."""

import json

import numpy as np
import pytest

from dsrpipe.cli import main
from dsrpipe.systems import simulate_lorenz63

FAST_TRAIN = ["epochs=3", "batches_per_epoch=5", "hidden_dim=8", "seq_len=20"]
FAST_EVAL = ["lyapunov_steps=2000", "fixed_point_inits=20", "n_bins=10"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    x = simulate_lorenz63(3000, seed=2)
    x = (x - x.mean(0)) / x.std(0)
    np.save(d / "train.npy", x[:2400])
    np.save(d / "test.npy", x[2400:])
    return d


def test_train_then_evaluate(data, capsys):
    run = data / "run"
    assert main(["train", str(data / "train.npy"), "--out", str(run), "--set", *FAST_TRAIN]) == 0
    for name in ("model.pt", "config.json", "training_log.parquet"):
        assert (run / name).exists(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["epochs"] == 3 and cfg["model"]["name"] == "shPLRNN"
    out = data / "metrics.json"
    assert main(["evaluate", str(run), "--test", str(data / "test.npy"), "--out", str(out), "--dt", "0.01",
                 "--set", *FAST_EVAL]) == 0
    metrics = json.loads(out.read_text())
    for key in ("d_stsp", "d_h", "pe_20", "lyapunov_spectrum", "max_lyapunov", "kaplan_yorke_dimension",
                "fixed_points"):
        assert key in metrics, key
    assert len(metrics["lyapunov_spectrum"]) == 3
    assert metrics["max_lyapunov"] == max(metrics["lyapunov_spectrum"])
    assert metrics["lyapunov_units"] == "per time unit"
    for fp in metrics["fixed_points"]:
        assert len(fp["state"]) == 3 and isinstance(fp["stable"], bool)
    assert (data / "generated.parquet").exists()
    printed = json.loads(capsys.readouterr().out)
    assert printed["d_stsp"] == metrics["d_stsp"]


def test_lyapunov_units_follow_dt(data):
    """Exponents per time unit are the per-step exponents divided by dt."""
    run = data / "run_dt"
    main(["train", str(data / "train.npy"), "--out", str(run), "--set", *FAST_TRAIN])
    main(["evaluate", str(run), "--test", str(data / "test.npy"), "--out", str(data / "m1.json"),
          "--set", *FAST_EVAL])
    main(["evaluate", str(run), "--test", str(data / "test.npy"), "--out", str(data / "m2.json"),
          "--dt", "0.5", "--set", *FAST_EVAL])
    per_step = json.loads((data / "m1.json").read_text())["lyapunov_spectrum"]
    per_unit = json.loads((data / "m2.json").read_text())["lyapunov_spectrum"]
    np.testing.assert_allclose(np.array(per_step) / 0.5, per_unit, rtol=1e-9)


def test_unknown_config_key_is_a_clear_error(data, capsys):
    code = main(["train", str(data / "train.npy"), "--out", str(data / "bad"), "--set", "epochz=3"])
    assert code == 2
    assert "unknown key(s) in config section 'train': epochz" in capsys.readouterr().err
    assert not (data / "bad").exists()


def test_evaluate_rejects_a_non_run_directory(data, capsys):
    code = main(["evaluate", str(data), "--test", str(data / "test.npy"), "--out", str(data / "x.json")])
    assert code == 2 and "not a dsrpipe run directory" in capsys.readouterr().err
    assert not (data / "x.json").exists()
