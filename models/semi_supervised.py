"""Semi-supervised networks that also learn from the scene's unlabelled pixels: Liu's ladder-style
CNN and Boulch's convolutional autoencoder, with the training step they share.

Both forwards return ``(logits, reconstruction)`` where the reconstruction has the shape of the
model's input patch. The step ``semi_supervised_reconstruction`` minimises cross-entropy on the
labelled batch plus a weighted mean squared reconstruction error on the labelled batch and on a
batch of unlabelled pixels (``batch.unlabelled``), the two in one forward pass.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deephyperx.dense_eval import dense_conv, dense_linear, dense_max_pool
from deephyperx.errors import UserError
from deephyperx.registry import register_model, require_single_spectra
from deephyperx.sampling import Batch
from deephyperx.steps import StepContext, TrainingStep, classification_loss, register_step


# ----- the training step --------------------------------------------------------------------------

def joint_inputs(batch: Batch) -> list[torch.Tensor]:
    """The labelled inputs followed by the unlabelled ones (when the batch carries any)."""
    if not batch.unlabelled or not len(batch.unlabelled[0]):
        return list(batch.inputs)
    return [torch.cat([labelled, unlabelled]) for labelled, unlabelled in zip(batch.inputs, batch.unlabelled)]


def reconstruction_errors(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each sample's reconstruction, (N,)."""
    if reconstruction.shape != target.shape:
        raise ValueError(f"a reconstruction of shape {tuple(reconstruction.shape)} cannot be compared with the "
                         f"input of shape {tuple(target.shape)}; return a reconstruction of the input's shape")
    return (reconstruction - target).pow(2).flatten(1).mean(1)


@register_step("semi_supervised_reconstruction")
class ReconstructionStep(TrainingStep):
    """Cross-entropy on the labelled pixels + ``model.reconstruction_weight`` (default 1) x the mean
    squared reconstruction error over the labelled and the unlabelled pixels of the batch.

    Logs ``classification``, ``reconstruction`` (all pixels), ``reconstruction_unlabelled`` (the
    unlabelled pixels alone) and ``unlabelled_pixels`` (how many the step received)."""

    needs_unlabelled = True

    def loss(self, model: nn.Module, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        n_labelled = len(batch.target)
        inputs = joint_inputs(batch)
        logits, reconstruction = model(*inputs)
        errors = reconstruction_errors(reconstruction, inputs[0])
        classification = classification_loss(logits[:n_labelled], batch.target, ctx)
        reconstruction_loss = errors.mean()
        weight = float(getattr(model, "reconstruction_weight", 1.0))
        logs = {"classification": float(classification.detach()), "reconstruction": float(reconstruction_loss.detach()),
                "unlabelled_pixels": float(len(errors) - n_labelled)}
        if len(errors) > n_labelled:
            logs["reconstruction_unlabelled"] = float(errors[n_labelled:].detach().mean())
        return classification + weight * reconstruction_loss, logs


# ----- Liu et al. 2017 ----------------------------------------------------------------------------

@register_model("liu", patch_size=9, epoch=40, batch_size=100, optimizer="adam", lr=1e-3, scheduler={"name": "none"},
                supervision="semi_supervised_reconstruction",
                citation="Liu, Yu, Zhang, Tan, Yu & Xue, A semi-supervised convolutional neural network for "
                         "hyperspectral image classification, Remote Sensing Letters 8(9), 839-848, 2017")
class LiuLadderCNN(nn.Module):
    """A CNN classifier trained as a ladder network: a decoder with lateral connections denoises the
    corrupted encoder back to the clean input patch, on labelled and unlabelled pixels alike.

    Encoder: Gaussian noise (``noise_std``, training only) on the PxP patch -> conv: ``planes`` (80,
    the paper's B1) kernels 3x3 over all bands -> batch norm -> ReLU -> max pooling 2x2 -> fully
    connected to the classes. Decoder, top-down: the class probabilities through a fully connected
    layer to the pooled map's size, added to the pooled map (lateral connection), ReLU -> max
    unpooling at the pooling's own positions -> added to the conv layer's activations (lateral
    connection) -> transposed 3x3 convolution back to (bands, P, P). Loss (the step): cross-entropy
    + ``reconstruction_weight`` (1) x squared error between the reconstruction and the clean patch.
    Learning rate 0.001 and 40 epochs as the paper says; He-normal weights, zero biases (DeepHyperX's).
    The optimiser is our reading: the paper's text available here names none; DeepHyperX assumed
    plain SGD, with which the network has barely started learning after 40 epochs (training loss
    2.4 on Indian Pines at 10%). We use Adam, whose customary rate is the paper's 0.001 and which
    the ladder networks this model follows (Rasmus et al., 2015) are trained with, at a constant
    rate (no scheduler is mentioned).

    Choices and departures: we could not read the paper's text beyond what DeepHyperX quotes (B1 =
    80, 3x3 kernels, the squared-error unsupervised cost, lr and epochs). The noise level (0.3) is
    that of Rasmus et al.'s ladder networks; the lateral connections are summed rather than merged
    by Rasmus's learnt combinator, and the denoising cost is taken on the input layer only. DeepHyperX
    instead reconstructs only the centre spectrum through four fully connected layers (4.8 M
    parameters on Indian Pines) and injects no noise, so its lateral connections hand the decoder
    clean activations (an autoencoder with shortcuts rather than a denoising ladder); the
    convolutional decoder here keeps the model at 0.3 M parameters.
    """

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 9, *, planes: int = 80,
                 noise_std: float = 0.3, reconstruction_weight: float = 1.0):
        super().__init__()
        if patch_size < 4:
            raise UserError(f"liu needs patches of at least 4x4 (a 3x3 convolution, then 2x2 pooling), "
                            f"not {patch_size}x{patch_size}; the paper's is 9")
        if planes < 1 or noise_std < 0 or reconstruction_weight < 0:
            raise UserError(f"liu: planes={planes} must be at least 1, and noise_std={noise_std} and "
                            f"reconstruction_weight={reconstruction_weight} at least 0")
        self.noise_std = noise_std
        self.reconstruction_weight = reconstruction_weight
        pooled = (patch_size - 2) // 2
        self.conv = nn.Conv2d(n_bands, planes, 3)
        self.norm = nn.BatchNorm2d(planes)
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.classifier = nn.Linear(planes * pooled * pooled, n_classes)
        self.top_down = nn.Linear(n_classes, planes * pooled * pooled)
        self.unpool = nn.MaxUnpool2d(2)
        self.decoder = nn.ConvTranspose2d(planes, n_bands, 3)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and self.noise_std > 0:
            x = x + self.noise_std * torch.randn_like(x)
        activations = F.relu(self.norm(self.conv(x)))
        pooled, positions = self.pool(activations)
        logits = self.classifier(pooled.flatten(1))
        top = F.relu(self.top_down(F.softmax(logits, dim=1)).view_as(pooled) + pooled)
        unpooled = self.unpool(top, positions, output_size=activations.shape[-2:])
        return logits, self.decoder(unpooled + activations)

    def dense_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K, h, w) of every patch of a (N, bands, H, W) tile in one fully convolutional
        pass of the encoder (eval mode: no noise; the decoder does not affect the logits). The 2x2
        pooling runs with stride 1 and dilates the classifier (see :mod:`deephyperx.dense_eval`)."""
        x, dilation = dense_conv(self.conv, x, 1)
        x, dilation = dense_max_pool(self.pool, F.relu(self.norm(x)), dilation)
        return dense_linear(self.classifier, x, dilation)


# ----- Boulch et al. 2017 -------------------------------------------------------------------------

#: Size of Boulch's code: three values, shown as the red, green and blue of a false-colour image.
BOULCH_CODE = 3


def boulch_encoder(n_bands: int, planes: int) -> nn.Sequential:
    """1D convolutions halving the spectrum down to one position, then a 3-channel tanh code.

    Each block: convolution 3 ('same') -> max pooling 2 -> ReLU -> batch norm; 2 x ``planes``
    channels in the first block, ``planes`` after."""
    layers: list[nn.Module] = []
    length, channels = n_bands, 1
    while length > 1:
        width = 2 * planes if channels == 1 else planes
        layers += [nn.Conv1d(channels, width, 3, padding=1), nn.MaxPool1d(2), nn.ReLU(), nn.BatchNorm1d(width)]
        length, channels = length // 2, width
    layers += [nn.Conv1d(channels, BOULCH_CODE, 3, padding=1), nn.Tanh()]
    return nn.Sequential(*layers)


@register_model("boulch", patch_size=1, epoch=100, batch_size=100, optimizer="adam", lr=1e-3,
                supervision="semi_supervised_reconstruction",
                citation="Boulch, Audebert & Dubucq, Autoencodeurs pour la visualisation d'images "
                         "hyperspectrales, GRETSI 2017")
class BoulchAutoencoder(nn.Module):
    """A 1D convolutional autoencoder of spectra with a 3-value code (a false colour per pixel) from
    which a linear layer classifies and another reconstructs the spectrum.

    Encoder: blocks of [1D convolution 3, max pooling 2, ReLU, batch norm] (32 then ``planes`` (16)
    channels) until the spectrum is one position long (log2(bands) blocks), then a convolution to 3
    channels and tanh. Heads: linear 3 -> classes, linear 3 -> bands (the decoder). Loss (the step):
    cross-entropy + ``reconstruction_weight`` (0.1) x squared reconstruction error, on labelled and
    unlabelled spectra. Adam lr 0.001 (a departure, below), batch 100, 100 epochs. He-normal
    weights, zero biases.

    The architecture, weight 0.1 and initialisation follow DeepHyperX, whose author co-wrote the
    paper; we could not read the paper itself. DeepHyperX's builder miscounts channels when the
    spectrum has fewer than 4 bands; here channels are tracked layer by layer.

    Training departure: DeepHyperX trains with plain SGD at lr 0.001, which barely moves this
    network in 100 epochs (Indian Pines 10%, seed 0: training loss 3.12 -> 2.32, test OA 18.53;
    Salinas-A 5%: OA 62.05 ± 12.51 over five seeds). Adam at the same rate trains it (seed 0:
    Indian Pines OA 43.43, Salinas-A 94.29); ``--optimizer sgd`` gives DeepHyperX's. Its 3-value
    code remains a tight bottleneck for 16 classes: the paper's aim is a false-colour view of the
    scene, not the best classifier.
    """

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 1, *, planes: int = 16,
                 reconstruction_weight: float = 0.1):
        super().__init__()
        require_single_spectra("boulch", patch_size)
        if planes < 1 or reconstruction_weight < 0:
            raise UserError(f"boulch: planes={planes} must be at least 1 and reconstruction_weight="
                            f"{reconstruction_weight} non-negative")
        self.reconstruction_weight = reconstruction_weight
        self.encoder = boulch_encoder(n_bands, planes)
        self.classifier = nn.Linear(BOULCH_CODE, n_classes)
        self.decoder = nn.Linear(BOULCH_CODE, n_bands)
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The 3-value code (N, 3) of spectra (N, bands, 1, 1): a false-colour image of the scene."""
        return self.encoder(x.flatten(1).unsqueeze(1)).flatten(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.encode(x)
        return self.classifier(code), self.decoder(code).view_as(x)
