"""Conditional spectrum generators: Audebert et al.'s auxiliary-classifier Wasserstein GAN and a
conditional variational autoencoder, with the training steps that fit them.

Both work in *model space*: single spectra scaled to [0, 1] by a min-max normalisation fitted on
the training pixels (``deephyperx.generation`` does the scaling and its inverse). They share an
interface that the generation pipeline relies on:

* ``n_bands``, ``n_classes``, ``latent_dim``;
* ``sample(labels, generator=None) -> (N, B)``: spectra of the given classes, in [0, 1];
* ``decode(z, class_weights) -> (N, B)``: spectra of latent codes ``z`` (N, latent_dim) under
  class weights (N, K), one-hot or a mix of classes (to walk between two classes).

Batches reach the steps as ``batch.inputs[0]`` of shape (N, B) (or (N, B, 1, 1): flattened) with
the class ids in ``batch.target``.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deephyperx.errors import UserError
from deephyperx.monitor import Monitor
from deephyperx.registry import register_model
from deephyperx.sampling import Batch
from deephyperx.seeding import torch_generator
from deephyperx.steps import StepContext, TrainingStep, build_optimizer, register_step

#: Stream keys of the fixed noise used by validation and by the monitor's spectra.
_VALIDATION_STREAM, _MONITOR_STREAM = 101, 102
#: Synthetic spectra per class drawn for the monitor's real-against-synthetic plot.
_MONITOR_SAMPLES = 256


# ----- shared pieces ------------------------------------------------------------------------------

def mlp(n_in: int, n_out: int, width: int, depth: int, slope: float = 0.01) -> nn.Sequential:
    """``depth`` blocks [Linear ``width``, LeakyReLU], then Linear to ``n_out``."""
    layers: list[nn.Module] = []
    size = n_in
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.LeakyReLU(slope)]
        size = width
    layers.append(nn.Linear(size, n_out))
    return nn.Sequential(*layers)


def he_init(module: nn.Module, seed: int) -> None:
    """He-normal weights and zero biases for every linear layer, drawn from a generator of
    ``seed`` alone (building a model never touches the global random state)."""
    generator = torch_generator(seed, 0)
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, generator=generator)
            nn.init.zeros_(layer.bias)


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    return F.one_hot(labels.long(), n_classes).float()


def spectra_of(batch: Batch) -> torch.Tensor:
    """The batch's spectra as (N, B), whatever patch shape the maker gave."""
    return batch.inputs[0].flatten(1)


def check_options(name: str, **positive: float) -> None:
    """Refuse options that must be positive (widths, sizes, weights) with one line."""
    bad = {k: v for k, v in positive.items() if not v > 0}
    if bad:
        raise UserError(f"{name}: options {bad} must be positive")


class SpectrumGenerator(nn.Module):
    """What the two generators share: sampling spectra of given classes from the prior."""

    n_bands: int
    n_classes: int
    latent_dim: int

    def decode(self, z: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, z: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
        return self.decode(z, class_weights)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Spectra (N, B) in [0, 1] of classes ``labels`` (N,), from noise drawn with ``generator``
        (on the CPU, so that the same seed gives the same spectra on any device)."""
        device = next(self.parameters()).device
        z = torch.randn(len(labels), self.latent_dim, generator=generator).to(device)
        return self.decode(z, one_hot(labels.to(device), self.n_classes))


# ----- Audebert et al. 2018: auxiliary-classifier Wasserstein GAN ---------------------------------

@register_model("cgan", family="generator", patch_size=1, epoch=100, batch_size=256, optimizer="rmsprop", lr=5e-5,
                epoch_samples=256 * 500, supervision="wgan_gp_ac", scheduler={"name": "none"},
                citation="Audebert, Le Saux & Lefevre, Generative adversarial networks for realistic synthesis "
                         "of hyperspectral samples, IGARSS 2018")
class ConditionalWGAN(SpectrumGenerator):
    """Conditional Wasserstein GAN with gradient penalty and an auxiliary classifier, generating
    single spectra of a chosen class.

    Generator: noise (``latent_dim`` 30) + one-hot class -> [Linear ``width`` (512) + LeakyReLU] x3
    -> Linear to the bands + sigmoid. Critic: spectrum + class vector -> the same MLP -> 1 score.
    Auxiliary classifier: spectrum -> the same MLP -> class logits. He-normal initialisation.
    Training (step ``wgan_gp_ac``): RMSprop lr 5e-5, batches of 256 real spectra; each step
    updates the critic (WGAN loss + ``gp_weight`` (10) x gradient penalty) and the classifier
    (cross-entropy) on real spectra mixed up with a shuffled copy of the batch (one mixing weight
    per batch drawn from Beta(``mixup_alpha``, ``mixup_alpha``), alpha 0.1), and every
    ``critic_steps`` (5)-th step updates the generator (minus the critic score + ``classifier_weight``
    (0.2) x the classifier's cross-entropy on generated spectra).

    Schedule: an epoch is ``epoch_samples`` = 128,000 real spectra, i.e. 500 critic updates and
    100 generator updates; the default 100 epochs give 50,000 critic and 10,000 generator updates
    (about 50 s per epoch on one CPU thread for Indian Pines' 200 bands and 16 classes). The
    paper trains 100,000 generator iterations (500,000 critic updates), ten times
    more: ``--epoch 1000`` follows it.

    Departures from the authors' notebook: the critic also receives the class vector (a
    conditional critic; ``conditional_critic=False`` gives the notebook's unconditioned critic);
    the mixup partner is a shuffled copy of the same batch rather than a second batch; there is
    no label flipping (the notebook's flip rate is 0); the notebook also feeds unlabelled pixels
    near the training ones as an extra "undefined" class, here only labelled training pixels are
    used; and the [0, 1] scaling is fitted on the training pixels, not on the whole image.
    """

    def __init__(self, n_bands: int, n_classes: int, seed: int = 0, *, latent_dim: int = 30, width: int = 512,
                 depth: int = 3, critic_steps: int = 5, gp_weight: float = 10.0, classifier_weight: float = 0.2,
                 mixup_alpha: float = 0.1, conditional_critic: bool = True):
        super().__init__()
        check_options("cgan", latent_dim=latent_dim, width=width, depth=depth, critic_steps=critic_steps,
                      mixup_alpha=mixup_alpha)
        if gp_weight < 0 or classifier_weight < 0:
            raise UserError(f"cgan: gp_weight={gp_weight} and classifier_weight={classifier_weight} must be >= 0")
        self.n_bands, self.n_classes, self.latent_dim = n_bands, n_classes, latent_dim
        self.critic_steps, self.gp_weight, self.classifier_weight = critic_steps, gp_weight, classifier_weight
        self.mixup_alpha, self.conditional_critic = mixup_alpha, conditional_critic
        self.generator = mlp(latent_dim + n_classes, n_bands, width, depth)
        self.critic = mlp(n_bands + (n_classes if conditional_critic else 0), 1, width, depth)
        self.classifier = mlp(n_bands, n_classes, width, depth)
        # critic updates done so far: saved with the weights, so a resumed run keeps the 1-in-5 rhythm
        self.register_buffer("critic_updates", torch.zeros((), dtype=torch.long))
        he_init(self, seed)

    def decode(self, z: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.generator(torch.cat([z, class_weights], 1)))

    def score(self, spectra: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
        """The critic's score (N,) of spectra under class weights (ignored by an unconditioned critic)."""
        inputs = torch.cat([spectra, class_weights], 1) if self.conditional_critic else spectra
        return self.critic(inputs).squeeze(1)


def mixup(spectra: torch.Tensor, targets: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend a batch with a shuffled copy of itself by one weight drawn from Beta(alpha, alpha);
    targets (class weights) are blended alike."""
    lam = torch.distributions.Beta(alpha, alpha).sample().to(spectra.device)
    partner = torch.randperm(len(spectra)).to(spectra.device)
    return lam * spectra + (1 - lam) * spectra[partner], lam * targets + (1 - lam) * targets[partner]


def gradient_penalty(model: ConditionalWGAN, real: torch.Tensor, real_c: torch.Tensor, fake: torch.Tensor,
                     fake_c: torch.Tensor) -> torch.Tensor:
    """Gulrajani et al.'s penalty: (||grad critic|| - 1)^2 at random points between real and fake
    (spectrum and class vector interpolated together)."""
    alpha = torch.rand(len(real), 1, device=real.device)
    spectra = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    classes = (alpha * real_c + (1 - alpha) * fake_c).requires_grad_(model.conditional_critic)
    scores = model.score(spectra, classes)
    inputs = [spectra, classes] if model.conditional_critic else [spectra]
    grads = torch.autograd.grad(scores.sum(), inputs, create_graph=True)
    norm = torch.sqrt(sum(g.pow(2).sum(1) for g in grads) + 1e-12)
    return (norm - 1).pow(2).mean()


def soft_cross_entropy(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against class weights (mixed-up targets)."""
    return -(weights * F.log_softmax(logits, 1)).sum(1).mean()


def iterate_spectra(maker: Any, batch_size: int):
    """(spectra (N, B), labels (N,)) of every sample of ``maker``, batch by batch, in order."""
    from deephyperx.sampling import batches

    for batch in batches(maker, batch_size):
        yield spectra_of(batch), batch.target


@register_step("wgan_gp_ac")
class WGANStep(TrainingStep):
    """One critic + classifier update per call and a generator update every ``critic_steps``-th
    call. Optimisers: ``critic``, ``classifier``, ``generator`` (the run's optimiser and lr).
    Logs ``loss`` (the critic's loss), ``wasserstein`` (critic real - fake), ``gradient_penalty``,
    ``classifier_loss`` and, on generator updates, ``generator_loss`` and ``generator_class_loss``."""

    def build_optimizers(self, model: nn.Module, config: dict[str, Any]) -> dict[str, torch.optim.Optimizer]:
        return {part: build_optimizer(getattr(model, part).parameters(), config)
                for part in ("critic", "classifier", "generator")}

    def __call__(self, model: ConditionalWGAN, batch: Batch, optimizers: dict[str, torch.optim.Optimizer],
                 ctx: StepContext) -> dict[str, float]:
        real, labels = spectra_of(batch), batch.target
        onehot = one_hot(labels, model.n_classes)
        mixed, mixed_c = mixup(real, onehot, model.mixup_alpha)
        with torch.no_grad():
            fake = model.decode(torch.randn(len(real), model.latent_dim, device=real.device), onehot)
        logs = self._update_critic(model, mixed, mixed_c, fake, onehot, optimizers["critic"])
        logs.update(self._update_classifier(model, mixed, mixed_c, optimizers["classifier"]))
        model.critic_updates += 1
        if int(model.critic_updates) % model.critic_steps == 0:
            logs.update(self._update_generator(model, labels, onehot, optimizers["generator"]))
        return logs

    @staticmethod
    def _update_critic(model: ConditionalWGAN, real: torch.Tensor, real_c: torch.Tensor, fake: torch.Tensor,
                       fake_c: torch.Tensor, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        optimizer.zero_grad(set_to_none=True)
        real_score, fake_score = model.score(real, real_c).mean(), model.score(fake, fake_c).mean()
        penalty = gradient_penalty(model, real, real_c, fake, fake_c)
        loss = fake_score - real_score + model.gp_weight * penalty
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach()), "wasserstein": float((real_score - fake_score).detach()),
                "gradient_penalty": float(penalty.detach())}

    @staticmethod
    def _update_classifier(model: ConditionalWGAN, real: torch.Tensor, real_c: torch.Tensor,
                           optimizer: torch.optim.Optimizer) -> dict[str, float]:
        optimizer.zero_grad(set_to_none=True)
        loss = soft_cross_entropy(model.classifier(real), real_c)
        loss.backward()
        optimizer.step()
        return {"classifier_loss": float(loss.detach())}

    @staticmethod
    def _update_generator(model: ConditionalWGAN, labels: torch.Tensor, onehot: torch.Tensor,
                          optimizer: torch.optim.Optimizer) -> dict[str, float]:
        judges = [*model.critic.parameters(), *model.classifier.parameters()]
        for p in judges:  # the critic and classifier only judge here: no gradients for them
            p.requires_grad_(False)
        try:
            optimizer.zero_grad(set_to_none=True)
            fake = model.decode(torch.randn(len(labels), model.latent_dim, device=onehot.device), onehot)
            adversarial = -model.score(fake, onehot).mean()
            class_loss = F.cross_entropy(model.classifier(fake), labels)
            (adversarial + model.classifier_weight * class_loss).backward()
            optimizer.step()
        finally:
            for p in judges:
                p.requires_grad_(True)
        return {"generator_loss": float(adversarial.detach()), "generator_class_loss": float(class_loss.detach())}

    @torch.no_grad()
    def validate(self, model: ConditionalWGAN, maker: Any, ctx: StepContext, batch_size: int) -> dict[str, float]:
        """On the validation spectra: the auxiliary classifier's accuracy (``val_classifier_oa``), the
        critic's Wasserstein estimate against generated spectra of the same classes
        (``val_wasserstein``, lower is better) and the classifier's accuracy on those generated
        spectra (``val_synthetic_oa``: do they look like their class?)."""
        model.eval()
        generator = torch_generator(int(ctx.config.get("seed", 0)), _VALIDATION_STREAM)
        correct = synthetic_correct = count = 0
        gap = 0.0
        for real, labels in iterate_spectra(maker, batch_size):
            real, labels = real.to(ctx.device), labels.to(ctx.device)
            onehot = one_hot(labels, model.n_classes)
            fake = model.sample(labels, generator)
            correct += int((model.classifier(real).argmax(1) == labels).sum())
            synthetic_correct += int((model.classifier(fake).argmax(1) == labels).sum())
            gap += float((model.score(real, onehot) - model.score(fake, onehot)).sum())
            count += len(labels)
        model.train()
        if not count:
            return {}
        return {"val_classifier_oa": correct / count, "val_synthetic_oa": synthetic_correct / count,
                "val_wasserstein": gap / count}

    def epoch_ended(self, model: nn.Module, epoch: int, data: Any, ctx: StepContext, monitor: Monitor) -> None:
        send_class_spectra(model, epoch, data, ctx, monitor, "cgan")


# ----- Sohn et al. 2015: conditional variational autoencoder ---------------------------------------

@register_model("cvae", family="generator", patch_size=1, epoch=100, batch_size=256, optimizer="adam", lr=1e-3,
                epoch_samples=256 * 100, supervision="cvae", scheduler={"name": "none"},
                citation="Sohn, Lee & Yan, Learning structured output representation using deep conditional "
                         "generative models, NeurIPS 2015; Kingma, Rezende, Mohamed & Welling, Semi-supervised "
                         "learning with deep generative models, NeurIPS 2014")
class ConditionalVAE(SpectrumGenerator):
    """Conditional variational autoencoder of single spectra: spectra of a class are decoded from
    a Gaussian latent code and the class.

    Encoder: spectrum + one-hot class -> [Linear ``width`` (512) + LeakyReLU] x ``depth`` (2) ->
    mean and log-variance of a ``latent_dim`` (16)-dimensional code. Decoder: code + class vector
    -> the same MLP -> bands + sigmoid. Loss (step ``cvae``): Gaussian negative log-likelihood of
    the spectrum under the decoder's mean and a learnt per-band variance (a reconstruction term
    whose weight adapts to the noise of each band) + ``beta`` (1) x KL(q(z|x, y) || N(0, I)),
    summed over bands and latent units, averaged over the batch. Adam lr 1e-3, batches of 256; an
    epoch is 25,600 spectra (100 updates), 100 epochs by default. He-normal initialisation.

    Sampling draws z from the prior N(0, I) and returns the decoder's mean (the conditional prior
    of Sohn et al. is here the fixed standard normal, as in Kingma et al.'s M2 model).
    """

    def __init__(self, n_bands: int, n_classes: int, seed: int = 0, *, latent_dim: int = 16, width: int = 512,
                 depth: int = 2, beta: float = 1.0, min_log_variance: float = -12.0):
        super().__init__()
        check_options("cvae", latent_dim=latent_dim, width=width, depth=depth)
        if beta < 0:
            raise UserError(f"cvae: beta={beta} must be >= 0")
        self.n_bands, self.n_classes, self.latent_dim = n_bands, n_classes, latent_dim
        self.beta, self.min_log_variance = beta, min_log_variance
        self.encoder = mlp(n_bands + n_classes, 2 * latent_dim, width, depth)
        self.decoder = mlp(latent_dim + n_classes, n_bands, width, depth)
        self.log_variance = nn.Parameter(torch.full((n_bands,), math.log(0.01)))
        he_init(self, seed)

    def encode(self, spectra: torch.Tensor, class_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (N, latent_dim) each of q(z | spectrum, class)."""
        mu, logvar = self.encoder(torch.cat([spectra, class_weights], 1)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(torch.cat([z, class_weights], 1)))

    def losses(self, spectra: torch.Tensor, labels: torch.Tensor, sample: bool = True) -> dict[str, torch.Tensor]:
        """Per-batch ``reconstruction`` (Gaussian NLL), ``kl`` and ``mse`` of spectra of ``labels``
        (``sample``: draw z from q; otherwise decode its mean)."""
        onehot = one_hot(labels, self.n_classes)
        mu, logvar = self.encode(spectra, onehot)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        mean = self.decode(z, onehot)
        log_var = self.log_variance.clamp(min=self.min_log_variance)
        nll = 0.5 * ((spectra - mean).pow(2) / log_var.exp() + log_var + math.log(2 * math.pi)).sum(1).mean()
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
        return {"reconstruction": nll, "kl": kl, "mse": (spectra - mean).pow(2).mean()}


@register_step("cvae")
class CVAEStep(TrainingStep):
    """Negative ELBO (reconstruction + beta x KL) of the batch; one optimiser under ``model``.
    Logs ``loss``, ``reconstruction``, ``kl`` and ``mse`` (mean squared error of the
    reconstruction in [0, 1] units)."""

    def __call__(self, model: ConditionalVAE, batch: Batch, optimizers: dict[str, torch.optim.Optimizer],
                 ctx: StepContext) -> dict[str, float]:
        optimizer = optimizers["model"]
        optimizer.zero_grad(set_to_none=True)
        parts = model.losses(spectra_of(batch), batch.target)
        loss = parts["reconstruction"] + model.beta * parts["kl"]
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()}}

    @torch.no_grad()
    def validate(self, model: ConditionalVAE, maker: Any, ctx: StepContext, batch_size: int) -> dict[str, float]:
        """On the validation spectra, decoding each code's mean: ``val_loss`` (negative ELBO),
        ``val_reconstruction`` (Gaussian NLL), ``val_kl`` and ``val_mse``."""
        model.eval()
        totals = {"reconstruction": 0.0, "kl": 0.0, "mse": 0.0}
        count = 0
        for spectra, labels in iterate_spectra(maker, batch_size):
            parts = model.losses(spectra.to(ctx.device), labels.to(ctx.device), sample=False)
            for key in totals:
                totals[key] += float(parts[key]) * len(labels)
            count += len(labels)
        model.train()
        if not count:
            return {}
        scores = {f"val_{k}": v / count for k, v in totals.items()}
        scores["val_loss"] = scores["val_reconstruction"] + model.beta * scores["val_kl"]
        return scores

    def epoch_ended(self, model: nn.Module, epoch: int, data: Any, ctx: StepContext, monitor: Monitor) -> None:
        send_class_spectra(model, epoch, data, ctx, monitor, "cvae")


# ----- monitoring ---------------------------------------------------------------------------------

def monitor_epochs(total: int, shows: int = 5) -> int:
    """Show spectra every this many epochs (about ``shows`` times per run)."""
    return max(1, total // shows)


@torch.no_grad()
def class_mean_std(spectra: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class mean and standard deviation (K, B) each, NaN for a class without spectra."""
    mean = np.full((n_classes, spectra.shape[1]), np.nan)
    std = np.full((n_classes, spectra.shape[1]), np.nan)
    for k in range(n_classes):
        chosen = spectra[labels == k]
        if len(chosen):
            mean[k], std[k] = chosen.mean(0), chosen.std(0)
    return mean, std


def send_class_spectra(model: SpectrumGenerator, epoch: int, data: Any, ctx: StepContext, monitor: Monitor,
                       name: str) -> None:
    """Every few epochs (and at the last), send the monitor the per-class mean and std of the real
    training spectra (``<name>_real_spectra``) and of as many synthetic ones
    (``<name>_synthetic_spectra``), in model units ([0, 1])."""
    total = int(ctx.config.get("epoch", 1))
    if (epoch + 1) % monitor_epochs(total) and epoch + 1 != total:
        return
    batch_size = int(ctx.config.get("batch_size", 256))
    pairs = list(iterate_spectra(data.train, batch_size))
    if not pairs:
        return
    real = torch.cat([p[0] for p in pairs]).cpu().numpy()
    labels = torch.cat([p[1] for p in pairs]).cpu().numpy()
    present = np.unique(labels)
    wanted = torch.as_tensor(np.repeat(present, _MONITOR_SAMPLES))
    was_training = model.training
    model.eval()
    generator = torch_generator(int(ctx.config.get("seed", 0)), _MONITOR_STREAM)
    synthetic = model.sample(wanted, generator).cpu().numpy()
    model.train(was_training)
    names = list(getattr(data, "class_names", None) or [str(k) for k in range(model.n_classes)])
    wavelengths = getattr(data, "wavelengths", None)
    monitor.spectra(f"{name}_real_spectra", wavelengths, *class_mean_std(real, labels, model.n_classes), names)
    monitor.spectra(f"{name}_synthetic_spectra", wavelengths,
                    *class_mean_std(synthetic, wanted.numpy(), model.n_classes), names)
