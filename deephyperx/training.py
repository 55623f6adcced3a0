"""The one training loop for every neural model.

Seeding is per epoch (the batch order, augmentation and dropout of epoch ``e`` depend
only on the run seed and ``e``), so a run resumed from its checkpoint at epoch ``e``
continues exactly as the uninterrupted run would have.

Launched by torchrun (see :mod:`deephyperx.distributed`), the same loop trains data-parallel:
every rank draws the same epoch order and trains on its own shard of it, ``batch_size`` per rank;
rank 0 validates, broadcasts the scores and writes the checkpoints.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from deephyperx import distributed
from deephyperx.checkpoint import save_checkpoint
from deephyperx.config import BEST_METRICS
from deephyperx.precision import precision_context
from deephyperx.errors import TrainingDiverged, UserError
from deephyperx.monitor import Monitor
from deephyperx.sampling import BatchMaker, batches, sample_order
from deephyperx.scene import IGNORE
from deephyperx.seeding import derived_seed, rng_states, torch_generator
from deephyperx.steps import StepContext, TrainingStep


@dataclass
class TrainingData:
    """Batches for training, validation and (semi-supervised models) unlabelled pixels."""

    train: BatchMaker
    validation: Optional[BatchMaker]
    n_classes: int
    unlabelled: Optional[BatchMaker] = None
    class_weights: Optional[torch.Tensor] = None


@dataclass
class TrainingState:
    """What the loop carries from epoch to epoch and saves in checkpoints."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    best_epoch: Optional[int] = None  # 1-based epoch whose weights ``keep_best`` keeps
    stopped_early: bool = False  # ``early_stopping`` ended training before the last scheduled epoch


def is_better(record: dict[str, float], best: Optional[dict[str, float]], metric: str) -> bool:
    """Whether this epoch's validation ``record`` beats the ``best`` one so far on ``metric``.
    Accuracies on a few validation pixels tie often: a tie goes to the lower validation loss,
    then to the earlier epoch."""
    score = record.get(metric, math.nan)
    if math.isnan(score):
        return False
    if best is None:
        return True
    higher = BEST_METRICS[metric]
    if score != best[metric]:
        return score > best[metric] if higher else score < best[metric]
    return metric != "val_loss" and record.get("val_loss", math.inf) < best.get("val_loss", math.inf)


def inverse_median_frequency(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Class weights ``median(freq) / freq`` (classes absent from training get weight 0)."""
    counts = torch.bincount(labels[labels != IGNORE].flatten(), minlength=n_classes).double()
    freq = counts / counts.sum()
    present = freq > 0
    weights = torch.zeros(n_classes, dtype=torch.float64)
    weights[present] = freq[present].median() / freq[present]
    return weights.float()


def build_scheduler(optimizer: torch.optim.Optimizer, spec: Optional[dict], epochs: int):
    """A learning-rate scheduler from a small spec: plateau, multistep, cosine or none."""
    if not spec or spec.get("name", "none") == "none":
        return None
    name = spec["name"]
    if name == "plateau":
        patience = spec.get("patience", max(1, int(epochs * spec.get("patience_fraction", 0.25))))
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=spec.get("factor", 0.1), patience=patience)
    if name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(spec["milestones"]),
                                                    gamma=spec.get("gamma", 0.1))
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    raise UserError(f"unknown scheduler '{name}'; choose plateau, multistep, cosine or none")


class OrderedMaker:
    """The samples of ``maker`` at positions ``order`` (an epoch's shard), as a maker of its own."""

    def __init__(self, maker: BatchMaker, order: torch.Tensor):
        self.maker, self.order = maker, order

    def __len__(self) -> int:
        return len(self.order)

    def make(self, index: torch.Tensor, generator: Optional[torch.Generator] = None, augment: bool = False):
        return self.maker.make(self.order[index], generator=generator, augment=augment)


def training_batches(maker: BatchMaker, batch_size: int, seed: int, epoch: int, n_samples: Optional[int] = None,
                     rank: int = 0, world: int = 1):
    """The augmented training batches of ``epoch`` for ``rank`` of ``world`` processes.

    Every rank draws the same order from the epoch's stream ``(seed, epoch, 2)`` and takes its
    :func:`~deephyperx.distributed.shard`; augmentation then continues that stream on rank 0 (so
    one process draws exactly what :func:`batches` with ``shuffle=True`` would) and uses the rank's
    own stream ``(seed, epoch, 2, rank)`` elsewhere."""
    generator = torch_generator(seed, epoch, 2)
    order = distributed.shard(sample_order(len(maker), generator, shuffle=True, n_samples=n_samples), rank, world)
    augmentation = generator if rank == 0 else torch_generator(seed, epoch, 2, rank)
    return batches(OrderedMaker(maker, order), batch_size, augmentation, augment=True)


class Trainer:
    """Train ``model`` with ``step`` on ``data`` under ``config``; checkpoint after every epoch.

    In a torchrun process group the step trains ``self.network`` (the model in
    DistributedDataParallel) while ``self.model`` stays the plain model (validated, checkpointed
    and used for inference by rank 0, loadable by a single process)."""

    def __init__(self, model: nn.Module, step: TrainingStep, data: TrainingData, config: dict[str, Any],
                 monitor: Monitor, device: torch.device, checkpoint_path: Optional[Path] = None,
                 checkpoint_extra: Optional[Callable[[], dict]] = None):
        if distributed.launched() and not distributed.active():
            raise UserError(f"this command trains in one process but was launched by torchrun "
                            f"(WORLD_SIZE={os.environ.get('WORLD_SIZE')}); run it with python "
                            "(data-parallel training is `torchrun ... main.py --model ...`)")
        self.model = model.to(device)
        self.step = step
        self.data = data
        self.config = config
        self.monitor = monitor
        self.device = device
        self.checkpoint_path = checkpoint_path
        self.checkpoint_extra = checkpoint_extra or (lambda: {})
        self.optimizers = step.build_optimizers(self.model, config)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        if self.world > 1:
            require_data_parallel_step(step, self.optimizers, config)
        self.network = distributed.wrap_model(self.model, device)
        self.scheduler = build_scheduler(self.optimizers["model"], config.get("scheduler"), config["epoch"]) \
            if "model" in self.optimizers else None
        weights = data.class_weights.to(device) if data.class_weights is not None else None
        self.ctx = StepContext(data.n_classes, weights, config, device)
        self.state = TrainingState()
        self.early_stopping = config.get("early_stopping")
        self.keep_best = config.get("keep_best") or ("val_loss" if self.early_stopping else None)
        if self.keep_best and (data.validation is None or not len(data.validation)):
            raise UserError(f"--keep_best {self.keep_best} selects weights on validation pixels but this run has "
                            "none; give --val_fraction above 0 or drop --keep_best")
        self.best_record: Optional[dict[str, float]] = None
        self.best_weights: Optional[dict[str, torch.Tensor]] = None

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model_state": self.model.state_dict(),
            "optimizer_states": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scheduler_state": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.state.epoch,
            "step": self.state.step,
            "history": self.state.history,
            "train_seconds": self.state.train_seconds,
            "stopped_early": self.state.stopped_early,
            "rng_states": rng_states(),
            "config": self.config,
            "world_size": self.world,
            **({"best": {"epoch": self.state.best_epoch, "record": self.best_record, "model_state": self.best_weights}}
               if self.best_weights is not None else {}),
            **self.checkpoint_extra(),
        }

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Resume from a checkpoint written by :meth:`state_dict`."""
        self.model.load_state_dict(data["model_state"])
        for key, optimizer in self.optimizers.items():
            optimizer.load_state_dict(data["optimizer_states"][key])
        if self.scheduler is not None and data.get("scheduler_state") is not None:
            self.scheduler.load_state_dict(data["scheduler_state"])
        best = data.get("best")
        self.state = TrainingState(data["epoch"], data["step"], list(data["history"]), data["train_seconds"],
                                   best["epoch"] if best else None, bool(data.get("stopped_early", False)))
        if best and self.keep_best:
            self.best_record, self.best_weights = best["record"], best["model_state"]

    # --- the loop ----------------------------------------------------------------------------
    def fit(self, stop_after_epoch: Optional[int] = None) -> TrainingState:
        """Train until ``config['epoch']`` epochs are done (or ``stop_after_epoch``, for tests)."""
        cfg, seed = self.config, int(self.config["seed"])
        epochs, batch_size = int(cfg["epoch"]), int(cfg["batch_size"])
        if self.state.epoch < epochs:  # the plan, for the console's estimate of the time it takes
            self.monitor.training_started({"epochs": epochs, "start_epoch": self.state.epoch,
                                           "batches": self.batches_per_epoch(), "batch_size": batch_size})
        while self.state.epoch < epochs and not self.state.stopped_early:
            epoch = self.state.epoch
            started = time.perf_counter()
            torch.manual_seed(derived_seed(seed, epoch, 1, *distributed.rank_keys()))
            unlabelled = self._unlabelled_stream(seed, epoch)
            self.network.train()
            losses = []
            for batch in training_batches(self.data.train, batch_size, seed, epoch, cfg.get("epoch_samples"),
                                          self.rank, self.world):
                if unlabelled is not None:
                    batch.unlabelled = next(unlabelled).inputs
                with precision_context(self.config.get("precision") or "fp32", self.device):
                    logs = self.step(self.network, batch.to(self.device), self.optimizers, self.ctx)
                self.state.step += 1
                losses.append(logs["loss"])
                self.monitor.iteration(self.state.step, logs)
            record = {"train_loss": self._mean_loss(losses)}
            record.update(self._validation_scores(batch_size))
            record["lr"] = float(self.optimizers[next(iter(self.optimizers))].param_groups[0]["lr"])
            self._stop_if_diverged(record)
            self._scheduler_step(record)
            self.state.train_seconds += time.perf_counter() - started
            self.state.history.append(record)
            self.state.epoch += 1
            self._remember_if_best(record)
            self.state.stopped_early = self._patience_spent()
            self.monitor.epoch_ended(epoch, record)
            self.step.epoch_ended(self.model, epoch, self.data, self.ctx, self.monitor)
            if self.checkpoint_path is not None and self.rank == 0:
                save_checkpoint(self.checkpoint_path, self.state_dict())
            if stop_after_epoch is not None and self.state.epoch >= stop_after_epoch:
                break
        if (self.state.epoch >= epochs or self.state.stopped_early) and self.best_weights is not None:
            self._restore_best()
        return self.state

    def _patience_spent(self) -> bool:
        """Whether ``early_stopping`` ends training now: the lowest validation loss so far is that many
        epochs old (the authors of A2S2K-ResNet and DBDA stop after 20 epochs without a new lowest loss)."""
        if not self.early_stopping:
            return False
        if "val_loss" not in self.state.history[-1]:
            raise UserError(f"--early_stopping {self.early_stopping} watches the validation loss, which this "
                            f"model's validation does not give ({', '.join(self.state.history[-1])}); drop it")
        losses = [record.get("val_loss", math.nan) for record in self.state.history]
        lowest = min(range(len(losses)), key=lambda i: (math.isnan(losses[i]), losses[i], i))
        if len(losses) - 1 - lowest < self.early_stopping:
            return False
        self.monitor.text(f"early stopping after epoch {len(losses)}: the validation loss has not fallen below "
                          f"epoch {lowest + 1}'s ({losses[lowest]:.4f}) for {self.early_stopping} epochs")
        return True

    def batches_per_epoch(self) -> int:
        """The batches each rank trains an epoch (see :func:`training_batches`)."""
        available = len(self.data.train)
        samples = (self.config.get("epoch_samples") or available) if available else 0
        per_rank = -(-int(samples) // self.world)
        return -(-per_rank // int(self.config["batch_size"]))

    def _stop_if_diverged(self, record: dict[str, float]) -> None:
        """Raise :class:`TrainingDiverged` when the epoch's training loss or any weight is nan or
        infinite (before the epoch is checkpointed, so the last checkpoint keeps finite weights)."""
        if math.isfinite(record["train_loss"]) and self._weights_finite():
            return
        previous = self.state.history[-1]["train_loss"] if self.state.history else None
        configured = self.config.get("lr")
        run_lr = float(configured) if configured is not None else record["lr"]
        raise TrainingDiverged(str(self.config.get("model", "the model")), self.state.epoch + 1, record["train_loss"],
                               run_lr, record["lr"], previous)

    def _weights_finite(self) -> bool:
        """Whether every parameter of the model is finite (a last step can overflow them even when
        the epoch's losses were finite)."""
        with torch.no_grad():
            return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def _remember_if_best(self, record: dict[str, float]) -> None:
        """Keep a copy of the weights when ``keep_best`` is set and this epoch is the best so far."""
        if not self.keep_best:
            return
        if self.keep_best not in record:
            raise UserError(f"--keep_best {self.keep_best}: this model's validation gives only "
                            f"{', '.join(k for k in record if k.startswith('val_')) or 'no scores'}")
        if is_better(record, self.best_record, self.keep_best):
            self.best_record = dict(record)
            self.best_weights = {k: v.detach().clone().cpu() for k, v in self.model.state_dict().items()}
            self.state.best_epoch = self.state.epoch

    def _restore_best(self) -> None:
        """At the end of the schedule, put the best validation epoch's weights in the model (and in
        the checkpoint that becomes model.pt)."""
        self.model.load_state_dict(self.best_weights)
        self.monitor.text(f"keeping the weights of epoch {self.state.best_epoch} (best {self.keep_best} "
                          f"{self.best_record[self.keep_best]:.4f}; last epoch "
                          f"{self.state.history[-1].get(self.keep_best, math.nan):.4f})")
        if self.checkpoint_path is not None and self.rank == 0:
            save_checkpoint(self.checkpoint_path, self.state_dict())

    def _mean_loss(self, losses: list[float]) -> float:
        """The epoch's mean training loss (over every rank's batches when distributed)."""
        if self.world > 1:
            return distributed.mean_across_ranks(losses)
        return float(np.mean(losses)) if losses else math.nan

    def _validation_scores(self, batch_size: int) -> dict[str, float]:
        """The step's validation scores, computed by rank 0 on the plain model and sent to every
        rank, so that a scheduler driven by them steps identically everywhere."""
        if self.data.validation is None or not len(self.data.validation):
            return {}
        scores = None
        if self.rank == 0:
            with precision_context(self.config.get("precision") or "fp32", self.device):
                scores = self.step.validate(self.model, self.data.validation, self.ctx, batch_size)
        return distributed.broadcast_object(scores)

    def _scheduler_step(self, record: dict[str, float]) -> None:
        if self.scheduler is None:
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(record.get("val_loss", record["train_loss"]))
        else:
            self.scheduler.step()

    def _unlabelled_stream(self, seed: int, epoch: int):
        """An endless shuffled stream of unlabelled batches for semi-supervised steps."""
        if not self.step.needs_unlabelled or self.data.unlabelled is None or not len(self.data.unlabelled):
            return None
        generator = torch_generator(seed, epoch, 3, *distributed.rank_keys())
        size = int(self.config["batch_size"])

        def stream():
            while True:
                yield from batches(self.data.unlabelled, size, generator, shuffle=True)
        return stream()


def require_data_parallel_step(step: Any, optimizers: dict[str, Any], config: dict[str, Any]) -> None:
    """Refuse, with one line, a training step that DDP cannot synchronise: one that makes its own
    updates (overrides ``TrainingStep.__call__``, e.g. adversarial generators calling sub-networks
    directly) or drives several optimisers. Supervised, semi-supervised and segmentation steps,
    whose every update goes through the model's forward with one optimiser, pass."""
    if type(step).__call__ is TrainingStep.__call__ and set(optimizers) == {"model"}:
        return
    model, supervision = config.get("model"), config.get("supervision")
    raise UserError(f"distributed training supports steps that update one optimiser through the model's forward "
                    f"(supervised, semi-supervised, segmentation); step '{supervision}' of model {model} makes its "
                    f"own updates: train {model} in one process (python, not torchrun)")
