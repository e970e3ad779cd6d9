"""`audit run --model pulse` end to end: latent-search upsampling through a gan prior, and the samples audit of that prior."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cli_runner import invoke

TINY = ["--epochs", "1", "--image-size", "16", "--batch-size", "64", "--accelerator", "cpu", "--classifier-epochs", "1",
        "--samples", "200"]


def _metrics_and_artifacts(folder: Path, stdout: str) -> tuple[dict[str, float], set[str]]:
    run_id = next(line for line in stdout.splitlines() if line.startswith("MLflow run ")).split()[2]
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    files = {entry.path for entry in client.list_artifacts(run_id, "figures")}
    return client.get_run(run_id).data.metrics, files


def test_pulse_through_a_gan_prior_is_audited_like_sr_and_its_prior_samples_are_audited(workdir: Path) -> None:
    code, stdout, stderr = invoke("run", "--model", "pulse", "--dataset", "faces", *TINY, "--scale", "4",
                                  "-o", "prior=gan", "-o", "steps=2", "-o", "restarts=1")
    assert code == 0, stderr
    assert "pulse on faces" in stdout and "ΔITA°" in stdout and "pulse against bicubic" in stdout
    assert "Whom the model generates: 200 samples" in stdout and "Bias amplification" in stdout
    metrics, figures = _metrics_and_artifacts(workdir, stdout)
    assert "skin_tone_shift/gender_x_skin_tone/female_darker/ita_shift" in metrics
    assert 0 <= metrics["sample_composition/gender_x_skin_tone/male_lighter/sample_share"] <= 1
    assert "sample_amplification/gender/majority_amplification" in metrics
    assert "Whom the model finds least likely" not in stdout  # a gan prior has no likelihood
    assert "figures/generated_samples.png" in figures


@pytest.mark.parametrize(("args", "expected"), [
    (["run", "--samples", "-1"], "--samples must be an int >= 0 (0 skips the samples audit), got -1"),
    (["run", "--model", "pulse", "-o", "prior=flow"], "PulseConfig.prior must be one of ('gan', 'vae'), got 'flow'"),
    (["attribute", "--model", "pulse"], "--models pulse: its training has no per-image loss for --mitigation"),
])
def test_bad_generative_options_exit_2_with_one_line(workdir: Path, args: list[str], expected: str) -> None:
    code, _, stderr = invoke(args[0], "--dataset", "faces", *args[1:])
    assert code == 2
    assert expected in stderr and len(stderr.strip().splitlines()) == 1, stderr
