"""Transformers on spectral and on pixel tokens: SpectralFormer (Hong et al., 2022), GAHT (Mei et al., 2022)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from deephyperx.errors import UserError
from deephyperx.registry import register_model, require_single_spectra


def _whole(model: str, name: str, value: object, hint: str, minimum: int = 1) -> None:
    """Refuse an architecture option that is not a whole number >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UserError(f"model {model}: {name} {value!r} must be a whole number >= {minimum}; {hint}")


def _probability(model: str, name: str, value: object) -> None:
    """Refuse a dropout probability outside [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise UserError(f"model {model}: {name} {value!r} must lie in [0, 1); e.g. model_args: {{{name}: 0.1}}")


# ----- SpectralFormer ---------------------------------------------------------------------------------

class _PreNormResidual(nn.Module):
    """``x + f(LayerNorm(x))``."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm, self.fn = nn.LayerNorm(dim), fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(self.norm(x))


class _SelfAttention(nn.Module):
    """Multi-head self-attention, ``heads`` heads of ``head_dim`` (the projections' width may differ
    from the tokens'), scaled by 1/sqrt(head_dim) unless ``scale`` is given."""

    def __init__(self, dim: int, heads: int, head_dim: int, qkv_bias: bool, dropout: float = 0.0,
                 scale: float | None = None):
        super().__init__()
        self.heads, self.head_dim, self.scale = heads, head_dim, scale
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=qkv_bias)
        self.out = nn.Linear(heads * head_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, _ = x.shape
        q, k, v = self.qkv(x).view(n, tokens, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        mixed = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.dropout(self.out(mixed.transpose(1, 2).reshape(n, tokens, -1)))


def _feed_forward(dim: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                         nn.Dropout(dropout))


class _CrossLayerFusion(nn.Module):
    """SpectralFormer's cross-layer adaptive fusion (CAF): each output token is a learnt mixture of
    all tokens of the current layer's input and of the input two layers earlier (the authors' 1x2
    convolution with the tokens as channels: ``weight`` (T, T, 2), ``bias`` (T))."""

    def __init__(self, tokens: int):
        super().__init__()
        bound = 1.0 / math.sqrt(2 * tokens)  # PyTorch's default for that convolution
        self.weight = nn.Parameter(torch.empty(tokens, tokens, 2).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(tokens).uniform_(-bound, bound))

    def forward(self, current: torch.Tensor, earlier: torch.Tensor) -> torch.Tensor:
        n, tokens, dim = current.shape
        both = torch.cat([current, earlier], dim=1).transpose(0, 1).reshape(2 * tokens, n * dim)
        weight = self.weight.transpose(1, 2).reshape(tokens, 2 * tokens)  # [t, k * T + s] = weight[t, s, k]
        mixed = torch.addmm(self.bias[:, None], weight, both)  # one (T, 2T) x (2T, N * dim) product
        return mixed.view(tokens, n, dim).transpose(0, 1)


def group_wise_spectral_embedding(x: torch.Tensor, band_patch: int) -> torch.Tensor:
    """SpectralFormer's GSE tokens of a batch of (N, B, P, P) patches: token b concatenates the PxP
    values of bands b - k .. b + k (k = band_patch // 2, wrapping around the spectrum as the authors'
    code does): (N, B, band_patch * P * P), built per batch."""
    flat = x.flatten(2)  # (N, B, P*P), pixels in raster order
    half = band_patch // 2
    return torch.cat([torch.roll(flat, shifts=-offset, dims=1) for offset in range(-half, half + 1)], dim=2)


def _check_spectralformer(model: str, n_bands: int, band_patch: int, dim: int, depth: int, heads: int,
                          head_dim: int, mlp_dim: int, dropout: float) -> None:
    """A band group is an odd number of neighbouring bands, at most the band count; sizes are whole."""
    _whole(model, "band_patch", band_patch, "the paper uses 3 (an odd number of neighbouring bands)")
    if band_patch % 2 == 0:
        raise UserError(f"model {model}: band_patch {band_patch} must be odd (a band and as many neighbours on "
                        "each side); the paper uses 3")
    if n_bands < band_patch:
        raise UserError(f"{model} needs at least band_patch = {band_patch} bands (each token groups {band_patch} "
                        f"neighbouring bands), not {n_bands}; use a cube with more bands or a smaller band_patch")
    for name, value in (("dim", dim), ("depth", depth), ("heads", heads), ("head_dim", head_dim),
                        ("mlp_dim", mlp_dim)):
        _whole(model, name, value, "the paper: dim 64, depth 5, heads 4, head_dim 16, mlp_dim 8")
    _probability(model, "dropout", dropout)


def _step_milestones(epochs: int) -> list[int]:
    """The authors' StepLR(step_size=epochs // 10, gamma=0.9) as milestones of the engine's scheduler,
    stepped after each epoch: theirs steps before each epoch, so its first decayed epoch is epoch
    ``step_size`` (1-based), which follows milestone ``step_size - 1`` here."""
    step = epochs // 10
    return [k * step - 1 for k in range(1, epochs // step + 1) if k * step - 1 < epochs]


SPECTRALFORMER_CITATION = ("Hong, Han, Yao, Gao, Zhang, Plaza & Chanussot, SpectralFormer: rethinking hyperspectral "
                           "image classification with transformers, IEEE TGRS 60, 5518615, 2022, "
                           "doi:10.1109/TGRS.2021.3130716")


@register_model("SpectralFormer", patch_size=7, epoch=300, batch_size=64, optimizer="adam", lr=5e-4, weight_decay=5e-3,
                scheduler={"name": "multistep", "milestones": _step_milestones(300), "gamma": 0.9},
                val_fraction=0.0, citation=SPECTRALFORMER_CITATION)
class SpectralFormer(nn.Module):
    """Patch-wise SpectralFormer: a transformer over the bands, one token per band (Indian Pines: 7x7x200).

    Group-wise spectral embedding (GSE): token b is the 7x7 patch of bands b-1, b, b+1 (neighbours
    wrap around the spectrum, as the authors' code does), 3 x 49 = 147 values, mapped by one linear
    layer to 64 dimensions; a class token and learnt position embeddings (N(0, 1) initialised) are
    added, dropout 0.1. Five pre-norm transformer layers (4 heads of 16, feed-forward 64-8-64 with
    GELU, dropout 0.1). Cross-layer adaptive fusion (CAF): before layers 3, 4 and 5, the layer's
    input is replaced by a learnt token mixture of itself and the input of the layer two before
    (the authors' 1x2 convolution whose channels are the 201 tokens). The class token's output
    goes through LayerNorm and a linear classifier. ``fusion=False`` gives the paper's ViT
    baseline (with ``band_patch=1``).

    Registered as in the authors' README for Table VIII (patch-wise, Indian Pines): Adam 5e-4,
    weight decay 5e-3, batch 64, 300 epochs, the learning rate x0.9 every 30 epochs (their StepLR
    stepped before each epoch: milestones 29, 59, ..., 299 here), no validation set (every
    training pixel trains: ``val_fraction`` 0) and the last epoch's weights. The paper's protocol is
    the fixed disjoint maps: ``--train_set ../shared/data/splits/IndianPines/Indian_pines_TR.mat
    --test_set ../shared/data/splits/IndianPines/Indian_pines_TE.mat``. The milestones belong to
    300 epochs; with another ``--epoch`` give a scheduler of your own.

    Departures: tokens are built per batch from the engine's patches (the authors build every
    patch's tokens up front in float64); they scale each band to [0, 1] over the whole image, the
    engine standardises each band on the training pixels; they mirror the border as the engine
    does. With band_patch 5 or more their patch-wise code orders the neighbour blocks -1, -2, .., 0,
    +1, ..; ours -k .. +k (a permutation of the embedding's inputs).

    Parameters on Indian Pines (7x7, 200 bands, 16 classes): 355,577, the count of the authors'
    trained ``SpectralFormer_patch_indian.pt`` (243,009 of them in the three CAF mixtures).
    """

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 7, *, band_patch: int = 3, dim: int = 64,
                 depth: int = 5, heads: int = 4, head_dim: int = 16, mlp_dim: int = 8, dropout: float = 0.1,
                 fusion: bool = True):
        super().__init__()
        _check_spectralformer(type(self).__name__, n_bands, band_patch, dim, depth, heads, head_dim, mlp_dim,
                              dropout)
        self.band_patch = band_patch
        tokens = n_bands + 1
        self.embedding = nn.Linear(band_patch * patch_size * patch_size, dim)
        self.class_token = nn.Parameter(torch.randn(1, 1, dim))
        self.position = nn.Parameter(torch.randn(1, tokens, dim))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(nn.Sequential(
            _PreNormResidual(dim, _SelfAttention(dim, heads, head_dim, qkv_bias=False, dropout=dropout)),
            _PreNormResidual(dim, _feed_forward(dim, mlp_dim, dropout)),
        ) for _ in range(depth))
        self.fusions = nn.ModuleList(_CrossLayerFusion(tokens) for _ in range(depth - 2)) if fusion else None
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embedding(group_wise_spectral_embedding(x, self.band_patch))  # (N, B, dim)
        tokens = torch.cat([self.class_token.expand(len(x), -1, -1), tokens], dim=1) + self.position
        tokens = self.dropout(tokens)
        inputs = []
        for i, layer in enumerate(self.layers):
            inputs.append(tokens)
            if self.fusions is not None and i >= 2:
                tokens = self.fusions[i - 2](tokens, inputs[i - 2])
            tokens = layer(tokens)
        return self.head(tokens[:, 0])


@register_model("SpectralFormer_pixel", patch_size=1, epoch=290, batch_size=64, optimizer="adam", lr=5e-4,
                weight_decay=0.0, scheduler={"name": "multistep", "milestones": _step_milestones(290), "gamma": 0.9},
                val_fraction=0.0, citation=SPECTRALFORMER_CITATION)
def spectralformer_pixel(n_bands: int, n_classes: int, patch_size: int = 1, *, band_patch: int = 3, dim: int = 64,
                         depth: int = 5, heads: int = 4, head_dim: int = 16, mlp_dim: int = 8, dropout: float = 0.1,
                         fusion: bool = True) -> SpectralFormer:
    """Pixel-wise SpectralFormer: the same network on single spectra, a token per band of that band and
    its two neighbours (3 values).

    Registered as in the authors' README for the pixel-wise column of Table VIII (Indian Pines):
    290 epochs, weight decay 0, otherwise as ``SpectralFormer`` (Adam 5e-4, batch 64, lr x0.9 every
    29 epochs: milestones 28, 57, ..., 289). Parameters on Indian Pines: 346,361, the count of the
    authors' ``SpectralFormer_pixel_indian.pt``."""
    require_single_spectra("SpectralFormer_pixel", patch_size)
    return SpectralFormer(n_bands, n_classes, 1, band_patch=band_patch, dim=dim, depth=depth, heads=heads,
                          head_dim=head_dim, mlp_dim=mlp_dim, dropout=dropout, fusion=fusion)


# ----- GAHT -------------------------------------------------------------------------------------------

class _GroupedPixelEmbedding(nn.Module):
    """GAHT's grouped pixel embedding: a padded 3x3 group convolution, batch normalisation, ReLU."""

    def __init__(self, channels: int, dim: int, groups: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, dim, 3, padding=1, groups=groups)
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x)))


class _Stage(nn.Module):
    """One GAHT stage: grouped pixel embedding, ``depth`` pre-norm transformer blocks over the PxP
    pixel tokens (unscaled attention, feed-forward of the same width with GELU), final LayerNorm."""

    def __init__(self, channels: int, dim: int, groups: int, heads: int, depth: int):
        super().__init__()
        self.embedding = _GroupedPixelEmbedding(channels, dim, groups)
        self.blocks = nn.Sequential(*[nn.Sequential(
            _PreNormResidual(dim, _SelfAttention(dim, heads, dim // heads, qkv_bias=True, scale=1.0)),
            _PreNormResidual(dim, _feed_forward(dim, dim, 0.0)),
        ) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, P, P) maps -> (N, P*P, dim) tokens."""
        return self.norm(self.blocks(self.embedding(x).flatten(2).transpose(1, 2)))


def _check_gaht(groups: int, depths: tuple, dims: tuple, heads: tuple) -> None:
    """Groups must divide every stage's channels; heads must divide the widths."""
    _whole("GAHT", "groups", groups, "the authors use 16 (Salinas) or 2, 4 (other scenes)")
    if not (len(depths) == len(dims) == len(heads) >= 1):
        raise UserError(f"model GAHT: depths {list(depths)}, dims {list(dims)} and heads {list(heads)} must have "
                        "the same length (one per stage), e.g. [2, 1, 1], [256, 128, 64], [8, 4, 2]")
    for name, values in (("depths", depths), ("dims", dims), ("heads", heads)):
        for value in values:
            _whole("GAHT", name, value, "e.g. depths [2, 1, 1], dims [256, 128, 64], heads [8, 4, 2]")
    for dim, head in zip(dims, heads):
        if dim % groups or dim % head:
            raise UserError(f"model GAHT: groups {groups} and heads {head} must divide the stage width {dim}; "
                            "e.g. groups 16 with dims [256, 128, 64] and heads [8, 4, 2]")


@register_model("GAHT", patch_size=7, epoch=300, batch_size=64, optimizer="sgd", lr=1e-3, momentum=0.9,
                weight_decay=1e-4, scheduler={"name": "none"},
                citation="Mei, Song, Ma & Xu, Hyperspectral image classification using group-aware hierarchical "
                         "transformer, IEEE TGRS 60, 2022, doi:10.1109/TGRS.2022.3207933")
class GAHT(nn.Module):
    """Group-aware hierarchical transformer on PxPxB patches (Indian Pines: 7x7x200).

    The bands are padded to a multiple of ``groups`` by repeating the last one (200 -> 208). Three
    stages, each a grouped pixel embedding (3x3 convolution in ``groups`` groups, padded, batch
    norm, ReLU) followed by pre-norm transformer blocks over the 49 pixel tokens and a LayerNorm:
    widths 256, 128, 64, heads 8, 4, 2, feed-forward as wide as the tokens (ratio 1, GELU); the
    tokens return to 7x7 maps between stages. The last stage's tokens are averaged and a linear
    layer classifies.

    The authors' repository has no Indian Pines configuration; we take its Salinas one (the other
    AVIRIS scene with 16 classes): 16 groups, depths 2, 1, 1. Their training script: SGD 1e-3,
    momentum 0.9, weight decay 1e-4, batch 64, 300 epochs, no schedule, patch 7, registered here.
    Following their code, attention logits are not scaled by 1/sqrt(head width), and dropout is 0.
    Departures: they keep the weights of the best validation OA (``--keep_best val_oa``), flip or
    rotate half the training patches (``--flip_augmentation``: the engine's flips and rotations,
    applied to half the patches too), split the sampled pixels half for training, half for
    validation (``--val_fraction 0.5``; e.g. ``--training_sample 0.02`` for their 1% + 1%), scale
    the whole cube to [0, 1] and centre each band on the whole image (the engine standardises each
    band on the training pixels), and pad patches by reflection (the engine mirrors).

    Parameters on Indian Pines (7x7, 200 bands, 16 classes): 972,624 (the authors' code builds the
    same network from this configuration; having no Indian Pines configuration, they give no count).
    """

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 7, *, groups: int = 16,
                 depths: tuple = (2, 1, 1), dims: tuple = (256, 128, 64), heads: tuple = (8, 4, 2)):
        super().__init__()
        depths, dims, heads = tuple(depths), tuple(dims), tuple(heads)
        _check_gaht(groups, depths, dims, heads)
        self.padded_bands = -(-n_bands // groups) * groups
        channels = (self.padded_bands, *dims[:-1])
        self.stages = nn.ModuleList(_Stage(c, d, groups, h, n) for c, d, h, n in zip(channels, dims, heads, depths))
        self.head = nn.Linear(dims[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, bands, rows, cols = x.shape
        if self.padded_bands > bands:
            x = torch.cat([x, x[:, -1:].expand(-1, self.padded_bands - bands, -1, -1)], dim=1)
        for stage in self.stages[:-1]:
            x = stage(x).transpose(1, 2).reshape(n, -1, rows, cols)
        return self.head(self.stages[-1](x).mean(dim=1))
