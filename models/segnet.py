"""SegNet and the parts the aerial segmentation models share: a VGG-16-BN-shaped encoder, its
mirrored decoder with max-unpooling, input checks, VGG-16-BN initialisation by layer order, and
learning-rate groups (encoder at a fraction of the learning rate).

Every segmentation model here is built as ``factory(n_classes, channels, **options)`` where
``channels`` lists the channel counts of its sources (image, DSM, ...) in order, and its forward
takes one (N, C_i, H, W) tensor per source and returns (N, K, H, W) logits (or a tuple whose first
element is the logits). H and W must be multiples of 32 (five 2x2 poolings).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from deephyperx.checkpoint import require_safe_torch
from deephyperx.errors import UserError
from deephyperx.registry import register_model

#: VGG-16's convolutional part: (channels, number of 3x3 convolutions) of each of its five blocks.
VGG16_BLOCKS: tuple[tuple[int, int], ...] = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
#: Height and width must be multiples of this (one 2x2 pooling per block).
SIZE_MULTIPLE = 2 ** len(VGG16_BLOCKS)


def scaled(channels: int, width: float) -> int:
    """``channels`` times the width multiplier, at least 1."""
    return max(1, int(round(channels * width)))


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """SegNet's unit: 3x3 convolution (padding 1), batch normalisation, ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels),
                         nn.ReLU(inplace=True))


def init_weights(module: nn.Module) -> None:
    """He-normal convolution weights and zero biases (batch norms keep weight 1, bias 0)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)


# ----- encoder and decoder ------------------------------------------------------------------------

class Encoder(nn.Module):
    """VGG-16-BN's 13 convolutions in 5 blocks (blocks ``first_block`` to 5). Pooling is left to the
    caller, so that fusion models can mix features between a block and its pooling."""

    def __init__(self, in_channels: int, width: float = 1.0, first_block: int = 0):
        super().__init__()
        self.first_block = first_block
        self.widths = [scaled(c, width) for c, _ in VGG16_BLOCKS]
        blocks, previous = [], in_channels
        for channels, count in [(scaled(c, width), n) for c, n in VGG16_BLOCKS][first_block:]:
            layers = []
            for _ in range(count):
                layers.append(conv_bn_relu(previous, channels))
                previous = channels
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)

    def units(self) -> list[nn.Sequential]:
        """The conv-BN-ReLU units in order (for initialisation by layer order)."""
        return [unit for block in self.blocks for unit in block]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Size]]:
        """The pooled bottleneck, and the pooling indices and pre-pooling sizes of every block."""
        indices, sizes = [], []
        for block in self.blocks:
            x = block(x)
            sizes.append(x.shape[-2:])
            x, where = F.max_pool2d(x, 2, return_indices=True)
            indices.append(where)
        return x, indices, sizes


class Decoder(nn.Module):
    """SegNet's decoder: for each block from the deepest, max-unpooling at the encoder's pooling
    positions, then as many conv-BN-ReLU units as the encoder block, the last one narrowing to the
    next block's width. Block 1 has one unit: its second convolution is the model's class layer."""

    def __init__(self, widths: Sequence[int]):
        super().__init__()
        blocks = []
        for b in reversed(range(len(VGG16_BLOCKS))):
            count, width = VGG16_BLOCKS[b][1], widths[b]
            outputs = [width] * (count - 1) + ([widths[b - 1]] if b > 0 else [])
            inputs = [width] + outputs[:-1]
            blocks.append(nn.Sequential(*[conv_bn_relu(i, o) for i, o in zip(inputs, outputs)]))
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = widths[0]

    def forward(self, x: torch.Tensor, indices: list[torch.Tensor], sizes: list[torch.Size]) -> torch.Tensor:
        for block, where, size in zip(self.blocks, reversed(indices), reversed(sizes)):
            x = block(F.max_unpool2d(x, where, 2, output_size=size))
        return x


# ----- input checks -------------------------------------------------------------------------------

def source_labels(channels: Sequence[int], source_names: Optional[Sequence[str]]) -> list[str]:
    """Names of the sources for messages: the given ones, else "source 1", "source 2", ..."""
    if source_names is not None and len(source_names) == len(channels):
        return [str(n) for n in source_names]
    return [f"source {i + 1}" for i in range(len(channels))]


def check_options(model: str, n_classes: int, channels: Sequence[int], width: float, encoder_lr_scale: float,
                  min_sources: int = 1) -> list[int]:
    """Refuse options that cannot build the model, with one line; the channel counts as ints."""
    if isinstance(channels, int):
        channels = [channels]
    channels = [int(c) for c in channels]
    if len(channels) < min_sources:
        raise UserError(f"{model} fuses at least {min_sources} sources but was given {len(channels)} "
                        f"(channels {channels}); give more with --sources (e.g. image dsm), or use segnet")
    if not channels or min(channels) < 1:
        raise UserError(f"{model}: every source needs at least one channel, not {channels}")
    if n_classes < 2:
        raise UserError(f"{model} needs at least 2 classes, not {n_classes}")
    if not width > 0:
        raise UserError(f"{model}: width {width} must be a positive channel multiplier (1.0 is the paper's)")
    if encoder_lr_scale < 0:
        raise UserError(f"{model}: encoder_lr_scale {encoder_lr_scale} must be at least 0 (0 freezes the encoder)")
    return channels


def check_sources(model: str, sources: Sequence[torch.Tensor], channels: Sequence[int],
                  names: Sequence[str]) -> None:
    """Refuse missing or extra sources, wrong channel counts, and sizes that are not multiples of 32."""
    if len(sources) < len(channels):
        missing = ", ".join(names[len(sources):])
        raise UserError(f"{model} needs {len(channels)} sources ({', '.join(names)}) but got {len(sources)}: "
                        f"{missing} missing; give every source the model was built for")
    if len(sources) > len(channels):
        raise UserError(f"{model} was built for {len(channels)} sources ({', '.join(names)}) but got "
                        f"{len(sources)}; give only those")
    shape = sources[0].shape[-2:]
    for source, count, name in zip(sources, channels, names):
        if source.dim() != 4 or source.shape[1] != count:
            raise UserError(f"{model}: the {name} input has shape {tuple(source.shape)}, not (N, {count}, H, W) "
                            f"as the model was built for")
        if source.shape[-2:] != shape:
            raise UserError(f"{model}: the {name} input is {tuple(source.shape[-2:])} but {names[0]} is "
                            f"{tuple(shape)}; co-registered sources must have the same size")
    height, width = shape
    if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise UserError(f"{model} needs a height and width that are multiples of {SIZE_MULTIPLE} (five 2x2 "
                        f"poolings), not {height}x{width}; crop or choose a window size such as 256")


# ----- VGG-16-BN initialisation -------------------------------------------------------------------

def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a state_dict file (or of the ``state_dict`` entry of a checkpoint), in order."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"vgg_weights {path} does not exist; give a VGG-16-BN state_dict saved with torch.save")
    require_safe_torch()  # weights_only is only safe from torch 2.6 on
    try:
        data = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors have many types
        raise UserError(f"vgg_weights {path} is not a PyTorch state_dict file ({type(error).__name__}); "
                        "give a VGG-16-BN state_dict saved with torch.save") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)} if isinstance(data, dict) else {}
    if not tensors:
        raise UserError(f"vgg_weights {path} holds no tensors; give a VGG-16-BN state_dict saved with torch.save")
    return tensors


Layer = dict[str, torch.Tensor]  # one layer's tensors by parameter name (weight, bias, running_mean, ...)


def layers_in_order(state: dict[str, torch.Tensor]) -> tuple[list[Layer], list[Layer]]:
    """The convolution layers (a 4-D weight) and the batch norms (a running mean) of a state_dict,
    each as {parameter name: tensor}, in the file's order; linear layers and the rest are skipped."""
    groups: dict[str, Layer] = {}
    for key, value in state.items():
        prefix, _, name = key.rpartition(".")
        groups.setdefault(prefix, {})[name] = value
    convs = [g for g in groups.values() if "weight" in g and g["weight"].dim() == 4]
    norms = [g for g in groups.values() if "running_mean" in g]
    return convs, norms


def adapt_first_filters(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """First-layer filters for ``channels`` input channels from filters made for another count.

    Fewer channels: every channel gets the mean filter; more: the file's channels are copied first
    and the extra channels get the mean filter. Both are scaled by (file channels / channels), so
    an image whose channels are all equal gives the same response as the grey image did."""
    original = weight.shape[1]
    if channels == original:
        return weight
    mean = weight.mean(1, keepdim=True)
    if channels < original:
        adapted = mean.repeat(1, channels, 1, 1)
    else:
        adapted = torch.cat([weight, mean.repeat(1, channels - original, 1, 1)], 1)
    return adapted * (original / channels)


def vgg_assignments(encoder: Encoder, path: str | Path, width: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(encoder tensor, file tensor) pairs mapping the file's VGG layers onto ``encoder`` by order,
    all checked before anything is copied; a file that does not fit is a one-line UserError."""
    convs, norms = layers_in_order(read_state_dict(path))
    total = sum(n for _, n in VGG16_BLOCKS)
    if len(convs) < total:
        raise UserError(f"vgg_weights {path} has {len(convs)} convolution layers; a VGG-16-BN encoder needs {total}")
    if norms and len(norms) < total:
        raise UserError(f"vgg_weights {path} has {len(norms)} batch norms for {len(convs)} convolutions; "
                        f"VGG-16-BN has one per convolution ({total})")
    skipped = sum(n for _, n in VGG16_BLOCKS[:encoder.first_block])
    hint = "" if width == 1.0 else f" (the model's width is {width}; VGG weights need width 1)"
    pairs = []
    for i, unit in enumerate(encoder.units()):
        conv, norm = unit[0], unit[1]
        source = convs[skipped + i]
        weight = adapt_first_filters(source["weight"], conv.in_channels) if skipped + i == 0 else source["weight"]
        if weight.shape != conv.weight.shape:
            raise UserError(f"vgg_weights {path}: convolution layer {skipped + i + 1} has shape "
                            f"{tuple(source['weight'].shape)} where the encoder's is {tuple(conv.weight.shape)}{hint}")
        pairs.append((conv.weight, weight))
        pairs.append((conv.bias, source.get("bias", torch.zeros_like(conv.bias))))
        if norms:
            for name in ("weight", "bias", "running_mean", "running_var"):
                value = norms[skipped + i].get(name)
                target = getattr(norm, name)
                if value is None or value.shape != target.shape:
                    raise UserError(f"vgg_weights {path}: batch norm {skipped + i + 1} has no {name} of shape "
                                    f"{tuple(target.shape)}{hint}")
                pairs.append((target, value))
    return pairs


@torch.no_grad()
def load_vgg_encoder(encoder: Encoder, path: str | Path, width: float = 1.0) -> None:
    """Initialise ``encoder`` from a local VGG-16(-BN) state_dict, layer by layer in the file's
    order (13 convolutions, and their batch norms when the file has them); the first convolution is
    adapted to the encoder's input channels (:func:`adapt_first_filters`)."""
    for target, value in vgg_assignments(encoder, path, width):
        target.copy_(value.to(target.dtype))


def learning_rate_groups(model: nn.Module, encoders: Sequence[nn.Module], encoder_lr_scale: float) -> list[dict]:
    """Parameter groups: everything but the encoders at the full learning rate (first, so that the
    loop logs the full rate), the encoders at ``encoder_lr_scale`` times it."""
    encoder_ids = {id(p) for encoder in encoders for p in encoder.parameters()}
    rest = [p for p in model.parameters() if id(p) not in encoder_ids]
    encoder_params = [p for encoder in encoders for p in encoder.parameters()]
    return [{"params": rest, "lr_scale": 1.0}, {"params": encoder_params, "lr_scale": float(encoder_lr_scale)}]


#: The training protocol of the authors' SegNet notebook on ISPRS Vaihingen (PUBLISHED.md): random
#: 256x256 crops, 10,000 per epoch, batch 10, 50 epochs, SGD 0.01 momentum 0.9 weight decay 5e-4,
#: learning rate x0.1 at epochs 25, 35 and 45 (the encoder at half the rate: ``encoder_lr_scale``).
def segnet_protocol(**overrides) -> dict:
    """A fresh copy of the SegNet training defaults, with ``overrides``."""
    protocol = dict(inputs=["image"], output="dense", patch_size=256, epoch=50, epoch_samples=10_000, batch_size=10,
                    optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4,
                    scheduler={"name": "multistep", "milestones": [25, 35, 45], "gamma": 0.1},
                    loss="cross_entropy", supervision="segmentation")
    protocol.update(overrides)
    return protocol


SEGNET_CITATION = ("Badrinarayanan, Kendall & Cipolla, SegNet: A deep convolutional encoder-decoder architecture for "
                   "image segmentation, IEEE TPAMI 39(12), 2481-2495, 2017; training protocol of Audebert, Le Saux & "
                   "Lefèvre, Beyond RGB: very high resolution urban remote sensing with multimodal deep networks, "
                   "ISPRS J. Photogramm. Remote Sens. 140, 20-32, 2018 (the authors' public SegNet notebook)")


# ----- SegNet -------------------------------------------------------------------------------------

@register_model("segnet", family="segmentation", citation=SEGNET_CITATION, **segnet_protocol())
class SegNet(nn.Module):
    """SegNet: a VGG-16-BN encoder (13 conv3x3-BN-ReLU in 5 blocks, 2x2 max pooling that keeps its
    indices) and a mirrored decoder that max-unpools at those indices (Badrinarayanan et al. 2017).

    All sources are stacked as channels of one input (early fusion by concatenation), so any number
    of channels works. The decoder mirrors the encoder unit for unit, each decoder block's last unit
    narrowing to the next block's width, and a 3x3 convolution gives the class scores (13 decoder
    convolutions, as the paper's). ``vgg_weights``: a local VGG-16-BN state_dict mapped onto the
    encoder by layer order (the first convolution adapted when the channel count differs).
    ``encoder_lr_scale`` (0.5, the authors' Vaihingen notebook) multiplies the encoder's learning rate.

    Departures: ``width`` (default 1.0 = the paper's 64-128-256-512-512 channels) scales every
    layer's channels; a smaller width is a departure to say when used (CPU tests and runs). Weights
    are He-normal (the paper initialises the encoder from VGG-16 or as He et al.). No softmax layer:
    the loss takes logits. Parameters at width 1, 3 channels, 6 classes: 29,446,470 (the paper: 29.5M).
    """

    name = "segnet"

    def __init__(self, n_classes: int, channels: Sequence[int], *, width: float = 1.0,
                 vgg_weights: Optional[str] = None, encoder_lr_scale: float = 0.5,
                 source_names: Optional[Sequence[str]] = None):
        super().__init__()
        self.channels = check_options(self.name, n_classes, channels, width, encoder_lr_scale)
        self.names = source_labels(self.channels, source_names)
        self.n_classes, self.width, self.encoder_lr_scale = n_classes, width, encoder_lr_scale
        self.encoder = Encoder(sum(self.channels), width)
        self.decoder = Decoder(self.encoder.widths)
        self.classifier = self.make_head(self.decoder.out_channels, n_classes)
        init_weights(self)
        if vgg_weights:
            load_vgg_encoder(self.encoder, vgg_weights, width)

    def make_head(self, features: int, n_classes: int) -> nn.Module:
        """The class layer on the decoder's features."""
        return nn.Conv2d(features, n_classes, 3, padding=1)

    def features(self, *sources: torch.Tensor) -> torch.Tensor:
        """Decoder features (N, width*64, H, W) of the stacked sources."""
        check_sources(self.name, sources, self.channels, self.names)
        x = sources[0] if len(sources) == 1 else torch.cat(sources, 1)
        return self.decoder(*self.encoder(x))

    def forward(self, *sources: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(*sources))

    def parameter_groups(self) -> list[dict]:
        return learning_rate_groups(self, [self.encoder], self.encoder_lr_scale)


# ----- distance-transform multitask ---------------------------------------------------------------

@register_model("segnet_dt", family="segmentation", supervision="distance_multitask",
                citation="Audebert, Boulch, Le Saux & Lefèvre, Distance transform regression for spatially-aware "
                         "deep semantic segmentation, Computer Vision and Image Understanding 189, 102809, 2019",
                **{k: v for k, v in segnet_protocol().items() if k != "supervision"})
class SegNetDT(SegNet):
    """SegNet that also regresses, for every class, its truncated signed distance map (Audebert et
    al., CVIU 2019); forward returns ``(logits, distances)``, both (N, K, H, W).

    A 3x3 convolution on the decoder's last features predicts the K distance maps (tanh, so in
    [-1, 1] like the targets of :func:`deephyperx.distance.signed_distance_maps`); the class layer
    sees the decoder's features concatenated with the predicted distances, so the spatial cue feeds
    the classification. Loss (step ``distance_multitask``): cross-entropy + ``distance_weight``
    (lambda) x L1 between predicted and true maps over labelled pixels, targets truncated at
    ``truncation`` pixels.

    Departures and choices: lambda = 1 and a truncation of 20 pixels are our defaults, not numbers
    read in the paper; the tanh output is our way to match the [-1, 1] targets. The rest is SegNet
    (see :class:`SegNet`, including ``width``), trained with the same protocol.
    """

    name = "segnet_dt"

    def __init__(self, n_classes: int, channels: Sequence[int], *, width: float = 1.0,
                 vgg_weights: Optional[str] = None, encoder_lr_scale: float = 0.5,
                 source_names: Optional[Sequence[str]] = None, distance_weight: float = 1.0,
                 truncation: float = 20.0):
        if distance_weight < 0 or truncation <= 0:
            raise UserError(f"segnet_dt: distance_weight {distance_weight} must be at least 0 and truncation "
                            f"{truncation} a positive number of pixels")
        super().__init__(n_classes, channels, width=width, vgg_weights=vgg_weights,
                         encoder_lr_scale=encoder_lr_scale, source_names=source_names)
        self.distance_weight, self.truncation = float(distance_weight), float(truncation)

    def make_head(self, features: int, n_classes: int) -> nn.Module:
        """The distance head (features -> K maps), and the class layer on features + distances."""
        self.distance_head = nn.Conv2d(features, n_classes, 3, padding=1)
        return nn.Conv2d(features + n_classes, n_classes, 3, padding=1)

    def forward(self, *sources: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(*sources)
        distances = torch.tanh(self.distance_head(features))
        return self.classifier(torch.cat([features, distances], 1)), distances
