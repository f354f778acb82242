"""Observation models: log-likelihoods against scipy.stats, the SPM HRF, the HRF convolution,
and learning checks (Poisson rates, categorical labels) with known latent states."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from dsrpipe import DsrpipeError
from dsrpipe.observation import (
    CategoricalObservation,
    FMRIObservation,
    GaussianObservation,
    OrdinalObservation,
    PoissonObservation,
    build_observation,
    hrf_convolve,
    spm_hrf,
)

K, N, SHAPE = 4, 3, (5, 7)


# tiny tensors: two threads on a busy 2-core machine are ~30x slower than one
pytestmark = pytest.mark.usefixtures("one_thread")


def _z(seed=0):
    return torch.randn(*SHAPE, K, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _randomise(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.double()


def test_gaussian_affine_log_prob_matches_scipy():
    model = _randomise(GaussianObservation(K, N, learn_noise=True))
    z = _z()
    x = torch.randn(*SHAPE, N, dtype=torch.float64)
    B, b, sd = model.B.detach().numpy(), model.b.detach().numpy(), model.sd.detach().numpy()
    expected = stats.norm.logpdf(x.numpy(), loc=z.numpy() @ B.T + b, scale=sd)
    np.testing.assert_allclose(model.log_prob(z, x).detach().numpy(), expected, rtol=1e-12)
    assert float(model.nll(z, x).detach()) == pytest.approx(-expected.mean(), rel=1e-12)


def test_gaussian_identity_reads_the_first_units_with_fixed_noise():
    model = GaussianObservation(K, N, readout="identity").double()
    z = _z()
    x = torch.randn(*SHAPE, N, dtype=torch.float64)
    expected = stats.norm.logpdf(x.numpy(), loc=z.numpy()[..., :N], scale=1.0)
    np.testing.assert_allclose(model.log_prob(z, x).detach().numpy(), expected, rtol=1e-12)
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(DsrpipeError, match="latent_dim >= n_obs"):
        GaussianObservation(2, 3, readout="identity")


def test_poisson_log_prob_matches_scipy():
    model = _randomise(PoissonObservation(K, N))
    with torch.no_grad():
        model.Gamma.mul_(0.3)
    z = _z()
    x = torch.poisson(torch.full((*SHAPE, N), 3.0, dtype=torch.float64), generator=torch.Generator().manual_seed(2))
    rate = np.exp(z.numpy() @ model.Gamma.detach().numpy().T + model.g.detach().numpy())
    expected = stats.poisson.logpmf(x.numpy(), rate)
    np.testing.assert_allclose(model.log_prob(z, x).detach().numpy(), expected, rtol=1e-11)
    np.testing.assert_allclose(model.mean(z).detach().numpy(), rate, rtol=1e-12)


def test_categorical_log_prob_matches_scipy_multinomial():
    C = 5
    model = _randomise(CategoricalObservation(K, C))
    z = _z()
    labels = torch.randint(0, C, (*SHAPE, 1), generator=torch.Generator().manual_seed(3)).double()
    logits = z.numpy() @ model.Beta.detach().numpy().T + model.beta0.detach().numpy()
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    onehot = np.eye(C)[labels.numpy()[..., 0].astype(int)]
    expected = np.array([stats.multinomial.logpmf(o, n=1, p=q) for o, q in zip(onehot.reshape(-1, C), p.reshape(-1, C))])
    got = model.log_prob(z, labels).detach().numpy()
    assert got.shape == (*SHAPE, 1)
    np.testing.assert_allclose(got.ravel(), expected, rtol=1e-10)
    np.testing.assert_allclose(model.mean(z).detach().numpy(), p, rtol=1e-10)
    with pytest.raises(DsrpipeError, match="whole numbers"):
        model.log_prob(z, labels + 0.5)


def test_ordinal_log_prob_matches_logistic_cdf_by_hand():
    C = 4
    model = _randomise(OrdinalObservation(K, N, C))
    with torch.no_grad():   # moderate values keep every level probable enough for numpy's differences
        model.beta.mul_(0.3)
        model.raw_thresholds[:, 1:] = torch.log(0.5 + torch.rand(N, C - 2, dtype=torch.float64))
    z = _z()
    x = torch.randint(0, C, (*SHAPE, N), generator=torch.Generator().manual_seed(4)).double()
    beta, theta = model.beta.detach().numpy(), model.thresholds.detach().numpy()
    assert np.all(np.diff(theta, axis=1) > 0)
    eta = z.numpy() @ beta.T                                             # (..., N)
    cdf = stats.logistic.cdf(theta[None, None] - eta[..., None])          # P(x <= c), c < C-1
    cdf = np.concatenate([np.zeros((*SHAPE, N, 1)), cdf, np.ones((*SHAPE, N, 1))], axis=-1)
    probs = np.diff(cdf, axis=-1)                                         # P(x = c)
    expected = np.log(np.take_along_axis(probs, x.numpy().astype(int)[..., None], -1)[..., 0])
    np.testing.assert_allclose(model.log_prob(z, x).detach().numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(model.level_probabilities(z).detach().numpy(), probs, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(model.mean(z).detach().numpy(), probs @ np.arange(C), rtol=1e-10)


def test_ordinal_extreme_predictors_stay_finite_with_finite_gradients():
    model = OrdinalObservation(2, 1, 3).double()
    z = torch.tensor([[200.0, 0.0], [-200.0, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        model.beta.fill_(1.0)
    x = torch.tensor([[2.0], [0.0]], dtype=torch.float64)
    loss = model.nll(z, x)
    loss.backward()
    assert math.isfinite(float(loss)) and all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_spm_hrf_against_spm_and_scipy_gamma():
    # SPM12 spm_hrf(2) (to 4 decimals)
    spm_tr2 = [0, 0.0866, 0.3749, 0.3849, 0.2161, 0.0769, 0.0016, -0.0306, -0.0373,
               -0.0308, -0.0205, -0.0116, -0.0058, -0.0026, -0.0011, -0.0004, -0.0001]
    np.testing.assert_allclose(spm_hrf(2.0), spm_tr2, atol=6e-5)
    tr = 0.7
    t = np.arange(int(32 / tr) + 1) * tr
    by_hand = stats.gamma.pdf(t, 6, scale=1) - stats.gamma.pdf(t, 16, scale=1) / 6
    np.testing.assert_allclose(spm_hrf(tr), by_hand / by_hand.sum(), rtol=1e-12, atol=1e-15)
    fine = spm_hrf(0.01)
    assert fine.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.argmax(fine) * 0.01 == pytest.approx(5.0, abs=0.05)   # peak of gamma(6, 1) is at 5 s
    assert len(fine) == 3201 and fine[0] == 0
    with pytest.raises(DsrpipeError):
        spm_hrf(0.0)


def test_hrf_convolution_matches_numpy():
    hrf = spm_hrf(1.5)
    z = torch.randn(2, 40, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    got = hrf_convolve(z, torch.from_numpy(hrf), padding="zero").numpy()
    for b in range(2):
        for k in range(3):
            np.testing.assert_allclose(got[b, :, k], np.convolve(z[b, :, k].numpy(), hrf)[:40], rtol=1e-12, atol=1e-14)
    # edge padding: a constant series stays constant (the kernel sums to 1)
    const = torch.full((30, 2), 1.7, dtype=torch.float64)
    np.testing.assert_allclose(hrf_convolve(const, torch.from_numpy(hrf)).numpy(), 1.7, rtol=1e-12)


def test_fmri_log_prob_matches_scipy_with_nuisance():
    model = _randomise(FMRIObservation(K, N, tr=2.0, n_nuisance=2, padding="zero"))
    T = 25
    z = torch.randn(T, K, dtype=torch.float64)
    r = torch.randn(T, 2, dtype=torch.float64)
    x = torch.randn(T, N, dtype=torch.float64)
    hrf = spm_hrf(2.0)
    conv = np.stack([np.convolve(z[:, k].numpy(), hrf)[:T] for k in range(K)], axis=1)
    g = model.gaussian
    mu = conv @ g.B.detach().numpy().T + g.b.detach().numpy() + r.numpy() @ model.J.detach().numpy().T
    expected = stats.norm.logpdf(x.numpy(), mu, g.sd.detach().numpy())
    np.testing.assert_allclose(model.log_prob(z, x, nuisance=r).detach().numpy(), expected, rtol=1e-12)
    with pytest.raises(DsrpipeError, match="nuisance"):
        model.mean(z)


def test_build_observation_errors():
    with pytest.raises(DsrpipeError, match="unknown observation model"):
        build_observation("gamma", 3, 2)
    with pytest.raises(DsrpipeError, match="bad options"):
        build_observation("poisson", 3, 2, n_levels=4)
    with pytest.raises(DsrpipeError, match="one label column"):
        build_observation("categorical", 3, 2, n_categories=3)
    assert isinstance(build_observation("fmri", 3, 2, tr=2.0), FMRIObservation)


def _fit(model, z, x, steps=300, lr=0.05):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = model.nll(z, x)
        loss.backward()
        opt.step()
    return float(model.nll(z, x).detach())


def _latent_cycle(T=600):
    t = torch.arange(T, dtype=torch.float64) * 0.05
    return torch.stack([torch.sin(t), torch.cos(1.3 * t)], dim=1)


def test_poisson_decoder_recovers_a_known_rate_trajectory():
    torch.manual_seed(0)
    z = _latent_cycle()
    true = PoissonObservation(2, 8).double()
    with torch.no_grad():
        true.Gamma.copy_(torch.randn(8, 2, dtype=torch.float64))
        true.g.fill_(0.5)
    counts = true.sample(z, torch.Generator().manual_seed(1))
    fitted = PoissonObservation(2, 8).double()
    fitted.initialise(counts)
    nll = _fit(fitted, z, counts)
    # chance: the best constant rate per neuron (its mean count)
    const = PoissonObservation(2, 8).double()
    with torch.no_grad():
        const.Gamma.zero_()
    const.initialise(counts)
    chance = float(const.nll(z, counts))
    assert nll < chance - 0.3
    r_true, r_fit = true.mean(z).detach().numpy(), fitted.mean(z).detach().numpy()
    corr = [np.corrcoef(r_true[:, i], r_fit[:, i])[0, 1] for i in range(8)]
    assert min(corr) > 0.9
    assert np.median(np.abs(r_fit - r_true) / r_true) < 0.2


def test_categorical_decoder_recovers_labels():
    torch.manual_seed(0)
    z = _latent_cycle()
    true = CategoricalObservation(2, 4).double()
    with torch.no_grad():
        true.Beta.copy_(4 * torch.randn(4, 2, dtype=torch.float64))
    labels = true.sample(z, torch.Generator().manual_seed(1))
    fitted = CategoricalObservation(2, 4).double()
    fitted.initialise(labels)
    _fit(fitted, z, labels)
    accuracy = float((fitted.mean(z).argmax(-1) == labels[:, 0].long()).double().mean())
    chance = float(torch.bincount(labels[:, 0].long()).max()) / len(labels)
    optimum = float((true.mean(z).argmax(-1) == labels[:, 0].long()).double().mean())
    assert accuracy > chance + 0.2
    assert accuracy > optimum - 0.05
