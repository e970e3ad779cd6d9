"""The run's face tools: dlib's face detector, landmark predictors and face recogniser, offline.

dlib reads images, so it is an instrument of the composition root: the pure core
(:mod:`genfair.audit.identity`) only compares the numbers it gives. The tools come with the
``faces`` extra (``pip install 'genfair[faces]'``: the ``dlib-bin`` wheel and the
``face-recognition-models`` package, whose files are found on disk without importing it), are
imported only when a run asks for them (``audit run --identity`` or ``--skin-mask landmarks``)
and load once per process.

Per batch of originals:

1. each image is resized to :data:`FACE_SIDE` x :data:`FACE_SIDE` (bicubic; dlib's recogniser
   works on 150 x 150 face chips, and its frontal detector misses faces much smaller);
2. the frontal (HOG) detector looks for a face; the largest it finds is the face
   (``face_found``). genfair's images are face crops, so where it finds none the whole image is
   the face's rectangle;
3. the 5-point predictor in that rectangle aligns the face for the recogniser (a 128-D embedding,
   :func:`face_embeddings`); a model's outputs are embedded at their originals' landmarks, so the
   drift measures what the model changed, not where a detector looked;
4. where a face was found, the 68-point predictor gives the landmarks of the skin mask
   (:func:`landmark_skin_mask`: cheeks, forehead and nose bridge); elsewhere the mask stays the
   central ellipse (:func:`genfair.audit.skin.central_face_mask`).

Licences of the shipped models: the recogniser (``dlib_face_recognition_resnet_model_v1``) is
public domain; the 5-point predictor was trained on dlib's own annotations (released under CC0);
the 68-point predictor (the skin masks only) was trained on iBUG 300-W, whose licence excludes
commercial use. dlib and its frontal detector: Boost Software License.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from genfair.audit.panel import SKIN_MASK_KINDS

__all__ = [
    "FACES_EXTRA",
    "FACE_SIDE",
    "MASK_CENTRAL",
    "MASK_LANDMARKS",
    "MASK_MANIFEST",
    "Faces",
    "MissingFaceTools",
    "face_embeddings",
    "landmark_skin_mask",
    "locate_faces",
    "read_batch",
    "require_face_tools",
    "skin_masks",
]

#: Side, in pixels, of the square each image is resized to before dlib reads it.
FACE_SIDE = 150
#: What fixes a missing face toolkit.
FACES_EXTRA = "pip install 'genfair[faces]'"
#: Values of the per-image ``skin_mask`` column: where the skin region came from.
MASK_LANDMARKS, MASK_CENTRAL, MASK_MANIFEST = SKIN_MASK_KINDS
MISSING_MSG = "genfair's face tools need dlib and its models (the faces extra), which are not installed"
MODEL_FILES = {
    "five_point": "shape_predictor_5_face_landmarks.dat",
    "sixty_eight": "shape_predictor_68_face_landmarks.dat",
    "recogniser": "dlib_face_recognition_resnet_model_v1.dat",
}
#: The 68 landmarks' indices (iBUG 300-W order, 0-based) of the regions the mask is drawn from.
_JAW_LEFT, _JAW_RIGHT = (1, 2, 3, 4), (15, 14, 13, 12)
_BROWS = tuple(range(17, 27))
_NOSE_TOP, _NOSE_TIP, _NOSE_BOTTOM = 27, 30, 33
_NOSE_LEFT, _NOSE_RIGHT = 31, 35
_LID_LEFT, _LID_RIGHT = (40, 41), (47, 46)  # the lower eyelids, inner point first
_EYE_INNER_LEFT, _EYE_INNER_RIGHT = 39, 42
_MOUTH_LEFT, _MOUTH_RIGHT = 48, 54


class MissingFaceTools(ImportError):
    """dlib or its model files are not installed; the message says how to install them."""


def _models_folder() -> Path:
    """The folder of ``face-recognition-models``' files, found without importing the package.

    Importing it needs ``pkg_resources``, which recent setuptools no longer has; the files are
    plain data beside its ``__init__``.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingFaceTools(f"{MISSING_MSG}: no face-recognition-models package; {FACES_EXTRA}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    missing = [name for name in MODEL_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise MissingFaceTools(f"{MISSING_MSG}: {folder} lacks {', '.join(missing)}; {FACES_EXTRA}")
    return folder


def _dlib() -> Any:
    """The dlib module, or :class:`MissingFaceTools`."""
    try:
        import dlib
    except ImportError as err:
        raise MissingFaceTools(f"{MISSING_MSG}: no module dlib; {FACES_EXTRA}") from err
    return dlib


def require_face_tools() -> None:
    """Check that dlib and the model files are installed (loading nothing).

    Raises:
        MissingFaceTools: one line naming what is missing and :data:`FACES_EXTRA`.
    """
    _dlib()
    _models_folder()


@functools.cache
def _model(name: str) -> Any:
    """One dlib model, loaded once per process: ``detector`` or a key of :data:`MODEL_FILES`."""
    dlib = _dlib()
    if name == "detector":
        return dlib.get_frontal_face_detector()
    path = str(_models_folder() / MODEL_FILES[name])
    return dlib.face_recognition_model_v1(path) if name == "recogniser" else dlib.shape_predictor(path)


@dataclass(frozen=True)
class Faces:
    """Where the faces of a batch are, as dlib located them (:func:`locate_faces`).

    Attributes:
        found: ``(N,)`` bool, whether the detector found a face (else the whole image was used).
        shapes: N dlib ``full_object_detection`` of 5 points, in the :data:`FACE_SIDE` frame.
        landmarks: ``(N, 68, 2)`` float64 ``(x, y)`` pixel coordinates in the image's own frame
            (pixel centres at integers), NaN where no face was found; None when not asked for.
        image_size: the images' ``(H, W)``.
    """

    found: np.ndarray
    shapes: list[Any]
    landmarks: np.ndarray | None
    image_size: tuple[int, int]


def _to_dlib(images: torch.Tensor) -> list[np.ndarray]:
    """``(N, C, H, W)`` in [0, 1] -> N contiguous ``(150, 150, 3)`` uint8 RGB arrays (grey repeated)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W) floats in [0, 1], got {tuple(images.shape)}")
    resized = F.interpolate(images.detach().float().cpu(), size=(FACE_SIDE, FACE_SIDE), mode="bicubic",
                            align_corners=False, antialias=True)
    if resized.shape[1] == 1:
        resized = resized.expand(-1, 3, -1, -1)
    pixels = (resized.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [np.ascontiguousarray(image) for image in pixels]


def locate_faces(images: torch.Tensor, *, landmarks: bool = True) -> Faces:
    """Find the face of each image and its landmarks (see the module docstring).

    Args:
        images: ``(N, C, H, W)`` float in [0, 1], C 1 or 3 (the originals).
        landmarks: also predict the 68 landmarks where a face was found.

    Returns:
        The :class:`Faces`.

    Raises:
        MissingFaceTools: dlib or its models are not installed.
        ValueError: images of the wrong shape.
    """
    dlib = _dlib()
    detector, five = _model("detector"), _model("five_point")
    sixty_eight = _model("sixty_eight") if landmarks else None
    height, width = int(images.shape[-2]), int(images.shape[-1])
    whole = dlib.rectangle(0, 0, FACE_SIDE - 1, FACE_SIDE - 1)
    found, shapes = np.zeros(len(images), dtype=bool), []
    points = np.full((len(images), 68, 2), np.nan) if landmarks else None
    for i, image in enumerate(_to_dlib(images)):
        detections = list(detector(image, 0))
        found[i] = bool(detections)
        box = max(detections, key=lambda d: d.area()) if detections else whole
        shapes.append(five(image, box))
        if sixty_eight is not None and found[i]:
            shape = sixty_eight(image, box)
            xy = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            # from the 150 x 150 frame to the image's, pixel centres on integers in both
            points[i] = (xy + 0.5) * np.array([width / FACE_SIDE, height / FACE_SIDE]) - 0.5
    return Faces(found=found, shapes=shapes, landmarks=points, image_size=(height, width))


def face_embeddings(images: torch.Tensor, faces: Faces) -> torch.Tensor:
    """dlib's 128-D face embedding of each image, aligned at ``faces``' 5-point landmarks.

    ``images`` may be the images ``faces`` were located in or a model's outputs for them: the
    same face position is read in both.

    Args:
        images: ``(N, C, H, W)`` float in [0, 1], of ``faces.image_size``.
        faces: :func:`locate_faces` of these images (or of their originals).

    Returns:
        ``(N, 128)`` float64 tensor on the CPU.

    Raises:
        MissingFaceTools: dlib or its models are not installed.
        ValueError: ``images`` and ``faces`` differ in count or size.
    """
    if len(images) != len(faces.shapes) or tuple(images.shape[-2:]) != faces.image_size:
        raise ValueError(f"images {tuple(images.shape)} do not match the located faces: {len(faces.shapes)} of "
                         f"size {faces.image_size}")
    dlib = _dlib()
    if not len(images):
        return torch.zeros(0, 128, dtype=torch.float64)
    batch_faces = []
    for shape in faces.shapes:
        one = dlib.full_object_detections()
        one.append(shape)
        batch_faces.append(one)
    # dlib's batch overload: one call for the whole batch (its network batches the face chips)
    found = _model("recogniser").compute_face_descriptor(_to_dlib(images), batch_faces)
    return torch.tensor(np.array([np.asarray(vectors[0]) for vectors in found], dtype=np.float64))


def _toward(a: np.ndarray, b: np.ndarray, share: float) -> np.ndarray:
    return a + share * (b - a)


def _skin_polygons(points: np.ndarray) -> list[np.ndarray]:
    """The cheeks, forehead and nose bridge as polygons (``(K, 2)`` x, y) from 68 landmarks.

    Cheeks: the jaw pulled a fifth of the way toward the nose tip (off the face's edge), the mouth
    corner, the nostril and the lower eyelid pulled a fifth toward the mouth corner (off the eye).
    Forehead: from 0.15 to 0.5 nose lengths (nose top to bottom) above the eyebrows. Nose bridge:
    nose top to tip, 0.3 of the inner eye corners' distance wide.
    """
    p = points
    cheeks = []
    for jaw, mouth, nostril, lid in ((_JAW_LEFT, _MOUTH_LEFT, _NOSE_LEFT, _LID_LEFT),
                                     (_JAW_RIGHT, _MOUTH_RIGHT, _NOSE_RIGHT, _LID_RIGHT)):
        edge = [_toward(p[i], p[_NOSE_TIP], 0.2) for i in jaw]
        below_eye = [_toward(p[i], p[mouth], 0.2) for i in lid]
        cheeks.append(np.array([*edge, p[mouth], p[nostril], *below_eye]))
    up = p[_NOSE_TOP] - p[_NOSE_BOTTOM]  # one nose length, pointing up the face
    brows = p[list(_BROWS)]
    forehead = np.concatenate([brows + 0.15 * up, (brows + 0.5 * up)[::-1]])
    along = p[_NOSE_TIP] - p[_NOSE_TOP]
    across = np.array([-along[1], along[0]]) / max(float(np.hypot(*along)), 1e-9)
    half = 0.15 * float(np.hypot(*(p[_EYE_INNER_RIGHT] - p[_EYE_INNER_LEFT]))) * across
    bridge = np.array([p[_NOSE_TOP] - half, p[_NOSE_TOP] + half, p[_NOSE_TIP] + half, p[_NOSE_TIP] - half])
    return [*cheeks, forehead, bridge]


def landmark_skin_mask(landmarks: np.ndarray, image_size: tuple[int, int]) -> torch.Tensor:
    """The skin of the cheeks, forehead and nose bridge, drawn from a face's 68 landmarks.

    Eyes, brows, nostrils, mouth and the face's outline (hair, background) stay outside.

    Args:
        landmarks: ``(68, 2)`` float ``(x, y)`` pixel coordinates in the image (iBUG 300-W order).
        image_size: the image's ``(H, W)``.

    Returns:
        ``(1, H, W)`` float32 tensor of 0s and 1s (parts of polygons outside the image are cut off).

    Raises:
        ValueError: ``landmarks`` is not a finite ``(68, 2)`` array.
    """
    from PIL import Image, ImageDraw

    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (68, 2) or not np.isfinite(points).all():
        raise ValueError(f"landmarks must be a finite (68, 2) array of x, y pixel coordinates, got {points.shape}")
    height, width = image_size
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in _skin_polygons(points):
        draw.polygon([(float(x), float(y)) for x, y in polygon], fill=1)
    return torch.from_numpy(np.array(canvas, dtype=np.float32)).unsqueeze(0)


def skin_masks(faces: Faces) -> tuple[torch.Tensor, list[str]]:
    """Each image's skin mask: from its landmarks where a face was found, else the central ellipse.

    Args:
        faces: :func:`locate_faces` with ``landmarks=True``.

    Returns:
        ``(N, 1, H, W)`` float32 masks and, per image, :data:`MASK_LANDMARKS` or :data:`MASK_CENTRAL`
        (also for a landmark mask that came out empty).

    Raises:
        ValueError: ``faces`` holds no landmarks.
    """
    from genfair.audit.skin import central_face_mask

    if faces.landmarks is None:
        raise ValueError("skin_masks needs the 68 landmarks: locate the faces with landmarks=True")
    central = central_face_mask(faces.image_size)
    masks, kinds = [], []
    for found, points in zip(faces.found, faces.landmarks, strict=True):
        mask = landmark_skin_mask(points, faces.image_size) if found else None
        usable = mask is not None and bool(mask.any())
        masks.append(mask if usable else central)
        kinds.append(MASK_LANDMARKS if usable else MASK_CENTRAL)
    return (torch.stack(masks) if masks else central.new_zeros(0, 1, *faces.image_size)), kinds


def read_batch(originals: torch.Tensor, outputs: torch.Tensor, *, identity: bool, landmark_masks: bool,
               masks: torch.Tensor | None = None) -> dict[str, Any]:
    """What the face tools add to one batch's scores: keyword arguments of :func:`genfair.audit.panel.score_batch`.

    Args:
        originals: ``(N, C, H, W)`` float in [0, 1].
        outputs: ``(N, C, H, W)`` the model's outputs for them.
        identity: embed originals and outputs (``embeddings``) for the identity drift.
        landmark_masks: draw each colour image's skin mask from its landmarks (a manifest's own
            masks, ``masks``, win: they are the user's).
        masks: the manifest's ``(N, 1, H, W)`` masks, or None.

    Returns:
        ``face_found`` (``(N,)`` bool tensor); with ``identity`` ``embeddings`` (outputs',
        originals'); ``masks`` and ``mask_kinds`` (per image ``landmarks``, ``central`` or
        ``manifest``).
    """
    colour = originals.shape[1] == 3
    drawn = landmark_masks and colour and masks is None
    faces = locate_faces(originals, landmarks=drawn)
    read: dict[str, Any] = {"face_found": torch.from_numpy(faces.found.copy())}
    if identity:
        read["embeddings"] = (face_embeddings(outputs, faces), face_embeddings(originals, faces))
    if drawn:
        read["masks"], read["mask_kinds"] = skin_masks(faces)
    elif masks is not None:
        read["masks"], read["mask_kinds"] = masks, [MASK_MANIFEST] * len(originals)
    return read

