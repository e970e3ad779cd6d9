"""The model registry: a lowercase name -> (LightningModule class, config class) and its facts.

Registration happens when :mod:`genfair.models` is imported: each model module decorates
its LightningModule with :func:`register`. Callers look a model up by the name a user typed:

    spec = get("vae")
    model = spec.module.from_config(spec.config(image_size=64, channels=3, seed=0))

Every :class:`ModelSpec` also says what the model does (``task``: ``"reconstruction"``,
``"upsampling"`` or ``"generation"``), a one-line ``description``, the ``baseline`` it should beat (another registry
key, or None) and its ``origin`` (``"built in"``, or ``"plugin <distribution> <version>"``).

Plugins (models from other pip-installed packages)
--------------------------------------------------
A distribution adds models by declaring one entry point per model in the group
``genfair.models`` (:data:`ENTRY_POINT_GROUP`), named by the model's registry key and pointing at
the LightningModule class::

    [project.entry-points."genfair.models"]
    theirs = "their_pkg.module:TheirModule"

    # their_pkg/module.py
    from genfair.models import register

    @register("theirs", config=TheirConfig, description="...", baseline="pca")
    class TheirModule(pl.LightningModule): ...

The one rule: loading the entry point imports its module, whose ``@register`` decorators register
the models, and the entry point's name must then be a registered key whose class is the entry
point's object. Plugins are loaded lazily, once, on the first :func:`get` or :func:`names` call
(not by importing :mod:`genfair.models`, and not by reading :data:`REGISTRY` directly). A plugin
that fails to load (import error, no such key, another class) is skipped with a warning naming its
distribution and the error, and what it registered is removed again; an entry point whose key is
already taken (a built-in, or an earlier plugin) is refused with a warning and not imported.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytorch_lightning as pl

__all__ = [
    "BUILT_IN",
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "TASKS",
    "ModelSpec",
    "get",
    "names",
    "register",
]

logger = logging.getLogger(__name__)

REQUIRED_CONFIG_FIELDS = ("image_size", "channels", "seed")
"""Fields every model config must have: a model learns its input shape and its seed from its config."""

TASKS = ("reconstruction", "upsampling", "generation")
"""What a model does: ``"reconstruction"`` (image in, same image out: the autoencoders),
``"upsampling"`` (``batch["lowres"]`` in, the full-size image out; its config has a ``scale``) or
``"generation"`` (a generator without an encoder: its output for an image is its closest sample)."""

UPSAMPLING_FIELD = "scale"
"""The config field that makes a model an upsampling model (its downsampling factor)."""

ENTRY_POINT_GROUP = "genfair.models"
"""The entry-point group plugins declare their models in (one entry point per model key)."""

BUILT_IN = "built in"
"""The :attr:`ModelSpec.origin` of genfair's own models."""

PLUGIN_ORIGIN = "plugin {name} {version}"
"""Format of the :attr:`ModelSpec.origin` of a plugin's models (distribution name and version)."""

PLUGIN_FAILED = "skipping genfair model plugin {entry_point!r} of distribution {distribution}"
"""Start of the warning logged when a plugin fails to load (followed by the error)."""

PLUGIN_CLASH = "refusing genfair model plugin {entry_point!r} of distribution {distribution}: model {entry_point!r} is already registered"
"""Start of the warning logged when a plugin's key is taken (followed by its owner)."""

REGISTRY: dict[str, ModelSpec] = {}
"""Registered models by name. Read it through :func:`get` and :func:`names` (which load plugins)."""

_ModuleT = TypeVar("_ModuleT", bound=type[pl.LightningModule])

_plugins_loaded = False
"""Whether :func:`_load_plugins` has run (it runs once; :func:`_reset_plugins` clears it)."""

_plugins_loading = False
"""Whether :func:`_load_plugins` is running (a plugin that calls get()/names() while importing)."""

_plugins_lock = threading.RLock()

_loading_origin: str | None = None
"""The origin recorded by :func:`register` while a plugin's module is being imported, else None."""


@dataclass(frozen=True)
class ModelSpec:
    """One registered model family.

    Two specs are equal when name, module, config and max_epochs are: the other fields describe
    the model and take no part in comparisons.

    Attributes:
        name: The registry key, lowercase (e.g. ``"vae"``).
        module: The LightningModule class; it has a classmethod ``from_config(config)``.
        config: The frozen, keyword-only config dataclass that ``module`` is built from.
        max_epochs: How many epochs the model trains for, whatever the user asks: None = the
            user's choice (``--epochs``); 1 = one pass over the training split (``pca``);
            0 = no training at all (``bicubic``: the pipeline skips ``fit``).
        task: ``"reconstruction"`` (image (B, C, H, W) -> image (B, C, H, W)), ``"upsampling"``
            (``lowres`` (B, C, H/s, W/s) -> image (B, C, H, W), ``s = config.scale``) or
            ``"generation"`` (image -> the generator's closest image, found by latent search).
        description: One line saying what the model is (``""`` when not given).
        baseline: The registry key of the model this one should beat (``"pca"`` for the learned
            autoencoders, ``"bicubic"`` for ``sr``), or None for the baselines themselves.
        origin: :data:`BUILT_IN` for genfair's own models, ``"plugin <distribution> <version>"``
            for models registered by an entry-point plugin.
    """

    name: str
    module: type[pl.LightningModule]
    config: type
    max_epochs: int | None = None
    task: str = field(default="reconstruction", compare=False)
    description: str = field(default="", compare=False)
    baseline: str | None = field(default=None, compare=False)
    origin: str = field(default=BUILT_IN, compare=False)


def register(
    name: str,
    *,
    config: type,
    max_epochs: int | None = None,
    task: str = "reconstruction",
    description: str = "",
    baseline: str | None = None,
) -> Callable[[_ModuleT], _ModuleT]:
    """Class decorator that registers a LightningModule under ``name`` with its config class.

    Args:
        name: Registry key: lowercase, non-empty, no surrounding whitespace, not yet registered.
        config: A frozen dataclass with at least the fields ``image_size``, ``channels`` and ``seed``.
        max_epochs: Fixed number of training epochs (see :attr:`ModelSpec.max_epochs`): None
            (the user's choice) or an int >= 0.
        task: One of :data:`TASKS`. ``"upsampling"`` exactly when ``config`` has a ``scale`` field.
        description: One line (no line breaks) saying what the model is.
        baseline: Registry key of the model this one should beat (lowercase, not ``name``
            itself), or None. It may be registered later: :func:`get` resolves it.

    Returns:
        A decorator that records the :class:`ModelSpec` in :data:`REGISTRY` (its ``origin`` is
        :data:`BUILT_IN`, or the plugin's distribution while a plugin is loading) and returns
        the class unchanged.

    Raises:
        ValueError: If ``name`` is not a lowercase stripped non-empty string, or is taken, or
            ``max_epochs`` is neither None nor an int >= 0, or ``task`` is not in :data:`TASKS`
            or does not match the config (``scale`` field), or ``description`` is not one line,
            or ``baseline`` is not None or a lowercase key other than ``name``.
        TypeError: If ``config`` is not a frozen dataclass with the required fields, or the
            decorated class is not a ``pl.LightningModule`` with a ``from_config`` classmethod.

    Example:
        >>> @register("vae", config=VAEConfig, baseline="pca")  # doctest: +SKIP
        ... class VAE(pl.LightningModule): ...
    """
    if not isinstance(name, str) or not name or name != name.strip().lower():
        raise ValueError(f"model names must be lowercase non-empty strings without surrounding spaces, got {name!r}")
    if name in REGISTRY:
        raise ValueError(f"model {name!r} is already registered to {REGISTRY[name].module.__qualname__}; pick another name or version it (e.g. {name + '.v2'!r})")
    if max_epochs is not None and (not isinstance(max_epochs, int) or isinstance(max_epochs, bool) or max_epochs < 0):
        raise ValueError(f"max_epochs for model {name!r} must be None (the user's choice) or an int >= 0, got {max_epochs!r}")
    if task not in TASKS:
        raise ValueError(f"task for model {name!r} must be one of {', '.join(map(repr, TASKS))}, got {task!r}")
    if not isinstance(description, str) or "\n" in description or "\r" in description:
        raise ValueError(f"description for model {name!r} must be one line of text, got {description!r}")
    if baseline is not None and (not isinstance(baseline, str) or not baseline or baseline != baseline.strip().lower() or baseline == name):
        raise ValueError(f"baseline for model {name!r} must be None or the lowercase registry key of another model, got {baseline!r}")
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise TypeError(f"config for model {name!r} must be a dataclass class, got {config!r}")
    if not config.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"config {config.__qualname__} for model {name!r} must be declared @dataclass(frozen=True, kw_only=True)")
    fields = {fld.name for fld in dataclasses.fields(config)}
    missing = [f for f in REQUIRED_CONFIG_FIELDS if f not in fields]
    if missing:
        raise TypeError(f"config {config.__qualname__} for model {name!r} lacks the required fields {missing}; every model config needs {list(REQUIRED_CONFIG_FIELDS)}")
    if (task == "upsampling") != (UPSAMPLING_FIELD in fields):
        expected = "upsampling" if UPSAMPLING_FIELD in fields else "reconstruction"
        raise ValueError(f"model {name!r} is registered with task={task!r} but its config {config.__qualname__} {'has' if UPSAMPLING_FIELD in fields else 'lacks'} a {UPSAMPLING_FIELD!r} field; use task={expected!r} (upsampling models, and only they, take a {UPSAMPLING_FIELD!r})")
    origin = _loading_origin or BUILT_IN

    def decorator(module: _ModuleT) -> _ModuleT:
        if not (isinstance(module, type) and issubclass(module, pl.LightningModule)):
            raise TypeError(f"model {name!r} must register a pytorch_lightning.LightningModule subclass, got {module!r}")
        if not callable(getattr(module, "from_config", None)):
            raise TypeError(f"model {name!r}: {module.__qualname__} must define a classmethod from_config(config)")
        REGISTRY[name] = ModelSpec(
            name=name, module=module, config=config, max_epochs=max_epochs,
            task=task, description=description, baseline=baseline, origin=origin,
        )
        logger.debug("registered model %r -> %s (%s)", name, module.__qualname__, origin)
        return module

    return decorator


def names() -> tuple[str, ...]:
    """Return the registered model names, sorted (loading the plugins on the first call).

    Returns:
        The keys of :data:`REGISTRY` in alphabetical order, e.g. ``("ae", "bicubic", ...)``.
    """
    _load_plugins()
    return tuple(sorted(REGISTRY))


def get(name: str) -> ModelSpec:
    """Look up a registered model by name (loading the plugins on the first call).

    Args:
        name: A registry key, exactly as registered (lowercase, e.g. ``"vae"``).

    Returns:
        The :class:`ModelSpec` registered under ``name``.

    Raises:
        ValueError: If ``name`` is not registered; the message lists the valid names and, when
            one is close, suggests it (``did you mean 'vae'?``). There is no default fallback.
    """
    _load_plugins()
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        pass
    valid = tuple(sorted(REGISTRY))
    close = difflib.get_close_matches(str(name).strip().lower(), valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown model {name!r}; valid models: {', '.join(map(repr, valid)) or '(none registered)'}{hint}")


def _distribution_of(entry_point: importlib.metadata.EntryPoint) -> tuple[str, str]:
    """(name, version) of the distribution that declares ``entry_point``; ``"?"`` where unknown."""
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return "?", "?"
    return (dist.metadata["Name"] or "?"), (dist.version or "?")


def _load_plugins() -> None:
    """Import every ``genfair.models`` entry point once (see the module docstring for the contract).

    Never raises for a plugin's fault: a broken plugin is logged as a warning and skipped, and
    the models it registered before failing are removed again.
    """
    global _plugins_loaded, _plugins_loading
    if _plugins_loaded:
        return
    with _plugins_lock:  # re-entrant: the loading thread itself gets in (and out) while the others wait
        if _plugins_loaded or _plugins_loading:
            return
        _plugins_loading = True
        try:
            try:
                entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            except Exception as error:  # noqa: BLE001 - broken metadata on sys.path must not break the built-ins
                logger.warning(f"could not list the {ENTRY_POINT_GROUP!r} entry points, so no model plugins are loaded: {type(error).__name__}: {error}")
                entry_points = ()
            for entry_point in sorted(entry_points, key=lambda ep: ep.name):
                _load_plugin(entry_point)
        finally:
            _plugins_loading = False
            _plugins_loaded = True


def _load_plugin(entry_point: importlib.metadata.EntryPoint) -> None:
    """Load one plugin entry point (see :func:`_load_plugins`), or warn and leave the registry as it was."""
    global _loading_origin
    dist_name, version = _distribution_of(entry_point)
    distribution = f"{dist_name} {version}"
    key = entry_point.name
    if key in REGISTRY:
        owner = REGISTRY[key]
        logger.warning(f"{PLUGIN_CLASH.format(entry_point=key, distribution=distribution)} ({owner.origin}: {owner.module.__qualname__}); the plugin must use another key (e.g. {key + '.' + dist_name.lower()!r})")
        return
    before = dict(REGISTRY)
    _loading_origin = PLUGIN_ORIGIN.format(name=dist_name, version=version)
    try:
        loaded = entry_point.load()
        if key not in REGISTRY:
            raise LookupError(f"importing {entry_point.value!r} registered no model {key!r}; decorate the class with @genfair.models.register({key!r}, config=...) or rename the entry point to the registered key")
        if REGISTRY[key].module is not loaded:
            raise LookupError(f"the entry point names {loaded!r}, but model {key!r} is registered to {REGISTRY[key].module.__qualname__}; point the entry point at the registered class")
    except Exception as error:  # noqa: BLE001 - a plugin's fault must not break the built-ins
        REGISTRY.clear()
        REGISTRY.update(before)
        logger.warning(f"{PLUGIN_FAILED.format(entry_point=key, distribution=distribution)} ({entry_point.value}): {type(error).__name__}: {error}")
    else:
        logger.debug("loaded model plugin %r from %s", key, distribution)
    finally:
        _loading_origin = None


def _reset_plugins() -> None:
    """Forget the loaded plugins (for tests): remove their models and load them again on the next call.

    Only the registry forgets: modules the plugins imported stay in ``sys.modules``.
    """
    global _plugins_loaded
    with _plugins_lock:
        for key in [key for key, spec in REGISTRY.items() if spec.origin != BUILT_IN]:
            del REGISTRY[key]
        _plugins_loaded = False
