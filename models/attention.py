"""Attention-based spectral-spatial networks: SSFTT (Sun et al., 2022), A2S2K-ResNet (Roy et al., 2021)
and DBDA (Li et al., 2020), reimplemented from their papers and checked against their authors' code."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deephyperx.errors import UserError
from deephyperx.registry import register_model


def _check_dropout(model: str, dropout: float) -> None:
    """Refuse a dropout probability outside [0, 1)."""
    if not 0.0 <= dropout < 1.0:
        raise UserError(f"model {model}: dropout {dropout!r} must lie in [0, 1); e.g. model_args: {{dropout: 0.5}}")


def _check_patch(model: str, patch_size: int, min_patch: int, why: str, advice: str) -> None:
    """Refuse a patch smaller than ``min_patch``, in one line."""
    if patch_size < min_patch:
        raise UserError(f"{model} needs patches of at least {min_patch}x{min_patch} ({why}), not "
                        f"{patch_size}x{patch_size}; use --patch_size {advice}")


def _check_bands(model: str, n_bands: int, min_bands: int) -> None:
    """Refuse fewer bands than ``min_bands``, in one line."""
    if n_bands < min_bands:
        raise UserError(f"{model} needs at least {min_bands} bands or PCA components, not {n_bands}; "
                        f"use a cube with more bands or more PCA components")


# --- SSFTT -----------------------------------------------------------------------------------------------------


class _EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer: ``x + MHSA(LN(x))`` then ``x + MLP(LN(x))``.

    The attention scores are scaled by ``dim ** -0.5`` (the whole token width), as the SSFTT
    authors' code does, not by the head width's square root."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, scale=d ** -0.5)  # (N, heads, T, d / heads)
        x = x + self.drop(self.proj(attended.transpose(1, 2).reshape(n, t, d)))
        return x + self.mlp(self.norm2(x))


@register_model("SSFTT", patch_size=13, epoch=100, batch_size=64, optimizer="adam", lr=1e-3,
                scheduler={"name": "none"}, reduction={"name": "pca", "components": 30, "whiten": True},
                val_fraction=0.0,
                citation="Sun, Zhao, Zheng & Wu, Spectral-spatial feature tokenization transformer for hyperspectral "
                         "image classification, IEEE TGRS 60, 5522214, 2022, doi:10.1109/TGRS.2022.3144158")
class SSFTT(nn.Module):
    """Spectral-spatial feature tokenization transformer on PCA-reduced PxPxB patches (Indian Pines: 13x13x30).

    Shallow features: 8 kernels 3x3x3 (unpadded) with batch normalisation and ReLU; the 8 spectral
    volumes are stacked into 8x(B-2) maps for 64 unpadded 3x3 2-D kernels with batch normalisation
    and ReLU (13x13 -> 9x9: 81 pixels of 64 features). Gaussian-weighted tokenizer: ``tokens``
    semantic tokens ``T = softmax_pixels(X W_a^T)^T (X W_v)``, W_a and W_v initialised from
    Glorot normal distributions (the paper's "Gaussian weighted"). A learnable class token (zeros)
    is prepended, a learnable position embedding (N(0, 0.02)) added, dropout 0.1; ``depth``
    pre-norm encoder layers (8 heads, MLP 64-8-64 with GELU, dropout 0.1); a linear classifier on
    the class token (Glorot-uniform weights, N(0, 1e-6) biases). 153,224 parameters on Indian Pines,
    exactly the authors' model (``cls_SSFTT_IP/SSFTTnet.py``).

    As in the authors' code: attention scores are scaled by 1/sqrt(64) (the token width) rather than
    1/sqrt(8) (the head width), the tokenizer's softmax runs over the pixels, and the other layers
    keep PyTorch's default initialisation. PCA to 30 whitened components is done by the engine and
    fitted on the normalised training pixels only (the authors fit it on every pixel, test pixels
    included); every training pixel trains (``val_fraction`` 0; the authors hold none out) and the
    last epoch's weights are kept, as the authors do. The authors zero-pad the image border; the
    engine mirrors it. The authors' 2-D layer is hard-wired to 30 components (8 x 28 maps); here it
    reads 8 x (B - 2), so any band count >= 3 and any patch >= 5 work.
    """

    CONV_CHANNELS = 64
    MIN_PATCH = 5
    MIN_BANDS = 3

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 13, *, tokens: int = 4, dim: int = 64,
                 depth: int = 1, heads: int = 8, mlp_dim: int = 8, dropout: float = 0.1):
        super().__init__()
        _check_patch("SSFTT", patch_size, self.MIN_PATCH, "a 3x3x3 and a 3x3 convolution, both unpadded",
                     "13 (the paper's) or any size >= 5")
        _check_bands("SSFTT", n_bands, self.MIN_BANDS)
        _check_dropout("SSFTT", dropout)
        for name, value in (("tokens", tokens), ("dim", dim), ("depth", depth), ("heads", heads),
                            ("mlp_dim", mlp_dim)):
            if not isinstance(value, int) or value < 1:
                raise UserError(f"SSFTT: {name} {value!r} must be a whole number >= 1")
        if dim % heads:
            raise UserError(f"SSFTT: dim {dim} must be a multiple of heads {heads} (the paper: dim 64, 8 heads)")
        c = self.CONV_CHANNELS
        self.spectral = nn.Sequential(nn.Conv3d(1, 8, 3), nn.BatchNorm3d(8), nn.ReLU())
        self.spatial = nn.Sequential(nn.Conv2d(8 * (n_bands - 2), c, 3), nn.BatchNorm2d(c), nn.ReLU())
        self.token_wA = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, tokens, c)))
        self.token_wV = nn.Parameter(nn.init.xavier_normal_(torch.empty(1, c, dim)))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(nn.init.normal_(torch.empty(1, tokens + 1, dim), std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.encoder = nn.Sequential(*[_EncoderLayer(dim, heads, mlp_dim, dropout) for _ in range(depth)])
        self.classifier = nn.Linear(dim, n_classes)
        nn.init.xavier_uniform_(self.classifier.weight)
        nn.init.normal_(self.classifier.bias, std=1e-6)

    def tokenize(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, pixels, 64) features -> (N, tokens, dim) semantic tokens."""
        weights = torch.softmax(pixels @ self.token_wA[0].T, dim=1)  # (N, pixels, tokens), summing to 1 over pixels
        return weights.transpose(1, 2) @ (pixels @ self.token_wV[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        volumes = self.spectral(x.unsqueeze(1))  # (N, 8, B-2, P-2, P-2)
        maps = self.spatial(volumes.flatten(1, 2))  # (N, 64, P-4, P-4)
        tokens = self.tokenize(maps.flatten(2).transpose(1, 2))
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1) + self.pos_embedding
        return self.classifier(self.encoder(self.dropout(tokens))[:, 0])


# --- A2S2K-ResNet ----------------------------------------------------------------------------------------------


class _EFR(nn.Module):
    """Efficient feature recalibration (ECA): each channel is scaled by the sigmoid of a 1-D
    convolution (3 taps, no bias) across the channels' global averages."""

    def __init__(self, k_size: int = 3):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, k_size, padding=k_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.flatten(2).mean(dim=2).unsqueeze(1)  # (N, 1, C)
        weights = torch.sigmoid(self.conv(pooled)).squeeze(1)  # (N, C)
        return x * weights.view(*weights.shape, *([1] * (x.dim() - 2)))


class _EFRResBlock(nn.Module):
    """A2S2K's improved residual block: ``x + EFR(conv(act(conv(pre(x)))))``.

    The network's first block starts with the convolution and ends its branch with batch
    normalisation; the others are pre-activated (BN-ReLU first); the last one adds BN-ReLU after
    the sum. Inside, ``act`` is ReLU-BN-ReLU (the authors' convolution carries its own ReLU)."""

    def __init__(self, conv: type[nn.Module], norm: type[nn.Module], filters: int, kernel, padding,
                 first: bool = False, last: bool = False):
        super().__init__()
        self.pre = nn.Identity() if first else nn.Sequential(norm(filters), nn.ReLU())
        self.branch = nn.Sequential(
            conv(filters, filters, kernel, padding=padding), nn.ReLU(), norm(filters), nn.ReLU(),
            conv(filters, filters, kernel, padding=padding),
            norm(filters) if first else nn.Identity(),
            _EFR())
        self.post = nn.Sequential(norm(filters), nn.ReLU()) if last else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(x + self.branch(self.pre(x)))


def _bn_relu(channels: int, dims: int) -> nn.Sequential:
    """Batch normalisation (epsilon 1e-3, as in the authors' code) and ReLU."""
    norm = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
    return nn.Sequential(norm(channels, eps=1e-3), nn.ReLU())


@register_model("A2S2K", patch_size=7, epoch=200, batch_size=16, optimizer="adam", lr=1e-3,
                scheduler={"name": "none"}, val_fraction=0.0,
                citation="Roy, Manna, Song & Bruzzone, Attention-based adaptive spectral-spatial kernel ResNet for "
                         "hyperspectral image classification, IEEE TGRS 59(9), 7831-7843, 2021, "
                         "doi:10.1109/TGRS.2020.3043267")
class A2S2KResNet(nn.Module):
    """Attention-based adaptive spectral-spatial kernel ResNet on raw PxPxB cubes (Indian Pines: 7x7x200).

    A2S2K block (selective kernels): two 3-D convolutions of 24 kernels with spectral stride 2,
    1x1x7 and 3x3x7 (spatially padded), each with batch normalisation and ReLU; their sum is
    averaged globally, squeezed by a 1x1x1 convolution to B // 2 channels with ReLU, and one
    excitation per kernel size maps it back to 24 weights; a softmax across the two kernel sizes
    weighs their feature maps (the "select" step of selective-kernel networks). Two spectral
    residual blocks (1x1x7 kernels, padded) with efficient feature recalibration (EFR: an ECA
    layer), 128 kernels 1x1xD collapsing the spectral axis (BN-ReLU), 24 kernels 3x3x128 (unpadded,
    BN-ReLU), two spatial residual blocks (3x3x1 kernels) with EFR, global average pooling and a
    linear classifier. A 3x3x128 kernel spanning the 128-deep axis and 3x3x1 kernels on a depth-1
    volume are 2-D convolutions and written as such (same weights, same function).

    Departures from the authors' code (suvojit-0x55aa/A2S2K-ResNet), named: their excitation is one
    convolution applied twice, so the softmax always gives both kernel sizes weight 0.5 and the
    attention does nothing; we learn one excitation per kernel size as the selective-kernel "select"
    step does (``shared_excitation=True`` restores theirs: 2,424 parameters fewer). Their EFR
    convolution is a 3x3 2-D kernel of which only the middle row ever meets data (9 weights, 3
    used; ours has the 3). Their first-block-only batch norm exists unused in two other blocks
    (96 parameters). Their 5x5 average pooling assumes 7x7 patches; global pooling is the same there
    and works for any patch >= 3. On Indian Pines ours has 373,160 parameters; theirs 370,856 =
    373,160 - 2,424 + 96 + 24 (``shared_excitation=True`` gives 370,736, the 120 unused or
    never-reached weights apart). The squeeze width is B // 2 (100 channels for 200 bands), as in
    their code.

    Training, from their script: Adam 1e-3, batch 16, 200 epochs, 7x7 patches (``-p 3``). Their
    script creates a new CosineAnnealingLR(T_max=15) at every epoch; under the PyTorch 1.4 they pin,
    a new scheduler's first step resets the rate to the initial one, so it stays 1e-3: no schedule here.
    They early-stop (patience 20 on the validation loss, keeping the weights of its lowest) on as many
    validation pixels as training pixels, drawn from the test pixels; by default we do not: every
    training pixel trains (``val_fraction`` 0) and the last epoch is kept. Their script also rotates
    the cube onto all of its principal components (PCA fitted on every pixel, no reduction) and
    standardises them; we keep the bands, standardised on the training pixels. Their protocol, leaks
    included (Indian Pines 10%): ``--pca 200 --pca_whiten --fit_preprocessing scene --validation_from
    test --val_fraction 0.11 --early_stopping 20``; leak-free with the same stopping rule: ``--pca 200
    --pca_whiten --val_fraction 0.1 --early_stopping 20`` (validation carved from the training pixels).
    """

    FILTERS = 24
    SPECTRAL_KERNEL = 7
    SPECTRAL_MAPS = 128
    MIN_PATCH = 3

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 7, *, shared_excitation: bool = False):
        super().__init__()
        _check_patch("A2S2K", patch_size, self.MIN_PATCH, "its 3x3x128 convolution is unpadded",
                     "7 (the paper's) or any size >= 3")
        _check_bands("A2S2K", n_bands, self.SPECTRAL_KERNEL)
        f, k = self.FILTERS, self.SPECTRAL_KERNEL
        depth = (n_bands - k) // 2 + 1
        self.narrow = nn.Sequential(nn.Conv3d(1, f, (k, 1, 1), stride=(2, 1, 1)), *_bn_relu(f, 3))
        self.wide = nn.Sequential(nn.Conv3d(1, f, (k, 3, 3), stride=(2, 1, 1), padding=(0, 1, 1)), *_bn_relu(f, 3))
        squeezed = max(n_bands // 2, 1)
        self.squeeze = nn.Sequential(nn.Linear(f, squeezed), nn.ReLU())
        self.excite = nn.ModuleList([nn.Linear(squeezed, f) for _ in range(1 if shared_excitation else 2)])
        self.spectral = nn.Sequential(
            _EFRResBlock(nn.Conv3d, nn.BatchNorm3d, f, (k, 1, 1), (k // 2, 0, 0), first=True),
            _EFRResBlock(nn.Conv3d, nn.BatchNorm3d, f, (k, 1, 1), (k // 2, 0, 0)),
            nn.Conv3d(f, self.SPECTRAL_MAPS, (depth, 1, 1)), *_bn_relu(self.SPECTRAL_MAPS, 3))
        self.spatial = nn.Sequential(
            nn.Conv2d(self.SPECTRAL_MAPS, f, 3), *_bn_relu(f, 2),
            _EFRResBlock(nn.Conv2d, nn.BatchNorm2d, f, 3, 1),
            _EFRResBlock(nn.Conv2d, nn.BatchNorm2d, f, 3, 1, last=True))
        self.classifier = nn.Linear(f, n_classes)

    def select(self, wide: torch.Tensor, narrow: torch.Tensor) -> torch.Tensor:
        """Selective-kernel fusion: per channel, a softmax over the two kernel sizes weighs their maps."""
        z = self.squeeze((wide + narrow).mean(dim=(2, 3, 4)))  # (N, B // 2)
        scores = torch.stack([self.excite[0](z), self.excite[-1](z)], dim=1)  # (N, 2, 24)
        weights = torch.softmax(scores, dim=1)[..., None, None, None]
        return weights[:, 0] * wide + weights[:, 1] * narrow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)
        fused = self.select(self.wide(x), self.narrow(x))  # (N, 24, D, P, P)
        spectral = self.spectral(fused).squeeze(2)  # (N, 128, P, P)
        return self.classifier(self.spatial(spectral).mean(dim=(2, 3)))


# --- DBDA ------------------------------------------------------------------------------------------------------


class _ChannelAttention(nn.Module):
    """DANet's channel attention module: ``gamma * softmax(max - X X^T) X + X`` over (N, C, ...) maps,
    ``gamma`` learnt from 0."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # (N, C, n)
        energy = flat @ flat.transpose(1, 2)  # (N, C, C)
        attention = torch.softmax(energy.amax(dim=-1, keepdim=True) - energy, dim=-1)
        return self.gamma * (attention @ flat).view_as(x) + x


class _PositionAttention(nn.Module):
    """DANet's position attention module on (N, C, H, W) maps: queries and keys of C // 8 channels,
    values of C, a softmax over positions; ``gamma * attended + X``, ``gamma`` learnt from 0."""

    def __init__(self, channels: int):
        super().__init__()
        self.query = nn.Conv2d(channels, channels // 8, 1)
        self.key = nn.Conv2d(channels, channels // 8, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.query(x).flatten(2), self.key(x).flatten(2), self.value(x).flatten(2)
        attention = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (N, n, n): row i attends over positions j
        return self.gamma * (v @ attention.transpose(1, 2)).view_as(x) + x


class _DenseBlock(nn.Module):
    """Three densely connected convolutions of 12 kernels, each reading BN-Mish of everything before
    it (24 -> 36 -> 48 -> 60 channels); returns the 60-channel concatenation, not normalised."""

    GROWTH = 12

    def __init__(self, conv: type[nn.Module], norm: type[nn.Module], channels: int, kernel, padding):
        super().__init__()
        self.layers = nn.ModuleList([
            nn.Sequential(norm(channels + i * self.GROWTH, eps=1e-3), nn.Mish(),
                          conv(channels + i * self.GROWTH, self.GROWTH, kernel, padding=padding))
            for i in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


@register_model("DBDA", patch_size=9, epoch=200, batch_size=16, optimizer="adam", lr=5e-4,
                scheduler={"name": "none"}, val_fraction=0.0,
                citation="Li, Zheng, Duan, Yang & Wang, Classification of hyperspectral image based on double-branch "
                         "dual-attention mechanism network, Remote Sensing 12(3), 582, 2020, doi:10.3390/rs12030582")
class DBDA(nn.Module):
    """Double-branch dual-attention network on raw PxPxB cubes (Indian Pines: 9x9x200), Mish activations.

    Spectral branch: 24 kernels 1x1x7 with spectral stride 2 (200 bands -> depth 97), a dense
    spectral block (three 1x1x7 convolutions of 12 kernels, padded, each after BN-Mish of all the
    maps before it: 60 maps), BN-Mish and 60 kernels 1x1x97 collapsing the spectral axis, then the
    channel attention block. Spatial branch: 24 kernels 1x1xB (a 1x1 convolution over the bands),
    a dense spatial block (three 3x3 convolutions of 12 kernels, padded: 60 maps), then the
    position attention block. Each branch: BN-Mish, dropout 0.5, global average pooling; the two
    60-feature vectors are concatenated for a linear classifier. Batch normalisation uses epsilon
    1e-3 as the authors' code does; PyTorch's default initialisation, as theirs.

    As in the authors' code (lironui/Double-Branch-Dual-Attention-Mechanism-Network,
    ``DBDA_network_MISH``): each attention block's output is multiplied element-wise by the block's
    input before the BN-Mish that follows. Their 1x1xfloor((B-6)/2) kernel leaves a spectral depth of
    2 when B is odd (e.g. Pavia University's 103 bands); ours spans the whole depth (1 + (B-7)//2),
    the same for even B. Their model also holds an unused 3x3x2 convolution (19 parameters): ours
    has 382,328 parameters on Indian Pines, theirs 382,347. 1x1xB and 3x3x1 kernels on a depth-1
    volume are written as 2-D convolutions (same weights, same function).

    Training, from the authors' script: Adam 5e-4, batch 16, 200 epochs, 9x9 patches (their runs:
    3 % of Indian Pines, 0.5 % of Pavia University and Salinas). Their script creates a new
    CosineAnnealingLR(T_max=15) at every epoch; with the PyTorch versions of the time a new scheduler
    resets the rate to its initial value before any batch, so their runs trained at a constant 5e-4:
    no schedule here. They early-stop (patience 20 on the validation loss) on as many validation
    pixels as training pixels, taken from the test set; by default we do not: every training pixel
    trains (``val_fraction`` 0) and the last epoch is kept. Their protocol: ``--validation_from test
    --val_fraction F --early_stopping 20`` with F the training share of the test pixels (0.03 / 0.97
    = 0.031 for their 3% of Indian Pines); leak-free: ``--val_fraction 0.1 --early_stopping 20``.
    """

    FILTERS = 24
    SPECTRAL_KERNEL = 7
    FEATURES = 60

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 9, *, dropout: float = 0.5):
        super().__init__()
        _check_bands("DBDA", n_bands, self.SPECTRAL_KERNEL)  # every spatial convolution is padded: any patch
        _check_dropout("DBDA", dropout)
        f, k, c = self.FILTERS, self.SPECTRAL_KERNEL, self.FEATURES
        depth = (n_bands - k) // 2 + 1
        self.spectral = nn.Sequential(
            nn.Conv3d(1, f, (k, 1, 1), stride=(2, 1, 1)),
            _DenseBlock(nn.Conv3d, nn.BatchNorm3d, f, (k, 1, 1), (k // 2, 0, 0)),
            nn.BatchNorm3d(c, eps=1e-3), nn.Mish(), nn.Conv3d(c, c, (depth, 1, 1)))
        self.spatial = nn.Sequential(nn.Conv2d(n_bands, f, 1), _DenseBlock(nn.Conv2d, nn.BatchNorm2d, f, 3, 1))
        self.channel_attention = _ChannelAttention()
        self.position_attention = _PositionAttention(c)
        self.spectral_head = nn.Sequential(nn.BatchNorm2d(c, eps=1e-3), nn.Mish(), nn.Dropout(dropout))
        self.spatial_head = nn.Sequential(nn.BatchNorm2d(c, eps=1e-3), nn.Mish(), nn.Dropout(dropout))
        self.classifier = nn.Linear(2 * c, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectral = self.spectral(x.unsqueeze(1)).squeeze(2)  # (N, 60, P, P)
        spectral = self.spectral_head(self.channel_attention(spectral) * spectral).mean(dim=(2, 3))
        spatial = self.spatial(x)  # (N, 60, P, P)
        spatial = self.spatial_head(self.position_attention(spatial) * spatial).mean(dim=(2, 3))
        return self.classifier(torch.cat([spectral, spatial], dim=1))
