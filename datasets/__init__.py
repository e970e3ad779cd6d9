"""genfair.datasets: manifests, the synthetic Faces95-style generator, the Faces95 importer, loaders.

Importing the package registers the datasets (``names()`` lists them). The torch/Lightning side
(:class:`FacesDataModule`, :class:`ManifestImageDataset`, :func:`subject_disjoint_split`,
:func:`load_image`) is imported on first use, so reading or importing manifests stays light
(``pytorch_lightning`` alone takes seconds to import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .faces95 import import_faces95
from .manifest import (
    RESERVED_COLUMNS,
    SPLITS,
    SUPPORTED_SUFFIXES,
    Manifest,
    ManifestError,
    load_manifest,
)
from .registry import REGISTRY, DatasetBuilder, DatasetSpec, get, names, register
from .synthetic import SyntheticFacesConfig, ensure_synthetic_faces, generate_synthetic_faces

if TYPE_CHECKING:
    from .datamodule import FacesDataModule, ManifestImageDataset, load_image, subject_disjoint_split

__all__ = [
    "RESERVED_COLUMNS",
    "SPLITS",
    "SUPPORTED_SUFFIXES",
    "Manifest",
    "ManifestError",
    "load_manifest",
    "DatasetSpec",
    "DatasetBuilder",
    "REGISTRY",
    "register",
    "get",
    "names",
    "SyntheticFacesConfig",
    "generate_synthetic_faces",
    "ensure_synthetic_faces",
    "import_faces95",
    "FacesDataModule",
    "ManifestImageDataset",
    "load_image",
    "subject_disjoint_split",
]

_LAZY = {
    name: ".datamodule"
    for name in ("FacesDataModule", "ManifestImageDataset", "load_image", "subject_disjoint_split")
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
