"""Tests of genfair.models.losses against torch's own reductions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genfair.models import PIXEL_LOSSES, per_sample_pixel_loss


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 2, 4, 4, generator=g), torch.rand(3, 2, 4, 4, generator=g)


def _per_image(fn, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.stack([fn(p, t, reduction="mean") for p, t in zip(preds, target)])


def test_kinds() -> None:
    assert PIXEL_LOSSES == ("bce", "l1", "mse")


def test_mse_and_l1_are_per_image_means(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    preds, target = pair
    torch.testing.assert_close(per_sample_pixel_loss(preds, target, kind="mse"), _per_image(F.mse_loss, preds, target))
    torch.testing.assert_close(per_sample_pixel_loss(preds, target, kind="l1"), _per_image(F.l1_loss, preds, target))


def test_from_logits_compares_the_sigmoid(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, target = pair
    expected = _per_image(F.mse_loss, torch.sigmoid(logits), target)
    torch.testing.assert_close(per_sample_pixel_loss(logits, target, kind="mse", from_logits=True), expected)


def test_bce_from_logits_and_from_probabilities_agree(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, target = pair
    expected = _per_image(F.binary_cross_entropy, torch.sigmoid(logits), target)
    got_logits = per_sample_pixel_loss(logits, target, kind="bce", from_logits=True)
    got_probs = per_sample_pixel_loss(torch.sigmoid(logits), target, kind="bce")
    assert got_logits.shape == (3,)
    torch.testing.assert_close(got_logits, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_probs, expected, rtol=1e-5, atol=1e-5)


def test_inputs_are_not_modified(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    preds, target = pair
    before = preds.clone(), target.clone()
    for kind in PIXEL_LOSSES:
        per_sample_pixel_loss(preds.sigmoid(), target, kind=kind)  # type: ignore[arg-type]
    assert torch.equal(before[0], preds) and torch.equal(before[1], target)


def test_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"preds and target must have the same \(N, C, H, W\) shape, got \(2, 3, 4, 4\) and \(2, 1, 4, 4\)"):
        per_sample_pixel_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4), kind="mse")


def test_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match=r"pixel loss kind must be one of \('bce', 'l1', 'mse'\), got 'huber'"):
        per_sample_pixel_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), kind="huber")  # type: ignore[arg-type]
