"""Errors a person can act on.

Every problem caused by the user's input (a flag, a file, a checkpoint) raises
:class:`UserError`. The command line prints its one-line message and exits with
status 2, without a traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import math


class UserError(Exception):
    """Bad input: the message names the value and says what to do."""


class DataNotFoundError(UserError):
    """A scene's files are missing: the message says which files, where, and how to get them."""


class TrainingDiverged(UserError):
    """The training loss or the weights became nan or infinite: training cannot recover, so it stops.

    ``epoch`` is 1-based; ``loss`` the non-finite epoch loss; ``lr`` the run's learning rate (its
    ``--lr``); ``lr_at_epoch`` the rate the scheduler had reached at that epoch."""

    def __init__(self, model: str, epoch: int, loss: float, lr: float, lr_at_epoch: float,
                 previous_loss: float | None = None):
        self.model, self.epoch, self.loss, self.lr, self.lr_at_epoch = model, epoch, loss, lr, lr_at_epoch
        before = f" (epoch {epoch - 1}: {previous_loss:.4g})" if previous_loss is not None else ""
        scheduled = f" at the scheduled rate {lr_at_epoch:g}" if lr_at_epoch != lr else ""
        what = (f"its weights are no longer finite (training loss {loss:.4g}{before})" if math.isfinite(loss)
                else f"the training loss is {loss}{before}")
        super().__init__(f"{model} diverged at epoch {epoch}{scheduled}: {what} and the weights cannot recover; "
                         f"{divergence_hint(lr)}")

    def as_record(self) -> dict:
        """What a bench table keeps of the divergence."""
        return {"epoch": self.epoch, "loss": f"{self.loss:.4g}", "lr": self.lr, "lr_at_epoch": self.lr_at_epoch}


def divergence_hint(lr: float | None) -> str:
    """What to do about a diverged training: lower the run's learning rate ``lr`` (when known)."""
    now = f" (now {lr:g})" if lr is not None else ""
    return f"lower --lr{now} or choose another --optimizer"
