"""Tests of genfair.audit.run.user_models: loading the user's own model and checking its outputs."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch import nn

MODULE_PATH = Path(__file__).resolve().parents[3] / "audit" / "run" / "user_models.py"


def _user_models() -> ModuleType:
    """genfair.audit.run.user_models, imported by name, or by path while the package has no __init__.py yet."""
    try:
        return importlib.import_module("genfair.audit.run.user_models")
    except ImportError:
        name = "_genfair_user_models_under_test"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, MODULE_PATH)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return sys.modules[name]


um = _user_models()

FACTORIES = '''
import torch
from torch import nn

answer = 42


class Halve(nn.Module):
    def forward(self, x):
        return x / 2


def make():
    return Halve()


def make_broken():
    raise KeyError("no weights here")


def make_dict():
    return {"model": Halve()}
'''


@pytest.fixture
def factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_model.py"
    path.write_text(FACTORIES)
    return path


class _Double(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def _one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


# --- is_user_model_spec -----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["f.py:make", "pkg.mod:make", "model.pt", "dir/Model.PTH", "C:\\m\\f.py:make", "x:"])
def test_user_model_specs_are_recognised(text: str) -> None:
    assert um.is_user_model_spec(text)


@pytest.mark.parametrize("text", ["vae", "sr.v2", "bicubic", "model.ts", "", None])
def test_registry_keys_are_not_user_model_specs(text: object) -> None:
    assert not um.is_user_model_spec(text)


# --- load_user_model: the three forms ---------------------------------------------------------


def test_loads_a_factory_from_a_file(factory_file: Path) -> None:
    model = um.load_user_model(f"{factory_file}:make")
    assert isinstance(model, nn.Module) and type(model).__name__ == "Halve"
    assert type(model).__module__.startswith("genfair_user_model_")
    assert torch.equal(model(torch.ones(1)), torch.full((1,), 0.5))


def test_each_file_load_is_a_fresh_module(factory_file: Path) -> None:
    first, second = um.load_user_model(f"{factory_file}:make"), um.load_user_model(f"{factory_file}:make")
    assert type(first).__module__ != type(second).__module__


def test_file_may_import_its_neighbours(tmp_path: Path) -> None:
    (tmp_path / "neighbour_layers_abc.py").write_text("from torch import nn\nclass Net(nn.Identity):\n    pass\n")
    (tmp_path / "entry.py").write_text("from neighbour_layers_abc import Net\n\ndef make():\n    return Net()\n")
    try:
        assert type(um.load_user_model(f"{tmp_path / 'entry.py'}:make")).__name__ == "Net"
        assert str(tmp_path) not in sys.path
    finally:
        sys.modules.pop("neighbour_layers_abc", None)


def test_loads_a_factory_from_a_package_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "user_pkg_for_genfair"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_pkg_for_genfair", raising=False)
    monkeypatch.delitem(sys.modules, "user_pkg_for_genfair.nets", raising=False)
    model = um.load_user_model("user_pkg_for_genfair.nets:make")
    assert type(model).__name__ == "Halve" and type(model).__module__ == "user_pkg_for_genfair.nets"
    sys.modules.pop("user_pkg_for_genfair.nets", None)
    sys.modules.pop("user_pkg_for_genfair", None)


def test_loads_a_torchscript_file(tmp_path: Path) -> None:
    path = tmp_path / "double.pt"
    torch.jit.save(torch.jit.script(_Double()), str(path))
    model = um.load_user_model(str(path))
    assert isinstance(model, torch.jit.ScriptModule)
    assert torch.equal(model(torch.ones(2)), torch.full((2,), 2.0))


# --- load_user_model: one test per error ------------------------------------------------------


def test_not_a_spec() -> None:
    with pytest.raises(ValueError, match=rf"^--model 'vae' {um.NOT_A_SPEC}: ") as info:
        um.load_user_model("vae")
    _one_line(info)


def test_empty_side_of_the_colon() -> None:
    with pytest.raises(ValueError, match=rf"^--model 'f.py:' {um.NOT_A_SPEC}: both sides of ':'"):
        um.load_user_model("f.py:")


def test_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    with pytest.raises(ValueError, match=rf"^--user-model '.*nope\.py:make': {um.FILE_NOT_FOUND}: ") as info:
        um.load_user_model(f"{missing}:make", option="--user-model")
    _one_line(info)


def test_torchscript_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=rf"^--model '.*gone\.pt': {um.FILE_NOT_FOUND}"):
        um.load_user_model(str(tmp_path / "gone.pt"))


def test_pt_file_that_is_not_torchscript(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(_Double().state_dict(), path)
    with pytest.raises(ValueError, match=rf"^--model '.*weights\.pth' {um.NOT_TORCHSCRIPT} \(torch\.jit\.load: .*\); save it with torch\.jit\.save") as info:
        um.load_user_model(str(path))
    _one_line(info)


def test_module_not_found() -> None:
    with pytest.raises(ValueError, match=rf"^--model 'no_such_pkg_xyz.nets:make': {um.MODULE_NOT_FOUND}: 'no_such_pkg_xyz'; install") as info:
        um.load_user_model("no_such_pkg_xyz.nets:make")
    _one_line(info)


def test_missing_import_inside_the_module_is_not_module_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "user_mod_with_bad_import.py").write_text("import dependency_nobody_has_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=rf"{um.IMPORT_FAILED} module 'user_mod_with_bad_import', an error inside it: ModuleNotFoundError: No module named 'dependency_nobody_has_xyz'") as info:
        um.load_user_model("user_mod_with_bad_import:make")
    assert um.MODULE_NOT_FOUND not in _one_line(info)


def test_error_inside_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text("x = 1\nraise RuntimeError('line one\\nline two')\n")
    with pytest.raises(ValueError, match=rf"{um.IMPORT_FAILED} file '.*bad\.py', an error inside it: RuntimeError: line one \.\.\.; fix the file") as info:
        um.load_user_model(f"{path}:make")
    _one_line(info)
    assert not [name for name in sys.modules if name.startswith("genfair_user_model_") and getattr(sys.modules[name], "x", None) == 1]


def test_syntax_error_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.py"
    path.write_text("def make(:\n")
    with pytest.raises(ValueError, match=rf"{um.IMPORT_FAILED} file .*: SyntaxError"):
        um.load_user_model(f"{path}:make")


def test_callable_missing_lists_callables_and_suggests(factory_file: Path) -> None:
    with pytest.raises(ValueError, match=rf"file '.*my_model\.py' {um.NO_SUCH_CALLABLE} 'mak'; did you mean 'make'\? its public callables: 'Halve', 'make', 'make_broken', 'make_dict'$") as info:
        um.load_user_model(f"{factory_file}:mak")
    _one_line(info)


def test_not_callable(factory_file: Path) -> None:
    with pytest.raises(ValueError, match=rf"'answer' in file '.*' {um.NOT_CALLABLE} \(it is a int\)"):
        um.load_user_model(f"{factory_file}:answer")


def test_factory_raised(factory_file: Path) -> None:
    with pytest.raises(ValueError, match=rf"calling make_broken\(\) from file '.*' {um.FACTORY_RAISED} KeyError: 'no weights here'"):
        um.load_user_model(f"{factory_file}:make_broken")


def test_factory_returned_something_else(factory_file: Path) -> None:
    with pytest.raises(ValueError, match=rf"make_dict\(\) from file '.*' returned a dict, {um.NOT_A_MODULE}"):
        um.load_user_model(f"{factory_file}:make_dict")


# --- check_outputs ----------------------------------------------------------------------------

SHAPE = (2, 3, 4, 4)


def test_check_outputs_passes_good_outputs_through() -> None:
    outputs = torch.rand(SHAPE)
    checked, n_clamped = um.check_outputs(outputs, inputs_shape=SHAPE, expected_shape=SHAPE)
    assert n_clamped == 0 and torch.equal(checked, outputs)


def test_check_outputs_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=re.escape(f"--model: the model's {um.WRONG_SHAPE} is (2, 3, 2, 2) for input shape (2, 3, 1, 1); expected (2, 3, 4, 4) (N, C, H, W)")):
        um.check_outputs(torch.rand(2, 3, 2, 2), inputs_shape=(2, 3, 1, 1), expected_shape=SHAPE)


def test_check_outputs_rejects_integer_dtype() -> None:
    with pytest.raises(ValueError, match=rf"dtype torch\.uint8, {um.NOT_FLOATING}"):
        um.check_outputs(torch.zeros(SHAPE, dtype=torch.uint8), inputs_shape=SHAPE, expected_shape=SHAPE)


def test_check_outputs_rejects_non_tensors() -> None:
    with pytest.raises(ValueError, match=rf"returned a tuple, {um.NOT_A_TENSOR}"):
        um.check_outputs((torch.rand(SHAPE),), inputs_shape=SHAPE, expected_shape=SHAPE)


def test_check_outputs_counts_nan_and_inf() -> None:
    outputs = torch.rand(SHAPE)
    outputs[0, 0, 0, :2] = float("nan")
    outputs[1, 2, 3, 3] = float("-inf")
    with pytest.raises(ValueError, match=rf"returned 3 {um.NOT_FINITE} values \(2 NaN, 1 infinite\) of 96"):
        um.check_outputs(outputs, inputs_shape=SHAPE, expected_shape=SHAPE)


def test_check_outputs_clamps_and_counts_without_touching_the_input() -> None:
    outputs = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    before = outputs.clone()
    checked, n_clamped = um.check_outputs(outputs, inputs_shape=SHAPE, expected_shape=SHAPE)
    values = before.numpy()
    assert n_clamped == int(np.count_nonzero((values < 0) | (values > 1))) > 0
    np.testing.assert_array_equal(checked.numpy(), np.clip(values, 0, 1))
    assert torch.equal(outputs, before)


# --- run_user_model ---------------------------------------------------------------------------


def test_run_user_model_returns_float32_cpu_in_eval_mode() -> None:
    class Upsample(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert not self.training and not torch.is_grad_enabled()
            return nn.functional.interpolate(x, scale_factor=2).double() * 1.5

    inputs = torch.rand(2, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    outputs, n_clamped = um.run_user_model(Upsample().train(), inputs, expected_shape=SHAPE)
    expected = nn.functional.interpolate(inputs, scale_factor=2).double().numpy() * 1.5
    assert outputs.dtype == torch.float32 and outputs.device.type == "cpu" and not outputs.requires_grad
    assert n_clamped == int(np.count_nonzero(expected > 1))
    np.testing.assert_allclose(outputs.numpy(), np.clip(expected, 0, 1), rtol=1e-6)


def test_run_user_model_runs_torchscript(tmp_path: Path) -> None:
    path = tmp_path / "double.pt"
    torch.jit.save(torch.jit.script(_Double()), str(path))
    inputs = torch.full(SHAPE, 0.25)
    outputs, n_clamped = um.run_user_model(um.load_user_model(str(path)), inputs, expected_shape=SHAPE)
    assert n_clamped == 0 and torch.equal(outputs, torch.full(SHAPE, 0.5))


def test_run_user_model_reports_forward_errors() -> None:
    class Picky(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("expected 1 channel\nbut got 3")

    with pytest.raises(ValueError, match=rf"^--model: {um.FORWARD_RAISED} RuntimeError: expected 1 channel \.\.\. on inputs of shape \(2, 3, 4, 4\)") as info:
        um.run_user_model(Picky(), torch.rand(SHAPE), expected_shape=SHAPE)
    _one_line(info)


def test_run_user_model_checks_outputs() -> None:
    with pytest.raises(ValueError, match=um.WRONG_SHAPE):
        um.run_user_model(nn.Identity(), torch.rand(2, 3, 2, 2), expected_shape=SHAPE)
