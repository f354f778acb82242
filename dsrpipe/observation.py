"""Observation models: how latent states z_t map to data x_t of each modality.

Every model is a small ``torch.nn.Module`` acting on the first ``latent_dim``
latent units (the forced units under multimodal teacher forcing) with

- ``log_prob(z, x)``: log-likelihood per scalar observation, shape (..., N)
  (categorical: (..., 1), one label per time point);
- ``nll(z, x)``: the mean negative log-likelihood per scalar observation;
- ``mean(z)``: the expected observation; ``sample(z, generator)``;
- ``features(x)``: what an encoder sees of the data (one-hot labels, log counts);
- ``initialise(x)``: data-driven offsets (mean counts, class frequencies).

Shapes: ``z`` (..., K), ``x`` (..., N); the fMRI model convolves along time
and needs ``z`` (..., T, K). Data arrive as float tensors (labels and counts
as whole numbers).

References
----------
Koppe, G. et al. (2019). PLOS Comput Biol 15, e1007263 (fMRI model with HRF).
Kramer, D., Bommer, P. L., Tombolini, C., Koppe, G. & Durstewitz, D. (2022).
    ICML (multimodal PLRNN: Gaussian, Poisson, ordinal/categorical observations).
Brenner, M. et al. (2024). Integrating multimodal data for joint generative
    modeling of complex dynamics. ICML (MTF; decoders of DurstewitzLab/MTF).
Friston, K. et al. SPM12 ``spm_hrf.m`` (canonical double-gamma HRF).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dsrpipe import DsrpipeError

__all__ = [
    "OBSERVATION_MODELS",
    "CategoricalObservation",
    "FMRIObservation",
    "GaussianObservation",
    "ObservationModel",
    "OrdinalObservation",
    "PoissonObservation",
    "build_observation",
    "hrf_convolve",
    "spm_hrf",
]


def spm_hrf(tr: float, peak: float = 6.0, undershoot: float = 16.0, peak_dispersion: float = 1.0,
            undershoot_dispersion: float = 1.0, ratio: float = 6.0, onset: float = 0.0,
            length: float = 32.0) -> np.ndarray:
    """The canonical SPM double-gamma haemodynamic response function sampled every ``tr`` s.

    As SPM12's ``spm_hrf(RT)`` with its defaults: at ``t_k = k tr - onset``,
    ``k = 0 .. floor(length / tr)``,
    ``h_k = g(t_k; peak/pd, pd) - g(t_k; undershoot/ud, ud) / ratio`` with
    ``g(t; a, s)`` the gamma density of shape a and scale s (zero for t <= 0),
    normalised to ``sum h = 1``. SPM evaluates on a 16-fold microtime grid and
    keeps every 16th point, which gives exactly these samples.

    Parameters
    ----------
    tr : float
        Repetition time (seconds, > 0).
    peak, undershoot : float
        Delays of response and undershoot (s).
    peak_dispersion, undershoot_dispersion : float
        Dispersions (gamma scales, s).
    ratio : float
        Ratio of response to undershoot.
    onset, length : float
        Onset and kernel length (s).

    Returns
    -------
    ndarray, shape (floor(length / tr) + 1,)
    """
    if not tr > 0 or not length >= tr:
        raise DsrpipeError(f"spm_hrf needs tr > 0 and length >= tr, got tr={tr}, length={length}")
    t = np.arange(math.floor(length / tr) + 1) * tr - onset

    def gamma_pdf(a: float, scale: float) -> np.ndarray:
        out = np.zeros_like(t)
        pos = t > 0
        u = t[pos] / scale
        out[pos] = np.exp((a - 1) * np.log(u) - u - math.lgamma(a)) / scale
        return out

    hrf = gamma_pdf(peak / peak_dispersion, peak_dispersion) \
        - gamma_pdf(undershoot / undershoot_dispersion, undershoot_dispersion) / ratio
    total = hrf.sum()
    if abs(total) < 1e-12:
        raise DsrpipeError("spm_hrf: the kernel sums to zero; check the parameters")
    return hrf / total


def hrf_convolve(z: torch.Tensor, hrf: torch.Tensor, padding: str = "edge") -> torch.Tensor:
    """Causal convolution along time: ``y_t = sum_tau hrf[tau] z_{t - tau}``.

    Parameters
    ----------
    z : Tensor, shape (..., T, K)
    hrf : Tensor, shape (L,)
    padding : {"edge", "zero"}
        States before the first one: repeat ``z_0`` (a steady state before the
        window) or zeros (then ``y`` equals ``np.convolve(z, hrf)[:T]`` per unit).

    Returns
    -------
    Tensor, shape (..., T, K)
    """
    L = hrf.shape[0]
    if padding == "edge":
        pad = z[..., :1, :].expand(*z.shape[:-2], L - 1, z.shape[-1])
    elif padding == "zero":
        pad = z.new_zeros((*z.shape[:-2], L - 1, z.shape[-1]))
    else:
        raise DsrpipeError(f"hrf padding must be 'edge' or 'zero', got {padding!r}")
    windows = torch.cat([pad, z], dim=-2).unfold(-2, L, 1)  # (..., T, K, L): z_{t-L+1} .. z_t
    return windows @ hrf.flip(0).to(z.dtype)


class ObservationModel(nn.Module):
    """Base class. ``latent_dim`` K (decoded latent units), ``n_obs`` N (data columns)."""

    kind: str = ""
    #: True when the model convolves along time (needs z with a time axis at -2)
    temporal: bool = False

    def __init__(self, latent_dim: int, n_obs: int) -> None:
        super().__init__()
        if latent_dim < 1 or n_obs < 1:
            raise DsrpipeError(f"{self.kind} observation model needs latent_dim >= 1 and n_obs >= 1")
        self.latent_dim, self.n_obs = int(latent_dim), int(n_obs)

    def log_prob(self, z: torch.Tensor, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """Log-likelihood of each scalar observation: (..., N)."""
        raise NotImplementedError

    def nll(self, z: torch.Tensor, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """Mean negative log-likelihood per scalar observation (a scalar tensor)."""
        return -self.log_prob(z, x, **kwargs).mean()

    def mean(self, z: torch.Tensor, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, z: torch.Tensor, generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    @property
    def n_features(self) -> int:
        """Width of :meth:`features`."""
        return self.n_obs

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What an encoder sees of the data: (..., N) -> (..., n_features)."""
        return x

    @torch.no_grad()
    def initialise(self, x: torch.Tensor) -> None:
        """Set offsets from training data (T, N); no-op by default."""

    def _check(self, z: torch.Tensor, x: torch.Tensor | None = None, width: int | None = None) -> None:
        if z.shape[-1] != self.latent_dim:
            raise DsrpipeError(f"{self.kind} observation model expects {self.latent_dim} latent units, "
                               f"got z of shape {tuple(z.shape)}")
        if x is not None and x.shape[-1] != (self.n_obs if width is None else width):
            raise DsrpipeError(f"{self.kind} observation model expects {self.n_obs} data columns, "
                               f"got x of shape {tuple(x.shape)}")


class GaussianObservation(ObservationModel):
    """``x = B z + b + eps``, ``eps ~ N(0, diag(sd^2))``; identity readout ``x = z[:N]``.

    Parameters
    ----------
    latent_dim, n_obs : int
    readout : {"affine", "identity"}
        Identity needs ``latent_dim >= n_obs`` and has no B, b.
    learn_noise : bool
        Learn ``sd`` (bounded below by ``min_sd``); otherwise fixed at ``sd``
        (1 by default, as in DurstewitzLab/MTF: the NLL is then 0.5 MSE + const).
    """

    kind = "gaussian"

    def __init__(self, latent_dim: int, n_obs: int, readout: str = "affine", learn_noise: bool = False,
                 sd: float = 1.0, min_sd: float = 1e-2) -> None:
        super().__init__(latent_dim, n_obs)
        if readout not in ("affine", "identity"):
            raise DsrpipeError(f"gaussian readout must be 'affine' or 'identity', got {readout!r}")
        if readout == "identity" and latent_dim < n_obs:
            raise DsrpipeError(f"identity readout needs latent_dim >= n_obs, got {latent_dim} < {n_obs}")
        if not sd > min_sd >= 0:
            raise DsrpipeError("gaussian observation model needs sd > min_sd >= 0")
        self.readout, self.min_sd = readout, float(min_sd)
        if readout == "affine":
            bound = 1 / math.sqrt(latent_dim)
            self.B = nn.Parameter(torch.empty(n_obs, latent_dim).uniform_(-bound, bound))
            self.b = nn.Parameter(torch.zeros(n_obs))
        self.register_buffer("sd_init", torch.tensor(float(sd)))
        self.log_sd_scale = nn.Parameter(torch.zeros(n_obs), requires_grad=learn_noise)

    @property
    def sd(self) -> torch.Tensor:
        """Noise standard deviations, (N,): ``min_sd + (sd - min_sd) exp(log_sd_scale)``."""
        return self.min_sd + (self.sd_init - self.min_sd) * torch.exp(self.log_sd_scale)

    def mean(self, z: torch.Tensor, **kwargs) -> torch.Tensor:
        self._check(z)
        if self.readout == "identity":
            return z[..., : self.n_obs]
        return z @ self.B.T + self.b

    def log_prob(self, z: torch.Tensor, x: torch.Tensor, **kwargs) -> torch.Tensor:
        self._check(z, x)
        sd = self.sd.to(z.dtype)
        return -0.5 * ((x - self.mean(z)) / sd) ** 2 - torch.log(sd) - 0.5 * math.log(2 * math.pi)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
        mu = self.mean(z)
        return mu + self.sd.to(mu.dtype) * torch.randn(mu.shape, generator=generator, dtype=mu.dtype)

    @torch.no_grad()
    def initialise(self, x: torch.Tensor) -> None:
        if self.readout == "affine":
            self.b.copy_(x.mean(dim=0))


class PoissonObservation(ObservationModel):
    """Counts ``x_i ~ Poisson(lambda_i)``, ``lambda = exp(Gamma z + g)`` (one rate per channel)."""

    kind = "poisson"

    def __init__(self, latent_dim: int, n_obs: int) -> None:
        super().__init__(latent_dim, n_obs)
        self.Gamma = nn.Parameter(0.1 * torch.randn(n_obs, latent_dim) / math.sqrt(latent_dim))
        self.g = nn.Parameter(torch.zeros(n_obs))

    def log_rate(self, z: torch.Tensor) -> torch.Tensor:
        self._check(z)
        return z @ self.Gamma.T + self.g

    def mean(self, z: torch.Tensor, **kwargs) -> torch.Tensor:
        return torch.exp(self.log_rate(z))

    def log_prob(self, z: torch.Tensor, x: torch.Tensor, **kwargs) -> torch.Tensor:
        self._check(z, x)
        eta = self.log_rate(z)
        return x * eta - torch.exp(eta) - torch.lgamma(x + 1)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
        return torch.poisson(self.mean(z), generator=generator)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(x)

    @torch.no_grad()
    def initialise(self, x: torch.Tensor) -> None:
        self.g.copy_(torch.log(x.mean(dim=0).clamp_min(1e-3)))


def _labels(x: torch.Tensor, n_levels: int, kind: str) -> torch.Tensor:
    """Whole-number labels in [0, n_levels) as int64, or a clear error."""
    labels = torch.round(x)
    if not torch.all((labels == x) & (labels >= 0) & (labels < n_levels)):
        raise DsrpipeError(f"{kind} data must be whole numbers in 0 .. {n_levels - 1}")
    return labels.long()


class CategoricalObservation(ObservationModel):
    """One label per time point, ``P(x = c) = softmax(Beta z + beta_0)_c``, c = 0 .. C-1.

    ``x`` has shape (..., 1) (labels as numbers); ``log_prob`` returns (..., 1);
    ``mean`` returns the class probabilities (..., C).
    """

    kind = "categorical"

    def __init__(self, latent_dim: int, n_categories: int) -> None:
        super().__init__(latent_dim, 1)
        if n_categories < 2:
            raise DsrpipeError("categorical observation model needs n_categories >= 2")
        self.n_categories = int(n_categories)
        self.Beta = nn.Parameter(0.1 * torch.randn(n_categories, latent_dim) / math.sqrt(latent_dim))
        self.beta0 = nn.Parameter(torch.zeros(n_categories))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        self._check(z)
        return z @ self.Beta.T + self.beta0

    def mean(self, z: torch.Tensor, **kwargs) -> torch.Tensor:
        return torch.softmax(self.logits(z), dim=-1)

    def log_prob(self, z: torch.Tensor, x: torch.Tensor, **kwargs) -> torch.Tensor:
        self._check(z, x)
        labels = _labels(x, self.n_categories, self.kind)
        return torch.gather(torch.log_softmax(self.logits(z), dim=-1), -1, labels)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
        p = self.mean(z)
        draws = torch.multinomial(p.reshape(-1, self.n_categories), 1, generator=generator)
        return draws.reshape(*p.shape[:-1], 1).to(p.dtype)

    @property
    def n_features(self) -> int:
        return self.n_categories

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(_labels(x, self.n_categories, self.kind)[..., 0], self.n_categories).to(x.dtype)

    @torch.no_grad()
    def initialise(self, x: torch.Tensor) -> None:
        counts = torch.bincount(_labels(x, self.n_categories, self.kind)[:, 0], minlength=self.n_categories)
        self.beta0.copy_(torch.log((counts + 1.0) / (counts.sum() + self.n_categories)))


class OrdinalObservation(ObservationModel):
    """Ordered levels 0 .. C-1 per channel, cumulative logit:
    ``P(x_i <= c) = sigmoid(theta_ic - beta_i . z)`` with ``theta_i0 < ... < theta_i,C-2``
    (``theta_ic = theta_i0 + sum_{j<=c} exp(raw_ij)``, as in DurstewitzLab/MTF's
    cumulative-link decoder). ``mean`` is the expected level.
    """

    kind = "ordinal"

    def __init__(self, latent_dim: int, n_obs: int, n_levels: int) -> None:
        super().__init__(latent_dim, n_obs)
        if n_levels < 2:
            raise DsrpipeError("ordinal observation model needs n_levels >= 2")
        self.n_levels = int(n_levels)
        self.beta = nn.Parameter(0.1 * torch.randn(n_obs, latent_dim) / math.sqrt(latent_dim))
        raw = torch.zeros(n_obs, n_levels - 1)
        raw[:, 0] = -(n_levels - 2) / 2  # thresholds -(C-2)/2, ..., (C-2)/2 (spacing 1)
        self.raw_thresholds = nn.Parameter(raw)

    @property
    def thresholds(self) -> torch.Tensor:
        """Ordered thresholds theta, (N, C-1)."""
        raw = self.raw_thresholds
        return torch.cat([raw[:, :1], raw[:, :1] + torch.cumsum(torch.exp(raw[:, 1:]), dim=1)], dim=1)

    def _log_probs(self, z: torch.Tensor) -> torch.Tensor:
        """log P(x_i = c) for every level: (..., N, C)."""
        self._check(z)
        eta = (z @ self.beta.T)[..., None]
        theta = self.thresholds.to(z.dtype)
        inf = theta.new_full((self.n_obs, 1), math.inf)
        upper = torch.cat([theta, inf], dim=1) - eta     # a_c = theta_c - eta (theta_{C-1} = +inf)
        lower = torch.cat([-inf, theta], dim=1) - eta    # b_c = theta_{c-1} - eta (theta_{-1} = -inf)
        gap = torch.cat([-inf, theta[:, :-1] - theta[:, 1:], -inf], dim=1)  # b_c - a_c < 0
        # sigmoid(a) - sigmoid(b) = sigmoid(a) sigmoid(-b) (1 - exp(b - a)), stable in logs
        return F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(gap))

    def level_probabilities(self, z: torch.Tensor) -> torch.Tensor:
        """P(x_i = c): (..., N, C)."""
        return torch.exp(self._log_probs(z))

    def mean(self, z: torch.Tensor, **kwargs) -> torch.Tensor:
        levels = torch.arange(self.n_levels, dtype=z.dtype, device=z.device)
        return self.level_probabilities(z) @ levels

    def log_prob(self, z: torch.Tensor, x: torch.Tensor, **kwargs) -> torch.Tensor:
        self._check(z, x)
        labels = _labels(x, self.n_levels, self.kind)
        return torch.gather(self._log_probs(z), -1, labels[..., None])[..., 0]

    @torch.no_grad()
    def sample(self, z: torch.Tensor, generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
        p = self.level_probabilities(z)
        draws = torch.multinomial(p.reshape(-1, self.n_levels), 1, generator=generator)
        return draws.reshape(p.shape[:-1]).to(p.dtype)

    @torch.no_grad()
    def initialise(self, x: torch.Tensor) -> None:
        labels = _labels(x, self.n_levels, self.kind)
        for i in range(self.n_obs):
            counts = torch.bincount(labels[:, i], minlength=self.n_levels).double() + 1.0
            cum = torch.cumsum(counts, 0)[:-1] / counts.sum()
            theta = torch.log(cum / (1 - cum))
            self.raw_thresholds[i, 0] = theta[0]
            self.raw_thresholds[i, 1:] = torch.log(torch.diff(theta).clamp_min(1e-3))


class FMRIObservation(ObservationModel):
    """BOLD ``x_t = B sum_tau hrf[tau] z_{t-tau} + J r_t + b + eps`` (Koppe et al. 2019).

    Parameters
    ----------
    latent_dim, n_obs : int
    tr : float
        Repetition time (s); the kernel is :func:`spm_hrf` ``(tr)`` unless ``hrf`` is given.
    n_nuisance : int
        Number of nuisance regressors r_t (motion, drift); pass them as ``nuisance``
        (..., T, R) to ``log_prob``, ``nll``, ``mean`` and ``sample``.
    padding : {"edge", "zero"}
        Latent states assumed before the first time point (see :func:`hrf_convolve`).
    learn_noise, sd, min_sd : as in :class:`GaussianObservation`.
    """

    kind = "fmri"
    temporal = True

    def __init__(self, latent_dim: int, n_obs: int, tr: float, n_nuisance: int = 0, hrf=None,
                 padding: str = "edge", learn_noise: bool = False, sd: float = 1.0, min_sd: float = 1e-2) -> None:
        super().__init__(latent_dim, n_obs)
        kernel = spm_hrf(tr) if hrf is None else np.asarray(hrf, dtype=np.float64)
        self.register_buffer("hrf", torch.as_tensor(kernel, dtype=torch.float64))
        self.tr, self.padding, self.n_nuisance = float(tr), padding, int(n_nuisance)
        self.gaussian = GaussianObservation(latent_dim, n_obs, "affine", learn_noise, sd, min_sd)
        self.J = nn.Parameter(torch.zeros(n_obs, self.n_nuisance))

    def mean(self, z: torch.Tensor, nuisance: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        self._check(z)
        if z.ndim < 2:
            raise DsrpipeError("fmri observation model needs z with a time axis: (..., T, K)")
        mu = self.gaussian.mean(hrf_convolve(z, self.hrf, self.padding))
        if self.n_nuisance:
            if nuisance is None or nuisance.shape[-1] != self.n_nuisance:
                raise DsrpipeError(f"fmri observation model expects {self.n_nuisance} nuisance regressors")
            mu = mu + nuisance @ self.J.T
        return mu

    def log_prob(self, z: torch.Tensor, x: torch.Tensor, nuisance: torch.Tensor | None = None,
                 **kwargs) -> torch.Tensor:
        self._check(z, x)
        sd = self.gaussian.sd.to(z.dtype)
        return -0.5 * ((x - self.mean(z, nuisance)) / sd) ** 2 - torch.log(sd) - 0.5 * math.log(2 * math.pi)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, generator: torch.Generator | None = None,
               nuisance: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        mu = self.mean(z, nuisance)
        return mu + self.gaussian.sd.to(mu.dtype) * torch.randn(mu.shape, generator=generator, dtype=mu.dtype)

    @torch.no_grad()
    def initialise(self, x: torch.Tensor) -> None:
        self.gaussian.initialise(x)


#: kind -> class; the options each takes besides latent_dim and n_obs are its keyword arguments
OBSERVATION_MODELS: dict[str, type[ObservationModel]] = {
    cls.kind: cls for cls in (GaussianObservation, PoissonObservation, CategoricalObservation,
                              OrdinalObservation, FMRIObservation)
}


def build_observation(kind: str, latent_dim: int, n_obs: int, **options) -> ObservationModel:
    """Build the observation model ``kind`` for ``n_obs`` data columns decoded from ``latent_dim`` units.

    ``options`` are the class's keyword arguments (``readout``, ``n_categories``,
    ``n_levels``, ``tr``, ``n_nuisance``, ...). A categorical view has one column.
    """
    try:
        cls = OBSERVATION_MODELS[kind]
    except KeyError:
        raise DsrpipeError(f"unknown observation model {kind!r}; choose one of {sorted(OBSERVATION_MODELS)}") from None
    try:
        if cls is CategoricalObservation:
            if n_obs != 1:
                raise DsrpipeError(f"a categorical view holds one label column, got {n_obs}")
            return cls(latent_dim, **options)
        return cls(latent_dim, n_obs, **options)
    except TypeError as exc:
        raise DsrpipeError(f"bad options for the {kind} observation model: {exc}") from None
