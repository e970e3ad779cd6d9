"""genfair.datasets: manifests, the synthetic Faces95-style generator, digits, the Faces95 importer, loaders.

Importing the package registers the datasets (``names()`` lists them: ``cosmo``, ``digits``, ``faces``). The
torch/Lightning side (:class:`FacesDataModule`, :class:`ManifestImageDataset`, :class:`DecodedImages`,
:func:`load_image`, :func:`load_mask`, :func:`load_output`, :data:`LOWRES_SCALES`) is imported on first use, so reading
or importing manifests stays light (``pytorch_lightning`` alone takes seconds to import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .celeba import import_celeba
from .cosmo import ENVIRONMENT_COLUMN, ENVIRONMENTS, CosmoConfig, ensure_cosmo, generate_cosmo
from .digits import DigitsConfig, ensure_digits, generate_digits
from .faces95 import import_faces95
from .fairface import import_fairface
from .binning import Bins, parse_bins
from .manifest import (
    MASK_COLUMN,
    MISSING_GROUP,
    MISSING_RULES,
    RESERVED_COLUMNS,
    SPLITS,
    SUPPORTED_SUFFIXES,
    Manifest,
    ManifestError,
    load_manifest,
)
from .registry import COMPOSITIONS, GENERATES_BALANCED, REGISTRY, SINGLE_CHANNEL, DatasetBuilder, DatasetSpec, get, names, register
from .splits import subject_disjoint_split
from .synthetic import SyntheticFacesConfig, ensure_synthetic_faces, generate_synthetic_faces
from .utkface import import_utkface

if TYPE_CHECKING:
    from .datamodule import (
        DEFAULT_CACHE_MB,
        FITS,
        LOWRES_SCALES,
        SAMPLERS,
        FacesDataModule,
        ManifestImageDataset,
        load_image,
        load_mask,
        load_output,
    )
    from .decoded import DecodedImages

__all__ = [
    "Bins",
    "parse_bins",
    "MASK_COLUMN",
    "MISSING_GROUP",
    "MISSING_RULES",
    "RESERVED_COLUMNS",
    "SPLITS",
    "SUPPORTED_SUFFIXES",
    "Manifest",
    "ManifestError",
    "load_manifest",
    "COMPOSITIONS",
    "GENERATES_BALANCED",
    "SINGLE_CHANNEL",
    "DatasetSpec",
    "DatasetBuilder",
    "REGISTRY",
    "register",
    "get",
    "names",
    "SyntheticFacesConfig",
    "generate_synthetic_faces",
    "ensure_synthetic_faces",
    "CosmoConfig",
    "ENVIRONMENTS",
    "ENVIRONMENT_COLUMN",
    "ensure_cosmo",
    "generate_cosmo",
    "DigitsConfig",
    "generate_digits",
    "ensure_digits",
    "import_faces95",
    "import_utkface",
    "import_fairface",
    "import_celeba",
    "DEFAULT_CACHE_MB",
    "DecodedImages",
    "FITS",
    "LOWRES_SCALES",
    "SAMPLERS",
    "FacesDataModule",
    "ManifestImageDataset",
    "load_image",
    "load_mask",
    "load_output",
    "subject_disjoint_split",
]

_LAZY = {
    name: ".datamodule"
    for name in (
        "DEFAULT_CACHE_MB",
        "DecodedImages",
        "FITS",
        "LOWRES_SCALES",
        "SAMPLERS",
        "FacesDataModule",
        "ManifestImageDataset",
        "load_image",
        "load_mask",
        "load_output",
    )
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
