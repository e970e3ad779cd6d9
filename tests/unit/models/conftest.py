"""Fixtures of the model-zoo tests: tiny contract batches and a quiet CPU Trainer."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

SIZE = 16
"""Side of the test images, in pixels."""


def smooth_images(n: int, *, channels: int = 3, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """(n, channels, size, size) float in [0, 1]: random 4x4 images, bilinearly upsampled (smooth)."""
    coarse = torch.rand(n, channels, 4, 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).clamp(0.0, 1.0)


class ContractBatches(Dataset):
    """Items ``{"image", "index", "lowres", "labels"}`` as the DataModule yields them.

    ``lowres`` is ``avg_pool2d(image, scale)``; ``labels`` has two attributes: brightness (1 if
    the image's mean is above the median) and a second column cycling through 0, 1, 2.
    """

    def __init__(self, images: torch.Tensor, *, scale: int = 4) -> None:
        self.images = images
        self.lowres = F.avg_pool2d(images, scale)
        brightness = images.flatten(1).mean(dim=1)
        bright = (brightness > brightness.median()).long()
        self.labels = torch.stack([bright, torch.arange(len(images)) % 3], dim=1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "index": torch.tensor(i), "lowres": self.lowres[i], "labels": self.labels[i]}


@pytest.fixture
def make_loader() -> Callable[..., DataLoader]:
    """Factory: ``make_loader(n=8, batch_size=4, channels=3, scale=4, seed=0, shuffle=False)``."""

    def make(
        n: int = 8, *, batch_size: int = 4, channels: int = 3, scale: int = 4, seed: int = 0, shuffle: bool = False
    ) -> DataLoader:
        dataset = ContractBatches(smooth_images(n, channels=channels, seed=seed), scale=scale)
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)

    return make


@pytest.fixture
def make_trainer() -> Callable[..., pl.Trainer]:
    """Factory for a quiet CPU Trainer; keywords override the defaults."""

    def make(**kwargs: object) -> pl.Trainer:
        options: dict = dict(
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        options.update(kwargs)
        return pl.Trainer(**options)

    return make


def contract_batch(n: int = 4, *, channels: int = 3, scale: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """One collated batch of :class:`ContractBatches`."""
    dataset = ContractBatches(smooth_images(n, channels=channels, seed=seed), scale=scale)
    return next(iter(DataLoader(dataset, batch_size=n)))


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    """A batch of 4: ``image`` (4, 3, 16, 16), ``index`` (4,), ``lowres`` (4, 3, 4, 4), ``labels`` (4, 2)."""
    return contract_batch()


@pytest.fixture
def make_batch() -> Callable[..., dict[str, torch.Tensor]]:
    """Factory: ``make_batch(n=4, channels=3, scale=4, seed=0)``, one collated contract batch."""
    return contract_batch


@pytest.fixture
def make_images() -> Callable[..., torch.Tensor]:
    """Factory: ``make_images(n, channels=3, size=16, seed=0)``, smooth images in [0, 1]."""
    return smooth_images


@pytest.fixture
def make_dataset() -> Callable[..., ContractBatches]:
    """Factory: ``make_dataset(images, scale=4)``, a :class:`ContractBatches` over given images."""
    return ContractBatches
