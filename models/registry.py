"""The model registry: a lowercase name -> (LightningModule class, config class).

Registration happens when :mod:`genfair.models` is imported: each model module decorates
its LightningModule with :func:`register`. Callers look a model up by the name a user typed:

    spec = get("vae")
    model = spec.module.from_config(spec.config(image_size=64, channels=3, seed=0))
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytorch_lightning as pl

__all__ = ["REGISTRY", "ModelSpec", "get", "names", "register"]

logger = logging.getLogger(__name__)

REQUIRED_CONFIG_FIELDS = ("image_size", "channels", "seed")
"""Fields every model config must have: a model learns its input shape and its seed from its config."""

REGISTRY: dict[str, ModelSpec] = {}
"""Registered models by name. Read it through :func:`get` and :func:`names`."""

_ModuleT = TypeVar("_ModuleT", bound=type[pl.LightningModule])


@dataclass(frozen=True)
class ModelSpec:
    """One registered model family.

    Attributes:
        name: The registry key, lowercase (e.g. ``"vae"``).
        module: The LightningModule class; it has a classmethod ``from_config(config)``.
        config: The frozen, keyword-only config dataclass that ``module`` is built from.
        max_epochs: How many epochs the model trains for, whatever the user asks: None = the
            user's choice (``--epochs``); 1 = one pass over the training split (``pca``);
            0 = no training at all (``bicubic``: the pipeline skips ``fit``).
    """

    name: str
    module: type[pl.LightningModule]
    config: type
    max_epochs: int | None = None


def register(name: str, *, config: type, max_epochs: int | None = None) -> Callable[[_ModuleT], _ModuleT]:
    """Class decorator that registers a LightningModule under ``name`` with its config class.

    Args:
        name: Registry key: lowercase, non-empty, no surrounding whitespace, not yet registered.
        config: A frozen dataclass with at least the fields ``image_size``, ``channels`` and ``seed``.
        max_epochs: Fixed number of training epochs (see :attr:`ModelSpec.max_epochs`): None
            (the user's choice) or an int >= 0.

    Returns:
        A decorator that records ``ModelSpec(name, module, config, max_epochs)`` in
        :data:`REGISTRY` and returns the class unchanged.

    Raises:
        ValueError: If ``name`` is not a lowercase stripped non-empty string, or is taken, or
            ``max_epochs`` is neither None nor an int >= 0.
        TypeError: If ``config`` is not a frozen dataclass with the required fields, or the
            decorated class is not a ``pl.LightningModule`` with a ``from_config`` classmethod.

    Example:
        >>> @register("vae", config=VAEConfig)  # doctest: +SKIP
        ... class VAE(pl.LightningModule): ...
    """
    if not isinstance(name, str) or not name or name != name.strip().lower():
        raise ValueError(f"model names must be lowercase non-empty strings without surrounding spaces, got {name!r}")
    if name in REGISTRY:
        raise ValueError(f"model {name!r} is already registered to {REGISTRY[name].module.__qualname__}; pick another name or version it (e.g. {name + '.v2'!r})")
    if max_epochs is not None and (not isinstance(max_epochs, int) or isinstance(max_epochs, bool) or max_epochs < 0):
        raise ValueError(f"max_epochs for model {name!r} must be None (the user's choice) or an int >= 0, got {max_epochs!r}")
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise TypeError(f"config for model {name!r} must be a dataclass class, got {config!r}")
    if not config.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"config {config.__qualname__} for model {name!r} must be declared @dataclass(frozen=True, kw_only=True)")
    missing = [f for f in REQUIRED_CONFIG_FIELDS if f not in {fld.name for fld in dataclasses.fields(config)}]
    if missing:
        raise TypeError(f"config {config.__qualname__} for model {name!r} lacks the required fields {missing}; every model config needs {list(REQUIRED_CONFIG_FIELDS)}")

    def decorator(module: _ModuleT) -> _ModuleT:
        if not (isinstance(module, type) and issubclass(module, pl.LightningModule)):
            raise TypeError(f"model {name!r} must register a pytorch_lightning.LightningModule subclass, got {module!r}")
        if not callable(getattr(module, "from_config", None)):
            raise TypeError(f"model {name!r}: {module.__qualname__} must define a classmethod from_config(config)")
        REGISTRY[name] = ModelSpec(name=name, module=module, config=config, max_epochs=max_epochs)
        logger.debug("registered model %r -> %s", name, module.__qualname__)
        return module

    return decorator


def names() -> tuple[str, ...]:
    """Return the registered model names, sorted.

    Returns:
        The keys of :data:`REGISTRY` in alphabetical order, e.g. ``("vae",)``.
    """
    return tuple(sorted(REGISTRY))


def get(name: str) -> ModelSpec:
    """Look up a registered model by name.

    Args:
        name: A registry key, exactly as registered (lowercase, e.g. ``"vae"``).

    Returns:
        The :class:`ModelSpec` registered under ``name``.

    Raises:
        ValueError: If ``name`` is not registered; the message lists the valid names and, when
            one is close, suggests it (``did you mean 'vae'?``). There is no default fallback.
    """
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        pass
    valid = names()
    close = difflib.get_close_matches(str(name).strip().lower(), valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown model {name!r}; valid models: {', '.join(map(repr, valid)) or '(none registered)'}{hint}")
