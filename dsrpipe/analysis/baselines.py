"""Trivial reference models, so every report shows how much better than chance a reconstruction is.

Both are fitted on the training segment only and evaluated exactly like a trained model.
"""

from __future__ import annotations

import numpy as np
import torch

from dsrpipe import DsrpipeError
from dsrpipe.models.base import LatentModel


class MeanBaseline(LatentModel):
    """Predicts the training mean at every step: ``F(z) = mean``."""

    name = "mean"

    def __init__(self, mean: np.ndarray) -> None:
        super().__init__(len(mean))
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, dtype=float)))

    @classmethod
    def fit(cls, x_train: np.ndarray) -> "MeanBaseline":
        return cls(np.asarray(x_train, dtype=float).mean(axis=0))

    def step(self, z, s=None):
        return torch.zeros_like(z) + self.mean.to(z.dtype)

    def jacobian(self, z):
        return torch.zeros((*z.shape, z.shape[-1]), dtype=z.dtype)

    def norm_bound(self) -> float:
        return 0.0

    def hyperparameters(self) -> dict:
        return {"mean": self.mean.tolist()}


class VAR1Baseline(LatentModel):
    """Linear first-order autoregression ``F(z) = A z + c``, least squares on the training data."""

    name = "var1"

    def __init__(self, A: np.ndarray, c: np.ndarray) -> None:
        super().__init__(len(c))
        self.register_buffer("A", torch.as_tensor(np.asarray(A, dtype=float)))
        self.register_buffer("c", torch.as_tensor(np.asarray(c, dtype=float)))

    @classmethod
    def fit(cls, x_train: np.ndarray) -> "VAR1Baseline":
        """Least-squares fit of ``x_{t+1} = A x_t + c`` on a (T, N) trajectory."""
        x = np.asarray(x_train, dtype=float)
        if x.ndim != 2 or x.shape[0] <= x.shape[1] + 1:
            raise DsrpipeError(f"VAR(1) needs a T x N series with T > N + 1, got shape {x.shape}")
        design = np.hstack([x[:-1], np.ones((len(x) - 1, 1))])
        coef, *_ = np.linalg.lstsq(design, x[1:], rcond=None)
        return cls(coef[:-1].T, coef[-1])

    def step(self, z, s=None):
        return z @ self.A.to(z.dtype).T + self.c.to(z.dtype)

    def jacobian(self, z):
        return self.A.to(z.dtype).expand(*z.shape[:-1], *self.A.shape)

    def norm_bound(self) -> float:
        return float(torch.linalg.matrix_norm(self.A, ord=2))

    def hyperparameters(self) -> dict:
        return {"A": self.A.tolist(), "c": self.c.tolist()}


BASELINES = {"mean": MeanBaseline, "var1": VAR1Baseline}
