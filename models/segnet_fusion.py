"""Multimodal SegNets that fuse co-registered sources (an optical image with a DSM, an OSM raster or
another sensor): FuseNet and V-FuseNet fuse the encoders' features (early fusion), SegNet-RC fuses
the predictions of one SegNet per source through a residual correction (late fusion).

Their forwards take one tensor per source, in the order of the run's ``inputs`` (the main optical
source first); see :mod:`models.segnet` for the shared parts and conventions.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from deephyperx.registry import register_model
from deephyperx.steps import StepContext, classification_loss
from .segnet import (Decoder, Encoder, VGG16_BLOCKS, check_options, check_sources, init_weights,
                           learning_rate_groups, load_vgg_encoder, scaled, segnet_protocol, source_labels)

BEYOND_RGB = ("Audebert, Le Saux & Lefèvre, Beyond RGB: very high resolution urban remote sensing with multimodal "
              "deep networks, ISPRS J. Photogramm. Remote Sens. 140, 20-32, 2018")


class _Fusion(nn.Module):
    """What the fusion models share: option checks, source names, the class layer, lr groups."""

    name = "fusion"

    def setup(self, n_classes: int, channels: Sequence[int], width: float, encoder_lr_scale: float,
              source_names: Optional[Sequence[str]]) -> None:
        self.channels = check_options(self.name, n_classes, channels, width, encoder_lr_scale, min_sources=2)
        self.names = source_labels(self.channels, source_names)
        self.n_classes, self.width, self.encoder_lr_scale = n_classes, width, encoder_lr_scale

    def encoders(self) -> list[nn.Module]:
        raise NotImplementedError

    def parameter_groups(self) -> list[dict]:
        return learning_rate_groups(self, self.encoders(), self.encoder_lr_scale)


def pool(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return F.max_pool2d(x, 2, return_indices=True)


@register_model("fusenet", family="segmentation", citation=(
        "Hazirbas, Ma, Domokos & Cremers, FuseNet: incorporating depth into semantic segmentation via fusion-based "
        "CNN architecture, ACCV 2016; for aerial images with a DSM: " + BEYOND_RGB),
        **segnet_protocol(inputs=["image", "dsm"]))
class FuseNet(_Fusion):
    """FuseNet (Hazirbas et al., ACCV 2016) as Audebert et al. use it on aerial images with a DSM
    (ISPRS J. 2018): a main SegNet encoder for the first source and an auxiliary VGG-16-BN encoder
    for each other source; after each of the 5 blocks, before pooling, the auxiliary encoders'
    activations are summed into the main encoder's, while each auxiliary encoder carries on with its
    own, unfused features (and pools them itself). One SegNet decoder unpools at the main encoder's
    pooling indices.

    Choices and departures: with more than two sources every auxiliary encoder is summed into the
    main one (the papers fuse two). No dropout (Hazirbas et al. drop out in the deeper blocks).
    ``vgg_weights`` initialises every encoder (first convolutions adapted to each source's
    channels), as the papers initialise both from VGG-16. ``width`` as in SegNet (1.0 = paper).
    """

    name = "fusenet"

    def __init__(self, n_classes: int, channels: Sequence[int], *, width: float = 1.0,
                 vgg_weights: Optional[str] = None, encoder_lr_scale: float = 0.5,
                 source_names: Optional[Sequence[str]] = None):
        super().__init__()
        self.setup(n_classes, channels, width, encoder_lr_scale, source_names)
        self.main = Encoder(self.channels[0], width)
        self.auxiliary = nn.ModuleList(Encoder(c, width) for c in self.channels[1:])
        self.decoder = Decoder(self.main.widths)
        self.classifier = nn.Conv2d(self.decoder.out_channels, n_classes, 3, padding=1)
        init_weights(self)
        if vgg_weights:
            for encoder in self.encoders():
                load_vgg_encoder(encoder, vgg_weights, width)

    def encoders(self) -> list[nn.Module]:
        return [self.main, *self.auxiliary]

    def forward(self, *sources: torch.Tensor) -> torch.Tensor:
        check_sources(self.name, sources, self.channels, self.names)
        x, others = sources[0], list(sources[1:])
        indices, sizes = [], []
        for b, block in enumerate(self.main.blocks):
            others = [encoder.blocks[b](o) for encoder, o in zip(self.auxiliary, others)]
            x = block(x) + sum(others)
            sizes.append(x.shape[-2:])
            x, where = pool(x)
            indices.append(where)
            others = [F.max_pool2d(o, 2) for o in others]
        return self.classifier(self.decoder(x, indices, sizes))


@register_model("vfusenet", family="segmentation", citation=BEYOND_RGB, **segnet_protocol(inputs=["image", "dsm"]))
class VFuseNet(_Fusion):
    """V-FuseNet (Audebert, Le Saux & Lefèvre, ISPRS J. 2018): FuseNet made symmetric by a third,
    "virtual" encoder that processes the fused modality while each real modality keeps its own
    encoder.

    Each source has a VGG-16-BN encoder fed only by its own data. After block 1 the virtual
    modality is the sum of the sources' block-1 activations; at each later block b the virtual
    encoder's own block b (VGG-16-BN blocks 2 to 5) runs on its pooled features and the sources'
    block-b activations are added to its output (residual fusion: the virtual branch learns what to
    add to the sum of the modalities). The SegNet decoder unpools the virtual branch at its pooling
    indices.

    Choices and departures: the full text of the paper could not be read here; this follows its
    description (a virtual encoder learning from the fused activations, fused by residual sums) as
    we read it, so the exact point where the virtual branch starts is our choice. Fusion is before
    pooling, as in FuseNet; more than two sources all feed the virtual branch. ``vgg_weights`` initialises the real encoders and blocks 2-5 of the virtual
    one. ``width`` as in SegNet (1.0 = paper).
    """

    name = "vfusenet"

    def __init__(self, n_classes: int, channels: Sequence[int], *, width: float = 1.0,
                 vgg_weights: Optional[str] = None, encoder_lr_scale: float = 0.5,
                 source_names: Optional[Sequence[str]] = None):
        super().__init__()
        self.setup(n_classes, channels, width, encoder_lr_scale, source_names)
        self.branches = nn.ModuleList(Encoder(c, width) for c in self.channels)
        widths = self.branches[0].widths
        self.virtual = Encoder(widths[0], width, first_block=1)
        self.decoder = Decoder(widths)
        self.classifier = nn.Conv2d(self.decoder.out_channels, n_classes, 3, padding=1)
        init_weights(self)
        if vgg_weights:
            for encoder in self.encoders():
                load_vgg_encoder(encoder, vgg_weights, width)

    def encoders(self) -> list[nn.Module]:
        return [*self.branches, self.virtual]

    def forward(self, *sources: torch.Tensor) -> torch.Tensor:
        check_sources(self.name, sources, self.channels, self.names)
        indices, sizes = [], []
        real, virtual = list(sources), None
        for b in range(len(VGG16_BLOCKS)):
            real = [branch.blocks[b](x) for branch, x in zip(self.branches, real)]
            fused = sum(real)
            virtual = fused if virtual is None else self.virtual.blocks[b - 1](virtual) + fused
            sizes.append(virtual.shape[-2:])
            virtual, where = pool(virtual)
            indices.append(where)
            real = [F.max_pool2d(x, 2) for x in real]
        return self.classifier(self.decoder(virtual, indices, sizes))


class _SegNetBranch(nn.Module):
    """One source's SegNet (encoder, decoder, class layer) inside the residual-correction model."""

    def __init__(self, channels: int, n_classes: int, width: float):
        super().__init__()
        self.encoder = Encoder(channels, width)
        self.decoder = Decoder(self.encoder.widths)
        self.classifier = nn.Conv2d(self.decoder.out_channels, n_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.decoder(*self.encoder(x)))


@register_model("segnet_rc", family="segmentation", citation=(
        "Audebert, Le Saux & Lefèvre, Semantic segmentation of Earth observation data using multimodal and "
        "multi-scale deep networks, ACCV 2016; " + BEYOND_RGB), **segnet_protocol(inputs=["image", "dsm"]))
class SegNetRC(_Fusion):
    """Late fusion by residual correction (Audebert et al., ACCV 2016 and ISPRS J. 2018): one SegNet
    per source, then a correction module that reads all their predictions and adds a correction to
    their average: logits = mean_i(Z_i) + c(Z_1, ..., Z_S), c being three 3x3 convolutions (ReLU
    between) on the concatenated predictions. Forward returns ``(logits, (Z_1, ..., Z_S))``.

    Choices and departures: the papers train each SegNet alone, then the correction; here all are
    trained at once with cross-entropy on the corrected logits plus ``branch_weight`` (1.0) times the
    mean cross-entropy of the branches (so that each branch still learns to predict alone: see
    :meth:`auxiliary_loss`, which the ``segmentation`` step adds). The correction's last layer starts
    at zero, so training starts from the plain average. The correction's hidden width is
    ``correction_channels`` (64, our choice) times ``width``. The papers feed the correction the
    branches' last feature maps or predictions; we give it the predictions (K channels each).
    """

    name = "segnet_rc"

    def __init__(self, n_classes: int, channels: Sequence[int], *, width: float = 1.0,
                 vgg_weights: Optional[str] = None, encoder_lr_scale: float = 0.5,
                 source_names: Optional[Sequence[str]] = None, branch_weight: float = 1.0,
                 correction_channels: int = 64):
        super().__init__()
        self.setup(n_classes, channels, width, encoder_lr_scale, source_names)
        self.branch_weight = float(branch_weight)
        self.branches = nn.ModuleList(_SegNetBranch(c, n_classes, width) for c in self.channels)
        hidden = scaled(correction_channels, width)
        self.correction = nn.Sequential(
            nn.Conv2d(n_classes * len(self.channels), hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, n_classes, 3, padding=1))
        init_weights(self)
        nn.init.zeros_(self.correction[-1].weight)
        if vgg_weights:
            for encoder in self.encoders():
                load_vgg_encoder(encoder, vgg_weights, width)

    def encoders(self) -> list[nn.Module]:
        return [branch.encoder for branch in self.branches]

    def forward(self, *sources: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        check_sources(self.name, sources, self.channels, self.names)
        predictions = tuple(branch(x) for branch, x in zip(self.branches, sources))
        average = torch.stack(predictions).mean(0)
        return average + self.correction(torch.cat(predictions, 1)), predictions

    def auxiliary_loss(self, output: tuple, target: torch.Tensor, ctx: StepContext) -> tuple[torch.Tensor, dict]:
        """``branch_weight`` x the mean cross-entropy of the branches' own predictions."""
        losses = [classification_loss(z, target, ctx) for z in output[1]]
        mean = torch.stack(losses).mean()
        return self.branch_weight * mean, {"branches": float(mean.detach())}
