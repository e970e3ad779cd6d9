"""Audit the model you ship: outputs on disk, your own model file, TorchScript, plugins listed, Python.

Every expected number is computed here, independently of genfair's audit: from the PNG files this
test writes, with numpy (and torch's bicubic interpolation for the upsampling oracle).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from cli_runner import invoke
from PIL import Image

from genfair.audit.result import AuditResult

SIDE = 16
SCALE = 4
TINY = ("--image-size", str(SIDE), "--classifier-epochs", "0", "--attributes", "gender,tone")


def _face(rng: np.random.Generator, tone: str) -> np.ndarray:
    """A smooth 16x16 RGB image: a blurred random field, darker or lighter."""
    field = rng.random((4, 4, 3))
    big = np.kron(field, np.ones((4, 4, 1)))
    base = 0.25 if tone == "dark" else 0.6
    return np.clip(base + 0.35 * big, 0, 1)


@pytest.fixture
def panel(workdir: Path) -> Path:
    """A manifest of 16 people (2 genders x 2 tones x 4) with 2 images each: half train, half test.

    Its ``restored`` column is blank for now; tests fill it with the outputs they write.
    """
    rng = np.random.default_rng(0)
    (workdir / "images").mkdir()
    rows = []
    for gender in ("female", "male"):
        for tone in ("dark", "light"):
            for person in range(4):
                subject = f"{gender[0]}{tone[0]}{person}"
                for shot in range(2):
                    path = f"images/{subject}_{shot}.png"
                    Image.fromarray((_face(rng, tone) * 255).round().astype(np.uint8)).save(workdir / path)
                    rows.append({"path": path, "subject": subject, "gender": gender, "tone": tone,
                                 "split": "train" if person < 2 else "test", "restored": ""})
    manifest = workdir / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def _pixels(path: Path) -> torch.Tensor:
    """A PNG as ``(3, H, W)`` float in [0, 1], read with PIL."""
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)


def _write_outputs(manifest: Path, make_output) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write ``make_output(original)`` as 8-bit PNGs for the test rows; fill the ``restored`` column.

    Returns:
        path -> (original pixels, written output pixels), both ``(3, H, W)`` float64 in [0, 1].
    """
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    (manifest.parent / "restored").mkdir(exist_ok=True)
    pairs = {}
    for index, row in frame[frame["split"] == "test"].iterrows():
        original = _pixels(manifest.parent / row["path"])
        output = (make_output(original).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        name = f"restored/{Path(row['path']).name}"
        Image.fromarray(output).save(manifest.parent / name)
        frame.loc[index, "restored"] = name
        pairs[row["path"]] = (original.double().numpy(), output.transpose(2, 0, 1) / 255.0)
    frame.to_csv(manifest, index=False)
    return pairs


def _bicubic(original: torch.Tensor) -> torch.Tensor:
    lowres = F.avg_pool2d(original.unsqueeze(0), SCALE)
    return F.interpolate(lowres, scale_factor=SCALE, mode="bicubic", align_corners=False).clamp(0, 1)[0]


def _expected(pairs: dict[str, tuple[np.ndarray, np.ndarray]], metric: str) -> pd.Series:
    reduce = {"mse_error": lambda d: np.mean(d**2), "mae_error": lambda d: np.mean(np.abs(d))}[metric]
    return pd.Series({path: reduce(output - original) for path, (original, output) in pairs.items()})


def _audited(folder: Path) -> AuditResult:
    return AuditResult.load(folder)


def _runs(workdir: Path) -> int:
    """Runs in the folder's local MLflow store (0 when there is no store)."""
    if not (workdir / "mlflow.db").exists():
        return 0
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    return sum(len(client.search_runs([e.experiment_id])) for e in client.search_experiments())


def test_outputs_on_disk_equal_the_bicubic_oracle(workdir: Path, panel: Path) -> None:
    """Bicubic outputs written as 8-bit PNGs and audited with --outputs give the errors computed from the files;
    the same split audited with --model bicubic gives the unrounded errors; compare-runs and check accept both."""
    pairs = _write_outputs(panel, _bicubic)
    code, out, err = invoke("run", "--model", "bicubic", "--manifest", str(panel), "--scale", str(SCALE), *TINY,
                            "--out", "bicubic")
    assert code == 0, err
    code, out, err = invoke("run", "--manifest", str(panel), "--outputs", "restored", "--task", "upsampling",
                            "--scale", str(SCALE), *TINY, "--out", "disk")
    assert code == 0, err
    assert "restored" in out
    disk, bicubic = _audited(workdir / "disk"), _audited(workdir / "bicubic")
    assert list(disk.per_image["path"]) == list(bicubic.per_image["path"]) == sorted(pairs)
    for metric in ("mse_error", "mae_error"):
        got = disk.per_image.set_index("path")[metric]
        np.testing.assert_allclose(got.to_numpy(), _expected(pairs, metric)[got.index].to_numpy(), atol=1e-6, rtol=0)
    unrounded = {path: (original, _bicubic(torch.from_numpy(original).float()).double().numpy())
                 for path, (original, _) in pairs.items()}
    got = bicubic.per_image.set_index("path")["mse_error"]
    np.testing.assert_allclose(got.to_numpy(), _expected(unrounded, "mse_error")[got.index].to_numpy(), atol=1e-6)
    assert disk.metadata["model"] == "restored" and disk.metadata["source"] == "disk"
    assert disk.metadata["task"] == "upsampling"
    assert {"group_intervals", "disparity_intervals", "skin_tone_intervals", "vs_bicubic_groups"} <= set(disk.tables)

    code, out, err = invoke("compare-runs", "bicubic", "disk")
    assert code == 0, err
    assert "restored" in out
    policy = workdir / "policy.toml"
    policy.write_text("min_subjects = 2\n[metrics.mse_error]\nmax_worst = 0.5\n", encoding="utf-8")
    code, out, err = invoke("check", "--run", "disk", "--policy", str(policy))
    assert code == 0, err + out
    code, out, err = invoke("report", "--experiment", "genfair", "--out", "report")
    assert code == 0, err
    assert "restored" in (workdir / "report" / "report.md").read_text(encoding="utf-8")
    assert _runs(workdir) == 2


def test_outputs_on_disk_without_training_rows_skip_the_classifier_with_a_note(workdir: Path, panel: Path) -> None:
    _write_outputs(panel, lambda original: original * 0.9)
    frame = pd.read_csv(panel, dtype=str, keep_default_na=False)
    frame = frame[frame["restored"] != ""]  # the audited rows only: nothing to train a classifier on
    frame.to_csv(panel, index=False)
    code, out, err = invoke("run", "--manifest", str(panel), "--outputs", "restored", "--image-size", str(SIDE),
                            "--attributes", "gender,tone", "--out", "disk")
    assert code == 0, err
    assert "note: no training rows" in out
    result = _audited(workdir / "disk")
    assert "representation" not in result.tables
    assert any("no training rows" in note for note in result.metadata["notes"])


FACTORIES = '''
import torch
import torch.nn.functional as F


class Bicubic(torch.nn.Module):
    def forward(self, lowres):
        return F.interpolate(lowres, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)


class Shrink(torch.nn.Module):  # returns its input: the wrong shape for an upsampler
    def forward(self, lowres):
        return lowres


class NotANumber(torch.nn.Module):
    def forward(self, images):
        return images * float("nan")


class TooBright(torch.nn.Module):
    def forward(self, images):
        return images * 3.0


def bicubic():
    return Bicubic()


def shrink():
    return Shrink()


def nan():
    return NotANumber()


def too_bright():
    return TooBright()


def not_a_model():
    return 42


class Bytes(torch.nn.Module):
    def forward(self, images):
        return (images * 255).to(torch.uint8)


def as_bytes():
    return Bytes()
'''


@pytest.fixture
def factories(workdir: Path) -> Path:
    path = workdir / "my_models.py"
    path.write_text(FACTORIES, encoding="utf-8")
    return path


def test_a_factory_in_a_file_is_audited_as_it_is(workdir: Path, panel: Path, factories: Path) -> None:
    """``--model file.py:factory`` sees the downsampled test faces; its errors are bicubic's, computed here."""
    code, out, err = invoke("run", "--model", f"{factories}:bicubic", "--manifest", str(panel), "--task",
                            "upsampling", "--scale", str(SCALE), *TINY, "--out", "mine")
    assert code == 0, err
    result = _audited(workdir / "mine")
    originals = {path: _pixels(panel.parent / path) for path in result.per_image["path"]}
    expected = {path: (image.double().numpy(), _bicubic(image).double().numpy()) for path, image in originals.items()}
    got = result.per_image.set_index("path")["mse_error"]
    np.testing.assert_allclose(got.to_numpy(), _expected(expected, "mse_error")[got.index].to_numpy(), atol=1e-6)
    assert result.metadata["model"] == "bicubic" and result.metadata["source"] == "user"
    assert "model_facts" in result.tables


def test_a_torchscript_file_is_audited_as_it_is(workdir: Path, panel: Path) -> None:
    class Half(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images * 0.5

    torch.jit.save(torch.jit.script(Half()), str(workdir / "half.pt"))
    code, out, err = invoke("run", "--model", str(workdir / "half.pt"), "--manifest", str(panel), *TINY,
                            "--out", "half", "--name", "half-brightness")
    assert code == 0, err
    result = _audited(workdir / "half")
    assert result.metadata["model"] == "half-brightness"
    for path, mse in result.per_image.set_index("path")["mse_error"].items():
        original = _pixels(panel.parent / path).double().numpy()
        assert mse == pytest.approx(np.mean((0.5 * original) ** 2), abs=1e-6)


def test_outputs_outside_the_unit_range_are_clamped_with_a_warning(workdir: Path, panel: Path, factories: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    code, out, err = invoke("run", "--model", f"{factories}:too_bright", "--manifest", str(panel), *TINY)
    assert code == 0, err
    warned = [record.getMessage() for record in caplog.records if "clamped" in record.getMessage()]
    assert warned and re.search(r"clamped \d+ output values outside \[0, 1\]", warned[0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--model", "missing.py:make"), r"--model 'missing\.py:make': file not found"),
        (("--model", "{factories}:nope"), r"--model .*my_models\.py:nope.*has no callable 'nope'"),
        (("--model", "{factories}:not_a_model"), r"not a torch\.nn\.Module"),
        (("--model", "no_such_package.models:make"), r"module not found"),
        (("--model", "{factories}:as_bytes"), r"dtype torch\.uint8, not floating point"),
        (("--model", "{factories}:shrink", "--task", "upsampling", "--scale", "4"), r"output shape"),
        (("--model", "{factories}:nan"), r"non-finite"),
        (("--model", "{factories}:nan", "--epochs", "2"), r"--epochs 2: .* plain torch\.nn\.Module.*drop --epochs"),
        (("--model", "{factories}:nan", "-o", "bottleneck=4"), r"--model-option applies to genfair's registered"),
        (("--model", "{factories}:nan", "--scale", "4"), r"--scale 4 applies to upsampling"),
        (("--model", "{factories}:nan", "--task", "upsampling"), r"--task upsampling needs --scale"),
        (("--outputs", "restored", "--model", "vae"), r"pass one of them"),
        (("--outputs", "restord"), r"did you mean 'restored'"),
        (("--outputs", "restored", "--epochs", "3"), r"outputs on disk are audited as they are; drop --epochs"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_logged(
    workdir: Path, panel: Path, factories: Path, args: tuple[str, ...], message: str
) -> None:
    _write_outputs(panel, lambda original: original)
    args = tuple(arg.format(factories=factories) for arg in args)
    code, out, err = invoke("run", "--manifest", str(panel), *args, *TINY)
    assert code == 2, out + err
    assert re.search(message, err), err
    assert len(err.strip().splitlines()) == 1, err
    assert _runs(workdir) == 0


def test_outputs_need_a_manifest(workdir: Path) -> None:
    code, out, err = invoke("run", "--outputs", "restored")
    assert code == 2
    assert "--outputs restored names a column of a manifest: add --manifest FILE" in err


def test_an_output_of_another_shape_is_an_error_naming_the_row(workdir: Path, panel: Path) -> None:
    _write_outputs(panel, lambda original: original)
    frame = pd.read_csv(panel, dtype=str, keep_default_na=False)
    bad = frame.index[frame["restored"] != ""][3]
    Image.new("RGB", (SIDE, SIDE // 2)).save(panel.parent / frame.at[bad, "restored"])
    code, out, err = invoke("run", "--manifest", str(panel), "--outputs", "restored", *TINY)
    assert code == 2, out + err
    assert f"data row {bad + 1}" in err and "'restored'" in err and "aspect ratio" in err
    assert _runs(workdir) == 0


def test_audit_models_lists_every_key_with_its_task_baseline_and_origin(workdir: Path) -> None:
    from genfair import models

    code, out, err = invoke("models")
    assert code == 0, err
    rows = {cells[0]: cells for line in out.splitlines()
            if len(cells := [cell.strip() for cell in line.strip("│ ").split("│")]) == 5}
    for name in models.names():
        spec = models.get(name)
        assert rows[name][1] == spec.task and rows[name][3] == (spec.baseline or "-"), rows[name]
    assert "built in" in out


def test_the_python_api_audits_a_module_and_logs_it(workdir: Path, panel: Path) -> None:
    import mlflow

    from genfair.audit import audit_model
    from genfair.reports import log_audit

    class Darker(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images * 0.8

    result = audit_model(Darker(), panel, attributes=["gender", "tone"], image_size=SIDE, classifier_epochs=0)
    assert result.metadata["model"] == "Darker"
    for path, mse in result.per_image.set_index("path")["mse_error"].items():
        original = _pixels(panel.parent / path).double().numpy()
        assert mse == pytest.approx(np.mean((0.2 * original) ** 2), abs=1e-6)
    run_id = log_audit(result, experiment="notebook", tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    run = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}").get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/mse_error"] == pytest.approx(result.per_image["mse_error"].mean())


LIGHTNING = '''
from dataclasses import dataclass

import pytorch_lightning as pl
import torch

from genfair.models import register


@dataclass(frozen=True, kw_only=True)
class GainConfig:
    image_size: int = 16
    channels: int = 3
    seed: int = 0


class Gain(pl.LightningModule):
    """Learns one gain per channel: outputs = gain * images (starts at 0.5)."""

    def __init__(self, config=None):
        super().__init__()
        self.config = config or GainConfig()
        self.gain = torch.nn.Parameter(torch.full((1, 3, 1, 1), 0.5))

    @classmethod
    def from_config(cls, config):
        return cls(config)

    def forward(self, images):
        return (images * self.gain).clamp(0, 1)

    def training_step(self, batch, batch_idx):
        loss = torch.mean((self(batch["image"]) - batch["image"]) ** 2)
        self.log("train/loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", torch.mean((self(batch["image"]) - batch["image"]) ** 2))

    def predict_step(self, batch, batch_idx):
        return {"index": batch["index"], "output": self(batch["image"])}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def make():
    return Gain()


register("gain", config=GainConfig, description="one learned gain per channel")(Gain)
'''
REGISTER_GAIN = 'register("gain", config=GainConfig, description="one learned gain per channel")(Gain)'


def test_a_lightning_module_of_yours_trains_with_epochs(workdir: Path, panel: Path) -> None:
    """A factory's LightningModule trains like the built-ins when --epochs is given (its loss is logged)."""
    import mlflow

    unregistered = LIGHTNING.replace(REGISTER_GAIN, "")  # a file of yours needs no registration (and leaves none)
    (workdir / "gain.py").write_text(unregistered, encoding="utf-8")
    code, out, err = invoke("run", "--model", f"{workdir / 'gain.py'}:make", "--manifest", str(panel), "--epochs",
                            "2", "--patience", "0", *TINY, "--out", "trained")
    assert code == 0, err
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("genfair").experiment_id])
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(history) == 2 and history[-1].value < history[0].value
    untrained = np.mean([np.mean((0.5 * _pixels(panel.parent / p).double().numpy()) ** 2)
                         for p in _audited(workdir / "trained").per_image["path"]])
    assert _audited(workdir / "trained").per_image["mse_error"].mean() < untrained


def test_a_plugin_joins_the_registry_and_is_trained_like_a_built_in(
    workdir: Path, panel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pip-installed package's entry point in ``genfair.models`` makes ``--model gain`` work and ``audit models`` list it."""
    from genfair.models import registry

    site = workdir / "site"
    (site / "gain_plugin").mkdir(parents=True)
    (site / "gain_plugin" / "__init__.py").write_text("", encoding="utf-8")
    (site / "gain_plugin" / "model.py").write_text(LIGHTNING, encoding="utf-8")
    dist_info = site / "gain_plugin-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: gain-plugin\nVersion: 0.1.0\n", encoding="utf-8")
    (dist_info / "entry_points.txt").write_text("[genfair.models]\ngain = gain_plugin.model:Gain\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    registry._reset_plugins()
    try:
        code, out, err = invoke("models")
        assert code == 0, err
        assert "gain" in out and "plugin gain-plugin 0.1.0" in out
        code, out, err = invoke("run", "--model", "gain", "--manifest", str(panel), "--epochs", "1", "--patience", "0", *TINY,
                                "--out", "plugin")
        assert code == 0, err
        assert _audited(workdir / "plugin").metadata["model"] == "gain"
    finally:
        registry._reset_plugins()
        for name in [name for name in sys.modules if name.startswith("gain_plugin")]:
            del sys.modules[name]


def test_inputs_on_disk_give_the_scale_and_the_bicubic_baseline(workdir: Path, panel: Path) -> None:
    """--inputs names the low-resolution files the model saw: the scale comes from their size, and the
    baseline is bicubic upsampling of those files (so outputs equal to it differ from it by nothing)."""
    pairs = _write_outputs(panel, _bicubic)
    frame = pd.read_csv(panel, dtype=str, keep_default_na=False)
    (panel.parent / "lowres").mkdir()
    for index, row in frame[frame["restored"] != ""].iterrows():
        small = F.avg_pool2d(_pixels(panel.parent / row["path"]).unsqueeze(0), SCALE)[0]
        name = f"lowres/{Path(row['path']).name}"
        Image.fromarray((small.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(panel.parent / name)
        frame.loc[index, "small"] = name
    frame["small"] = frame["small"].fillna("")
    frame.to_csv(panel, index=False)
    code, out, err = invoke("run", "--manifest", str(panel), "--outputs", "restored", "--inputs", "small",
                            "--task", "upsampling", *TINY, "--out", "disk")
    assert code == 0, err
    result = _audited(workdir / "disk")
    assert result.metadata["run"]["scale"] is None and result.metadata["model_config"]["inputs"] == "small"
    versus = result.tables["vs_bicubic_groups"]
    assert len(versus) and set(pairs) == set(result.per_image["path"])
