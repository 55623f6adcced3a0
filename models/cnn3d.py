"""3D convolutional networks on spectral-spatial patches: Hamida, Lee & Kwon, Chen, Li and He.

Every model receives patches ``x`` of shape (N, bands, P, P). The 3D networks treat the
patch as a one-channel volume ``x.unsqueeze(1)`` of shape (N, 1, bands, P, P), so PyTorch
kernel sizes below read (spectral, row, column) where the papers often write (row, column,
spectral). Sizes that cannot work (a patch too small for the spatial kernels, too few bands
for the spectral ones) are refused with a one-line :class:`~deephyperx.errors.UserError`.
hamida trains with its convolutions computed as matrix products (:mod:`.spectral_unfold`): the same
numbers within float32 rounding, about twice as fast on a CPU (docs/PERFORMANCE.md).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deephyperx.dense_eval import dense_conv, dense_linear, dense_max_pool
from deephyperx.errors import UserError
from deephyperx.registry import register_model

from .spectral_unfold import conv3d_as_matmul, flatten_like_conv3d, volume_of_patches


def conv_length(length: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution or pooling along one axis (PyTorch's floor rule)."""
    return (length + 2 * padding - kernel) // stride + 1


def as_volume(x: torch.Tensor) -> torch.Tensor:
    """(N, bands, P, P) patches as one-channel volumes (N, 1, bands, P, P)."""
    return x.unsqueeze(1)


def require(condition: bool, message: str) -> None:
    """Raise a one-line :class:`UserError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise UserError(message)


def init_weights(model: nn.Module, rule) -> None:
    """Apply ``rule`` to the weight of every convolution and linear layer; zero their biases."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.Linear)):
            rule(module.weight)
            nn.init.zeros_(module.bias)


# ----- Ben Hamida et al. 2018 ----------------------------------------------------------------------

def hamida_spatial_padding(side: int) -> int:
    """Valid 3x3 spatial convolutions while the patch is at least 3 wide, 'same' below that."""
    return 0 if side >= 3 else 1


@register_model("hamida", patch_size=5, epoch=100, batch_size=100, optimizer="sgd", lr=0.01, weight_decay=5e-4,
                citation="Ben Hamida, Benoit, Lambert & Ben Amar, 3-D deep learning approach for remote sensing "
                         "image classification, IEEE TGRS 56(8), 2018")
class Hamida3D(nn.Module):
    """3D CNN whose pooling layers are learnt, spectrally strided convolutions (the paper's six-layer
    network, trained on 5x5 neighbourhoods).

    conv1: 20 kernels 3x3x3, stride 1 -> "pooling" 1: 20 kernels 1x1x3 (spectral), spectral stride 2 ->
    conv2: 35 kernels 3x3x3 -> "pooling" 2: 35 kernels 1x1x3, spectral stride 2 -> conv3: 35 kernels
    1x1x3, stride 1 -> conv4: 35 kernels 1x1x2, spectral stride 2 -> fully connected layer to the classes.
    The layers follow the paper's text. ReLU after every convolution, He-normal weights ("msra") and
    zero biases follow the authors' published Caffe files
    (github.com/AminaBh/3D_deepLearning_for_hyperspectral_images), whose layer order and widths
    differ from the text in places (we follow the text there).

    Paddings, which the text does not give, follow what those files do for each kind of kernel:
    kernels 3 deep pad the spectral axis by 1 (stride 1 or 2), the 1x1x2 stride-2 kernel does not pad.
    Spatially the 3x3 kernels are valid (a 5x5 patch shrinks to 3x3 then 1x1); a layer meeting a
    patch narrower than its kernel pads it by 1 (as the files' 3x3-neighbourhood network does), so
    the 1x1 and 3x3 neighbourhoods the paper also evaluates work too.

    Departures of DeepHyperX (not followed): no ReLU after the two "pooling" layers, no spectral
    padding in conv1 and a padded final 1x1x2 layer, hence 26 instead of 25 spectral positions before
    the classifier on 200 bands. The Caffe files' per-layer learning-rate multipliers (x2 on biases,
    no weight decay on biases) are not reproduced: the engine has one learning rate for all
    parameters.
    """

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 5):
        super().__init__()
        depth = self._spectral_length(n_bands)
        require(depth >= 1, f"model hamida needs at least 5 spectral bands (it halves the spectrum three times), "
                            f"not {n_bands}; use a scene with more bands (or more PCA components)")
        pad1 = hamida_spatial_padding(patch_size)
        side = conv_length(patch_size, 3, padding=pad1)
        pad2 = hamida_spatial_padding(side)
        side = conv_length(side, 3, padding=pad2)
        self.conv1 = nn.Conv3d(1, 20, 3, padding=(1, pad1, pad1))
        self.pool1 = nn.Conv3d(20, 20, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0))
        self.conv2 = nn.Conv3d(20, 35, 3, padding=(1, pad2, pad2))
        self.pool2 = nn.Conv3d(35, 35, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0))
        self.conv3 = nn.Conv3d(35, 35, (3, 1, 1), padding=(1, 0, 0))
        self.conv4 = nn.Conv3d(35, 35, (2, 1, 1), stride=(2, 1, 1))
        self.fc = nn.Linear(35 * depth * side * side, n_classes)
        init_weights(self, nn.init.kaiming_normal_)

    @staticmethod
    def _spectral_length(n_bands: int) -> int:
        """Spectral positions left after the two strided "pooling" layers and conv4 (<1: too few bands)."""
        length = conv_length(conv_length(n_bands, 3, 2, 1), 3, 2, 1)
        return conv_length(length, 2, 2) if length >= 2 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = (self.conv1, self.pool1, self.conv2, self.pool2, self.conv3, self.conv4)
        if torch.is_grad_enabled():  # training: each convolution as one matrix product (spectral_unfold)
            volume = volume_of_patches(x)
            for layer in layers:
                volume = F.relu(conv3d_as_matmul(layer, volume))
            return self.fc(flatten_like_conv3d(volume))
        volume = as_volume(x)  # inference: oneDNN's direct 3D kernels are faster without a backward pass
        for layer in layers:
            volume = F.relu(layer(volume))
        return self.fc(volume.flatten(1))

    def dense_exact(self) -> bool:
        """Dense evaluation is exact only when both 3x3 convolutions are spatially valid (patches of
        at least 5x5): a layer padded inside a narrower patch sees the patch border."""
        return self.conv1.padding[1] == 0 and self.conv2.padding[1] == 0

    def dense_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K, h, w) of every patch of a (N, bands, H, W) tile in one fully convolutional
        pass (see :mod:`deephyperx.dense_eval`); needs :meth:`dense_exact`."""
        x, dilation = as_volume(x), 1
        for layer in (self.conv1, self.pool1, self.conv2, self.pool2, self.conv3, self.conv4):
            x, dilation = dense_conv(layer, x, dilation)
            x = x.relu_()  # in place: a fresh output of the convolution
        return dense_linear(self.fc, x, dilation)


# ----- Lee & Kwon 2016/2017 ------------------------------------------------------------------------

class Residual1x1(nn.Module):
    """Two 1x1 convolutions with a ReLU between, added to the input, then a ReLU (ResNet's module)."""

    def __init__(self, width: int):
        super().__init__()
        self.first = nn.Conv2d(width, width, 1)
        self.second = nn.Conv2d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.second(F.relu(self.first(x))))


@register_model("lee", patch_size=5, epoch=200, batch_size=100, optimizer="adam", lr=1e-3, output="dense",
                citation="Lee & Kwon, Going deeper with contextual CNN for hyperspectral image classification, "
                         "IEEE TIP 26(10), 2017 (IGARSS 2016: Contextual deep CNN based hyperspectral classification)")
class LeeKwonContextual(nn.Module):
    """Contextual deep CNN: a multi-scale filter bank over the spectral-spatial neighbourhood, then a
    fully convolutional stack of 1x1 layers with residual modules; logits for every pixel of the patch.

    Layer 1, the multi-scale filter bank: ``width`` (128) kernels each of 1x1xB, 3x3xB and 5x5xB
    (B = all bands); the 3x3xB output is max-pooled over 3x3 and the 1x1xB output over 5x5, so
    that all three branches see the whole 5x5 neighbourhood; the 3x128 maps are concatenated,
    ReLU, local response normalisation. Layer 2: 1x1 convolution to 128, ReLU, LRN. Layers 3-6: two
    residual modules of two 1x1 convolutions each. Layers 7-8: 1x1 convolutions, ReLU, dropout
    (0.5). Layer 9: 1x1 convolution to the classes. A kxkxB kernel spanning every band is a 2D
    convolution over B input channels, which is how it is written here (same weights and count).

    Output choice. The paper is a centre-pixel classifier built fully convolutionally: on a 5x5
    patch its valid 5x5 convolution and 3x3 / 5x5 poolings leave a single 1x1 position, the
    centre pixel's label. DeepHyperX instead trains the network densely: it pads the bank so the
    patch keeps its size and takes a loss on every labelled pixel of the patch; this toolbox
    registers ``lee`` as dense to keep DeepHyperX's training signal (25 labels per patch instead of
    one). The bank here is zero-padded ("same") and its poolings are stride-1 with -inf padding,
    so the logits at the centre pixel are exactly the paper's centre-pixel network on the 5x5
    neighbourhood, and the other pixels get the same network over their neighbourhood truncated
    at the patch border.

    The pooling sizes (3x3 after the 3x3xB branch, 5x5 after the 1x1xB one) are our reading of the
    TIP paper's figure, not re-checked against its text here. The paper's LRN follows AlexNet; we
    use AlexNet's size-5 window (DeepHyperX normalises across all 256 channels) and put it after
    the ReLU as AlexNet does. DeepHyperX uses the IGARSS 2016 bank
    (1x1xB and 3x3xB only, no pooling); we follow the TIP 2017 three-scale bank. He-uniform weights
    and zero biases as in DeepHyperX.
    """

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 5, *, width: int = 128,
                 dropout: float = 0.5):
        super().__init__()
        require(width >= 1, f"model lee: width={width}; give at least 1 filter per scale")
        self.scale1 = nn.Conv2d(n_bands, width, 1)
        self.scale3 = nn.Conv2d(n_bands, width, 3, padding=1)
        self.scale5 = nn.Conv2d(n_bands, width, 5, padding=2)
        self.pool3 = nn.MaxPool2d(3, stride=1, padding=1)
        self.pool5 = nn.MaxPool2d(5, stride=1, padding=2)
        self.lrn = nn.LocalResponseNorm(5)
        self.conv2 = nn.Conv2d(3 * width, width, 1)
        self.residual = nn.Sequential(Residual1x1(width), Residual1x1(width))
        self.conv7 = nn.Conv2d(width, width, 1)
        self.conv8 = nn.Conv2d(width, width, 1)
        self.classifier = nn.Conv2d(width, n_classes, 1)
        self.dropout = nn.Dropout(dropout)
        init_weights(self, nn.init.kaiming_uniform_)

    def filter_bank(self, x: torch.Tensor) -> torch.Tensor:
        """Layer 1: the three scales, each seeing the 5x5 neighbourhood, concatenated."""
        return torch.cat([self.pool5(self.scale1(x)), self.pool3(self.scale3(x)), self.scale5(x)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lrn(F.relu(self.filter_bank(x)))
        x = self.residual(self.lrn(F.relu(self.conv2(x))))
        x = self.dropout(F.relu(self.conv7(x)))
        x = self.dropout(F.relu(self.conv8(x)))
        return self.classifier(x)


# ----- Chen et al. 2016 ----------------------------------------------------------------------------

def chen_spatial_side(patch_size: int) -> int:
    """Side left after Chen's three 4x4 convolutions and two 2x2 poolings (<1: patch too small)."""
    side = conv_length(patch_size, 4) // 2
    side = conv_length(side, 4) // 2
    return conv_length(side, 4)


@register_model("chen", patch_size=27, epoch=400, batch_size=100, optimizer="sgd", lr=0.003,
                citation="Chen, Jiang, Li, Jia & Ghamisi, Deep feature extraction and classification of "
                         "hyperspectral images based on convolutional neural networks, IEEE TGRS 54(10), 2016")
class Chen3D(nn.Module):
    """3D CNN on 27x27 neighbourhoods: three 3D convolutions of ``n_planes`` kernels 4x4x32
    (rows x columns x bands), ReLU and dropout (0.5) after each, 2x2 spatial max pooling after the
    first two, then a fully connected layer to the classes, zero biases.

    Initialisation departs from the paper by default: it draws weights from N(0, 0.001^2), which
    suits raw radiances in the thousands but not the engine's standardised inputs, where the
    signal reaching the classifier is about 1e-6 and SGD does not move the network (on a 3-class
    toy scene it stayed at chance after 10 epochs at 17 times the paper's learning rate). We use
    He-normal weights; ``init_std=0.001`` restores the paper's (DeepHyperX keeps them).

    On a 27x27 patch the spatial side goes 24, 12, 9, 4, 1, so patches of at least 25x25 work.
    The paper's 32-band-deep kernels need at least 94 bands for the three valid convolutions; with
    fewer bands the kernel depth shrinks to floor((B + 2) / 3) so that the network still builds (our
    choice: the paper only treats 103- to 224-band scenes). The number of kernels per layer is
    DeepHyperX's 32 (option ``n_planes``); the paper's own table of feature-map counts could not be
    checked here. As in DeepHyperX, the virtual-sample augmentation and the L2 penalty of the
    paper are left to the engine's augmentation and weight-decay settings.
    """

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 27, *, n_planes: int = 32,
                 spectral_depth: int = 32, dropout: float = 0.5, init_std: float | None = None):
        super().__init__()
        side = chen_spatial_side(patch_size)
        require(side >= 1, f"model chen needs patches of at least 25x25 (three 4x4 convolutions and two 2x2 "
                           f"poolings), not {patch_size}x{patch_size}; use --patch_size 27")
        require(n_planes >= 1 and spectral_depth >= 1,
                f"model chen: n_planes={n_planes}, spectral_depth={spectral_depth}; both must be at least 1")
        depth = min(spectral_depth, (n_bands + 2) // 3)
        require(depth >= 1, f"model chen needs at least 1 spectral band, not {n_bands}")
        self.conv1 = nn.Conv3d(1, n_planes, (depth, 4, 4))
        self.conv2 = nn.Conv3d(n_planes, n_planes, (depth, 4, 4))
        self.conv3 = nn.Conv3d(n_planes, n_planes, (depth, 4, 4))
        self.pool = nn.MaxPool3d((1, 2, 2))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_planes * (n_bands - 3 * (depth - 1)) * side * side, n_classes)
        init_weights(self, nn.init.kaiming_normal_ if init_std is None else lambda w: nn.init.normal_(w, std=init_std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.pool(F.relu(self.conv1(as_volume(x)))))
        x = self.dropout(self.pool(F.relu(self.conv2(x))))
        x = self.dropout(F.relu(self.conv3(x)))
        return self.fc(x.flatten(1))

    def dense_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K, h, w) of every patch of a (N, bands, H, W) tile in one fully convolutional
        pass: the 2x2 poolings run with stride 1 and dilate what follows (see
        :mod:`deephyperx.dense_eval`)."""
        x, dilation = dense_conv(self.conv1, as_volume(x), 1)
        x, dilation = dense_max_pool(self.pool, x.relu_(), dilation)
        x, dilation = dense_conv(self.conv2, self.dropout(x), dilation)
        x, dilation = dense_max_pool(self.pool, x.relu_(), dilation)
        x, dilation = dense_conv(self.conv3, self.dropout(x), dilation)
        return dense_linear(self.fc, self.dropout(x.relu_()), dilation)


# ----- Li et al. 2017 ------------------------------------------------------------------------------

@register_model("li", patch_size=5, epoch=200, batch_size=100, optimizer="sgd", lr=0.01, momentum=0.9,
                weight_decay=5e-4,
                citation="Li, Zhang & Shen, Spectral-spatial classification of hyperspectral imagery with 3D "
                         "convolutional neural network, Remote Sensing 9(1):67, 2017")
class Li3D(nn.Module):
    """3D CNN of two valid 3D convolutions and one fully connected layer: C1: ``n_planes`` (2) kernels
    3x3x7 (rows x columns x bands), ReLU; C2: twice as many kernels, 3x3x3, ReLU; F1: fully connected
    to the classes. On a 5x5x200 patch: C1 gives 2 maps of 3x3x194, C2 4 maps of 1x1x192, F1 sees 768
    features. Xavier-uniform weights and zero biases as in DeepHyperX (the paper names none).

    Departures of DeepHyperX (not followed): 16 kernels in C1 where the paper uses 2 (set
    ``n_planes=16`` to get its width) and a spectral padding of 1 in both layers, which the paper's
    layer sizes (194, then 192 bands) rule out. The paper's spectral depths (7 and 3) are those it
    gives for Indian Pines and Pavia University.
    """

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 5, *, n_planes: int = 2):
        super().__init__()
        require(patch_size >= 5, f"model li needs patches of at least 5x5 (two valid 3x3 convolutions), "
                                 f"not {patch_size}x{patch_size}; use --patch_size 5")
        require(n_bands >= 9, f"model li needs at least 9 spectral bands (kernels 7 then 3 bands deep), not {n_bands}")
        require(n_planes >= 1, f"model li: n_planes={n_planes}; give at least 1 kernel")
        self.conv1 = nn.Conv3d(1, n_planes, (7, 3, 3))
        self.conv2 = nn.Conv3d(n_planes, 2 * n_planes, 3)
        self.fc = nn.Linear(2 * n_planes * (n_bands - 8) * (patch_size - 4) ** 2, n_classes)
        init_weights(self, nn.init.xavier_uniform_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # oneDNN's 3D kernels: with 1 -> 2 -> 4 channels, matrix products (spectral_unfold) are slower here
        x = F.relu(self.conv2(F.relu(self.conv1(as_volume(x)))))
        return self.fc(x.flatten(1))

    def dense_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K, h, w) of every patch of a (N, bands, H, W) tile in one fully convolutional
        pass (see :mod:`deephyperx.dense_eval`)."""
        x, dilation = dense_conv(self.conv1, as_volume(x), 1)
        x, dilation = dense_conv(self.conv2, x.relu_(), dilation)
        return dense_linear(self.fc, x.relu_(), dilation)


# ----- He et al. 2017 ------------------------------------------------------------------------------

class SpectralMultiScale(nn.Module):
    """Four parallel spectral convolutions (1x1x1, 1x1x3, 1x1x5, 1x1x11, zero-padded to keep the
    size) of the same width, summed, then a ReLU."""

    DEPTHS = (1, 3, 5, 11)

    def __init__(self, width: int):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv3d(width, width, (d, 1, 1), padding=(d // 2, 0, 0))
                                      for d in self.DEPTHS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(sum(branch(x) for branch in self.branches))

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` over a dense tile (1x1 spatial kernels: the same function, through
        :func:`~deephyperx.dense_eval.dense_conv`, which keeps large one-sample tiles fast, and
        summed in place)."""
        out = dense_conv(self.branches[0], x, 1)[0]
        for branch in self.branches[1:]:
            out += dense_conv(branch, x, 1)[0]  # in place: the tile's maps are large
        return out.relu_()


@register_model("he", patch_size=7, epoch=100, batch_size=40, optimizer="adagrad", lr=0.01, weight_decay=0.01,
                citation="He, Li & Chen, Multi-scale 3D deep convolutional neural network for hyperspectral "
                         "image classification, IEEE ICIP 2017")
class HeMultiScale3D(nn.Module):
    """Multi-scale 3D CNN (M3D-DCNN) on 7x7 neighbourhoods: conv1: 16 kernels 3x3x11 (rows x columns x
    bands), spectral stride 3, ReLU -> two multi-scale blocks (16 kernels each of 1x1x1, 1x1x3, 1x1x5,
    1x1x11, summed, ReLU) -> conv4: 16 kernels 2x2x3, ReLU -> max pooling 2x2x3 with the same stride
    -> dropout 0.6 -> fully connected layer to the classes. He-uniform weights and zero biases as in
    DeepHyperX (we found no initialisation in the paper).

    DeepHyperX declares this pooling layer but never applies it, so its classifier sees 16x62x4x4
    features on a 7x7x200 patch; we apply it (16x20x2x2). The paper's layer table could not be read
    here: the pooling's size comes from DeepHyperX's declaration, the rest from its layers. Patches
    need at least 5x5 pixels and scenes at least 23 bands for the pooling to have a window left.
    """

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 7, *, dropout: float = 0.6):
        super().__init__()
        require(patch_size >= 5, f"model he needs patches of at least 5x5 (a 3x3 and a 2x2 convolution, then "
                                 f"2x2 pooling), not {patch_size}x{patch_size}; use --patch_size 7")
        depth = conv_length(n_bands, 11, 3)
        require(depth >= 5, f"model he needs at least 23 spectral bands (kernel 11 bands deep with stride 3, "
                            f"then 3-deep convolution and pooling), not {n_bands}")
        side = conv_length(patch_size - 2, 2) // 2
        self.conv1 = nn.Conv3d(1, 16, (11, 3, 3), stride=(3, 1, 1))
        self.block2 = SpectralMultiScale(16)
        self.block3 = SpectralMultiScale(16)
        self.conv4 = nn.Conv3d(16, 16, (3, 2, 2))
        self.pool = nn.MaxPool3d((3, 2, 2))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(16 * (conv_length(depth, 3) // 3) * side * side, n_classes)
        init_weights(self, nn.init.kaiming_uniform_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(F.relu(self.conv1(as_volume(x)))))
        x = self.pool(F.relu(self.conv4(x)))
        return self.fc(self.dropout(x.flatten(1)))

    def dense_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K, h, w) of every patch of a (N, bands, H, W) tile in one fully convolutional
        pass: the 2x2 pooling runs with stride 1 and dilates the classifier (see
        :mod:`deephyperx.dense_eval`)."""
        x, dilation = dense_conv(self.conv1, as_volume(x), 1)
        x = self.block3.dense(self.block2.dense(x.relu_()))
        x, dilation = dense_conv(self.conv4, x, dilation)
        x, dilation = dense_max_pool(self.pool, x.relu_(), dilation)
        return dense_linear(self.fc, self.dropout(x), dilation)
