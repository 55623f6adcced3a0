"""Training steps, one per supervision kind, registered by name.

The training loop knows nothing of losses: for each batch it calls the step named by
the model's ``supervision`` setting. A step builds its optimisers, does one update and
returns scalar logs. Later kinds (semi-supervised with reconstruction, adversarial
generators, multitask with distance maps) register their own step here without any
change to the loop.

Model convention: ``forward(*inputs)`` returns logits, (N, K) for centre-pixel models or
(N, K, P, P) for dense ones, or a tuple whose first element is those logits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deephyperx.errors import UserError
from deephyperx.metrics import confusion_matrix, metrics_from_confusion
from deephyperx.sampling import Batch, BatchMaker, batches
from deephyperx.scene import IGNORE


@dataclass
class StepContext:
    """What a step may need beside the batch."""

    n_classes: int
    class_weights: Optional[torch.Tensor]
    config: dict[str, Any]
    device: torch.device


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model's output (the first element of a tuple)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def classification_loss(logits: torch.Tensor, target: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    """Cross-entropy over labelled targets (centre or dense), with optional class weights."""
    return F.cross_entropy(logits, target, weight=ctx.class_weights, ignore_index=IGNORE)


def build_optimizer(parameters, config: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimiser named by ``config['optimizer']`` with lr, momentum and weight decay."""
    name, lr, wd = config["optimizer"].lower(), config["lr"], config.get("weight_decay", 0.0)
    momentum = config.get("momentum", 0.0)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(parameters, lr=lr, weight_decay=wd)
    if name == "adadelta":
        return torch.optim.Adadelta(parameters, lr=lr, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, momentum=momentum, weight_decay=wd)
    raise UserError(f"unknown optimizer '{name}'; choose sgd, adam, adamw, adagrad, adadelta or rmsprop")


class TrainingStep:
    """Supervised step: cross-entropy on the batch targets. Subclasses override what differs."""

    #: whether the loop must also pass a batch of unlabelled pixels (``batch.unlabelled``)
    needs_unlabelled: bool = False

    def build_optimizers(self, model: nn.Module, config: dict[str, Any]) -> dict[str, torch.optim.Optimizer]:
        return {"model": build_optimizer(model.parameters(), config)}

    def loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        logits = logits_of(model(*batch.inputs))
        loss = classification_loss(logits, batch.target, ctx)
        return loss, {}

    def __call__(self, model: nn.Module, batch: Batch, optimizers: dict[str, torch.optim.Optimizer],
                 ctx: StepContext) -> dict[str, float]:
        optimizer = optimizers["model"]
        optimizer.zero_grad(set_to_none=True)
        loss, logs = self.loss(model, batch, ctx)
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach()), **logs}

    def validate(self, model: nn.Module, maker: Any, ctx: StepContext, batch_size: int) -> dict[str, float]:
        """Validation scores of one epoch, logged with the epoch (default: loss, OA, AA, kappa of
        the classifier's prediction). Steps of other tasks (generators) report their own."""
        return validate(model, self, maker, ctx, batch_size)

    def epoch_ended(self, model: nn.Module, epoch: int, data: Any, ctx: StepContext, monitor: Any) -> None:
        """Called after each epoch (e.g. a generator sends real against synthetic spectra)."""

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batch: Batch, ctx: StepContext) -> tuple[float, torch.Tensor]:
        """Validation loss (unweighted cross-entropy) and logits of a batch."""
        logits = logits_of(model(*batch.inputs))
        loss = F.cross_entropy(logits, batch.target, ignore_index=IGNORE, reduction="sum")
        return float(loss), logits


_STEPS: dict[str, Callable[[], TrainingStep]] = {}


def register_step(name: str) -> Callable:
    """Register a :class:`TrainingStep` subclass for supervision kind ``name``."""
    def decorator(cls):
        _STEPS[name] = cls
        return cls
    return decorator


def get_step(name: str) -> TrainingStep:
    try:
        return _STEPS[name]()
    except KeyError:
        raise UserError(f"unknown supervision kind '{name}'; known: {', '.join(sorted(_STEPS))}") from None


register_step("supervised")(TrainingStep)


@torch.no_grad()
def validate(model: nn.Module, step: TrainingStep, maker: BatchMaker, ctx: StepContext,
             batch_size: int) -> dict[str, float]:
    """Validation loss, accuracy, OA, AA and kappa of the prediction against the target
    (labelled pixels only)."""
    model.eval()
    total_loss, count = 0.0, 0
    cm = np.zeros((ctx.n_classes, ctx.n_classes), dtype=np.int64)
    for batch in batches(maker, batch_size):
        batch = batch.to(ctx.device)
        loss, logits = step.evaluate(model, batch, ctx)
        labelled = batch.target != IGNORE
        total_loss += loss
        count += int(labelled.sum())
        cm += confusion_matrix(batch.target[labelled].cpu().numpy(), logits.argmax(1)[labelled].cpu().numpy(),
                               ctx.n_classes)
    scores = metrics_from_confusion(cm, [str(k) for k in range(ctx.n_classes)]) if count else None
    accuracy = scores["overall_accuracy"] if scores else math.nan
    return {"val_loss": total_loss / max(count, 1), "val_oa": accuracy,
            "val_aa": scores["average_accuracy"] if scores else math.nan,
            "val_kappa": scores["kappa"] if scores else math.nan}
