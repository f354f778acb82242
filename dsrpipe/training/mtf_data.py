"""Simulated multimodal data with known ground truth for MTF tests and benchmarks.

One standardised Lorenz-63 orbit x_t seen three ways, as in the MTF paper's
Lorenz experiments (Brenner et al. 2024; DurstewitzLab/MTF ``datasets/lorenz``):
Gaussian (``x_t + noise``), Poisson spike counts with log-rates linear in x_t,
and categorical labels drawn from a softmax of a linear map of x_t.
"""

from __future__ import annotations

import numpy as np

from dsrpipe.systems import simulate_lorenz63


def multimodal_lorenz63(n_samples: int, dt: float = 0.05, noise: float = 0.05, n_neurons: int = 10,
                        n_categories: int = 4, rate_gain: float = 0.6, base_log_rate: float = 0.3,
                        label_gain: float = 2.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Simulate the three views of one Lorenz-63 orbit.

    Parameters
    ----------
    n_samples : int
    dt : float
        Sampling interval (time units).
    noise : float
        Sd of the Gaussian view's noise (the orbit is standardised).
    n_neurons : int
        Poisson channels: ``rate = exp(G x + base_log_rate)``, G ~ N(0, rate_gain^2).
    n_categories : int
        Labels ``c ~ softmax(Beta x)``, Beta ~ N(0, label_gain^2).
    seed : int
        Seeds the initial state and every random draw.

    Returns
    -------
    dict with ``states`` (T, 3) standardised orbit, ``gaussian`` (T, 3), ``counts``
    (T, n_neurons), ``rates`` (T, n_neurons), ``labels`` (T,) and ``label_probs``
    (T, n_categories).
    """
    x = simulate_lorenz63(n_samples, dt=dt, seed=seed)
    x = (x - x.mean(0)) / x.std(0)
    rng = np.random.default_rng(seed)
    gaussian = x + noise * rng.normal(size=x.shape)
    rates = np.exp(x @ rng.normal(scale=rate_gain, size=(n_neurons, 3)).T + base_log_rate)
    counts = rng.poisson(rates).astype(np.float64)
    logits = x @ rng.normal(scale=label_gain, size=(n_categories, 3)).T
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = (p.cumsum(1) > rng.uniform(size=(n_samples, 1))).argmax(1).astype(np.float64)
    return {"states": x, "gaussian": gaussian, "counts": counts, "rates": rates, "labels": labels,
            "label_probs": p}
