"""The run's configuration: what one ``audit run`` audits, and the facts logged with it.

:class:`RunConfig` is plain data (it round-trips through ``dataclasses.asdict`` and is what
MLflow logs as parameters). The helpers here resolve its names (a dataset, a model, a manifest)
to the objects a run needs, and raise one readable line before anything trains.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from genfair import datasets, models
from genfair.audit.grouping import group_labels
from genfair.audit.identity import IDENTITY_DRIFT, IDENTITY_LOST
from genfair.audit.label_noise import MIN_ACCURACY
from genfair.datasets import Manifest

if TYPE_CHECKING:
    from genfair.audit.result import AuditResult
    from genfair.datasets import FacesDataModule

DEFAULT_EXPERIMENT = "genfair"
TASKS = ("reconstruction", "upsampling")
DEFAULT_EPOCHS = 10
#: ``audit compare`` and the zoo benchmark train every learned model until early stopping on the
#: validation loss (patience CONVERGENCE_PATIENCE, and the models' plateau schedule halves the rate
#: after two stalled epochs, so a stall gets a lower rate before it ends the run); the epoch cap is
#: a guard that is not meant to bind on the default data: on the 32-pixel faces the cnn at a
#: constant rate still improved at epoch 17, and the curves in each comparison report show where
#: every model stopped. ``--epochs`` caps it lower.
CONVERGENCE_MAX_EPOCHS = 300
CONVERGENCE_PATIENCE = 5

DEFAULT_SAMPLES = 1000
"""Samples a model that can sample draws from its prior for the samples audit (``--samples``)."""
VERSIONED_PACKAGES = ("genfair", "torch", "pytorch-lightning", "torchmetrics", "fairlearn", "mlflow", "pandas")
FACE_PACKAGES = ("dlib-bin", "face-recognition-models")  # versioned too when a run reads faces
SKIN_MASKS = ("central", "landmarks")
CLASSIFIERS = ("cnn", "embedding")  # the attribute classifier: a small CNN, or dlib embeddings + logistic regression
IDENTITY_MEASURES = (IDENTITY_DRIFT, IDENTITY_LOST)


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything one ``audit run`` needs; logged to MLflow as parameters.

    Where the outputs come from (see :mod:`genfair.audit.run.sources`): ``outputs`` set: the
    manifest's column of output files, nothing runs; ``model`` a registry key: trained here;
    ``model`` a user's model (``file.py:factory``, ``package.module:factory`` or a TorchScript
    ``.pt``): run as it is, or trained when it is a LightningModule.

    Args:
        model: model registry key (``genfair.models.names()``), or a user's model spec.
        dataset: dataset registry key (``genfair.datasets.names()``); ignored when ``manifest`` is set.
        manifest: path of a CSV/Parquet manifest to audit instead of a named dataset.
        allow_outside_root: accept manifest paths that are absolute or climb out of the
            manifest's folder with ``..`` (refused by default).
        attributes: sensitive attribute columns; None means the dataset's own (or, for a
            manifest, every non-reserved column).
        epochs: the most training epochs (early stopping may end sooner); None: :data:`DEFAULT_EPOCHS`
            for a registered model, while a user's model is audited as it is (a LightningModule
            trains only when ``epochs`` is given; a plain module never does).
        batch_size: images per batch (per device).
        seed: seeds the data split, the weights' initialisation and the data order.
        image_size: side of the square images the model sees, in pixels.
        channels: 3 for RGB, 1 for grayscale.
        scale: downsampling factor a super-resolution model upsamples from (2, 4 or 8).
        model_options: ``(field, value)`` pairs overriding the model config's defaults.
        accelerator: Lightning accelerator (``auto``, ``cpu``, ``gpu``).
        devices: Lightning devices per node: a count, ``-1`` for all, or ``auto``.
        num_nodes: machines in a multi-node run (launched by torchrun or SLURM).
        strategy: Lightning strategy (``auto``, ``ddp``, ...).
        precision: Lightning precision (``32-true``, ``16-mixed``, ``bf16-mixed``).
        patience: epochs without a better validation loss before training stops; 0 never stops early.
        classifier_epochs: epochs of the attribute classifier (it labels originals and outputs),
            trained on a balanced set: new generated people for a dataset that generates its
            people, else the training split drawn balanced by group; 0 skips it (either kind).
        classifier: which attribute classifier reads originals and outputs: ``"cnn"`` (a small
            CNN trained ``classifier_epochs`` epochs) or ``"embedding"`` (one logistic regression
            per attribute on dlib's 128-D face embeddings, trained once on the same balanced set;
            the ``faces`` extra, ~0.12 s an image: :mod:`genfair.audit.run.embedding_classifier`).
        classifier_min_accuracy: a group whose held-out originals, or whose audited originals, the
            classifier labels right less often than this (per attribute) gets no representation
            claims: its representation, representation-test and flip values are NaN, marked
            "classifier unreliable"; the CLEAM correction needs it of every group. In [0, 1];
            default :data:`genfair.audit.label_noise.MIN_ACCURACY`.
        samples: how many samples a model that can sample (``vae``, ``gan``, ``pulse``'s prior)
            draws from its prior for the samples audit (their composition by group, read by the
            classifier); 0 skips it.
        resume: a checkpoint to continue training from.
        checkpoint: a trained checkpoint to audit without training.
        tracking_uri: MLflow tracking URI; None means ``$MLFLOW_TRACKING_URI`` or
            ``sqlite:///<cwd>/mlflow.db``.
        experiment: MLflow experiment name.
        cache_dir: where generated datasets are cached; None means ``$GENFAIR_CACHE_DIR``
            or ``~/.cache/genfair``.
        cache_mb: memory (MiB) for the run's decoded images and masks (8 bits a pixel): when the
            rows of every split fit, each file is decoded once and shared by training, validation,
            the attribute classifier and the audit; a larger set is decoded in every epoch (the
            run's notes say so); 0 turns it off. Not logged: it changes no number of the audit.
        parent_run_id: an MLflow run to file this run under (``audit compare``'s parent run).
        data_seed: seeds the dataset's generation and split; None means ``seed``. An attribution
            study varies ``seed`` (the weights' initialisation) with ``data_seed`` fixed, so that
            every cell audits the same people.
        composition: ``"as-given"`` or ``"balanced"``: the training composition. A dataset
            with a generator makes a balanced counterfactual (the synthetic faces); otherwise
            training subjects are subsampled to the smallest group's count.
        objective: ``"erm"``, ``"reweighted"`` (inverse training frequency of the intersectional
            group) or ``"group-dro"`` (online group DRO); see :mod:`genfair.models.objectives`.
        dro_eta: group DRO's step size; None means :data:`genfair.audit.run.training.DRO_ETA` for the model.
        sampler: ``"shuffle"`` or ``"balanced"`` (every intersectional group drawn equally often).
        reference: the group every group is compared with in the interval tables: ``"best"``,
            ``"largest"`` (most people) or a group's label (e.g. ``"male / lighter"``).
        outputs: a manifest column holding each audited row's output file (outputs on disk).
        inputs: with ``outputs``, a column holding the low-resolution input each output came from.
        name: the model's name in tables, MLflow and reports; None: the registry key, the
            outputs column, or the user's factory (or file) name.
        task: ``"reconstruction"`` or ``"upsampling"`` for outputs on disk and user models (a
            registered model knows its own); None: reconstruction.
        bins: ``(column, spec)`` pairs: numeric attributes audited as intervals (``("age",
            "18,30,45,65")`` or ``("age", "quantiles:4")``; see :mod:`genfair.datasets.binning`).
        missing: what a blank attribute value does: ``"error"``, ``"drop"`` (the row is left
            out) or ``"group"`` (an explicit ``unknown`` group).
        fit: how images that are not square become square: ``"crop"`` (the centred square),
            ``"pad"`` (black borders) or ``"stretch"``.
        primary_metric: the one metric whose disparity tests form the run's family of tests
            (Holm-adjusted; the others are exploratory); None: every disparity row together.
        identity: measure identity drift with dlib's face recogniser (the ``faces`` extra):
            per image ``identity_drift``, ``identity_lost`` and ``face_found``, per group the
            ``identity_*`` tables (:mod:`genfair.audit.run.face_tools`).
        skin_mask: the skin region of the skin measures where the manifest has no masks:
            ``"central"`` (the centred ellipse) or ``"landmarks"`` (cheeks, forehead and nose
            bridge from dlib's 68 landmarks where a face is found; the ``faces`` extra); None:
            ``"landmarks"`` with ``identity``, else ``"central"``.
    """

    model: str = "vae"
    dataset: str = "faces"
    manifest: str | None = None
    allow_outside_root: bool = False
    attributes: tuple[str, ...] | None = None
    epochs: int | None = None
    batch_size: int = 32
    seed: int = 0
    image_size: int = 64
    channels: int = 3
    scale: int | None = None
    model_options: tuple[tuple[str, str], ...] = ()
    accelerator: str = "auto"
    devices: str = "1"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    patience: int = 3
    classifier_epochs: int = 5
    classifier: Literal["cnn", "embedding"] = "cnn"
    classifier_min_accuracy: float = MIN_ACCURACY
    samples: int = DEFAULT_SAMPLES
    resume: str | None = None
    checkpoint: str | None = None
    tracking_uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    cache_dir: str | None = None
    cache_mb: int = datasets.DEFAULT_CACHE_MB
    parent_run_id: str | None = None
    data_seed: int | None = None
    composition: str = "as-given"
    objective: str = "erm"
    dro_eta: float | None = None
    sampler: str = "shuffle"
    reference: str = "best"
    outputs: str | None = None
    inputs: str | None = None
    name: str | None = None
    task: Literal["reconstruction", "upsampling"] | None = None
    bins: tuple[tuple[str, str], ...] = ()
    missing: str = "error"
    fit: str = "crop"
    primary_metric: str | None = None
    identity: bool = False
    skin_mask: Literal["central", "landmarks"] | None = None

    def __post_init__(self) -> None:
        if self.skin_mask is not None and self.skin_mask not in SKIN_MASKS:
            raise ValueError(f"--skin-mask must be one of {', '.join(SKIN_MASKS)}, got {self.skin_mask!r}")
        if self.skin_mask == "landmarks" and self.channels != 3:
            raise ValueError("--skin-mask landmarks applies to the skin measures of colour images, and these are "
                             "grayscale (--channels 1); drop --skin-mask")
        if self.outputs is not None and self.manifest is None:
            raise ValueError(f"--outputs {self.outputs} names a column of a manifest: add --manifest FILE")
        if self.inputs is not None and self.outputs is None:
            raise ValueError("--inputs names the column of the inputs that --outputs came from: add --outputs COLUMN")
        if self.task is not None and self.task not in TASKS:
            raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 0:
            raise ValueError(f"--samples must be an int >= 0 (0 skips the samples audit), got {self.samples!r}")
        if self.name is not None and not self.name.strip():
            raise ValueError("--name must not be blank")
        for option, value, choices in (("--composition", self.composition, datasets.COMPOSITIONS),
                                       ("--objective", self.objective, models.OBJECTIVES),
                                       ("--sampler", self.sampler, datasets.SAMPLERS),
                                       ("--missing", self.missing, datasets.MISSING_RULES),
                                       ("--fit", self.fit, datasets.FITS),
                                       ("--classifier", self.classifier, CLASSIFIERS)):
            if value not in choices:
                raise ValueError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
        if self.primary_metric is not None:
            from genfair.audit.metrics import names as metric_names
            from genfair.audit.panel import SKIN_TONE_SHIFT

            tested = (*metric_names(), SKIN_TONE_SHIFT, *(IDENTITY_MEASURES if self.identity else ()))
            if self.primary_metric not in tested:
                raise ValueError(f"--primary-metric must be one of {', '.join(tested)}, got {self.primary_metric!r}")
        if self.dro_eta is not None and not self.dro_eta > 0:
            raise ValueError(f"--dro-eta must be a positive number, got {self.dro_eta!r}")
        for name in ("epochs", "batch_size", "image_size", "num_nodes"):
            value = getattr(self, name)
            if name == "epochs" and value is None:
                continue
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels!r}")
        if not isinstance(self.cache_mb, int) or isinstance(self.cache_mb, bool) or self.cache_mb < 0:
            raise ValueError(f"--cache-mb must be 0 (decode every file in every epoch) or a positive number of MiB, "
                             f"got {self.cache_mb!r}")
        if self.classifier_epochs < 0:
            raise ValueError(f"--classifier-epochs must be 0 (no classifier) or more, got {self.classifier_epochs!r}")
        accuracy = self.classifier_min_accuracy
        if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not 0 <= accuracy <= 1:
            raise ValueError(f"--classifier-min-accuracy must be a number in [0, 1] (0: withhold nothing), "
                             f"got {accuracy!r}")
        if self.patience < 0:
            raise ValueError(f"--patience must be 0 (never stop early) or more, got {self.patience!r}")
        if self.attributes is not None and len(self.attributes) == 0:
            raise ValueError("--attributes must name at least one column, got an empty list")
        if self.resume is not None and self.checkpoint is not None:
            raise ValueError(
                "--resume and --checkpoint conflict: --resume continues training, --checkpoint audits "
                "without training; pass one"
            )
        for option, path in (("--resume", self.resume), ("--checkpoint", self.checkpoint)):
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{option} {path}: no such checkpoint file")

    @property
    def landmark_masks(self) -> bool:
        """Whether the skin masks are drawn from face landmarks (``skin_mask``, else ``identity``)."""
        return self.skin_mask == "landmarks" or (self.skin_mask is None and self.identity and self.channels == 3)

    @property
    def face_tools(self) -> bool:
        """Whether the run reads faces with dlib (:mod:`genfair.audit.run.face_tools`) while scoring."""
        return self.identity or self.landmark_masks

    @property
    def needs_faces_extra(self) -> bool:
        """Whether the run needs dlib at all: to score faces, or as its attribute classifier."""
        return self.face_tools or (self.classifier == "embedding" and self.classifier_epochs > 0)

    @property
    def source_kind(self) -> Literal["disk", "user", "registry"]:
        """Where the outputs come from: files on disk, a user's model, or a registered model."""
        from .user_models import is_user_model_spec

        if self.outputs is not None:
            return "disk"
        return "user" if is_user_model_spec(self.model) else "registry"

    @property
    def model_name(self) -> str:
        """The model's name in tables, MLflow and reports."""
        if self.name is not None:
            return self.name
        if self.outputs is not None:
            return self.outputs
        if self.source_kind == "user":
            return _user_model_name(self.model)
        return self.model

    @property
    def training_epochs(self) -> int:
        """The most epochs a registered model trains for: ``epochs``, else :data:`DEFAULT_EPOCHS`."""
        return DEFAULT_EPOCHS if self.epochs is None else self.epochs

    @property
    def split_seed(self) -> int:
        """The seed of the dataset's generation and split: ``data_seed``, else ``seed``."""
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def lightning_devices(self) -> int | str:
        """``devices`` as Lightning wants it: an int for a count, else the string (``auto``)."""
        return int(self.devices) if self.devices.lstrip("-").isdigit() else self.devices


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run hands back to its caller (the CLI prints it)."""

    result: AuditResult
    run_id: str
    experiment_id: str
    tracking_uri: str
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # wall time per stage (time/<stage>)


def _user_model_name(spec: str) -> str:
    """``pkg.mod:make_sr`` -> ``make_sr``; ``path/to/model.pt`` -> ``model``."""
    if ":" in spec and not spec.endswith((".pt", ".pth")):
        return spec.rsplit(":", 1)[1]
    return Path(spec).stem


def resolve_cache_dir(cache_dir: str | None) -> Path:
    """The explicit folder, else ``$GENFAIR_CACHE_DIR``, else ``$XDG_CACHE_HOME/genfair`` (``~/.cache``)."""
    if cache_dir:
        return Path(cache_dir)
    if os.environ.get("GENFAIR_CACHE_DIR"):
        return Path(os.environ["GENFAIR_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "genfair"


def load_run_manifest(config: RunConfig) -> tuple[str, Manifest]:
    """Resolve the dataset (a named one or a manifest file) to a validated manifest.

    Returns:
        The dataset's display name and its manifest.
    """
    if config.manifest is not None:
        manifest = datasets.load_manifest(
            config.manifest, attributes=config.attributes, allow_outside_root=config.allow_outside_root,
            outputs=config.outputs, inputs=config.inputs, bins=dict(config.bins), missing=config.missing,
        )
        return Path(config.manifest).name, manifest
    builder = datasets.get(config.dataset)
    spec = builder(cache_dir=resolve_cache_dir(config.cache_dir), image_size=config.image_size,
                   seed=config.split_seed, composition=config.composition)
    attributes = config.attributes if config.attributes is not None else spec.attributes
    return spec.name, datasets.load_manifest(spec.manifest_path, attributes=attributes, bins=dict(config.bins),
                                             missing=config.missing)



def build_model_config(spec: models.ModelSpec, config: RunConfig) -> Any:
    """The model's config: the run's image size, channels and seed, ``--scale``, then ``model_options``.

    Raises:
        ValueError: an option the model's config does not have, or a value of the wrong type.
    """
    fields = {field.name: field for field in dataclasses.fields(spec.config)}
    values: dict[str, Any] = {"image_size": config.image_size, "channels": config.channels, "seed": config.seed}
    if config.scale is not None:
        if "scale" not in fields:
            scaled = [name for name in models.names() if "scale" in {f.name for f in dataclasses.fields(models.get(name).config)}]
            raise ValueError(f"--scale applies to super-resolution models ({', '.join(scaled)}), not to {config.model!r}")
        values["scale"] = config.scale
    settable = sorted(set(fields) - {"image_size", "channels", "seed", "scale"})
    for key, text in config.model_options:
        if key not in settable:
            import difflib

            close = difflib.get_close_matches(key, settable, n=1)
            raise ValueError(
                f"--model-option {key}={text}: model {config.model!r} has no option {key!r}"
                f"{f'; did you mean {close[0]!r}?' if close else ''}; its options: {', '.join(settable)}"
            )
        values[key] = _parse_option(key, text, fields[key].default)
    return spec.config(**values)


def _parse_option(key: str, text: str, default: Any) -> Any:
    """Parse a ``--model-option`` value like the field's default: bool, int, float, tuple of ints, or str."""
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, tuple):
            return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        kind = "true or false" if isinstance(default, bool) else f"{type(default).__name__} like {default!r}"
        raise ValueError(f"--model-option {key}={text}: expected {kind}") from err
    return text





def check_reference(reference: str, manifest: Manifest) -> None:
    """Refuse, before training, a named reference group that no grouping of the manifest has."""
    if reference in ("best", "largest"):
        return
    attributes = list(manifest.attributes)
    frame = manifest.frame[attributes].astype(str)
    labels = {value for column in attributes for value in frame[column].unique()}
    labels |= set(group_labels(frame, attributes)) if len(attributes) > 1 else set()
    if reference not in labels:
        raise ValueError(f"--reference {reference!r} is no group of {attributes}: use best, largest or one of "
                         f"{sorted(labels)}")


def generates_balanced(config: RunConfig) -> bool:
    """Whether the named dataset makes its own balanced counterfactual (a manifest never does)."""
    return config.manifest is None and config.dataset in datasets.GENERATES_BALANCED


def run_tags(config: RunConfig, dataset_name: str, metadata: dict[str, Any]) -> dict[str, str]:
    """Tags that make the MLflow UI's search and compare view useful; a comparison's child names its parent."""
    composition = metadata["splits"]["train"]["composition"]
    tags = {
        "genfair.model": config.model_name,
        "genfair.source": config.source_kind,
        "genfair.dataset": dataset_name,
        "genfair.seed": str(config.seed),
        "genfair.image_size": str(config.image_size),
        "genfair.objective": config.objective,
        "genfair.training_composition": config.composition,
        "genfair.composition": ", ".join(f"{group}: {count}" for group, count in composition.items()),
    }
    if config.parent_run_id:
        tags["mlflow.parentRunId"] = config.parent_run_id
    return tags


def run_metadata(
    config: RunConfig, dataset_name: str, manifest: Manifest, datamodule: FacesDataModule, model_config: Any,
    *, task: str,
) -> dict[str, Any]:
    """Plain, JSON-ready facts about the run: logged as MLflow params and saved with the result.

    ``model_config`` is the model's config dataclass, or a plain dict for models that have none
    (outputs on disk, a user's model).
    """
    splits = {
        split: {
            "images": len(frame),
            "subjects": int(frame["subject"].nunique()),
            "composition": {
                " / ".join(map(str, key if isinstance(key, tuple) else (key,))): int(count)
                for key, count in frame.drop_duplicates("subject").groupby(list(manifest.attributes)).size().items()
            },
        }
        for split in ("train", "val", "test")
        for frame in [datamodule.split_frame(split)]
    }
    return {
        "model": config.model_name,
        "source": config.source_kind,
        "task": task,
        "model_config": dataclasses.asdict(model_config) if dataclasses.is_dataclass(model_config) else model_config,
        "dataset": dataset_name,
        "manifest": str(manifest.source),
        "manifest_sha256": manifest.sha256,
        "attributes": list(manifest.attributes),
        "run": {k: v for k, v in dataclasses.asdict(config).items()
                if k not in ("tracking_uri", "cache_dir", "cache_mb", "parent_run_id")},
        "splits": splits,
        "versions": {"python": platform.python_version(),
                     **{name: package_version(name)
                        for name in (*VERSIONED_PACKAGES, *(FACE_PACKAGES if config.needs_faces_extra else ()))}},
    }


def package_version(package: str) -> str:
    """The installed version of ``package``, or ``"not installed"``."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def has_scale(model: str) -> bool:
    """Whether a model's config takes ``scale`` (the super-resolution models)."""
    return any(field.name == "scale" for field in dataclasses.fields(models.get(model).config))


