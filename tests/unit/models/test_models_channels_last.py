"""Tests of the channels-last fit (genfair.models._common.ChannelsLastFit) and the fused AdamW."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from genfair.models import VAE, AttributeClassifier, AttributeClassifierConfig, VAEConfig
from genfair.models._common import adamw

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*The number of training batches.*:UserWarning",
    "ignore:.*isinstance\\(treespec, LeafSpec\\)` is deprecated",
)

SMALL = VAEConfig(image_size=16, channels=3, latent_dim=4, hidden_channels=(8, 16))


def _batches(n: int = 8, *, labels: bool = False) -> list[dict[str, torch.Tensor]]:
    images = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    batch = {"image": images, "index": torch.arange(n)}
    if labels:
        batch["labels"] = torch.randint(0, 2, (n, 2), generator=torch.Generator().manual_seed(1))
    return [{key: value[i:i + 4] for key, value in batch.items()} for i in range(0, n, 4)]


def _fit(model: pl.LightningModule, batches: list[dict[str, torch.Tensor]], epochs: int = 2) -> None:
    trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, deterministic=True)
    trainer.fit(model, train_dataloaders=DataLoader(batches, batch_size=None))


class _SeenVAE(VAE):
    """A VAE that records the memory format of the images and weights its training steps see."""

    def training_step(self, batch, batch_idx):
        first_conv = next(p for p in self.parameters() if p.ndim == 4)
        self.seen = getattr(self, "seen", []) + [(batch["image"].is_contiguous(memory_format=torch.channels_last),
                                                  first_conv.is_contiguous(memory_format=torch.channels_last))]
        return super().training_step(batch, batch_idx)


class _ContiguousVAE(VAE):
    fit_channels_last = False


def test_fit_runs_channels_last_and_hands_back_contiguous_weights() -> None:
    model = _SeenVAE(SMALL)
    _fit(model, _batches())
    assert model.seen and all(images and weights for images, weights in model.seen)
    assert all(p.is_contiguous() for p in model.parameters())
    out = model(torch.rand(2, 3, 16, 16))
    assert out.is_contiguous() and out.view(2, -1).shape == (2, 3 * 16 * 16)  # view needs the usual layout


def test_channels_last_fit_trains_the_same_weights_as_a_contiguous_fit() -> None:
    fast, plain = VAE(SMALL), _ContiguousVAE(SMALL)
    _fit(fast, _batches())
    _fit(plain, _batches())
    for (name, a), b in zip(fast.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    moved = [a for a, b in zip(fast.parameters(), VAE(SMALL).parameters()) if not torch.equal(a, b)]
    assert moved  # the fits did train


def test_classifier_fits_channels_last_and_predicts_as_before() -> None:
    config = AttributeClassifierConfig(image_size=16, num_classes=(2, 2), hidden_channels=(8, 16), dropout=0.0)
    model = AttributeClassifier(config)
    _fit(model, _batches(labels=True), epochs=1)
    assert all(p.is_contiguous() for p in model.parameters())
    images = torch.rand(3, 3, 16, 16)
    again = AttributeClassifier(config)
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(model.classify(images), again.classify(images))


def test_fused_adamw_takes_the_same_steps_as_torch_adamw() -> None:
    torch.manual_seed(0)
    weights = [torch.randn(8, 3, 3, 3, requires_grad=True), torch.randn(5, requires_grad=True)]
    reference = [w.detach().clone().requires_grad_(True) for w in weights]
    ours = adamw(weights, lr=1e-2, weight_decay=0.1)
    theirs = torch.optim.AdamW(reference, lr=1e-2, weight_decay=0.1, foreach=False)
    assert ours.defaults["fused"] is True
    for step in range(5):
        grads = [torch.randn_like(w, generator=None) for w in weights]
        for params, optimizer in ((weights, ours), (reference, theirs)):
            optimizer.zero_grad()
            for p, g in zip(params, grads):
                p.grad = g.clone()
            optimizer.step()
    for a, b in zip(weights, reference):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
