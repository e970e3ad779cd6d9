"""The user's own model: load it from a spec, run it on a batch, check what it returns.

``audit run --model`` takes a registry key (``vae``, ``sr.v2``) or one of these specs, which
:func:`is_user_model_spec` tells apart:

- ``path/to/file.py:factory``: the file is imported as a fresh module and ``factory()`` (no
  arguments) must return a :class:`torch.nn.Module`;
- ``package.module:factory``: the same, with the module imported by name (it must be installed,
  or its folder be on ``PYTHONPATH``);
- ``path/to/model.pt`` or ``.pth``: a TorchScript file (``torch.jit.save(torch.jit.script(model),
  path)``), loaded onto the CPU.

Every failure is a :class:`ValueError` with one line that names the option, the value and the fix.
The model's forward takes the images it is audited on, (N, C, H, W) float in [0, 1] (for an
upsampling audit the low-resolution images (N, C, H/s, W/s)), and must return (N, C, H, W)
float; :func:`check_outputs` checks that and clamps to [0, 1].

Importing this module is cheap: torch is imported inside the functions that use it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "TORCHSCRIPT_SUFFIXES",
    "check_outputs",
    "is_user_model_spec",
    "load_user_model",
    "run_user_model",
]

logger = logging.getLogger(__name__)

TORCHSCRIPT_SUFFIXES = (".pt", ".pth")
"""File suffixes (lowercase) read as TorchScript files."""

SPEC_FORMS = "FILE.py:FACTORY, PACKAGE.MODULE:FACTORY or a TorchScript FILE.pt/.pth"
"""The spec forms, as error messages list them."""

# Fragments of the error messages (tests match on them).
NOT_A_SPEC = "is not a model spec"
FILE_NOT_FOUND = "file not found"
MODULE_NOT_FOUND = "module not found"
IMPORT_FAILED = "failed while importing"
NO_SUCH_CALLABLE = "has no callable"
NOT_CALLABLE = "is not callable"
FACTORY_RAISED = "raised"
NOT_A_MODULE = "not a torch.nn.Module"
NOT_TORCHSCRIPT = "is not a TorchScript file"
NOT_A_TENSOR = "not a torch.Tensor"
NOT_FLOATING = "not floating point"
WRONG_SHAPE = "output shape"
NOT_FINITE = "non-finite"
FORWARD_RAISED = "the model's forward raised"

_MODULE_PREFIX = "genfair_user_model_"
"""Prefix of the ``sys.modules`` names that ``FILE.py:FACTORY`` files are imported under."""


def is_user_model_spec(text: object) -> bool:
    """Whether ``--model`` names the user's own model rather than a registry key.

    Registry keys are lowercase words with dots (``vae``, ``sr.v2``): never a ``:``, never a
    ``.pt``/``.pth`` ending.

    Args:
        text: What the user typed.

    Returns:
        True for ``X:Y`` specs and for paths ending in ``.pt`` or ``.pth`` (any case).
    """
    if not isinstance(text, str):
        return False
    return ":" in text or text.lower().endswith(TORCHSCRIPT_SUFFIXES)


def load_user_model(spec: str, *, option: str = "--model") -> torch.nn.Module:
    """Load the user's model from a spec (see the module docstring for the forms).

    ``FILE.py`` is imported as a new module with a unique name (``genfair_user_model_<hex>``),
    its folder on ``sys.path`` while it is imported (so it can import its neighbours).

    Args:
        spec: ``path/to/file.py:factory``, ``package.module:factory`` or ``path/to/model.pt``.
        option: The command-line option the spec came from, for the error messages.

    Returns:
        The model, as the factory returned it or (TorchScript) on the CPU.

    Raises:
        ValueError: One line naming ``option``, ``spec`` and the fix, when the spec has none of
            the forms, the file or module is not found, importing it fails, the callable is
            missing or not callable, the factory raises or returns something other than a
            :class:`torch.nn.Module`, or a ``.pt``/``.pth`` file is not TorchScript.
    """
    if not is_user_model_spec(spec):
        raise ValueError(f"{option} {spec!r} {NOT_A_SPEC}: give a registered model name or {SPEC_FORMS}")
    if spec.lower().endswith(TORCHSCRIPT_SUFFIXES):
        return _load_torchscript(spec, option=option)
    target, _, attribute = spec.rpartition(":")
    if not target or not attribute:
        raise ValueError(f"{option} {spec!r} {NOT_A_SPEC}: both sides of ':' must be given, as in {SPEC_FORMS}")
    if target.endswith(".py") or "/" in target or "\\" in target:
        module, where = _import_file(spec, target, option=option), f"file {target!r}"
    else:
        module, where = _import_module(spec, target, option=option), f"module {target!r}"
    model = _call_factory(spec, module, attribute, where, option=option)
    logger.debug("loaded the user's model %s from %s", type(model).__qualname__, spec)
    return model


def check_outputs(
    outputs: Any,
    *,
    inputs_shape: Sequence[int],
    expected_shape: Sequence[int],
    option: str = "--model",
) -> tuple[torch.Tensor, int]:
    """Check what the user's model returned and clamp it to [0, 1].

    Pure: no logging, and ``outputs`` is not modified (the clamped tensor is a new one).

    Args:
        outputs: What the model's forward returned; must be a floating tensor (N, C, H, W).
        inputs_shape: The shape of what the model was given, (N, C, h, w), for the messages.
        expected_shape: The shape the outputs must have, (N, C, H, W).
        option: The command-line option the model came from, for the error messages.

    Returns:
        ``(clamped, n_clamped)``: the outputs clamped to [0, 1] (same shape, dtype and device),
        and how many values lay outside [0, 1] (the caller warns when it is not 0).

    Raises:
        ValueError: One line naming ``option``, when ``outputs`` is not a tensor, not floating
            point, not of ``expected_shape``, or holds NaN or infinite values (with their count).
    """
    import torch

    if not isinstance(outputs, torch.Tensor):
        raise ValueError(f"{option}: the model returned a {type(outputs).__qualname__}, {NOT_A_TENSOR}; its forward must return one (N, C, H, W) float tensor in [0, 1]")
    if not outputs.is_floating_point():
        raise ValueError(f"{option}: the model returned a tensor of dtype {outputs.dtype}, {NOT_FLOATING}; return float pixel values in [0, 1] (e.g. outputs.float() / 255 for 8-bit images)")
    if tuple(outputs.shape) != tuple(expected_shape):
        hint = ""
        if outputs.ndim == 4 and len(inputs_shape) == 4 and outputs.shape[-1] % inputs_shape[-1] == 0 and (
                outputs.shape[-1] > inputs_shape[-1]):
            hint = f"; if it upsamples, pass --task upsampling --scale {outputs.shape[-1] // inputs_shape[-1]}"
        raise ValueError(f"{option}: the model's {WRONG_SHAPE} is {tuple(outputs.shape)} for input shape "
                         f"{tuple(inputs_shape)}; expected {tuple(expected_shape)} (N, C, H, W){hint}")
    finite = torch.isfinite(outputs)
    if not bool(finite.all()):
        n_nan = int(torch.isnan(outputs).sum())
        n_bad = int((~finite).sum())
        raise ValueError(f"{option}: the model returned {n_bad} {NOT_FINITE} values ({n_nan} NaN, {n_bad - n_nan} infinite) of {outputs.numel()}; its outputs must be finite pixel values in [0, 1]")
    n_clamped = int(((outputs < 0) | (outputs > 1)).sum())
    return outputs.clamp(0.0, 1.0), n_clamped


def run_user_model(
    module: torch.nn.Module,
    inputs: torch.Tensor,
    *,
    expected_shape: Sequence[int],
    device: str | torch.device = "cpu",
    option: str = "--model",
) -> tuple[torch.Tensor, int]:
    """Run the user's model on one batch, in eval mode without gradients, and check its outputs.

    The module is switched to eval mode and moved to ``device`` (in place, as ``nn.Module.to``
    does); ``inputs`` are copied there.

    Args:
        module: The model, e.g. from :func:`load_user_model`.
        inputs: (N, C, h, w) float in [0, 1]: the images (reconstruction) or the low-resolution
            images (upsampling) the model is audited on.
        expected_shape: The shape the outputs must have, (N, C, H, W).
        device: Where to run the model.
        option: The command-line option the model came from, for the error messages.

    Returns:
        ``(outputs, n_clamped)``: (N, C, H, W) float32 on the CPU, clamped to [0, 1], and how
        many values were clamped (see :func:`check_outputs`).

    Raises:
        ValueError: One line naming ``option``, when the forward raises (its exception's type
            and message) or the outputs fail :func:`check_outputs`.
    """
    import torch

    module.eval()
    module.to(device)
    with torch.no_grad():
        try:
            outputs = module(inputs.to(device))
        except Exception as error:  # noqa: BLE001 - any failure of the user's code becomes one clear line
            raise ValueError(f"{option}: {FORWARD_RAISED} {_describe(error)} on inputs of shape {tuple(inputs.shape)} ({inputs.dtype}, values in [0, 1]); its forward must take (N, C, H, W) float images") from error
        checked, n_clamped = check_outputs(outputs, inputs_shape=tuple(inputs.shape), expected_shape=expected_shape, option=option)
    return checked.detach().to(device="cpu", dtype=torch.float32), n_clamped


def _describe(error: BaseException) -> str:
    """``"Type: first line of the message"``: an exception on one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    more = " ..." if len(lines) > 1 else ""
    return f"{type(error).__name__}: {lines[0]}{more}" if lines else type(error).__name__


def _load_torchscript(spec: str, *, option: str) -> torch.nn.Module:
    """``torch.jit.load(spec, map_location="cpu")``, or a one-line ValueError."""
    import torch

    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"{option} {spec!r}: {FILE_NOT_FOUND} (from {Path.cwd()}); give the path of a TorchScript file saved with torch.jit.save")
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # noqa: BLE001 - torch raises RuntimeError, ValueError, ... for non-TorchScript files
        raise ValueError(f"{option} {spec!r} {NOT_TORCHSCRIPT} (torch.jit.load: {_describe(error)}); save it with torch.jit.save(torch.jit.script(model), path), or give FILE.py:FACTORY that builds the model") from error


def _import_file(spec: str, target: str, *, option: str) -> ModuleType:
    """Import ``target`` (a .py file) as a new module with a unique name."""
    path = Path(target)
    if not path.is_file():
        raise ValueError(f"{option} {spec!r}: {FILE_NOT_FOUND}: {target!r} (from {Path.cwd()}); give the path of a Python file, as in path/to/file.py:make_model")
    name = f"{_MODULE_PREFIX}{uuid.uuid4().hex}"
    import_spec = importlib.util.spec_from_file_location(name, path)
    if import_spec is None or import_spec.loader is None:
        raise ValueError(f"{option} {spec!r}: {target!r} cannot be imported as a Python module; give a .py file, as in path/to/file.py:make_model")
    module = importlib.util.module_from_spec(import_spec)
    folder = str(path.resolve().parent)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up there
    sys.path.insert(0, folder)
    try:
        import_spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - any failure of the user's code becomes one clear line
        del sys.modules[name]
        raise ValueError(f"{option} {spec!r}: {IMPORT_FAILED} file {target!r}, an error inside it: {_describe(error)}; fix the file (run python {target} to see the traceback)") from error
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:
            pass
    return module


def _import_module(spec: str, target: str, *, option: str) -> ModuleType:
    """``importlib.import_module(target)``, telling a missing module from an error inside it."""
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as error:
        if error.name is not None and (target == error.name or target.startswith(error.name + ".")):
            raise ValueError(f"{option} {spec!r}: {MODULE_NOT_FOUND}: {error.name!r}; install the package, put its folder on PYTHONPATH, or give a file path (path/to/file.py:FACTORY)") from error
        raise ValueError(f"{option} {spec!r}: {IMPORT_FAILED} module {target!r}, an error inside it: {_describe(error)}; install what it imports") from error
    except Exception as error:  # noqa: BLE001 - any failure of the user's code becomes one clear line
        raise ValueError(f"{option} {spec!r}: {IMPORT_FAILED} module {target!r}, an error inside it: {_describe(error)}; fix the module (python -c 'import {target}' shows the traceback)") from error


def _call_factory(spec: str, module: ModuleType, attribute: str, where: str, *, option: str) -> torch.nn.Module:
    """``getattr(module, attribute)()``, checked to be a :class:`torch.nn.Module`."""
    import torch

    if not hasattr(module, attribute):
        public = sorted(name for name, value in vars(module).items() if not name.startswith("_") and callable(value))
        close = difflib.get_close_matches(attribute, public, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"{option} {spec!r}: {where} {NO_SUCH_CALLABLE} {attribute!r}; {hint}its public callables: {', '.join(map(repr, public)) or '(none)'}")
    factory = getattr(module, attribute)
    if not callable(factory):
        raise ValueError(f"{option} {spec!r}: {attribute!r} in {where} {NOT_CALLABLE} (it is a {type(factory).__qualname__}); name a function or class that takes no arguments and returns a torch.nn.Module")
    try:
        model = factory()
    except Exception as error:  # noqa: BLE001 - any failure of the user's code becomes one clear line
        raise ValueError(f"{option} {spec!r}: calling {attribute}() from {where} {FACTORY_RAISED} {_describe(error)}; the factory must build the model with no arguments") from error
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{option} {spec!r}: {attribute}() from {where} returned a {type(model).__qualname__}, {NOT_A_MODULE}; return the model itself (e.g. return MyNet().eval())")
    return model
