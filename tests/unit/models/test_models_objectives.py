"""Tests of genfair.models.objectives: per-group objectives, and the learned models training with them."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import genfair.models as models
from genfair.models import GroupObjective, GroupObjectiveConfig, intersectional_groups, inverse_frequency_weights
from genfair.models.objectives import (
    CHECKPOINT_KEY,
    ERR_NEEDS_LABELS,
    ERR_NO_OBJECTIVES,
    ERR_OBJECTIVE_MISMATCH,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers:UserWarning",
    "ignore:.*The number of training batches.*:UserWarning",
    # Lightning 2.6 + torch 2.13: Lightning's own pytree helper trips a torch deprecation.
    "ignore:.*isinstance\\(treespec, LeafSpec\\)` is deprecated",
    "ignore:.*but have no `val_dataloader`:UserWarning",
    # training_step called directly, without a Trainer: self.log only warns.
    "ignore:.*self.trainer` reference is not registered:UserWarning",
)

LEARNED = {
    "ae": models.AEConfig(image_size=16, channels=3, hidden_units=(32,), bottleneck=4),
    "cnn": models.ConvAEConfig(image_size=16, channels=3, hidden_channels=(4, 8), bottleneck=4),
    "sr": models.SRConfig(image_size=16, channels=3, scale=4, features=8, residual_blocks=1),
    "vae": models.VAEConfig(image_size=16, channels=3, latent_dim=4, hidden_channels=(8, 16)),
}
"""A tiny config of each model that trains by gradient descent on a per-image loss."""

NUM_CLASSES = (2, 3)
"""Classes of the two attributes of the test batches' ``labels`` (see conftest.ContractBatches)."""
N_GROUPS = math.prod(NUM_CLASSES)


def _objective(kind: str, *, eta: float = 1.0) -> GroupObjective:
    if kind == "reweighted":
        weights = tuple(float(w) for w in torch.linspace(0.5, 2.0, N_GROUPS).tolist())
        return GroupObjective(kind=kind, n_groups=N_GROUPS, weights=weights)
    if kind == "group-dro":
        return GroupObjective(kind=kind, n_groups=N_GROUPS, eta=eta)
    return GroupObjective(kind=kind, n_groups=N_GROUPS)


def _model(name: str, kind: str | None = None) -> pl.LightningModule:
    model = models.get(name).module.from_config(LEARNED[name])
    if kind is not None:
        model.set_objective(_objective(kind), num_classes=NUM_CLASSES)
    return model


# --------------------------------------------------------------------------- the pure helpers


def test_intersectional_groups_is_the_mixed_radix_code() -> None:
    num_classes = (2, 3, 4)
    combos = list(itertools.product(*(range(n) for n in num_classes)))
    labels = torch.tensor(combos)
    assert torch.equal(intersectional_groups(labels, num_classes=num_classes), torch.arange(len(combos)))
    for row in torch.randint(0, 2, (5, 3)):  # naive reference: sum_a code_a * prod_{b > a} n_b
        expected = sum(int(row[a]) * math.prod(num_classes[a + 1:]) for a in range(3))
        assert int(intersectional_groups(row[None], num_classes=num_classes)) == expected
    assert intersectional_groups(torch.zeros(3, 0, dtype=torch.long), num_classes=()).tolist() == [0, 0, 0]
    assert intersectional_groups(torch.tensor([[1, 2]], dtype=torch.int32), num_classes=[2, 3]).dtype == torch.long


@pytest.mark.parametrize(
    ("labels", "num_classes", "message"),
    [
        (torch.zeros(2, 3, dtype=torch.long), (2, 3), r"labels must be an integer tensor of shape \(B, 2\).*got \(2, 3\)"),
        (torch.zeros(2, 2), (2, 3), r"labels must be an integer tensor .*torch.float32"),
        (torch.tensor([[0, 3]]), (2, 3), r"labels column a must be in 0..num_classes\[a\] - 1 .*got values from 0 to 3"),
        (torch.tensor([[-1, 0]]), (2, 3), r"got values from -1 to 0"),
        (torch.zeros(1, 2, dtype=torch.long), (2, 0), r"num_classes must be a sequence of positive ints.*\(2, 0\)"),
        (torch.zeros(1, 2, dtype=torch.long), "23", r"num_classes must be a sequence of positive ints.*'23'"),
    ],
)
def test_intersectional_groups_rejects_bad_input(labels: torch.Tensor, num_classes: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        intersectional_groups(labels, num_classes=num_classes)  # type: ignore[arg-type]


def test_inverse_frequency_weights() -> None:
    counts = torch.tensor([43, 6, 12, 1])
    weights = inverse_frequency_weights(counts)
    n = counts.sum()
    assert torch.allclose(weights, n / (4 * counts.double()).float())
    assert torch.allclose((counts * weights).sum() / n, torch.tensor(1.0))  # expected weight 1
    assert torch.allclose(counts * weights, torch.full((4,), n / 4))  # every group weighs the same
    # A group with no training image gets 0 and does not count among the groups.
    assert torch.allclose(inverse_frequency_weights([3, 0, 1]), torch.tensor([2 / 3, 0.0, 2.0]))
    assert inverse_frequency_weights([5, 5]).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("counts", [[], [0, 0], [3, -1], [[1, 2]], [1.0, float("nan")]])
def test_inverse_frequency_weights_rejects_bad_counts(counts: list) -> None:
    with pytest.raises(ValueError, match=r"group_counts must be a non-empty 1-D sequence of finite counts >= 0, at least one positive"):
        inverse_frequency_weights(counts)


# --------------------------------------------------------------------------- the objective


def test_erm_is_the_plain_mean() -> None:
    loss = torch.rand(8, generator=torch.Generator().manual_seed(0))
    groups = torch.tensor([0, 1, 1, 1, 1, 1, 1, 1])
    objective = GroupObjective(kind="erm", n_groups=2)
    assert torch.equal(objective(loss, groups), loss.mean())
    assert torch.equal(objective(loss), loss.mean())
    assert objective.group_weights.tolist() == [1.0, 1.0]
    assert objective.state_dict() == {}  # nothing to checkpoint


def test_reweighted_on_a_toy_batch() -> None:
    objective = GroupObjective(kind="reweighted", n_groups=3, weights=(1.0, 2.0, 0.5))
    loss = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    value = objective(loss, torch.tensor([0, 1, 2, 1]))
    assert value.item() == pytest.approx((1 * 1 + 2 * 2 + 0.5 * 3 + 2 * 4) / 4)
    value.backward()
    assert loss.grad.tolist() == [0.25, 0.5, 0.125, 0.5]
    assert objective.group_weights.tolist() == [1.0, 2.0, 0.5]
    assert objective.state_dict() == {}  # the weights live in the config


def test_group_dro_raises_the_weight_of_the_worst_group() -> None:
    eta = 0.5
    objective = GroupObjective(kind="group-dro", n_groups=3, eta=eta)
    assert objective.group_weights.tolist() == pytest.approx([1 / 3] * 3)
    group_loss = torch.tensor([0.2, 1.0, 0.5])  # group 1 is the worst
    groups = torch.tensor([0, 0, 1, 2, 2, 2])
    loss = group_loss[groups]
    history = []
    for _ in range(5):
        objective(loss, groups)
        q = objective.group_weights
        assert torch.all(q >= 0) and q.sum().item() == pytest.approx(1.0)
        history.append(q)
    worst = [float(q[1]) for q in history]
    assert worst == sorted(worst) and worst[0] > 1 / 3
    assert int(history[-1].argmax()) == 1
    # The closed form of 5 steps of q_g <- q_g exp(eta L_g) / Z with constant losses.
    expected = torch.softmax(5 * eta * group_loss, dim=0)
    assert torch.allclose(history[-1], expected, atol=1e-6)


def test_group_dro_loss_renormalises_q_over_the_present_groups() -> None:
    objective = GroupObjective(kind="group-dro", n_groups=3, eta=1.0)
    loss = torch.tensor([0.1, 0.3, 0.9], requires_grad=True)
    groups = torch.tensor([0, 0, 2])  # group 1 is absent: its L_g counts as 0 in the update
    value = objective(loss, groups)
    means = torch.tensor([0.2, 0.0, 0.9])
    q = torch.softmax(means, dim=0)  # updated from uniform: q_g proportional to exp(eta * L_g)
    assert torch.allclose(objective.q, q)
    expected = (q[0] * 0.2 + q[2] * 0.9) / (q[0] + q[2])
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()  # the gradient goes through the losses, not through q
    assert loss.grad is not None and objective.q.grad is None
    w0, w2 = (q[0] / (q[0] + q[2])).item(), (q[2] / (q[0] + q[2])).item()
    assert loss.grad.tolist() == pytest.approx([w0 / 2, w0 / 2, w2])


def test_group_dro_updates_q_only_in_training_mode() -> None:
    objective = GroupObjective(kind="group-dro", n_groups=2, eta=1.0).eval()
    objective(torch.tensor([0.1, 0.9]), torch.tensor([0, 1]))
    assert objective.q.tolist() == [0.5, 0.5]
    objective.train()
    objective(torch.tensor([0.1, 0.9]), torch.tensor([0, 1]))
    assert objective.q[1] > objective.q[0]


def test_group_dro_survives_extreme_losses() -> None:
    objective = GroupObjective(kind="group-dro", n_groups=2, eta=1.0)
    for _ in range(3):
        value = objective(torch.tensor([0.0, 1e4]), torch.tensor([0, 1]))
        assert torch.isfinite(objective.q).all() and torch.isfinite(value)
    # Group 0's weight underflowed; a batch of group 0 alone still has a finite loss.
    assert torch.isfinite(objective(torch.tensor([0.5]), torch.tensor([0])))


def test_config_round_trips_and_converts_lists() -> None:
    config = GroupObjectiveConfig(kind="reweighted", n_groups=2, weights=[1, 3])  # type: ignore[arg-type]
    assert config.weights == (1.0, 3.0)
    assert GroupObjectiveConfig(**asdict(config)) == config
    assert GroupObjectiveConfig(n_groups=4) == GroupObjectiveConfig(kind="erm", n_groups=4, eta=models.DEFAULT_DRO_STEP_SIZE)
    assert GroupObjective.from_config(config).config == config
    assert GroupObjective("reweighted", n_groups=2, weights=[1, 3]).config == config


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "dro", "n_groups": 2}, r"GroupObjectiveConfig.kind must be one of \('erm', 'reweighted', 'group-dro'\), got 'dro'"),
        ({"n_groups": 0}, r"GroupObjectiveConfig.n_groups must be a positive int, got 0"),
        ({"n_groups": True}, r"GroupObjectiveConfig.n_groups must be a positive int, got True"),
        ({"n_groups": 2, "eta": 0}, r"GroupObjectiveConfig.eta must be a finite number > 0, got 0"),
        ({"n_groups": 2, "eta": float("inf")}, r"GroupObjectiveConfig.eta must be a finite number > 0, got inf"),
        ({"kind": "group-dro", "n_groups": 2, "weights": (1.0, 1.0)}, r"weights only apply to kind='reweighted', got weights with kind='group-dro'"),
        ({"kind": "reweighted", "n_groups": 2}, r"weights must be a tuple of n_groups=2 finite numbers >= 0, not all zero, for kind='reweighted', got None"),
        ({"kind": "reweighted", "n_groups": 2, "weights": (1.0,)}, r"weights must be a tuple of n_groups=2 .*got \(1.0,\)"),
        ({"kind": "reweighted", "n_groups": 2, "weights": (1.0, -1.0)}, r"weights must be a tuple .*got \(1.0, -1.0\)"),
        ({"kind": "reweighted", "n_groups": 2, "weights": (0.0, 0.0)}, r"weights must be a tuple .*not all zero"),
        ({"kind": "reweighted", "n_groups": 2, "weights": ("1", 1.0)}, r"weights must be a tuple .*got \('1', 1.0\)"),
    ],
)
def test_config_rejects_bad_values(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GroupObjectiveConfig(**fields)


def test_from_config_rejects_a_wrong_type() -> None:
    with pytest.raises(TypeError, match=r"GroupObjective.from_config needs a GroupObjectiveConfig, got dict"):
        GroupObjective.from_config({"n_groups": 2})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("loss", "groups", "message"),
    [
        (torch.zeros(2, 1), torch.zeros(2, dtype=torch.long), r"per_sample_loss must be a 1-D float tensor .*got \(2, 1\)"),
        (torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), r"per_sample_loss must be a 1-D float tensor .*torch.int64"),
        (torch.zeros(2), None, r"the 'group-dro' objective needs groups: a long tensor of shape \(2,\) .*got NoneType"),
        (torch.zeros(2), torch.zeros(3, dtype=torch.long), r"needs groups: a long tensor of shape \(2,\) .*got \(3,\) torch.int64"),
        (torch.zeros(2), torch.zeros(2), r"needs groups: a long tensor .*got \(2,\) torch.float32"),
        (torch.zeros(2), torch.tensor([0, 2]), r"groups must be in 0..1 \(n_groups=2\), got values from 0 to 2"),
    ],
)
def test_forward_rejects_bad_input(loss: torch.Tensor, groups: torch.Tensor | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GroupObjective(kind="group-dro", n_groups=2)(loss, groups)


# --------------------------------------------------------------------------- the models


@pytest.mark.parametrize("kind", ["erm", "reweighted", "group-dro"])
@pytest.mark.parametrize("name", sorted(LEARNED))
def test_each_learned_model_trains_a_step_with_each_objective(
    name: str, kind: str, make_loader: Callable, make_trainer: Callable
) -> None:
    model = _model(name, kind)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    trainer = make_trainer(fast_dev_run=True)
    trainer.fit(model, train_dataloaders=make_loader(8, batch_size=8), val_dataloaders=make_loader(8, batch_size=8))
    changed = [key for key, value in model.state_dict().items() if not torch.equal(value, before[key])]
    assert changed, "fit changed no weights"
    assert torch.isfinite(trainer.callback_metrics["train/loss"]) and "val/loss" in trainer.callback_metrics
    q = model.objective.group_weights
    if kind == "group-dro":
        assert "objective.q" in changed and q.sum().item() == pytest.approx(1.0)
        assert not torch.allclose(q, torch.full((N_GROUPS,), 1 / N_GROUPS))
        assert trainer.callback_metrics["train/dro_weight/0"].item() == pytest.approx(q[0].item())
    else:
        assert not any(key.startswith("objective.") for key in model.state_dict())
        assert "train/dro_weight/0" not in trainer.callback_metrics


@pytest.mark.parametrize("name", sorted(LEARNED))
def test_erm_objective_trains_like_no_objective(name: str, make_batch: Callable) -> None:
    batch = make_batch(8)
    torch.manual_seed(0)  # the same random training flips (cnn) for both
    plain = _model(name).training_step(batch, 0)
    torch.manual_seed(0)
    with_erm = _model(name, "erm").training_step(batch, 0)
    assert torch.allclose(with_erm, plain, rtol=1e-6, atol=0)
    if name != "vae":  # the VAE sums its two terms before the mean, a rounding apart
        assert torch.equal(with_erm, plain)


@pytest.mark.parametrize("name", sorted(LEARNED))
def test_training_without_labels_raises(name: str, make_batch: Callable) -> None:
    batch = {key: value for key, value in make_batch(4).items() if key != "labels"}
    model = _model(name, "group-dro")
    with pytest.raises(ValueError, match=rf"{models.get(name).module.__name__} with the 'group-dro' objective {ERR_NEEDS_LABELS} \(B, A\) attribute codes.*got a batch with keys \['image', 'index', 'lowres'\]"):
        model.training_step(batch, 0)
    # Validation keeps the plain mean: no labels needed, and q stays put.
    model.validation_step(batch, 0)
    _model(name, "erm").training_step(batch, 0)  # erm needs no labels
    assert model.objective.q.tolist() == pytest.approx([1 / N_GROUPS] * N_GROUPS)


def test_objective_reduces_only_the_training_loss(make_batch: Callable) -> None:
    model = _model("ae", "reweighted")
    batch = make_batch(8)
    loss = torch.rand(8, generator=torch.Generator().manual_seed(1))
    groups = intersectional_groups(batch["labels"], num_classes=NUM_CLASSES)
    weights = model.objective.group_weights
    assert torch.allclose(model._objective_loss(loss, batch, stage="train"), (weights[groups] * loss).mean())
    for stage in ("val", "test"):
        assert torch.equal(model._objective_loss(loss, batch, stage=stage), loss.mean())


def test_set_objective_checks_and_detaches() -> None:
    model = _model("cnn")
    assert model.objective is None
    with pytest.raises(TypeError, match=r"ConvAE.set_objective needs a GroupObjective or None, got str"):
        model.set_objective("group-dro", num_classes=NUM_CLASSES)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"num_classes=\(2, 2\) gives 4 intersectional groups, but the objective has n_groups=6"):
        model.set_objective(_objective("group-dro"), num_classes=(2, 2))
    with pytest.raises(ValueError, match=r"num_classes must be a sequence of positive ints"):
        model.set_objective(_objective("group-dro"), num_classes=(2, -3))
    model.set_objective(_objective("group-dro"), num_classes=NUM_CLASSES)
    assert isinstance(model.objective, GroupObjective) and "objective.q" in model.state_dict()
    model.set_objective(None)
    assert model.objective is None and "objective.q" not in model.state_dict()


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("pca", models.PCAConfig(image_size=16, channels=3, bottleneck=4)),
        ("bicubic", models.BicubicConfig(image_size=16, channels=3, scale=4)),
    ],
)
def test_objectives_do_not_apply_to_pca_and_bicubic(name: str, config: object) -> None:
    model = models.get(name).module.from_config(config)
    with pytest.raises(ValueError, match=rf"{ERR_NO_OBJECTIVES} {type(model).__name__}: .*got objective 'group-dro'; use 'erm'"):
        model.set_objective(_objective("group-dro"), num_classes=NUM_CLASSES)
    model.set_objective(_objective("erm"), num_classes=NUM_CLASSES)  # erm is what they do anyway
    assert model.objective.kind == "erm"


# --------------------------------------------------------------------------- checkpoints


def _dro_checkpoint(make_loader: Callable, make_trainer: Callable, path: Path, name: str = "ae") -> pl.LightningModule:
    model = _model(name, "group-dro")
    trainer = make_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=make_loader(8, batch_size=4))
    trainer.save_checkpoint(path)
    return model


@pytest.mark.parametrize("name", ["ae", "vae"])
def test_load_from_checkpoint_rebuilds_the_objective_and_q(name: str, make_loader: Callable, make_trainer: Callable, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.ckpt"
    model = _dro_checkpoint(make_loader, make_trainer, path, name)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"] == asdict(LEARNED[name])  # hparams stay the model's config
    assert checkpoint[CHECKPOINT_KEY] == {"config": asdict(model.objective.config), "num_classes": list(NUM_CLASSES)}

    loaded = type(model).load_from_checkpoint(path)
    assert loaded.config == LEARNED[name]
    assert loaded.objective.config == model.objective.config
    assert torch.equal(loaded.objective.q, model.objective.q)
    assert not torch.allclose(loaded.objective.q, torch.full((N_GROUPS,), 1 / N_GROUPS))


def test_reweighted_objective_round_trips_through_a_checkpoint(make_batch: Callable, make_trainer: Callable, tmp_path: Path) -> None:
    model = _model("sr", "reweighted")
    trainer = make_trainer(max_epochs=0)
    trainer.fit(model, train_dataloaders=[make_batch(4)])
    trainer.save_checkpoint(tmp_path / "sr.ckpt")
    loaded = models.SR.load_from_checkpoint(tmp_path / "sr.ckpt")
    assert loaded.objective.config == model.objective.config
    assert torch.equal(loaded.objective.group_weights, model.objective.group_weights)


def test_resumed_group_dro_run_keeps_q(make_loader: Callable, make_trainer: Callable, tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    saved_q = _dro_checkpoint(make_loader, make_trainer, path).objective.q.clone()

    class QAtStart(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.q = pl_module.objective.q.clone()

    at_start = QAtStart()
    resumed = _model("ae", "group-dro")  # the pipeline attaches the run's objective, then resumes
    trainer = make_trainer(max_epochs=2, limit_val_batches=0, callbacks=[at_start])
    trainer.fit(resumed, train_dataloaders=make_loader(8, batch_size=4), ckpt_path=path)
    assert torch.equal(at_start.q, saved_q)
    assert not torch.equal(resumed.objective.q, saved_q)  # and it went on from there


def test_resuming_with_another_objective_raises(make_loader: Callable, make_trainer: Callable, tmp_path: Path) -> None:
    path = tmp_path / "dro.ckpt"
    _dro_checkpoint(make_loader, make_trainer, path)
    checkpoint = torch.load(path, weights_only=True)
    other = _model("ae", "reweighted")
    with pytest.raises(ValueError, match=rf"AE {ERR_OBJECTIVE_MISMATCH}: the checkpoint's is GroupObjectiveConfig\(kind='group-dro'.*the model's is GroupObjectiveConfig\(kind='reweighted'"):
        other.on_load_checkpoint(checkpoint)
    del checkpoint[CHECKPOINT_KEY]
    with pytest.raises(ValueError, match=rf"AE {ERR_OBJECTIVE_MISMATCH}: the checkpoint has none \(plain mean\), the model has 'reweighted' attached"):
        other.on_load_checkpoint(checkpoint)
    _model("ae", "erm").on_load_checkpoint(checkpoint)  # erm is the plain mean: nothing to restore


# --------------------------------------------------------------------------- DDP

_DDP_SCRIPT = '''
import sys, torch, torch.distributed as dist, torch.multiprocessing as mp
from genfair.models import GroupObjective

def run(rank, path):
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    objective = GroupObjective("group-dro", n_groups=3, eta=1.0)
    # rank 0 sees groups 0 and 1 only, rank 1 group 2 only: q must use all ranks' losses.
    loss, groups = ([0.1, 0.3], [0, 1]) if rank == 0 else ([0.9, 0.7], [2, 2])
    objective(torch.tensor(loss), torch.tensor(groups))
    torch.save(objective.q, f"{path}.q{rank}")
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(run, args=(sys.argv[1],), nprocs=2)
'''


@pytest.mark.slow
def test_group_dro_keeps_the_same_q_on_every_ddp_rank(tmp_path: Path) -> None:
    script = tmp_path / "ddp_dro.py"
    script.write_text(_DDP_SCRIPT)
    rendezvous = tmp_path / "rendezvous"
    subprocess.run([sys.executable, str(script), str(rendezvous)], check=True, timeout=120)
    q0, q1 = (torch.load(f"{rendezvous}.q{rank}", weights_only=True) for rank in (0, 1))
    assert torch.equal(q0, q1)
    assert torch.allclose(q0, torch.softmax(torch.tensor([0.1, 0.3, 0.8]), dim=0))
