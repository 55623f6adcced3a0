"""Training steps of the dense segmentation models (aerial tiles): ``segmentation`` and
``distance_multitask``.

Both build one SGD/Adam/... optimiser (key ``model``, so the scheduler drives it) from the
model's ``parameter_groups()``: each group ``{"params": [...], "lr_scale": s}`` trains at
``lr * s`` (SegNet's encoder at half the rate), and a scheduler scales all groups alike. Targets
are (N, H, W) label maps with :data:`~deephyperx.scene.IGNORE` where unknown.

A model may define ``auxiliary_loss(output, target, ctx) -> (loss, logs)``; the ``segmentation``
step adds it to the cross-entropy (e.g. residual correction's per-branch losses).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from deephyperx.distance import signed_distance_maps
from deephyperx.sampling import Batch
from deephyperx.scene import IGNORE
from deephyperx.steps import StepContext, TrainingStep, build_optimizer, classification_loss, logits_of, register_step


def optimizer_groups(model: nn.Module, lr: float) -> list[dict[str, Any]]:
    """Optimiser parameter groups with their own learning rates, from ``model.parameter_groups()``
    (one group at ``lr`` when the model has none); empty groups are left out."""
    groups = model.parameter_groups() if hasattr(model, "parameter_groups") else \
        [{"params": list(model.parameters()), "lr_scale": 1.0}]
    return [{"params": list(g["params"]), "lr": lr * float(g.get("lr_scale", 1.0))} for g in groups if g["params"]]


def masked_l1(predicted: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of (N, K, H, W) maps over pixels whose label is known."""
    known = (labels != IGNORE).unsqueeze(1).expand_as(predicted)
    if not known.any():
        return predicted.sum() * 0.0
    return (predicted - target).abs()[known].mean()


@register_step("segmentation")
class SegmentationStep(TrainingStep):
    """Cross-entropy over the labelled pixels of dense label maps (class weights when balanced),
    plus the model's ``auxiliary_loss`` when it has one; logs ``classification`` and the extras."""

    def build_optimizers(self, model: nn.Module, config: dict[str, Any]) -> dict[str, torch.optim.Optimizer]:
        return {"model": build_optimizer(optimizer_groups(model, float(config["lr"])), config)}

    def loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        output = model(*batch.inputs)
        loss = classification_loss(logits_of(output), batch.target, ctx)
        logs = {"classification": float(loss.detach())}
        auxiliary = getattr(model, "auxiliary_loss", None)
        if auxiliary is not None:
            extra, extra_logs = auxiliary(output, batch.target, ctx)
            loss = loss + extra
            logs.update(extra_logs)
        return loss, logs


@register_step("distance_multitask")
class DistanceMultitaskStep(SegmentationStep):
    """Cross-entropy + lambda x L1 between the predicted and the true truncated signed distance maps
    (Audebert et al., CVIU 2019). The model returns ``(logits, distances)`` and carries
    ``distance_weight`` (lambda) and ``truncation`` (pixels); the true maps come from the batch's
    labels (:func:`deephyperx.distance.signed_distance_maps`), unlabelled pixels left out of the L1.
    Logs ``classification`` and ``distance``."""

    def loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        logits, distances = model(*batch.inputs)[:2]
        classification = classification_loss(logits, batch.target, ctx)
        truth = signed_distance_maps(batch.target, distances.shape[1], float(getattr(model, "truncation", 20.0)))
        distance = masked_l1(distances, truth.to(distances.dtype), batch.target)
        weight = float(getattr(model, "distance_weight", 1.0))
        return classification + weight * distance, {"classification": float(classification.detach()),
                                                    "distance": float(distance.detach())}
