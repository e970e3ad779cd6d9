"""Per-group training objectives: how a model reduces its per-image losses to the loss it minimises.

The learned models (``ae``, ``cnn``, ``sr``, ``vae``) compute one loss per training image and, by
default, minimise their mean (ERM). A :class:`GroupObjective` attached with
``model.set_objective(objective, num_classes=...)`` reduces them per group instead:

- ``"erm"``: the plain mean, ``mean_i loss_i`` (what the models do without an objective).
- ``"reweighted"``: ``mean_i w[g_i] * loss_i`` with fixed per-group weights ``w``, e.g.
  :func:`inverse_frequency_weights` of the training split's group counts, which makes every group
  weigh as much as any other in expectation.
- ``"group-dro"``: online group DRO (Sagawa et al. 2020, "Distributionally Robust Neural Networks
  for Group Shifts", Algorithm 1). A distribution ``q`` over the groups (a buffer, uniform at
  start) is raised, at every training step, for the groups with the highest loss in the batch:
  ``q_g <- q_g * exp(eta * L_g)``, renormalised to sum to 1, where ``L_g`` is group g's mean
  (detached) loss in the batch and absent groups count as ``L_g = 0``. The step then minimises
  ``sum_g q_g * L_g`` over the groups present in the batch, with ``q`` renormalised over those
  groups (see :class:`GroupObjective` for why).

The groups are the intersectional groups of the sensitive attributes: a batch's ``"labels"``
``(B, A)`` attribute codes become one group id per image with :func:`intersectional_groups`.

Only the training loss goes through the objective: validation and test keep the plain mean, so
that validation losses (early stopping, best checkpoint) stay comparable across objectives.
``pca`` (fitted in closed form in one pass) and ``bicubic`` (not trained) have no training loss:
objectives do not apply to them.

Checkpoints: the objective's config (plain data, ``asdict``) and the ``num_classes`` it was
attached with ride in the checkpoint under :data:`CHECKPOINT_KEY`, and its state (``q`` of
group DRO) in the ``state_dict`` under ``objective.*``; the module's hyperparameters stay
``asdict(config)``. ``Model.load_from_checkpoint`` rebuilds the objective, and
``trainer.fit(model, ckpt_path=...)`` of a model with the same objective attached resumes ``q``.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "CHECKPOINT_KEY",
    "DEFAULT_DRO_STEP_SIZE",
    "ERR_NEEDS_LABELS",
    "OBJECTIVES",
    "GroupObjective",
    "GroupObjectiveConfig",
    "ObjectiveKind",
    "intersectional_groups",
    "inverse_frequency_weights",
]

ObjectiveKind = Literal["erm", "reweighted", "group-dro"]
OBJECTIVES: tuple[str, ...] = typing.get_args(ObjectiveKind)
"""Allowed values of ``GroupObjectiveConfig.kind``."""

DEFAULT_DRO_STEP_SIZE = 0.01
"""Default ``eta`` of group DRO: the group-weight step size of Sagawa et al. (2020)'s experiments."""

CHECKPOINT_KEY = "genfair_objective"
"""Key of a checkpoint's objective entry: ``{"config": asdict(objective.config), "num_classes": [...]}``."""

ERR_NEEDS_LABELS = "needs each training batch's 'labels'"
ERR_NO_OBJECTIVES = "objectives do not apply to"
ERR_OBJECTIVE_MISMATCH = "was trained with a different objective"

# --------------------------------------------------------------------------- pure helpers


def intersectional_groups(labels: Tensor, *, num_classes: Sequence[int]) -> Tensor:
    """One intersectional group id per row from its attribute codes (mixed radix).

    ``group = sum_a labels[:, a] * prod_{b > a} num_classes[b]``: the first attribute is the most
    significant digit, so group ``k`` is the ``k``-th combination of
    ``itertools.product(*(range(n) for n in num_classes))``, i.e. of the attributes' sorted values
    (the codes of ``FacesDataModule.attribute_classes``) in lexicographic order. Combinations that
    never occur still get an id: there are ``prod(num_classes)`` ids.

    Args:
        labels: (B, A) integer, column ``a`` in ``0..num_classes[a] - 1`` (a batch's ``"labels"``).
        num_classes: The number of classes of each of the A attributes, each >= 1.

    Returns:
        (B,) long in ``0..prod(num_classes) - 1``, on ``labels``' device.

    Raises:
        ValueError: If ``num_classes`` is not a sequence of positive ints, ``labels`` is not a
            (B, len(num_classes)) integer tensor, or a code is out of its attribute's range.

    Example:
        >>> intersectional_groups(torch.tensor([[0, 0], [0, 2], [1, 0], [1, 2]]), num_classes=(2, 3))
        tensor([0, 2, 3, 5])
    """
    sizes = _check_num_classes(num_classes)
    a = len(sizes)
    if not isinstance(labels, Tensor) or labels.ndim != 2 or labels.shape[1] != a or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        got = f"{tuple(labels.shape)} {labels.dtype}" if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be an integer tensor of shape (B, {a}), one column per attribute of num_classes={sizes}, got {got}")
    high = torch.tensor(sizes, device=labels.device, dtype=torch.long)
    labels = labels.long()
    if bool(((labels < 0) | (labels >= high)).any()):
        raise ValueError(f"labels column a must be in 0..num_classes[a] - 1 with num_classes={sizes}, got values from {int(labels.min())} to {int(labels.max())}")
    radix = torch.tensor([math.prod(sizes[i + 1:]) for i in range(a)], device=labels.device, dtype=torch.long)
    return (labels * radix).sum(dim=1)


def inverse_frequency_weights(group_counts: Tensor | Sequence[int]) -> Tensor:
    """Per-group loss weights inversely proportional to each group's training frequency.

    ``w_g = N / (G' * n_g)`` for a group with ``n_g > 0`` training images, where ``N = sum_g n_g``
    and ``G'`` is the number of groups with images; ``w_g = 0`` for a group with none (it never
    occurs in training). Normalised so that the expected weight of a training image is 1
    (``sum_g n_g * w_g / N == 1``): the weighted loss keeps the scale of the plain mean, while
    every present group weighs ``N / G'`` images in total.

    Args:
        group_counts: (G,) non-negative counts (e.g. ``torch.bincount(groups, minlength=G)`` of
            the training split), at least one positive.

    Returns:
        (G,) float32, >= 0, on ``group_counts``' device (CPU for a sequence).

    Raises:
        ValueError: If the counts are not 1-D, are negative or not finite, or are all zero.

    Example:
        >>> inverse_frequency_weights([43, 6, 12, 1])
        tensor([ 0.3605,  2.5833,  1.2917, 15.5000])
    """
    counts = group_counts if isinstance(group_counts, Tensor) else torch.as_tensor(group_counts)
    counts = counts.to(torch.float64)
    if counts.ndim != 1 or counts.numel() == 0 or not bool(torch.isfinite(counts).all()) or bool((counts < 0).any()) or not bool((counts > 0).any()):
        raise ValueError(f"group_counts must be a non-empty 1-D sequence of finite counts >= 0, at least one positive, got {_describe(group_counts)}")
    present = counts > 0
    scale = counts.sum() / present.sum()
    return torch.where(present, scale / torch.where(present, counts, 1.0), 0.0).to(torch.float32)


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}: {value.tolist()!r}" if value.numel() <= 20 else f"a tensor of shape {tuple(value.shape)}"
    return repr(value)


def _check_num_classes(num_classes: object) -> tuple[int, ...]:
    ok = isinstance(num_classes, Sequence) and not isinstance(num_classes, str)
    sizes = tuple(num_classes) if ok else ()  # type: ignore[arg-type]
    if not ok or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes):
        raise ValueError(f"num_classes must be a sequence of positive ints (the number of classes of each attribute), got {num_classes!r}")
    return sizes


# --------------------------------------------------------------------------- the objective


@dataclass(frozen=True, kw_only=True)
class GroupObjectiveConfig:
    """Settings of a :class:`GroupObjective`. Plain data; round-trips through ``dataclasses.asdict``.

    Attributes:
        kind: ``"erm"``, ``"reweighted"`` or ``"group-dro"`` (see the module docstring).
        n_groups: Number of groups G (``prod(num_classes)`` of the attributes).
        weights: ``"reweighted"`` only (and required there): G finite weights >= 0, not all
            zero, e.g. ``tuple(inverse_frequency_weights(counts).tolist())``. A list (e.g. from
            YAML) is converted to a tuple of floats.
        eta: ``"group-dro"`` only: the step size of the group-weight update
            ``q_g <- q_g * exp(eta * L_g)`` (default :data:`DEFAULT_DRO_STEP_SIZE`, 0.01, the
            value of Sagawa et al.'s experiments on cross-entropy losses). Its effect scales
            with the loss: over T steps with group losses L_a > L_b, ``q_a / q_b`` grows by
            ``exp(eta * T * (L_a - L_b))``, so ``eta`` matters only relative to the gap between
            the groups' losses and the number of steps. The pixel means of ``ae``, ``cnn`` and
            ``sr`` (MSE about 0.01 per image, gaps of thousandths) hardly move ``q`` at 0.01 over
            a short run and want an ``eta`` of order 1 or more; the VAE's per-image sums over
            pixels (thousands of nats at 64x64, gaps of tens) move it fast already at 0.01.

    Raises:
        ValueError: On an unknown kind, a bad ``n_groups`` or ``eta``, missing or bad weights
            for ``"reweighted"``, or weights given to another kind.
    """

    kind: ObjectiveKind = "erm"
    n_groups: int
    weights: tuple[float, ...] | None = None
    eta: float = DEFAULT_DRO_STEP_SIZE

    def __post_init__(self) -> None:
        if self.kind not in OBJECTIVES:
            raise ValueError(f"GroupObjectiveConfig.kind must be one of {OBJECTIVES}, got {self.kind!r}")
        if not isinstance(self.n_groups, int) or isinstance(self.n_groups, bool) or self.n_groups < 1:
            raise ValueError(f"GroupObjectiveConfig.n_groups must be a positive int, got {self.n_groups!r}")
        if isinstance(self.eta, bool) or not isinstance(self.eta, (int, float)) or not math.isfinite(self.eta) or self.eta <= 0:
            raise ValueError(f"GroupObjectiveConfig.eta must be a finite number > 0, got {self.eta!r}")
        weights = self.weights
        if self.kind != "reweighted":
            if weights is not None:
                raise ValueError(f"GroupObjectiveConfig.weights only apply to kind='reweighted', got weights with kind={self.kind!r}; leave them out")
            return
        if isinstance(weights, list):
            weights = tuple(weights)
        numbers = isinstance(weights, tuple) and all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights)
        if not numbers or len(weights) != self.n_groups or not all(math.isfinite(w) and w >= 0 for w in weights) or not any(w > 0 for w in weights):  # type: ignore[arg-type, union-attr]
            raise ValueError(f"GroupObjectiveConfig.weights must be a tuple of n_groups={self.n_groups} finite numbers >= 0, not all zero, for kind='reweighted', got {self.weights!r}; e.g. tuple(inverse_frequency_weights(group_counts).tolist())")
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))  # type: ignore[union-attr]


class GroupObjective(nn.Module):
    """Reduces per-image losses to one training loss, per group (see the module docstring).

    Build it with ``GroupObjective(kind, n_groups=..., weights=..., eta=...)`` or
    :meth:`from_config`. An ``nn.Module`` so that it moves with its model (``.to(device)``) and
    its state is checkpointed: group DRO keeps ``q`` in a persistent buffer; the fixed weights
    of ``"erm"`` (ones) and ``"reweighted"`` are a non-persistent buffer rebuilt from the config,
    so those two add nothing to a model's ``state_dict``.

    Group DRO updates ``q`` only in training mode (``objective.training``, which follows its
    model's ``train()``/``eval()``), once per call. Under DDP the groups' loss sums and counts
    are summed over the ranks before the update, so every rank keeps the same ``q``. The
    returned loss renormalises ``q`` over the groups present in the batch: a batch without
    some group (frequent when a minority has a handful of images) then still has the loss scale
    of a mean, and the step size of the model's optimiser does not shrink with the missing
    groups' weight; Sagawa et al.'s reference code instead counts an absent group's loss as 0.

    Attributes:
        config: The :class:`GroupObjectiveConfig`.
        q: ``"group-dro"`` only: buffer (G,) float, a distribution over the groups.

    Example:
        >>> objective = GroupObjective(kind="group-dro", n_groups=2, eta=1.0)
        >>> loss = objective(torch.tensor([0.1, 0.1, 0.9]), torch.tensor([0, 0, 1]))
        >>> objective.group_weights
        tensor([0.3100, 0.6900])
    """

    def __init__(
        self,
        kind: ObjectiveKind = "erm",
        *,
        n_groups: int,
        weights: Sequence[float] | None = None,
        eta: float = DEFAULT_DRO_STEP_SIZE,
    ) -> None:
        """Build an objective; the arguments are the fields of :class:`GroupObjectiveConfig`.

        Raises:
            ValueError: If a value is invalid (see :class:`GroupObjectiveConfig`).
        """
        super().__init__()
        config = GroupObjectiveConfig(kind=kind, n_groups=n_groups, weights=weights, eta=eta)  # type: ignore[arg-type]
        self.config = config
        g = config.n_groups
        if config.kind == "group-dro":
            self.register_buffer("q", torch.full((g,), 1.0 / g))
        else:
            weights = torch.ones(g) if config.weights is None else torch.tensor(config.weights, dtype=torch.float32)
            self.register_buffer("weights", weights, persistent=False)

    @classmethod
    def from_config(cls, config: GroupObjectiveConfig) -> GroupObjective:
        """Build an objective (fresh state: uniform ``q``) from its config.

        Raises:
            TypeError: If ``config`` is not a :class:`GroupObjectiveConfig`.
        """
        if not isinstance(config, GroupObjectiveConfig):
            raise TypeError(f"GroupObjective.from_config needs a GroupObjectiveConfig, got {type(config).__name__}; build one with GroupObjectiveConfig(**fields)")
        return cls(**asdict(config))

    @property
    def kind(self) -> str:
        """The objective's kind, ``config.kind``."""
        return self.config.kind

    @property
    def n_groups(self) -> int:
        """The number of groups, ``config.n_groups``."""
        return self.config.n_groups

    @property
    def group_weights(self) -> Tensor:
        """The weight of each group now, a detached copy (G,) float (for logging).

        ``"erm"``: ones; ``"reweighted"``: the per-image weights ``w``; ``"group-dro"``: ``q``
        (a distribution over the groups; the loss renormalises it over the groups present).
        """
        return (self.q if self.kind == "group-dro" else self.weights).detach().clone()

    def extra_repr(self) -> str:
        eta = f", eta={self.config.eta}" if self.kind == "group-dro" else ""
        return f"kind={self.kind!r}, n_groups={self.n_groups}{eta}"

    def forward(self, per_sample_loss: Tensor, groups: Tensor | None = None) -> Tensor:
        """The training loss of a batch.

        Args:
            per_sample_loss: (B,) float, each image's loss (lower is better), with its graph.
            groups: (B,) long in ``0..n_groups - 1``, each image's group
                (:func:`intersectional_groups`); may be None for ``"erm"``, which ignores it.

        Returns:
            Scalar float: ``mean(loss)`` (erm), ``mean(w[groups] * loss)`` (reweighted) or
            ``sum_g q_g L_g / sum_g q_g`` over the groups g present, ``L_g`` their mean loss
            (group-dro, after updating ``q`` when training).

        Raises:
            ValueError: If ``per_sample_loss`` is not a 1-D float tensor, or (except for erm)
                ``groups`` is missing, not a long tensor of the same length, or out of range.
        """
        if not isinstance(per_sample_loss, Tensor) or per_sample_loss.ndim != 1 or not per_sample_loss.is_floating_point():
            got = f"{tuple(per_sample_loss.shape)} {per_sample_loss.dtype}" if isinstance(per_sample_loss, Tensor) else type(per_sample_loss).__name__
            raise ValueError(f"per_sample_loss must be a 1-D float tensor (one loss per image), got {got}")
        if self.kind == "erm":
            return per_sample_loss.mean()
        groups = self._check_groups(groups, per_sample_loss.shape[0])
        if self.kind == "reweighted":
            return (self.weights.to(per_sample_loss.dtype)[groups] * per_sample_loss).mean()
        return self._group_dro(per_sample_loss, groups)

    def _check_groups(self, groups: Tensor | None, n: int) -> Tensor:
        if not isinstance(groups, Tensor) or tuple(groups.shape) != (n,) or groups.dtype != torch.long:
            got = f"{tuple(groups.shape)} {groups.dtype}" if isinstance(groups, Tensor) else type(groups).__name__
            raise ValueError(f"the {self.kind!r} objective needs groups: a long tensor of shape ({n},) matching per_sample_loss, got {got}")
        if bool(((groups < 0) | (groups >= self.n_groups)).any()):
            raise ValueError(f"groups must be in 0..{self.n_groups - 1} (n_groups={self.n_groups}), got values from {int(groups.min())} to {int(groups.max())}")
        return groups

    def _group_dro(self, per_sample_loss: Tensor, groups: Tensor) -> Tensor:
        g = self.n_groups
        sums = per_sample_loss.new_zeros(g).index_add(0, groups, per_sample_loss)
        counts = torch.bincount(groups, minlength=g).to(per_sample_loss.dtype)
        present = counts > 0
        means = sums / counts.clamp_min(1)
        if self.training:
            self._update_q(sums.detach(), counts)
        # q over the present groups, renormalised; a weight that underflowed to 0 counts as the
        # smallest positive float, so the loss stays defined whichever groups are present.
        q = self.q.clamp_min(torch.finfo(self.q.dtype).tiny).to(means.dtype)
        q = torch.where(present, q, torch.zeros_like(q))
        return (q * means).sum() / q.sum()

    @torch.no_grad()
    def _update_q(self, sums: Tensor, counts: Tensor) -> None:
        """``q <- normalise(q * exp(eta * L))``, in log-space; ``L`` the groups' mean loss (0 if absent)."""
        stats = torch.stack([sums, counts]).to(self.q.dtype)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(stats)  # every rank: the same global group means, so the same q
        means = stats[0] / stats[1].clamp_min(1)
        log_q = self.q.clamp_min(torch.finfo(self.q.dtype).tiny).log()
        self.q.copy_(torch.softmax(log_q + self.config.eta * means, dim=0))


# --------------------------------------------------------------------------- the models' side


class ObjectiveMixin:
    """What a LightningModule needs to train with a :class:`GroupObjective` (internal).

    Mixed into the zoo's base (``ConfiguredModule``) and into ``VAE``, before
    ``pl.LightningModule``. A model that can use an objective sets :attr:`supports_objectives`
    and reduces its per-image training losses with :meth:`_objective_loss` in its shared step.
    Provides :meth:`set_objective`, the :attr:`objective` property, the checkpoint hooks that
    save and rebuild the objective, and the per-epoch logging of group DRO's weights
    (``train/dro_weight/{g}``).
    """

    supports_objectives: ClassVar[bool] = False
    """Whether training reduces per-image losses through an attached objective (opt-in per model)."""

    _objective_num_classes: tuple[int, ...] = ()

    @property
    def objective(self) -> GroupObjective | None:
        """The attached objective (a submodule named ``objective``), or None: plain mean (ERM)."""
        return self._modules.get("objective")  # type: ignore[attr-defined, return-value]

    def set_objective(self, objective: GroupObjective | None, *, num_classes: Sequence[int] = ()) -> None:
        """Attach (or, with None, detach) the objective that reduces the training loss.

        Call it before ``trainer.fit``. The objective becomes the submodule ``objective``: it
        moves with the model, and checkpoints carry it (see the module docstring).

        Args:
            objective: The objective, or None for the default plain mean.
            num_classes: The number of classes of each sensitive attribute, in the column order
                of the batches' ``"labels"``; ``prod(num_classes)`` must be ``objective.n_groups``.

        Raises:
            TypeError: If ``objective`` is not a :class:`GroupObjective` or None.
            ValueError: If ``num_classes`` is bad or does not give ``objective.n_groups`` groups,
                or the model has no training loss to reduce (``pca``, ``bicubic``) and the kind
                is not ``"erm"``.
        """
        name = type(self).__name__
        if objective is None:
            self._modules.pop("objective", None)  # type: ignore[attr-defined]
            self._objective_num_classes = ()
            return
        if not isinstance(objective, GroupObjective):
            raise TypeError(f"{name}.set_objective needs a GroupObjective or None, got {type(objective).__name__}")
        sizes = _check_num_classes(num_classes)
        if math.prod(sizes) != objective.n_groups:
            raise ValueError(f"{name}.set_objective: num_classes={sizes} gives {math.prod(sizes)} intersectional groups, but the objective has n_groups={objective.n_groups}; build it with n_groups=math.prod(num_classes)")
        if not self.supports_objectives and objective.kind != "erm":
            raise ValueError(f"{ERR_NO_OBJECTIVES} {name}: its training has no per-image loss to reduce (pca fits in one pass, bicubic does not train), got objective {objective.kind!r}; use 'erm' or a learned model (ae, cnn, sr, vae)")
        # Registered straight into _modules: add_module refuses the name of the property above.
        self._modules["objective"] = objective.to(self.device)  # type: ignore[attr-defined]
        self._objective_num_classes = sizes

    def _objective_loss(self, per_sample_loss: Tensor, batch: Mapping[str, Tensor], *, stage: str, plain: Tensor | None = None) -> Tensor:
        """The loss to minimise: in training with an objective, its reduction; else ``plain``.

        Args:
            per_sample_loss: (B,) float, each image's loss.
            batch: The batch; its ``"labels"`` (B, A) give the groups (not needed for ``"erm"``).
            stage: ``"train"``, ``"val"`` or ``"test"``.
            plain: The model's plain loss (default: ``per_sample_loss.mean()``), returned outside
                training or without an objective.

        Raises:
            ValueError: If a non-ERM objective trains on a batch without ``"labels"``, or with
                labels that do not fit ``num_classes``.
        """
        objective = self.objective
        if stage != "train" or objective is None:
            return per_sample_loss.mean() if plain is None else plain
        if objective.kind == "erm":
            return objective(per_sample_loss)
        if not isinstance(batch, Mapping) or "labels" not in batch:
            got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ValueError(f"{type(self).__name__} with the {objective.kind!r} objective {ERR_NEEDS_LABELS} (B, A) attribute codes to find each image's group, got a batch with keys {got}; train on a FacesDataModule, whose batches carry them, or use objective 'erm'")
        groups = intersectional_groups(batch["labels"], num_classes=self._objective_num_classes)
        return objective(per_sample_loss, groups)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Log group DRO's weights, ``train/dro_weight/{g}`` for each group g, as their mean over the epoch.

        Logged after every batch (aggregated per epoch), not at the epoch's end: callbacks that
        read the epoch's metrics at its end run before the module's own epoch-end hook.
        """
        objective = self.objective
        if objective is not None and objective.kind == "group-dro":
            for g, weight in enumerate(objective.group_weights):
                self.log(f"train/dro_weight/{g}", weight, on_step=False, on_epoch=True)  # type: ignore[attr-defined]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the objective's config and ``num_classes`` (plain data) under :data:`CHECKPOINT_KEY`."""
        objective = self.objective
        if objective is not None:
            checkpoint[CHECKPOINT_KEY] = {"config": asdict(objective.config), "num_classes": list(self._objective_num_classes)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rebuild the checkpoint's objective (before its ``state_dict``, with ``q``, is loaded).

        Without an attached objective, the checkpoint's is attached. With one attached (resuming
        ``trainer.fit(model, ckpt_path=...)``), it must equal the checkpoint's.

        Raises:
            ValueError: If the attached objective differs from the checkpoint's, or the model
                has a non-ERM objective attached and the checkpoint none.
        """
        saved = checkpoint.get(CHECKPOINT_KEY)
        attached = self.objective
        name = type(self).__name__
        if saved is None:
            if attached is not None and attached.kind != "erm":
                raise ValueError(f"{name} {ERR_OBJECTIVE_MISMATCH}: the checkpoint has none (plain mean), the model has {attached.kind!r} attached; resume without an objective, or load the weights with load_from_checkpoint and then set_objective")
            return
        config = GroupObjectiveConfig(**saved["config"])
        num_classes = tuple(saved["num_classes"])
        if attached is None:
            self.set_objective(GroupObjective.from_config(config), num_classes=num_classes)
        elif attached.config != config or self._objective_num_classes != num_classes:
            raise ValueError(f"{name} {ERR_OBJECTIVE_MISMATCH}: the checkpoint's is {config} with num_classes={num_classes}, the model's is {attached.config} with num_classes={self._objective_num_classes}; attach the checkpoint's objective to resume, or load the weights with load_from_checkpoint and then set_objective")
