"""Compile dsrpipe's Numba kernels once, into their on-disk cache.

The fused training driver, the batched-models driver, the orbit kernels and the
Lyapunov QR kernel are compiled on first use and cached next to their source
(``__pycache__``, ``cache=True``). A cold compile costs tens of seconds of CPU;
a cached load costs about half a second. Without a warm cache, every job of a
fresh installation that starts at the same time compiles the same code again,
side by side. :func:`warm_up` (``dsrpipe warm-up`` on the command line) does it
once, e.g. after installing on a cluster's shared file system and before
submitting the workflow. The test suite calls it once before its workers start.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import torch

logger = logging.getLogger(__name__)

#: one model per kernel family: shallow, PLRNN/ALRNN, dendritic
FAMILIES = ("shPLRNN", "PLRNN", "dendPLRNN")


def warm_up(models: tuple[str, ...] = FAMILIES) -> float:
    """Run every compiled kernel once on tiny data so its machine code lands in the cache.

    Parameters
    ----------
    models : model names (registry keys) whose kernels to compile

    Returns
    -------
    float : wall seconds it took (about 0.5 s per kernel when the cache was warm)
    """
    from dsrpipe.analysis.lyapunov import lyapunov_analysis
    from dsrpipe.config import TrainConfig
    from dsrpipe.systems import simulate_lorenz63
    from dsrpipe.training.batched import train_many
    from dsrpipe.training.loop import train

    start = time.perf_counter()
    x = simulate_lorenz63(400, seed=0)
    x = (x - x.mean(0)) / x.std(0)
    inputs = np.zeros((len(x), 1))
    for name in models:
        cfg = TrainConfig(model=name, hidden_dim=4, epochs=1, batches_per_epoch=1, batch_size=2, seq_len=10,
                          backend="numba", seed=0)
        result = train(x, cfg)
        train(x, cfg, inputs=inputs)
        train_many(x, dataclasses.replace(cfg, models_per_job=2), seeds=[0, 1], threads=1)
        model = result.model
        z0 = torch.zeros(model.latent_dim, dtype=torch.float64)
        model.generate(z0, 10)
        lyapunov_analysis(model, z0.numpy(), n_steps=20, n_transient=5)
    # one model's batch chunks on two threads (train_step_split: one compilation for every family,
    # used from M x L = CHUNK_MIN_WORK on)
    train(x, TrainConfig(hidden_dim=400, epochs=1, batches_per_epoch=1, batch_size=2, seq_len=10, backend="numba",
                         threads=2))
    seconds = time.perf_counter() - start
    logger.info("Numba kernels for %s ready (%.1f s)", ", ".join(models), seconds)
    return seconds
