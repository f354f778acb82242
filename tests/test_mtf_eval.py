"""MTF evaluation pieces against hand-written loops: PE(n) of a Gaussian and of an HRF view,
the masked encoder, the forced test trajectory, and constant training features."""

import numpy as np
import pytest
import torch

from dsrpipe.evaluation_mtf import _encode, _forced, _stack, prediction_error_curve_mtf
from dsrpipe.models import build_model
from dsrpipe.training.mtf_model import Layout, MultimodalPLRNN, View, as_view

pytestmark = pytest.mark.usefixtures("one_thread")

T, K, M = 40, 2, 4


def model_and_data(kind="gaussian", seed=0):
    rng = np.random.default_rng(seed)
    options = {"tr": 2.0} if kind == "fmri" else {"readout": "affine"}
    views = {"x": as_view(View(rng.normal(size=(T, 3)), kind, options)),
             "lab": as_view(View(rng.integers(0, 3, size=T).astype(float), "categorical"))}
    inputs = rng.normal(size=(T, 1))
    layout, stacked = Layout.stack(views, inputs)
    torch.manual_seed(seed)
    model = MultimodalPLRNN(build_model("shPLRNN", M=M, L=6, K=1), views, layout, K).double()
    model.initialise(torch.tensor(stacked))
    with torch.no_grad():  # away from the data-driven start, so every term matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, dtype=p.dtype))
    return model, views, inputs


@pytest.mark.parametrize("kind", ["gaussian", "fmri"])
def test_prediction_error_curve_by_hand(kind):
    model, views, inputs = model_and_data(kind)
    x = _stack(model, views, inputs)
    target = views["x"].data
    n_max = 4
    curve = prediction_error_curve_mtf(model, {"name": "x", "kind": kind}, target, x, inputs, n_max)
    enc = model.encode(x).detach()
    s = torch.tensor(inputs)
    decoder = model.decoders["x"]
    expected = np.zeros(n_max)
    with torch.no_grad():
        for n in range(1, n_max + 1):
            errors = []
            for t in range(T - n):
                z = torch.cat([enc[t], torch.zeros(M - K, dtype=torch.float64)])
                path = []
                for k in range(1, n + 1):
                    z = model.latent.step(z, s[t + k])
                    path.append(z[:K])
                # an HRF view sees the encoder states up to t, then the predictions
                seq = torch.cat([enc[: t + 1], torch.stack(path)])
                pred = decoder.mean(seq)[-1] if kind == "fmri" else decoder.mean(path[-1])
                errors.append(((pred - torch.tensor(target[t + n])) ** 2).numpy())
            expected[n - 1] = np.mean(errors)
    np.testing.assert_allclose(curve, expected, rtol=1e-10)


def test_masked_encoder_ignores_the_view_and_forcing():
    model, views, inputs = model_and_data()
    x = _stack(model, views, inputs)
    other = {**views, "lab": View((views["lab"].data + 1) % 3, "categorical", views["lab"].options)}
    x2 = _stack(model, other, inputs)
    with torch.no_grad():
        torch.testing.assert_close(_encode(model, x, "lab"), _encode(model, x2, "lab"))
        assert not torch.allclose(_encode(model, x), _encode(model, x2))
        # alpha 1 every step: the forced units are the encoder states; the others follow the model
        z = _forced(model, x, 1.0, 1, None)
        enc = model.encode(x)
        torch.testing.assert_close(z[:, :K], enc)
        step = model.latent.step(z[2], torch.tensor(inputs[3]))
        torch.testing.assert_close(z[3, K:], step[K:])


def test_constant_training_feature_keeps_unit_scale():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=T).astype(float)  # class 2 ("none") never occurs in training
    views = {"x": as_view(View(rng.normal(size=(T, 2)), "gaussian")),
             "lab": as_view(View(labels, "categorical", {"n_categories": 3}))}
    layout, stacked = Layout.stack(views, None)
    model = MultimodalPLRNN(build_model("shPLRNN", M=3, L=4), views, layout, 2).double()
    model.initialise(torch.tensor(stacked))
    assert float(model.feature_sd[-1]) == 1.0  # the never-seen class column
    x = torch.tensor(stacked)
    x[0, layout.columns["lab"]] = 2.0
    assert float(model.features(x)[0].abs().max()) < 10


def test_cross_modal_scores_of_constant_decoders():
    from dsrpipe.evaluation_mtf import cross_modal_scores, generate_mtf

    model, views, inputs = model_and_data()
    rng = np.random.default_rng(5)
    counts = rng.poisson(3.0, size=(T, 2)).astype(float)
    views = {**views, "p": as_view(View(counts, "poisson"))}
    layout, stacked = Layout.stack(views, inputs)
    torch.manual_seed(0)
    model = MultimodalPLRNN(build_model("shPLRNN", M=M, L=6, K=1), views, layout, K).double()
    model.initialise(torch.tensor(stacked))
    with torch.no_grad():  # the label decoder always says class 2; the count decoder has one rate per channel
        model.decoders["lab"].Beta.zero_()
        model.decoders["lab"].beta0.copy_(torch.tensor([0.0, 0.0, 5.0]))
        model.decoders["p"].Gamma.zero_()
    x = _stack(model, views, inputs)
    _, decoded, _ = generate_mtf(model, x, inputs, T, 5)
    scores = cross_modal_scores(model, views, x, decoded, 0.5, 1)
    labels = views["lab"].data[:, 0]
    assert scores["lab"]["accuracy"] == scores["lab"]["accuracy_generated"] == pytest.approx(np.mean(labels == 2))
    assert scores["lab"]["chance"] == pytest.approx(np.bincount(labels.astype(int)).max() / T)
    assert scores["p"]["n_channels_scored"] == 0 and np.isnan(scores["p"]["rate_correlation"])
    with torch.no_grad():  # rate i = exp(z_i + g_i) of the forced unit i (counts masked): r from numpy by hand
        model.decoders["p"].Gamma.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    scores = cross_modal_scores(model, views, x, decoded, 0.5, 1)
    z = _forced(model, x, 0.5, 1, "p")[:, :K].numpy()
    expected = np.mean([np.corrcoef(np.exp(z[:, i] + float(model.decoders["p"].g[i].detach())), counts[:, i])[0, 1]
                        for i in range(2)])
    assert scores["p"]["rate_correlation"] == pytest.approx(expected, rel=1e-12)


def test_observation_fit_table_by_hand():
    """The BOLD predicted from the forced trajectory: B (sum_tau h_tau z_{t-tau}) + b with z_t = z_0 before
    the segment, by numpy; the generated columns are the decoded orbit; observed = the view's data."""
    from dsrpipe.evaluation_mtf import observation_fit_table

    model, views, inputs = model_and_data("fmri")
    x = _stack(model, views, inputs)
    z = _forced(model, x, 0.5, 2, None).numpy()
    rng = np.random.default_rng(3)
    z_gen, decoded = rng.normal(size=(T, M)), {"x": rng.normal(size=(T, 3))}
    spec = {"views": [{"name": "x", "kind": "fmri", "channels": ["a", "b", "c"]},
                      {"name": "lab", "kind": "categorical", "channels": ["lab"]}]}
    fit = observation_fit_table(model, spec, views, z, z_gen, decoded)
    dec = model.decoders["x"]
    h = dec.hrf.numpy()
    padded = np.vstack([np.repeat(z[:1, :K], len(h) - 1, axis=0), z[:, :K]])
    conv = np.array([sum(h[tau] * padded[len(h) - 1 + t - tau] for tau in range(len(h))) for t in range(T)])
    expected = conv @ dec.gaussian.B.detach().numpy().T + dec.gaussian.b.detach().numpy()
    np.testing.assert_allclose(fit[["forced:a", "forced:b", "forced:c"]].to_numpy(), expected, rtol=1e-10)
    np.testing.assert_array_equal(fit[["generated:a", "generated:b", "generated:c"]].to_numpy(), decoded["x"])
    np.testing.assert_array_equal(fit[["observed:a", "observed:b", "observed:c"]].to_numpy(), views["x"].data)
    np.testing.assert_array_equal(fit[[f"latent_forced:z{i}" for i in range(1, K + 1)]].to_numpy(), z[:, :K])
    np.testing.assert_array_equal(fit["latent_generated:z2"].to_numpy(), z_gen[:, 1])
    assert len(fit) == T and not [c for c in fit.columns if "lab" in c]  # labels are not in the fit
