"""Subsequence sampling from a training trajectory."""

from __future__ import annotations

import torch

from dsrpipe import DsrpipeError


class SubsequenceSampler:
    """Draw batches of windows of length ``seq_len + 1`` from one trajectory.

    Parameters
    ----------
    data : Tensor, shape (T, N)
    seq_len : int
        Number of predicted steps per window (the window holds seq_len + 1 points).
    batch_size : int
    generator : torch.Generator
        Seeded generator: the same seed gives the same batches.
    """

    def __init__(self, data: torch.Tensor, seq_len: int, batch_size: int, generator: torch.Generator):
        if data.shape[0] < seq_len + 2:
            raise DsrpipeError(
                f"training data has {data.shape[0]} samples, fewer than seq_len + 2 = {seq_len + 2}"
            )
        self.data = data
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.generator = generator
        self._offsets = torch.arange(seq_len + 1)

    def sample(self) -> torch.Tensor:
        """A batch of shape (batch_size, seq_len + 1, N)."""
        high = self.data.shape[0] - self.seq_len
        # indices come from the (CPU) generator, so CPU and GPU runs draw the same batches
        starts = torch.randint(0, high, (self.batch_size,), generator=self.generator)
        return self.data[(starts[:, None] + self._offsets).to(self.data.device)]
