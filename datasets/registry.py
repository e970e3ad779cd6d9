"""The dataset registry: named builders that produce a manifest on demand.

A builder is called as ``builder(cache_dir=..., image_size=..., seed=...)`` and returns a
:class:`DatasetSpec` (where the manifest is and which columns are the sensitive attributes).
Builders register with :func:`register` when :mod:`genfair.datasets` is imported.

Example:
    >>> from genfair import datasets
    >>> datasets.names()
    ('cosmo', 'digits', 'faces')
    >>> spec = datasets.get("faces")(cache_dir=Path("cache"), image_size=32, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .cosmo import CosmoConfig, ensure_cosmo
from .digits import DigitsConfig, ensure_digits
from .synthetic import SyntheticFacesConfig, ensure_synthetic_faces

__all__ = ["BALANCED_FACES", "COMPOSITIONS", "GENERATES_BALANCED", "SINGLE_CHANNEL", "DatasetSpec", "DatasetBuilder", "REGISTRY", "register", "get", "names"]

_KEY = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


@dataclass(frozen=True)
class DatasetSpec:
    """Where a built dataset's manifest is and what to audit it by.

    Attributes:
        name: the registry key that built it.
        manifest_path: the manifest file (CSV or Parquet).
        attributes: the sensitive attribute columns.
        composition: the training composition the builder made: ``"as-given"``, or
            ``"balanced"`` when it could generate a balanced counterfactual itself (the
            synthetic faces can; a dataset that cannot returns ``"as-given"`` and the caller
            balances by subsampling training subjects).
    """

    name: str
    manifest_path: Path
    attributes: tuple[str, ...]
    composition: str = "as-given"


class DatasetBuilder(Protocol):
    """``builder(*, cache_dir, image_size, seed, composition="as-given") -> DatasetSpec``."""

    def __call__(self, *, cache_dir: Path, image_size: int, seed: int, composition: str = "as-given") -> DatasetSpec: ...


#: Training compositions: the data as given, or balanced across the intersectional groups.
COMPOSITIONS = ("as-given", "balanced")
#: The datasets of single-channel images (``audit run`` reads them with one channel, not RGB).
SINGLE_CHANNEL = ("cosmo",)
#: The datasets whose builder generates a balanced counterfactual itself (others are subsampled).
GENERATES_BALANCED = ("faces",)
#: The balanced counterfactual of the synthetic faces: Faces95's 62 training subjects spread evenly
#: (lighter men, lighter women, darker men, darker women), so the audit panel stays the same people.
BALANCED_FACES = {"train_lighter_male": 15, "train_lighter_female": 16, "train_darker_male": 15,
                  "train_darker_female": 16}


ERR_COSMO_SIZE = "a cosmo patch's side in pixels"

REGISTRY: dict[str, DatasetBuilder] = {}
"""Registered builders by key (lowercase)."""


def register(name: str) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator: register a dataset builder under ``name``.

    Args:
        name: lowercase key users type (``faces``); letters, digits, ``_``, ``.`` and ``-``.

    Returns:
        A decorator that registers the builder and returns it unchanged.

    Raises:
        ValueError: ``name`` is not a lowercase key, or is taken.
    """
    if not isinstance(name, str) or not _KEY.match(name):
        raise ValueError(
            f"dataset key must be lowercase letters, digits, '_', '.' or '-' (e.g. 'faces'), got {name!r}"
        )
    if name in REGISTRY:
        raise ValueError(f"dataset {name!r} is already registered; pick a new key (e.g. '{name}.v2')")

    def decorator(builder: DatasetBuilder) -> DatasetBuilder:
        REGISTRY[name] = builder
        return builder

    return decorator


def get(name: str) -> DatasetBuilder:
    """The builder registered under ``name``.

    Raises:
        ValueError: no such key; the message lists the valid keys and a close match, if any.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    valid = ", ".join(repr(key) for key in names())
    close = difflib.get_close_matches(str(name).lower(), list(REGISTRY), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown dataset {name!r}; valid keys: {valid}{hint}")


def names() -> tuple[str, ...]:
    """The registered keys, sorted."""
    return tuple(sorted(REGISTRY))


@register("faces")
def build_synthetic_faces(*, cache_dir: Path, image_size: int, seed: int, composition: str = "as-given") -> DatasetSpec:
    """Synthetic Faces95-style faces (Faces95's skewed training set, balanced test panel), cached.

    Args:
        cache_dir: folder for cached datasets.
        image_size: image side in pixels.
        seed: generator seed.
        composition: ``"as-given"`` (43/6/12/1 training people) or ``"balanced"``
            (:data:`BALANCED_FACES`: the same 62 training people spread evenly). The validation
            and audit panels are the same people, images and paths in both.

    Returns:
        The spec; attributes ``("gender", "skin_tone")``.

    Raises:
        ValueError: an unknown composition.
    """
    _check_composition(composition)
    counts = BALANCED_FACES if composition == "balanced" else {}
    manifest = ensure_synthetic_faces(SyntheticFacesConfig(image_size=image_size, seed=seed, **counts), cache_dir)
    return DatasetSpec(name="faces", manifest_path=manifest, attributes=("gender", "skin_tone"), composition=composition)


def _check_composition(composition: str) -> None:
    if composition not in COMPOSITIONS:
        raise ValueError(f"composition must be one of {list(COMPOSITIONS)}, got {composition!r}")


@register("digits")
def build_digits(*, cache_dir: Path, image_size: int, seed: int, composition: str = "as-given") -> DatasetSpec:
    """scikit-learn's 1,797 handwritten digits (offline), one image per subject, cached.

    Greyscale PNGs upscaled (bicubic) to ``image_size``; split seeded and stratified by digit
    (about 70/10/20). Each image is its own subject: the set records no writer ids.

    Args:
        cache_dir: folder for cached datasets.
        image_size: image side in pixels (>= 8).
        seed: split seed.
        composition: only ``"as-given"`` is generated here; a balanced composition is left to
            the caller (returned spec says ``"as-given"``).

    Returns:
        The spec; attributes ``("digit",)``.
    """
    _check_composition(composition)
    manifest = ensure_digits(DigitsConfig(image_size=image_size, seed=seed), cache_dir)
    return DatasetSpec(name="digits", manifest_path=manifest, attributes=("digit",))


@register("cosmo")
def build_cosmo(*, cache_dir: Path, image_size: int, seed: int, composition: str = "as-given") -> DatasetSpec:
    """Simulated 2-D log-normal density fields (:mod:`genfair.datasets.cosmo`), cut into patches, cached.

    Single channel; a patch's subject is the box it was cut from; split by box.

    Args:
        cache_dir: folder for cached datasets.
        image_size: patch side in pixels (8..256).
        seed: the simulation's seed (the boxes, hence the split, depend on it).
        composition: only ``"as-given"`` is generated here (see :func:`build_digits`).

    Returns:
        The spec; attribute ``("environment",)``, each patch's dominant 2-D T-web environment.

    Raises:
        ValueError: an unknown composition, or a patch side outside 8..256.
    """
    _check_composition(composition)
    if not 8 <= image_size <= 256:
        raise ValueError(f"{ERR_COSMO_SIZE} (--image-size) must be in [8, 256] for the cosmo dataset, got {image_size}; "
                         f"fix: pass 64 (the default) or another size in that range")
    manifest = ensure_cosmo(CosmoConfig(image_size=image_size, seed=seed), cache_dir)
    return DatasetSpec(name="cosmo", manifest_path=manifest, attributes=("environment",))
