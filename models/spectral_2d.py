"""Supervised networks that read spectra as signals or images: Luo's HSI-CNN, Sharma's S-CNN
and Mou's recurrent network.

Every model receives patches ``x`` of shape (N, bands, P, P) and returns logits (N, classes).
Sizes that cannot work are refused with a one-line :class:`~deephyperx.errors.UserError`.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deephyperx.dense_eval import dense_conv, dense_linear, dense_max_pool, pointwise_linear
from deephyperx.errors import UserError
from deephyperx.registry import register_model, require_single_spectra


def conv_length(length: int, kernel: int, stride: int = 1) -> int:
    """Output length of an unpadded convolution or pooling along one axis (PyTorch's floor rule)."""
    return (length - kernel) // stride + 1


def init_layers(model: nn.Module, rule, kinds: tuple[type, ...]) -> None:
    """Apply ``rule`` to the weight of every layer of the given ``kinds``; zero their biases."""
    for module in model.modules():
        if isinstance(module, kinds):
            rule(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


# ----- Luo et al. 2018 ---------------------------------------------------------------------------

#: HSI-CNN's Conv1: kernel height (bands) and spectral stride, "in the four datasets".
LUO_KERNEL_HEIGHT, LUO_STRIDE = 24, 9
#: Conv2's kernel side: the stacked Conv1 maps must be at least this long.
LUO_CONV2 = 3


@register_model("luo", patch_size=3, epoch=100, batch_size=100, optimizer="sgd", lr=0.01, weight_decay=0.0,
                citation="Luo, Zou, Yao, Li & Bai, HSI-CNN: a novel convolution neural network for "
                         "hyperspectral image, ICPR 2018 (arXiv:1802.10478)")
class LuoHSICNN(nn.Module):
    """HSI-CNN: Conv1 turns the pixel and its neighbours into 1D maps that are stacked into an image
    for an ordinary 2D CNN.

    Conv1: ``kernels`` (90) kernels spanning the whole PxP neighbourhood (the paper's pixel and its 8
    neighbours at P=3) and 24 bands, spectral stride 9 (DeepHyperX's reading of the paper's nk1 = 24,
    s1 = 9), ReLU -> the 90 maps of length T = (B-24)//9+1 stacked into a 90 x T image -> Conv2: 64
    kernels 3x3, stride 1, ReLU -> FC1: ``fc_units`` (1024), ReLU -> FC2 to the classes. He-uniform
    weights and zero biases, as DeepHyperX. Training: plain SGD, batch 100, 100 epochs, **lr 0.01
    and no weight decay** (a departure, below).

    Training departure: DeepHyperX registers SGD lr 0.1 with weight decay 0.09 (its reading of the
    paper's "decay term 0.09"; the paper's full text could not be read here). With those settings
    the first epoch's loss reaches the thousands and the network ends predicting the majority class
    on both of our scenes (Indian Pines 10%: OA 23.95, AA 6.25; Salinas-A 5%: OA 28.52, AA 16.67),
    so the model would not be usable. A weight decay of 0.09 also shrinks every weight by 0.9% per
    step, far beyond the 5e-4 customary for CNNs; "decay term" more likely meant a learning-rate
    decay. lr 0.01 without weight decay trains (Salinas-A 5%, seed 0, 30 epochs: OA 99.21; see
    docs/results/classification.md for the full schedule); ``--lr 0.1 --weight_decay 0.09`` gives DeepHyperX's.

    Departures: DeepHyperX reshapes Conv1's (90, T) output with ``view`` into a (T, 90) array, which
    interleaves kernels and band positions; we stack the maps whole, as the abstract's "feature maps
    [...] stacked into a two-dimensional matrix" says (one row per kernel, band positions along the
    row). With fewer than 42 bands (T < 3) the valid 3x3 Conv2 cannot run, so the image is
    zero-padded along the band axis to width 3, and with fewer than 24 bands Conv1's kernel spans
    all bands: the paper's own scenes (103-204 bands) never hit these cases. Other patch sizes are
    accepted: Conv1 then spans the whole PxP neighbourhood. FC1's width (1024) and the number of
    Conv1 kernels (90) are DeepHyperX's values (we could not read the paper's full text); FC1 then
    holds nearly all of the model's 104 M parameters on Indian Pines; ``fc_units`` or ``kernels``
    shrink it.
    """

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 3, *, kernels: int = 90,
                 fc_units: int = 1024):
        super().__init__()
        if kernels < LUO_CONV2 or fc_units < 1:
            raise UserError(f"luo: kernels={kernels} and fc_units={fc_units} must be at least {LUO_CONV2} and 1")
        height = min(LUO_KERNEL_HEIGHT, n_bands)
        positions = conv_length(n_bands, height, LUO_STRIDE)
        self.padding = max(0, LUO_CONV2 - positions)
        self.conv1 = nn.Conv1d(patch_size * patch_size, kernels, height, stride=LUO_STRIDE)
        self.conv2 = nn.Conv2d(1, 64, LUO_CONV2)
        width = positions + self.padding - LUO_CONV2 + 1
        self.fc1 = nn.Linear(64 * (kernels - LUO_CONV2 + 1) * width, fc_units)
        self.fc2 = nn.Linear(fc_units, n_classes)
        init_layers(self, nn.init.kaiming_uniform_, (nn.Conv1d, nn.Conv2d, nn.Linear))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectra = x.flatten(2).transpose(1, 2)  # (N, P*P pixels, bands): each pixel an input channel
        maps = F.relu(self.conv1(spectra)).unsqueeze(1)  # (N, 1, kernels, T): one row per kernel
        if self.padding:
            maps = F.pad(maps, (self.padding // 2, self.padding - self.padding // 2))
        features = F.relu(self.conv2(maps)).flatten(1)
        return self.fc2(F.relu(self.fc1(features)))


# ----- Sharma et al. ------------------------------------------------------------------------------

def sharma_final_side(patch_size: int) -> int:
    """Side of S-CNN's last feature map: conv 6/2, pool 2, conv 3/2, pool 2, conv 3."""
    side = conv_length(patch_size, 6, 2) // 2
    side = conv_length(side, 3, 2) // 2
    return conv_length(side, 3)


#: Smallest patch whose last feature map is at least 1x1.
SHARMA_MIN_PATCH = next(p for p in range(6, 200) if sharma_final_side(p) >= 1)


@register_model("sharma", patch_size=64, epoch=30, batch_size=60, optimizer="sgd", lr=0.05, momentum=0.9,
                weight_decay=5e-4, scheduler={"name": "multistep", "milestones": [15, 25], "gamma": 0.1},
                citation="Sharma, Diba, Tuytelaars & Van Gool, Hyperspectral CNN for image classification & band "
                         "selection, with application to face recognition, Technical report KUL/ESAT/PSI/1604, "
                         "KU Leuven, 2016 (the S-CNN DeepHyperX calls 'sharma')")
class SharmaSCNN(nn.Module):
    """S-CNN: an AlexNet-like 2D CNN over all bands of a large patch.

    conv1: 96 kernels 6x6 over all bands, stride 2, batch norm, ReLU, max pooling 2x2 -> conv2: 256
    kernels 3x3, stride 2, batch norm, ReLU, max pooling 2x2 -> conv3: 512 kernels 3x3, stride 1,
    ReLU -> fc1: 1024 units, ReLU, dropout 0.5 -> fc2 to the classes. He-normal weights, zero biases.
    Training as the report states: SGD with momentum 0.9, weight decay 5e-4, batch 60, lr 0.05
    divided by 10 at epochs 15 and 25, 30 epochs.

    Departures: the report feeds 263x263 images; on hyperspectral scenes we classify the centre of a
    64x64 patch (DeepHyperX's assumption), and any patch of at least 56 pixels works. DeepHyperX
    builds the layers as 3D convolutions spanning all input channels (the same operation), leaves
    out the report's momentum 0.9 and the ReLU after fc1; we keep both. Batch norm after conv1 and
    conv2 follows DeepHyperX.
    """

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 64, *, dropout: float = 0.5):
        super().__init__()
        if patch_size < SHARMA_MIN_PATCH:
            raise UserError(f"sharma needs patches of at least {SHARMA_MIN_PATCH}x{SHARMA_MIN_PATCH} (three "
                            f"convolutions and two poolings), not {patch_size}x{patch_size}; the paper's is 64")
        if not 0 <= dropout < 1:
            raise UserError(f"sharma: dropout {dropout} must be in [0, 1)")
        self.features = nn.Sequential(
            nn.Conv2d(n_bands, 96, 6, stride=2), nn.BatchNorm2d(96), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(96, 256, 3, stride=2), nn.BatchNorm2d(256), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(256, 512, 3), nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(512 * sharma_final_side(patch_size) ** 2, 1024), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(1024, n_classes),
        )
        init_layers(self, nn.init.kaiming_normal_, (nn.Conv2d, nn.Linear))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))

    def dense_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K, h, w) of every patch of a (N, bands, H, W) tile in one fully convolutional
        pass: strided convolutions and poolings run with stride 1 and dilate what follows, up to
        16 at conv3 (see :mod:`deephyperx.dense_eval`)."""
        dilation = 1
        for layer in self.features:
            if isinstance(layer, nn.Conv2d):
                x, dilation = dense_conv(layer, x, dilation)
            elif isinstance(layer, nn.MaxPool2d):
                x, dilation = dense_max_pool(layer, x, dilation)
            else:  # batch norm (eval mode) and ReLU act per position
                x = layer(x)
        fc1, relu, dropout, fc2 = self.classifier
        return pointwise_linear(fc2, dropout(relu(dense_linear(fc1, x, dilation))))


# ----- Mou et al. 2017 ----------------------------------------------------------------------------

class PRetanh(nn.Module):
    """Parametric rectified tanh: tanh(h) for h > 0, lambda * tanh(h) otherwise, with one learnt
    lambda per unit (as PReLU's coefficients), starting at ``initial``."""

    def __init__(self, units: int, initial: float = 0.25):
        super().__init__()
        self.slope = nn.Parameter(torch.full((units,), initial))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        t = torch.tanh(h)
        return torch.where(h > 0, t, self.slope * t)


class PRetanhGRU(nn.Module):
    """One GRU layer whose candidate state uses PRetanh instead of tanh (sigmoid gates):
    r = s(W_r x + U_r h), u = s(W_u x + U_u h), c = PRetanh(W x + U (r * h)), h' = u * h + (1 - u) * c."""

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.input = nn.Linear(input_size, 3 * hidden)  # W_r, W_u, W and the three biases
        self.gates = nn.Linear(hidden, 2 * hidden, bias=False)  # U_r, U_u
        self.candidate = nn.Linear(hidden, hidden, bias=False)  # U
        self.activation = PRetanh(hidden)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        """The last hidden state (N, hidden) of a sequence (N, T, input_size)."""
        # Every step's input terms in one product, few fused operations per step (the loop runs in
        # Python), and one unbind: indexing x[:, t] per step would cost a full-size gradient each.
        projected = self.input(sequence.transpose(0, 1))  # (T, N, 3 * hidden)
        x_gates, x_candidate = projected.split([2 * self.hidden, self.hidden], dim=2)
        u_gates, u_candidate = self.gates.weight.t(), self.candidate.weight.t()
        h = sequence.new_zeros(sequence.shape[0], self.hidden)
        for gate_terms, candidate_terms in zip(x_gates.unbind(0), x_candidate.unbind(0)):
            reset, update = torch.sigmoid(torch.addmm(gate_terms, h, u_gates)).chunk(2, dim=1)
            candidate = self.activation(torch.addmm(candidate_terms, reset * h, u_candidate))
            h = torch.lerp(candidate, h, update)  # u * h + (1 - u) * candidate
        return h


@register_model("mou", patch_size=1, epoch=100, batch_size=100, optimizer="adadelta", lr=1.0, scheduler={"name": "none"},
                citation="Mou, Ghamisi & Zhu, Deep recurrent neural networks for hyperspectral image "
                         "classification, IEEE TGRS 55(7), 2017")
class MouRNN(nn.Module):
    """A recurrent network reading one spectrum band by band.

    One recurrent layer of ``hidden`` (64) modified GRUs with sigmoid gates and PRetanh candidate
    activation, fed one band value per time step; its last hidden state goes to a fully connected
    softmax layer. Weights and biases drawn from U(-0.1, 0.1), as the paper states; Adadelta with
    the paper's "fairly high" learning rate 1.0, kept constant: the paper mentions no decay, and
    Adadelta adapts its own steps (DeepHyperX adds a plateau scheduler). The paper's epoch count and
    batch size could not be read here; DeepHyperX's (100, 100) are kept, and the training loss is
    still falling at epoch 100 on Indian Pines at 10%.

    Choices and departures: the PRetanh slopes are learnt, one per unit, starting at 0.25 (PReLU's
    starting value; we could not read the paper's). The GRU is written out step by step because
    PyTorch's fused GRU has tanh built in; it is slower than ``nn.GRU``. DeepHyperX instead uses a
    plain tanh ``nn.GRU`` and classifies the concatenation of all 64 x bands hidden states after
    batch norm and tanh; the paper classifies from the recurrent layer's output, as here.
    """

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 1, *, hidden: int = 64):
        super().__init__()
        require_single_spectra("mou", patch_size)
        if hidden < 1:
            raise UserError(f"mou: hidden={hidden} must be at least 1")
        self.recurrent = PRetanhGRU(1, hidden)
        self.classifier = nn.Linear(hidden, n_classes)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.uniform_(module.weight, -0.1, 0.1)
                if module.bias is not None:
                    nn.init.uniform_(module.bias, -0.1, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sequence = x.flatten(1).unsqueeze(-1)  # (N, bands, 1): one band value per time step
        return self.classifier(self.recurrent(sequence))
