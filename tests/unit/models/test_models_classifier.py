"""Tests of genfair.models.classifier: the multi-head attribute classifier."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

import genfair.models as models
from genfair.models import AttributeClassifier, AttributeClassifierConfig

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*The number of training batches.*:UserWarning",
    "ignore:.*but have no `val_dataloader`:UserWarning",
    # Lightning 2.6 + torch 2.13: Lightning's own pytree helper trips a torch deprecation.
    "ignore:.*isinstance\\(treespec, LeafSpec\\)` is deprecated",
)

SMALL = AttributeClassifierConfig(image_size=16, channels=3, num_classes=(2, 3), hidden_channels=(4, 8), dense_units=16)


def test_exported_but_not_registered() -> None:
    assert "AttributeClassifier" in models.__all__
    assert all(spec.module is not AttributeClassifier for spec in models.REGISTRY.values())


def test_defaults_and_required_num_classes() -> None:
    config = AttributeClassifierConfig(num_classes=[2, 2])  # type: ignore[arg-type]
    assert config.num_classes == (2, 2) and (config.image_size, config.channels) == (64, 3)
    with pytest.raises(TypeError, match=r"missing 1 required keyword-only argument: 'num_classes'"):
        AttributeClassifierConfig()  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 0}, r"AttributeClassifierConfig.image_size must be a positive int, got 0"),
        ({"channels": -1}, r"AttributeClassifierConfig.channels must be a positive int, got -1"),
        ({"dense_units": 0}, r"AttributeClassifierConfig.dense_units must be a positive int, got 0"),
        ({"num_classes": ()}, r"AttributeClassifierConfig.num_classes must be a non-empty tuple of positive ints, got \(\)"),
        ({"num_classes": (2, 1)}, r"AttributeClassifierConfig.num_classes must all be >= 2 \(a softmax head needs two classes\), got \(2, 1\)"),
        ({"hidden_channels": (4, 0)}, r"AttributeClassifierConfig.hidden_channels must be a non-empty tuple of positive ints, got \(4, 0\)"),
        ({"image_size": 14}, r"AttributeClassifierConfig.image_size must be divisible by 2 \*\* len\(hidden_channels\) = 4, got image_size=14"),
        ({"dropout": 1.0}, r"AttributeClassifierConfig.dropout must be a number in \[0, 1\), got 1.0"),
        ({"learning_rate": 0}, r"AttributeClassifierConfig.learning_rate must be a finite number > 0, got 0"),
        ({"weight_decay": -1}, r"AttributeClassifierConfig.weight_decay must be a finite number >= 0, got -1"),
        ({"seed": -1}, r"AttributeClassifierConfig.seed must be an int in \[0, 4294967295\], got -1"),
    ],
)
def test_config_rejects_bad_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(SMALL, **changes)


def test_shapes_probabilities_and_classify(batch: dict) -> None:
    model = AttributeClassifier(SMALL).eval()  # no dropout
    images = batch["image"]
    logits = model.logits(images)
    assert [tuple(t.shape) for t in logits] == [(4, 2), (4, 3)]
    probabilities = model(images)
    for p in probabilities:
        torch.testing.assert_close(p.sum(dim=1), torch.ones(4))
        assert (p >= 0).all()
    classes = model.classify(images)
    assert classes.shape == (4, 2) and classes.dtype == torch.long
    assert torch.equal(classes, torch.stack([p.argmax(dim=1) for p in probabilities], dim=1))


def test_classify_and_predict_are_deterministic_in_training_mode(batch: dict) -> None:
    model = AttributeClassifier(replace(SMALL, dropout=0.5)).train()
    first, second = model.classify(batch["image"]), model.classify(batch["image"])
    assert torch.equal(first, second) and model.training
    out = model.predict_step(batch, 0)
    assert set(out) == {"index", "probabilities"} and torch.equal(out["index"], batch["index"])
    again = model.predict_step(batch, 1)["probabilities"]
    assert all(torch.equal(a, b) for a, b in zip(out["probabilities"], again)) and model.training
    assert not model.classify(batch["image"]).requires_grad


def test_dropout_is_seeded_and_only_in_training(batch: dict) -> None:
    model = AttributeClassifier(replace(SMALL, dropout=0.5)).train()
    twin = AttributeClassifier(replace(SMALL, dropout=0.5)).train()
    state = torch.get_rng_state()
    a, b = model.logits(batch["image"]), model.logits(batch["image"])
    assert not torch.equal(a[0], b[0])  # fresh masks each call
    assert torch.equal(twin.logits(batch["image"])[0], a[0])  # the same stream for the same seed
    assert torch.equal(torch.get_rng_state(), state)
    model.eval()
    assert torch.equal(model.logits(batch["image"])[0], model.logits(batch["image"])[0])


def test_validation_logs_loss_and_per_head_accuracy(batch: dict, make_loader: Callable, make_trainer: Callable) -> None:
    model = AttributeClassifier(SMALL)
    loader = make_loader(4)
    metrics = make_trainer().validate(model, dataloaders=loader, verbose=False)[0]
    assert set(metrics) == {"val/loss", "val/accuracy/0", "val/accuracy/1"}
    labels = next(iter(loader))["labels"]
    model.eval()  # validation ran without dropout
    with torch.no_grad():
        logits = model.logits(batch["image"])
    expected = (torch.nn.functional.cross_entropy(logits[0], labels[:, 0]) + torch.nn.functional.cross_entropy(logits[1], labels[:, 1])) / 2
    assert metrics["val/loss"] == pytest.approx(float(expected), rel=1e-5)
    assert metrics["val/accuracy/1"] == pytest.approx(float((logits[1].argmax(1) == labels[:, 1]).float().mean()))


def test_learns_a_separable_toy_problem(make_images: Callable, make_dataset: Callable, make_trainer: Callable) -> None:
    g = torch.Generator().manual_seed(0)
    dark, bright = make_images(16, seed=1) * 0.4, 0.6 + 0.4 * make_images(16, seed=2)
    images = torch.cat([dark, bright])[torch.randperm(32, generator=g)]
    dataset = make_dataset(images)  # labels[:, 0] = 1 if brighter than the median
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True, generator=g)
    config = AttributeClassifierConfig(image_size=16, channels=3, num_classes=(2, 3), hidden_channels=(4, 8), dense_units=16, learning_rate=1e-2)
    model = AttributeClassifier(config)
    make_trainer(max_steps=8).fit(model, train_dataloaders=loader)
    accuracy = (model.classify(images)[:, 0] == dataset.labels[:, 0]).float().mean()
    assert accuracy > 0.9


def test_labels_are_checked(batch: dict) -> None:
    model = AttributeClassifier(SMALL)
    with pytest.raises(ValueError, match=r"batch 'labels' must be a long tensor of shape \(4, 2\) \(one column per attribute\), got \(4,\) torch.int64"):
        model._shared_step({**batch, "labels": batch["labels"][:, 0]}, "val")
    with pytest.raises(ValueError, match=r"batch 'labels' must be a long tensor of shape \(4, 2\) .*got \(4, 2\) torch.float32"):
        model._shared_step({**batch, "labels": batch["labels"].float()}, "val")
    with pytest.raises(ValueError, match=r"batch 'labels' must be a long tensor .*got list"):
        model._shared_step({**batch, "labels": [0, 1]}, "val")
    bad = batch["labels"].clone()
    bad[0, 1] = 3
    with pytest.raises(ValueError, match=r"batch 'labels' column a must be in 0..num_classes\[a\] - 1 with num_classes=\(2, 3\), got values from 0 to 3"):
        model._shared_step({**batch, "labels": bad}, "val")
    with pytest.raises(ValueError, match=r"AttributeClassifier batches must be dicts with keys 'image', 'labels' and 'index', got \['image', 'index', 'lowres'\] \(missing 'labels'\)"):
        model._shared_step({k: v for k, v in batch.items() if k != "labels"}, "val")


def test_checkpoint_round_trip(make_loader: Callable, make_trainer: Callable, tmp_path: Path) -> None:
    model = AttributeClassifier(SMALL)
    trainer = make_trainer(fast_dev_run=True)
    trainer.fit(model, train_dataloaders=make_loader(), val_dataloaders=make_loader())
    path = tmp_path / "classifier.ckpt"
    trainer.save_checkpoint(path)
    assert torch.load(path, weights_only=True)["hyper_parameters"] == asdict(SMALL)
    loaded = AttributeClassifier.load_from_checkpoint(path)
    assert loaded.config == SMALL
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_construction_errors() -> None:
    assert AttributeClassifier.from_config(SMALL).config == SMALL
    with pytest.raises(TypeError, match=r"AttributeClassifier config must be a AttributeClassifierConfig, got dict"):
        AttributeClassifier(asdict(SMALL))  # type: ignore[arg-type]
