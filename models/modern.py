"""Spectral-spatial 3-D networks: SSRN (Zhong et al., 2018) and HybridSN (Roy et al., 2020)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deephyperx.dense_eval import dense_conv, dense_linear, pointwise_linear
from deephyperx.errors import UserError
from deephyperx.registry import register_model


def _check_dropout(model: str, dropout: float) -> None:
    """Refuse a dropout probability outside [0, 1)."""
    if not 0.0 <= dropout < 1.0:
        raise UserError(f"model {model}: dropout {dropout!r} must lie in [0, 1); e.g. model_args: {{dropout: 0.5}}")


def _conv_bn_relu(conv: nn.Module, norm: nn.Module) -> nn.Sequential:
    """A convolution followed by batch normalisation and ReLU (SSRN's "CONVBN" layer)."""
    return nn.Sequential(conv, norm, nn.ReLU())


class _ResidualBlock(nn.Module):
    """Two shape-preserving convolutions, each followed by batch normalisation, and an identity
    shortcut: ``ReLU(x + BN(conv(ReLU(BN(conv(x))))))``."""

    def __init__(self, first: nn.Module, second: nn.Module, norm1: nn.Module, norm2: nn.Module):
        super().__init__()
        self.first, self.norm1 = first, norm1
        self.second, self.norm2 = second, norm2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = torch.relu(self.norm1(self.first(x)))
        return torch.relu(x + self.norm2(self.second(residual)))


def _spectral_block(filters: int, kernel: int) -> _ResidualBlock:
    """Residual block of 1x1xkernel convolutions along the spectral axis, padded to keep the depth."""
    def conv() -> nn.Conv3d:
        return nn.Conv3d(filters, filters, (kernel, 1, 1), padding=(kernel // 2, 0, 0))
    return _ResidualBlock(conv(), conv(), nn.BatchNorm3d(filters), nn.BatchNorm3d(filters))


def _spatial_block(filters: int) -> _ResidualBlock:
    """Residual block of 3x3 spatial convolutions, padded to keep the patch size."""
    def conv() -> nn.Conv2d:
        return nn.Conv2d(filters, filters, 3, padding=1)
    return _ResidualBlock(conv(), conv(), nn.BatchNorm2d(filters), nn.BatchNorm2d(filters))


def _check_ssrn_sizes(n_bands: int, patch_size: int, blocks: int) -> None:
    """SSRN's first spectral kernel spans 7 bands and its 3x3x128 convolution is unpadded."""
    if patch_size < 3:
        raise UserError(f"SSRN needs patches of at least 3x3 (its 3x3x128 convolution is unpadded), "
                        f"not {patch_size}x{patch_size}; use --patch_size 7 (the paper's) or any size >= 3")
    if n_bands < SSRN.SPECTRAL_KERNEL:
        raise UserError(f"SSRN needs at least {SSRN.SPECTRAL_KERNEL} bands (its first kernel spans 7 bands), "
                        f"not {n_bands}; use a cube with more bands or no PCA reduction")
    if not isinstance(blocks, int) or blocks < 1:
        raise UserError(f"SSRN: blocks {blocks!r} must be a whole number >= 1 (the paper uses 2)")


@register_model("SSRN", patch_size=7, epoch=200, batch_size=16, optimizer="rmsprop", lr=3e-4, weight_decay=2e-4,
                scheduler={"name": "none"},
                citation="Zhong, Li, Luo & Chapman, Spectral-spatial residual network for hyperspectral image "
                         "classification: a 3-D deep learning framework, IEEE TGRS 56(2), 847-858, 2018")
class SSRN(nn.Module):
    """Spectral-spatial residual network on raw PxPxB cubes (Indian Pines: 7x7x200).

    Spectral feature learning: 24 kernels 1x1x7 with spectral stride 2 (200 bands -> depth 97,
    unpadded), then ``blocks`` spectral residual blocks (two 1x1x7 convolutions of 24 kernels,
    padded, identity shortcut), then 128 kernels 1x1xdepth collapsing the spectral axis.
    Spatial feature learning: the 128 maps become the depth axis of a one-channel volume and
    24 kernels 3x3x128 (unpadded: PxP -> (P-2)x(P-2)), then ``blocks`` spatial residual blocks
    (two 3x3x1 convolutions of 24 kernels, padded, identity shortcut). Average pooling over the
    (P-2)x(P-2) maps, dropout, fully connected softmax layer. Every convolution is followed by
    batch normalisation (the paper's "CONVBN"); He-normal initialisation (the repository's,
    untruncated here).

    Paper vs the authors' Keras repository (zilongzhong/SSRN): we follow the paper's figure of
    two spectral and two spatial residual blocks with identity shortcuts; the repository's
    training script builds one block of each (``build_resnet_8``; ``blocks=1`` here), puts a
    1x1x1 convolution on every spatial shortcut, uses pre-activation units (BN-ReLU-conv) and
    applies two BN-ReLU pairs in a row after each block stack. Where the ReLUs sit is not
    drawn in the figure; we use the standard residual unit (ReLU after the first BN and after
    the sum). A 3x3x128 kernel spanning the whole 128-deep axis, and a 3x3x1 kernel on a depth-1
    volume, are 2-D convolutions: they are written as ``Conv2d`` (same weights, same function).
    Dropout 0.5 before the classifier and the L2 penalty of 1e-4 on kernels come from the
    repository (its ``l2(1e-4)`` on the loss is a gradient of 2e-4 w, hence weight_decay 2e-4,
    which the engine applies to every parameter). The repository trains without a learning-rate
    schedule, so the scheduler is "none"; it keeps the weights of the best validation loss,
    the engine the last ones. PyTorch's batch-norm momentum/epsilon are kept (Keras: 0.99/1e-3)
    and the engine's RMSprop smoothing constant is PyTorch's 0.99 (Keras: 0.9).
    """

    SPECTRAL_KERNEL = 7
    FILTERS = 24
    SPECTRAL_MAPS = 128

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 7, *, blocks: int = 2,
                 dropout: float = 0.5):
        super().__init__()
        _check_ssrn_sizes(n_bands, patch_size, blocks)
        _check_dropout("SSRN", dropout)
        depth = (n_bands - self.SPECTRAL_KERNEL) // 2 + 1
        f = self.FILTERS
        self.spectral = nn.Sequential(
            _conv_bn_relu(nn.Conv3d(1, f, (self.SPECTRAL_KERNEL, 1, 1), stride=(2, 1, 1)), nn.BatchNorm3d(f)),
            *[_spectral_block(f, self.SPECTRAL_KERNEL) for _ in range(blocks)],
            _conv_bn_relu(nn.Conv3d(f, self.SPECTRAL_MAPS, (depth, 1, 1)), nn.BatchNorm3d(self.SPECTRAL_MAPS)),
        )
        self.spatial = nn.Sequential(
            _conv_bn_relu(nn.Conv2d(self.SPECTRAL_MAPS, f, 3), nn.BatchNorm2d(f)),
            *[_spatial_block(f) for _ in range(blocks)],
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(f, n_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectral = self.spectral(x.unsqueeze(1))  # (N, 128, 1, P, P): spectral axis collapsed
        spatial = self.spatial(spectral.squeeze(2))  # (N, 24, P-2, P-2)
        return self.classifier(self.dropout(spatial.mean(dim=(2, 3))))


def _check_hybridsn_sizes(n_bands: int, patch_size: int) -> None:
    """HybridSN's convolutions are all unpadded: four 3x3 spatial kernels take 8 pixels off each
    side of the patch, and spectral kernels 7, 5, 3 take 12 bands off the spectral axis."""
    if patch_size < HybridSN.MIN_PATCH:
        raise UserError(f"HybridSN needs patches of at least {HybridSN.MIN_PATCH}x{HybridSN.MIN_PATCH} (four unpadded "
                        f"3x3 convolutions), not {patch_size}x{patch_size}; use --patch_size 25 (the paper's) or >= 9")
    if n_bands < HybridSN.MIN_BANDS:
        raise UserError(f"HybridSN needs at least {HybridSN.MIN_BANDS} bands or PCA components (spectral kernels "
                        f"7, 5, 3 are unpadded), not {n_bands}; use reduction components >= 13 (the paper's: 30 or 15)")


@register_model("HybridSN", patch_size=25, epoch=100, batch_size=256, optimizer="adam", lr=1e-3,
                scheduler={"name": "none"}, reduction={"name": "pca", "components": 30, "whiten": True},
                val_fraction=0.0,
                citation="Roy, Krishna, Dubey & Chaudhuri, HybridSN: exploring 3-D-2-D CNN feature hierarchy for "
                         "hyperspectral image classification, IEEE GRSL 17(2), 277-281, 2020")
class HybridSN(nn.Module):
    """3-D then 2-D CNN on PCA-reduced PxPxB patches (Indian Pines: 25x25x30).

    Three unpadded 3-D convolutions with ReLU: 8 kernels 3x3x7, 16 kernels 3x3x5, 32 kernels
    3x3x3 (25x25x30 -> 19x19x18, 32 maps); the 32 spectral volumes are stacked into 32x18 = 576
    maps for one unpadded 2-D convolution of 64 kernels 3x3 with ReLU (-> 17x17x64); flatten;
    fully connected 256 and 128 units with ReLU, each followed by dropout 0.4; softmax output.
    No batch normalisation (the paper says so). Glorot-uniform weights and zero biases (Keras'
    defaults, which the authors' notebook keeps).

    The PCA to 30 components (15 for Pavia U / Salinas: ``--pca 15 --pca_whiten``) is done by
    the engine, whitened as the authors' is, but fitted on the normalised training pixels only:
    the authors fit it on every pixel of the scene, test pixels included, which leaks test data
    into the features. Like the authors, every training pixel trains (``val_fraction`` 0: the
    notebook holds none out; give ``--val_fraction`` for ``--keep_best``); the notebook keeps
    the epoch of best *training* accuracy, we keep the last. The authors' Adam has a time-based decay of 1e-6
    per step (the rate falls by about 0.1 % over their 1,300 steps), left out; no schedule. The paper
    drops border pixels whose patch leaves the image and the notebook zero-pads; the engine
    mirrors the border. Our 2-D convolution stacks the maps channel-major (Keras: depth-major),
    a permutation of input channels with no effect on what the network can learn.
    """

    MIN_PATCH = 9
    MIN_BANDS = 13

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 25, *, dropout: float = 0.4):
        super().__init__()
        _check_hybridsn_sizes(n_bands, patch_size)
        _check_dropout("HybridSN", dropout)
        self.spectral_spatial = nn.Sequential(
            nn.Conv3d(1, 8, (7, 3, 3)), nn.ReLU(),
            nn.Conv3d(8, 16, (5, 3, 3)), nn.ReLU(),
            nn.Conv3d(16, 32, (3, 3, 3)), nn.ReLU(),
        )
        self.spatial = nn.Sequential(nn.Conv2d(32 * (n_bands - 12), 64, 3), nn.ReLU())
        side = patch_size - 8
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * side * side, 256), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(256, 128), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(128, n_classes),
        )
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        volumes = self.spectral_spatial(x.unsqueeze(1))  # (N, 32, B-12, P-6, P-6)
        return self.classifier(self.spatial(volumes.flatten(1, 2)))

    def dense_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K, h, w) of every patch of a (N, bands, H, W) tile in one fully convolutional
        pass: every convolution is valid and unstrided, the first fully connected layer becomes a
        (P-8)x(P-8) convolution (see :mod:`deephyperx.dense_eval`)."""
        x = x.unsqueeze(1)
        for layer in self.spectral_spatial:
            x = dense_conv(layer, x, 1)[0] if isinstance(layer, nn.Conv3d) else layer(x)
        x = F.relu(dense_conv(self.spatial[0], x.flatten(1, 2), 1)[0])
        _, fc1, relu1, drop1, fc2, relu2, drop2, fc3 = self.classifier
        x = drop1(relu1(dense_linear(fc1, x, 1)))
        x = drop2(relu2(pointwise_linear(fc2, x)))
        return pointwise_linear(fc3, x)
