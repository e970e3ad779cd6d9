"""Tests of genfair.models.gan (losses, moment gap, the GAN) and genfair.models.latent_search."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genfair.models import GAN, GANConfig, latent_search
from genfair.models.gan import discriminator_loss, generator_loss, moment_gap
from genfair.models.latent_search import project_to_sphere

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*The number of training batches.*:UserWarning",
    "ignore:.*isinstance\\(treespec, LeafSpec\\)` is deprecated",
)

TINY = GANConfig(image_size=16, channels=3, latent_dim=4, features=4, inversion_steps=2)


# --------------------------------------------------------------------------- losses


def test_discriminator_and_generator_losses_by_hand() -> None:
    real, fake = torch.tensor([0.5, 2.0]), torch.tensor([-0.5, 1.0])
    # hinge: mean(relu(1 - real)) + mean(relu(1 + fake)) = mean(0.5, 0) + mean(0.5, 2) = 0.25 + 1.25
    assert float(discriminator_loss(real, fake, kind="hinge")) == pytest.approx(1.5)
    softplus = lambda x: np.log1p(np.exp(x))  # noqa: E731
    expected = np.mean(softplus(-np.array([0.5, 2.0]))) + np.mean(softplus(np.array([-0.5, 1.0])))
    assert float(discriminator_loss(real, fake, kind="nonsaturating")) == pytest.approx(expected, rel=1e-6)
    assert float(generator_loss(fake, kind="hinge")) == pytest.approx(-0.25)
    assert float(generator_loss(fake, kind="nonsaturating")) == pytest.approx(np.mean(softplus(-np.array([-0.5, 1.0]))), rel=1e-6)
    with pytest.raises(ValueError, match=r"GAN loss kind must be one of \('hinge', 'nonsaturating'\), got 'wgan'"):
        discriminator_loss(real, fake, kind="wgan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"GAN loss kind must be one of \('hinge', 'nonsaturating'\), got 'wgan'"):
        generator_loss(fake, kind="wgan")  # type: ignore[arg-type]


def test_moment_gap_against_numpy() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 3, 4, 4)), rng.random((7, 3, 4, 4))
    expected = np.mean((a.mean(0) - b.mean(0)) ** 2 + (a.std(0, ddof=1) - b.std(0, ddof=1)) ** 2)
    got = moment_gap(torch.tensor(a), torch.tensor(b))
    assert float(got) == pytest.approx(expected, rel=1e-9)
    assert float(moment_gap(torch.tensor(a), torch.tensor(a))) == 0.0
    with pytest.raises(ValueError, match=r"moment_gap needs two sets of at least 2 images of one shape, got \(1, 3, 4, 4\)"):
        moment_gap(torch.tensor(a[:1]), torch.tensor(b))


# --------------------------------------------------------------------------- config and module


@pytest.mark.parametrize(("field", "value", "message"), [
    ("image_size", 24, r"GANConfig.image_size must be a power of two >= 8 \(e.g. 32 or 64\), got 24"),
    ("image_size", 4, r"GANConfig.image_size must be a power of two >= 8"),
    ("loss", "wgan", r"GANConfig.loss must be one of \('hinge', 'nonsaturating'\), got 'wgan'"),
    ("beta1", 1.0, r"GANConfig.beta1 must be a number in \[0, 1\), got 1.0"),
    ("inversion_steps", -1, r"GANConfig.inversion_steps must be an int >= 0, got -1"),
    ("features", 0, r"GANConfig.features must be a positive int, got 0"),
])
def test_config_rejects_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GANConfig(**{field: value})


@pytest.mark.parametrize("size", [32, 64])
def test_generator_and_discriminator_shapes(size: int) -> None:
    gan = GAN(GANConfig(image_size=size, latent_dim=8, features=4))
    images = gan.sample(3)
    assert images.shape == (3, 3, size, size) and images.min() >= 0 and images.max() <= 1
    assert gan.discriminator(images).shape == (3,)


def test_sample_is_seeded_and_rejects_bad_counts() -> None:
    gan = GAN(TINY)
    torch.testing.assert_close(gan.sample(4), gan.sample(4))
    other = gan.sample(4, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(other, gan.sample(4))
    with pytest.raises(ValueError, match=r"sample needs a positive int number of images, got 0"):
        gan.sample(0)


def test_training_steps_move_both_networks_and_stay_finite(make_loader: Callable, make_trainer: Callable) -> None:
    gan = GAN(TINY)
    generator = [p.detach().clone() for p in gan.generator.parameters()]
    discriminator = [p.detach().clone() for p in gan.discriminator.parameters()]
    trainer = make_trainer(max_epochs=2, enable_checkpointing=False)
    trainer.fit(gan, train_dataloaders=make_loader(8), val_dataloaders=make_loader(8))
    assert any(not torch.equal(a, b) for a, b in zip(generator, gan.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(discriminator, gan.discriminator.parameters()))
    metrics = trainer.callback_metrics
    assert {"train/d_loss", "train/g_loss", "val/loss"} <= set(metrics)
    assert all(torch.isfinite(metrics[key]) for key in ("train/d_loss", "train/g_loss", "val/loss"))


def _unfrozen_step(gan: GAN, images: torch.Tensor, optimizers: list[torch.optim.Optimizer]) -> None:
    """The step as written before the discriminator was frozen for the generator's backward."""
    d_optimizer, g_optimizer = optimizers
    fake = gan.generator(gan._latents(images.shape[0]))
    d_loss = discriminator_loss(gan.discriminator(images), gan.discriminator(fake.detach()))
    d_optimizer.zero_grad(set_to_none=True)
    d_loss.backward()
    d_optimizer.step()
    g_loss = generator_loss(gan.discriminator(fake))
    g_optimizer.zero_grad(set_to_none=True)
    g_loss.backward()
    g_optimizer.step()


def test_freezing_the_discriminator_for_the_generators_step_changes_no_weight(make_images: Callable) -> None:
    images = make_images(4, size=16)
    frozen, reference = GAN(TINY), GAN(TINY)
    for _ in range(2):  # two steps: the second starts from the first's Adam state and gradients
        frozen.prior_step({"image": images}, frozen.configure_optimizers(), lambda loss: loss.backward())
        _unfrozen_step(reference, images, reference.configure_optimizers())
    for (name, got), want in zip(frozen.named_parameters(), reference.parameters()):
        torch.testing.assert_close(got, want, msg=name)
    assert all(p.requires_grad for p in frozen.discriminator.parameters())


def test_channels_last_generator_gives_the_plain_layouts_images() -> None:
    gan = GAN(TINY)
    plain = GAN(TINY)
    plain.generator.to(memory_format=torch.contiguous_format)
    z = torch.randn(3, TINY.latent_dim, generator=torch.Generator().manual_seed(1))
    images = gan.generator(z)
    start = plain.generator.project(z).view(3, *plain.generator.start_shape)
    torch.testing.assert_close(images, torch.sigmoid(plain.generator.body(start)))
    assert images.is_contiguous()


# --------------------------------------------------------------------------- latent search


def _linear_generator(d: int, side: int, seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    weights = torch.randn(d, 3 * side * side, generator=torch.Generator().manual_seed(seed)) * 0.5
    return lambda z: torch.sigmoid(z @ weights).view(-1, 3, side, side)


def test_latent_search_finds_a_code_that_reproduces_the_target() -> None:
    d, generate = 3, _linear_generator(3, 8)
    truth = project_to_sphere(torch.randn(2, d, generator=torch.Generator().manual_seed(5)))
    target = F.avg_pool2d(generate(truth), 2)
    start = latent_search(generate, target, latent_dim=d, scale=2, restarts=1, steps=0, seed=0)
    found = latent_search(generate, target, latent_dim=d, scale=2, restarts=2, steps=60, learning_rate=0.1, seed=0)
    assert found.images.shape == (2, 3, 8, 8)
    torch.testing.assert_close(found.latents.norm(dim=1), torch.full((2,), d ** 0.5))  # on the sphere
    independent = ((F.avg_pool2d(found.images, 2) - target) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(found.loss, independent)
    assert (found.loss < 1e-4).all() and (found.loss < start.loss).all()


def test_latent_search_leaves_weights_alone_and_runs_in_inference_mode() -> None:
    gan = GAN(TINY)
    target = torch.rand(2, 3, 4, 4)
    with torch.inference_mode():
        found = latent_search(gan.generator, target, latent_dim=4, scale=4, steps=2)
    assert found.images.shape == (2, 3, 16, 16)
    assert all(p.grad is None for p in gan.parameters())


def test_an_images_search_does_not_depend_on_the_rest_of_its_batch() -> None:
    gan = GAN(TINY)
    targets = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    others = torch.cat([targets[:1], torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))])
    searched = latent_search(gan.generator, targets, latent_dim=4, scale=4, restarts=2, steps=10, seed=0)
    beside_others = latent_search(gan.generator, others, latent_dim=4, scale=4, restarts=2, steps=10, seed=0)
    torch.testing.assert_close(searched.latents[0], beside_others.latents[0])
    torch.testing.assert_close(searched.loss[0], beside_others.loss[0])
    assert not torch.allclose(searched.latents[1:], beside_others.latents[1:])


def test_latent_search_rejects_bad_input() -> None:
    generate = _linear_generator(2, 8)
    with pytest.raises(ValueError, match=r"target must be a \(B, C, h, w\) tensor, got \(3, 4, 4\)"):
        latent_search(generate, torch.zeros(3, 4, 4), latent_dim=2, scale=2)
    with pytest.raises(ValueError, match=r"restarts must be an int >= 1, got 0"):
        latent_search(generate, torch.zeros(1, 3, 4, 4), latent_dim=2, scale=2, restarts=0)
    with pytest.raises(ValueError, match=r"the generator's images downscaled by 4 have shape \(1, 3, 2, 2\), but the targets have \(1, 3, 4, 4\)"):
        latent_search(generate, torch.zeros(1, 3, 4, 4), latent_dim=2, scale=4, restarts=1, steps=1)
