"""Progress reporting for training: a tqdm bar on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys

from tqdm.auto import tqdm

log = logging.getLogger("dsrpipe.training")


class Progress:
    """Callback showing training progress.

    On an interactive terminal a tqdm bar; otherwise (Snakemake logs, SLURM)
    a plain log line every ``log_every`` epochs.
    """

    def __init__(self, total_epochs: int, log_every: int = 25, label: str = "train", interactive: bool | None = None):
        self.total = total_epochs
        self.log_every = log_every
        self.label = label
        interactive = sys.stderr.isatty() if interactive is None else interactive
        self.bar = tqdm(total=total_epochs, desc=label, unit="epoch") if interactive else None

    def __call__(self, record, model) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{record.loss:.4g}")
            if record.epoch == self.total:
                self.bar.close()
        elif record.epoch % self.log_every == 0 or record.epoch in (1, self.total):
            log.info("%s: epoch %d/%d loss %.5g lr %.2e (%.1f s)", self.label, record.epoch,
                     self.total, record.loss, record.lr, record.wall_time_s)
