"""Gaussian readouts: how latent states map to data, and data to teacher signals.

Two readouts (REFERENCE.md, "Observation models"):

identity
    The first N latent units are the observations (M >= N). A trajectory
    starts from ``z_1 = [x_1, Lambda x_1]``: the M - N unobserved units come
    from a learned linear map ``Lambda`` (M - N, N) of the first observation,
    initialised at zero. Teacher signals are the data on the first N units.
affine
    ``x = B z`` with B (N, M), any M. Teacher signals are ``pinv(B) x`` on
    all M units and a trajectory starts from ``z_1 = pinv(B) x_1``. B starts
    from the leading principal axes of the training data when given.

The readout belongs to a trained model as much as its dynamics do: it is
saved with it (``readout.`` keys in the state dict) and used to generate
observations.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dsrpipe import DsrpipeError

READOUTS = ("identity", "affine")


class Readout(nn.Module):
    """Readout ``kind`` for N observed channels and M latent units.

    Parameters
    ----------
    kind : "identity" or "affine"
    n_obs : int
        N.
    latent_dim : int
        M.
    """

    def __init__(self, kind: str, n_obs: int, latent_dim: int) -> None:
        super().__init__()
        if kind not in READOUTS:
            raise DsrpipeError(f"unknown readout {kind!r}; choose one of {', '.join(READOUTS)}")
        if kind == "identity" and latent_dim < n_obs:
            raise DsrpipeError(
                f"train.latent_dim = {latent_dim} is smaller than the {n_obs} data channels; the identity "
                "readout needs latent_dim >= channels (use readout: affine for a smaller latent space)"
            )
        self.kind, self.n_obs, self.latent_dim = kind, int(n_obs), int(latent_dim)
        if kind == "identity":
            self.init_map = nn.Parameter(torch.zeros(latent_dim - n_obs, n_obs))
        else:
            bound = 1 / np.sqrt(latent_dim)
            self.B = nn.Parameter(torch.empty(n_obs, latent_dim).uniform_(-bound, bound))

    def hyperparameters(self) -> dict:
        return {"kind": self.kind, "n_obs": self.n_obs, "latent_dim": self.latent_dim}

    @torch.no_grad()
    def init_from_data(self, x: np.ndarray | torch.Tensor) -> None:
        """Affine readout: B from the leading min(N, M) principal axes of ``x`` (T, N)."""
        if self.kind != "affine":
            return
        x = torch.as_tensor(np.asarray(x), dtype=self.B.dtype)
        _, _, vh = torch.linalg.svd(x - x.mean(0), full_matrices=False)
        k = min(self.n_obs, self.latent_dim)
        self.B.zero_()
        self.B[:, :k] = vh[:k].T

    @property
    def n_forced(self) -> int:
        """How many leading latent units receive teacher signals."""
        return self.n_obs if self.kind == "identity" else self.latent_dim

    def observe(self, z: torch.Tensor) -> torch.Tensor:
        """Observations of latent states: (..., M) -> (..., N)."""
        if self.kind == "identity":
            return z[..., : self.n_obs]
        return z @ self.B.T

    def teacher(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher signals for the first ``n_forced`` latent units: (..., N) -> (..., n_forced)."""
        if self.kind == "identity":
            return x
        return x @ torch.linalg.pinv(self.B).T

    def initial_state(self, x0: torch.Tensor) -> torch.Tensor:
        """Latent state from the first observation: (..., N) -> (..., M)."""
        if self.kind == "identity":
            if self.latent_dim == self.n_obs:
                return x0
            return torch.cat([x0, x0 @ self.init_map.T], dim=-1)
        return self.teacher(x0)


@torch.no_grad()
def generate_observations(model, readout: Readout | None, x0: np.ndarray, n_steps: int, n_drop: int = 0,
                          inputs: np.ndarray | None = None) -> np.ndarray:
    """Free-running orbit from the observation ``x0`` (N,), read out: (n_steps, N).

    The first ``n_drop`` steps are generated and dropped. ``inputs``
    (n_drop + n_steps, K) drives the model when it has external inputs.
    """
    model = model.double()
    x0_t = torch.tensor(np.asarray(x0, dtype=np.float64))  # a copy: x0 may be a read-only view (Parquet)
    if readout is None:
        from dsrpipe.training.forcing import initial_state

        z0, observe = initial_state(x0_t, model.latent_dim), (lambda z: z[..., : len(x0)])
    else:
        readout = readout.double()
        z0, observe = readout.initial_state(x0_t), readout.observe
    s = None if inputs is None or not model.input_dim else torch.as_tensor(np.asarray(inputs), dtype=torch.float64)
    z = model.generate(z0, n_drop + n_steps, inputs=s)
    return observe(z[n_drop:]).numpy()
