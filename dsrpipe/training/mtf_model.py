"""The multimodal model trained by MTF: encoder, latent PLRNN, one decoder per view.

An encoder maps the features of all views at each time point (standardised;
one-hot labels, log counts) to forcing signals for the first K latent units;
the latent model is forced toward them GTF-style; each view has its own
observation model (:mod:`dsrpipe.observation`) reading the first K units.

All views, their nuisance regressors and the external inputs of a subject are
stacked column-wise into one (T, D) array so that training windows are sampled
once for all of them; :class:`Layout` records which columns are whose.

References
----------
Brenner, M., Hess, F., Koppe, G. & Durstewitz, D. (2024). Integrating
    multimodal data for joint generative modeling of complex dynamics. ICML
    (MTF; code: DurstewitzLab/MTF, ``bptt/bptt_algorithm.py``, ``sae/``).
Kramer, D. et al. (2022). Reconstructing nonlinear dynamical systems from
    multi-modal time series. ICML.
Hess, F. et al. (2023). Generalized teacher forcing for learning chaotic dynamics. ICML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from dsrpipe import DsrpipeError
from dsrpipe.models import LatentModel
from dsrpipe.observation import build_observation


@dataclass(frozen=True)
class View:
    """One modality of a subject's recording.

    Parameters
    ----------
    data : ndarray, shape (T, N)
        Gaussian/fMRI: standardised values; poisson: counts; ordinal: levels
        0 .. C-1; categorical: labels 0 .. C-1, shape (T,) or (T, 1).
    kind : str
        An observation model of :data:`dsrpipe.observation.OBSERVATION_MODELS`.
    options : mapping
        Its keyword arguments (``readout``, ``learn_noise``, ``n_categories``,
        ``n_levels``, ``tr``, ``padding``); ``n_categories``/``n_levels``
        default to the largest label + 1, ``n_nuisance`` to the nuisance width.
    weight : float
        Weight of this view's NLL terms in the loss.
    nuisance : ndarray, shape (T, R), optional
        Nuisance regressors of an fMRI view.
    """

    data: np.ndarray
    kind: str
    options: Mapping = field(default_factory=dict)
    weight: float = 1.0
    nuisance: np.ndarray | None = None


def as_view(spec) -> View:
    """A :class:`View` from a View, ``(data, kind)`` or ``(data, kind, options)``."""
    if isinstance(spec, View):
        view = spec
    elif isinstance(spec, tuple) and len(spec) in (2, 3):
        view = View(*spec)
    else:
        raise DsrpipeError(f"a view is a View or a (data, kind[, options]) tuple, got {type(spec).__name__}")
    data = np.asarray(view.data, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or len(data) < 2 or not np.all(np.isfinite(data)):
        raise DsrpipeError(f"{view.kind} view: data must be a finite (T, N) array, got shape {data.shape}")
    options = dict(view.options)
    if view.kind == "categorical":
        options.setdefault("n_categories", int(data.max()) + 1)
    if view.kind == "ordinal":
        options.setdefault("n_levels", int(data.max()) + 1)
    nuisance = None
    if view.nuisance is not None:
        if view.kind != "fmri":
            raise DsrpipeError(f"nuisance regressors belong to an fmri view, not a {view.kind} view")
        nuisance = np.asarray(view.nuisance, dtype=np.float64).reshape(len(data), -1)
        options.setdefault("n_nuisance", nuisance.shape[1])
    return View(data, view.kind, options, float(view.weight), nuisance)


@dataclass(frozen=True)
class Layout:
    """Columns of the stacked (T, D) array: name -> slice for data, ``<name>:nuisance``, ``inputs``."""

    columns: dict[str, slice]

    @classmethod
    def stack(cls, views: Mapping[str, View], inputs: np.ndarray | None) -> tuple[Layout, np.ndarray]:
        parts, columns, start = [], {}, 0
        blocks = [(name, v.data) for name, v in views.items()]
        blocks += [(f"{name}:nuisance", v.nuisance) for name, v in views.items() if v.nuisance is not None]
        if inputs is not None:
            blocks.append(("inputs", np.asarray(inputs, dtype=np.float64).reshape(len(blocks[0][1]), -1)))
        lengths = {len(b) for _, b in blocks}
        if len(lengths) != 1:
            raise DsrpipeError(f"all views, nuisance regressors and inputs must have the same length, got {sorted(lengths)}")
        for name, block in blocks:
            columns[name] = slice(start, start + block.shape[1])
            parts.append(block)
            start += block.shape[1]
        return cls(columns), np.concatenate(parts, axis=1)

    def get(self, x: torch.Tensor, name: str) -> torch.Tensor | None:
        return x[..., self.columns[name]] if name in self.columns else None


class Encoder(nn.Module):
    """Features (..., T, F) -> forcing signals (..., T, K): per time point (``kernel = 1``,
    the lab's linear encoder) or a centred temporal convolution over ``kernel`` steps
    (one layer of the lab's CNN encoder; replicate padding at window edges)."""

    def __init__(self, n_features: int, forcing_dim: int, kernel: int = 1) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise DsrpipeError(f"the encoder kernel must be a positive odd number, got {kernel}")
        self.kernel = kernel
        self.conv = nn.Conv1d(n_features, forcing_dim, kernel, padding=kernel // 2,
                              padding_mode="replicate" if kernel > 1 else "zeros")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        lead = features.shape[:-2]
        f = features.reshape(-1, *features.shape[-2:]).transpose(1, 2)
        return self.conv(f).transpose(1, 2).reshape(*lead, features.shape[-2], -1)


class MultimodalPLRNN(nn.Module):
    """Encoder + latent model + decoders.

    Parameters
    ----------
    latent : LatentModel
        The latent map (M units; ``input_dim`` external inputs).
    views : mapping name -> View (already checked by :func:`as_view`)
    layout : Layout of the stacked data
    forcing_dim : int
        K <= M, the number of forced and decoded latent units.
    encoder_kernel : int
        1: linear encoder; odd k > 1: temporal convolution.
    """

    def __init__(self, latent: LatentModel, views: Mapping[str, View], layout: Layout, forcing_dim: int,
                 encoder_kernel: int = 1) -> None:
        super().__init__()
        if not 1 <= forcing_dim <= latent.latent_dim:
            raise DsrpipeError(f"forcing_dim must be in 1 .. latent_dim = {latent.latent_dim}, got {forcing_dim}")
        self.latent, self.layout, self.forcing_dim = latent, layout, int(forcing_dim)
        self.weights = {name: v.weight for name, v in views.items()}
        self.decoders = nn.ModuleDict({
            name: build_observation(v.kind, forcing_dim, v.data.shape[1], **v.options) for name, v in views.items()
        })
        n_features = sum(d.n_features for d in self.decoders.values())
        self.encoder = Encoder(n_features, forcing_dim, encoder_kernel)
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_sd", torch.ones(n_features))

    # --- data -> forcing signals -----------------------------------------------------------
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised encoder features of stacked data (..., T, D) -> (..., T, F)."""
        f = torch.cat([d.features(self.layout.get(x, name)) for name, d in self.decoders.items()], dim=-1)
        return (f - self.feature_mean) / self.feature_sd

    @torch.no_grad()
    def initialise(self, x: torch.Tensor) -> None:
        """Data-driven start from the training data (T, D).

        Feature standardisation; decoder offsets (mean counts, class frequencies);
        the encoder (its centre tap) projects onto the top K principal components of
        the standardised features, whitened, so the forcing signals start with unit
        variance; affine Gaussian decoders start at the least-squares map from those
        signals to their data.
        """
        f = torch.cat([d.features(self.layout.get(x, name)) for name, d in self.decoders.items()], dim=-1)
        self.feature_mean.copy_(f.mean(0))
        sd = f.std(0)
        # a feature constant in training (e.g. a label class that never occurs) keeps unit scale, so an
        # unseen value later gives a bounded feature instead of one divided by ~0
        self.feature_sd.copy_(torch.where(sd > 1e-6, sd, torch.ones_like(sd)))
        for name, d in self.decoders.items():
            d.initialise(self.layout.get(x, name))
        f = self.features(x)
        _, sv, vt = torch.linalg.svd(f, full_matrices=False)
        k = min(self.forcing_dim, vt.shape[0])
        weight = self.encoder.conv.weight
        weight.zero_()
        weight[:k, :, self.encoder.kernel // 2] = (vt[:k] / (sv[:k, None] / len(f) ** 0.5).clamp_min(1e-6)).to(weight.dtype)
        self.encoder.conv.bias.zero_()
        enc = self.encode(x)
        design = torch.cat([enc, enc.new_ones(len(enc), 1)], dim=1)
        for name, d in self.decoders.items():
            if d.kind == "gaussian" and d.readout == "affine":
                coef = torch.linalg.lstsq(design, self.layout.get(x, name)).solution
                d.B.copy_(coef[:-1].T)
                d.b.copy_(coef[-1])

    def encode(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Forcing signals (..., T, K) of stacked data (..., T, D); ``noise`` is added to the features."""
        f = self.features(x)
        return self.encoder(f if noise is None else f + noise)

    # --- forced latent trajectory and the MTF loss ---------------------------------------------
    def forced_predictions(self, enc: torch.Tensor, inputs: torch.Tensor | None, alpha: float,
                           interval: int = 1) -> torch.Tensor:
        """One-step latent predictions under GTF toward the encoder signals.

        ``z_0 = (enc_0, 0)``; for t = 1 .. T: ``z_t = F(z~_{t-1}) + C s_t`` (recorded), then
        every ``interval`` steps ``z~_t[:K] = (1 - alpha) z_t[:K] + alpha enc_t``.
        alpha = 1 with interval tau is the lab's sparse MTF forcing.

        enc : (S, T + 1, K); inputs : (S, T + 1, K_s) or None -> (S, T, M)
        """
        K, M = self.forcing_dim, self.latent.latent_dim
        z = torch.cat([enc[:, 0], enc.new_zeros(enc.shape[0], M - K)], dim=-1)
        preds = []
        for t in range(1, enc.shape[1]):
            z = self.latent.step(z, None if inputs is None else inputs[:, t])
            preds.append(z)
            if t % interval == 0:
                forced = (1 - alpha) * z[:, :K] + alpha * enc[:, t]
                z = torch.cat([forced, z[:, K:]], dim=-1)
        return torch.stack(preds, dim=1)

    def nll_terms(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Weighted sum over views of the mean NLL of x (S, T, D) given latent units z (S, T, K)."""
        total = z.new_zeros(())
        for name, d in self.decoders.items():
            nuisance = self.layout.get(x, f"{name}:nuisance")
            total = total + self.weights[name] * d.nll(z, self.layout.get(x, name), nuisance=nuisance)
        return total

    def loss_terms(self, batch: torch.Tensor, alpha: float, interval: int = 1,
                   noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The MTF loss terms on a batch of windows (S, T + 1, D).

        ``rec``: NLL of x_t through the decoders from the encoder states;
        ``pred``: NLL of x_t from the one-step predictions F(z~_{t-1});
        ``latent``: mean squared difference between encoder states and predictions
        (as ``bptt_algorithm.compute_loss`` of DurstewitzLab/MTF).
        """
        enc = self.encode(batch, noise)
        preds = self.forced_predictions(enc, self.layout.get(batch, "inputs"), alpha, interval)
        zk = preds[..., : self.forcing_dim]
        return {
            "rec": self.nll_terms(enc, batch),
            "pred": self.nll_terms(zk, batch[:, 1:]),
            "latent": torch.mean((enc[:, 1:] - zk) ** 2),
        }

    # --- generation ------------------------------------------------------------------------
    @torch.no_grad()
    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        """z_0 = (encoder state of the first time point, 0) from stacked data (T, D) -> (M,)."""
        enc = self.encode(x)[0]
        return torch.cat([enc, enc.new_zeros(self.latent.latent_dim - self.forcing_dim)])

    @torch.no_grad()
    def decode(self, z: torch.Tensor, nuisance: Mapping[str, torch.Tensor] | None = None,
               sample: bool = False, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Each view's expected observation (or a sample) for latent states z (T, M).

        Categorical views give class probabilities (T, C) as their mean, labels (T, 1) as samples.
        ``nuisance``: fMRI regressors per view name (T, R); zero when missing.
        """
        zk = z[..., : self.forcing_dim]
        out = {}
        for name, d in self.decoders.items():
            r = (nuisance or {}).get(name)
            if r is None and getattr(d, "n_nuisance", 0):
                r = z.new_zeros(*z.shape[:-1], d.n_nuisance)
            out[name] = d.sample(zk, generator, nuisance=r) if sample else d.mean(zk, nuisance=r)
        return out
