"""Suite-wide fixtures and the opt-in markers (`slow`, `gpu`)."""

from __future__ import annotations

from pathlib import Path

import pytest

LONDON_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "london-faces"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")
    parser.addoption("--run-gpu", action="store_true", help="also run tests marked gpu (needs CUDA)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for marker in ("slow", "gpu"):
        if config.getoption(f"--run-{marker}"):
            continue
        skip = pytest.mark.skip(reason=f"opt in with --run-{marker}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def london_faces() -> Path:
    """The shared real-photo test set (read in place, never copied into the repository)."""
    manifest = LONDON_FACES / "manifest.csv"
    if not manifest.exists():
        pytest.skip(f"shared test photos not found at {LONDON_FACES}")
    return manifest


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dataset cache for the whole session, so generated faces are made once."""
    return tmp_path_factory.mktemp("genfair-cache")


@pytest.fixture(scope="session")
def make_audit():
    """A factory of small, complete audits (no model): ``make_audit(harm=1.0, seed=0, latents=True)``.

    2 x 2 groups of 6 people with 4 images each; ``harm`` multiplies the darker-skinned women's
    errors; the result carries every table a comparison reads (intervals, ΔITA, model facts,
    sample images, latent codes).
    """
    import io

    import numpy as np
    import pandas as pd
    from PIL import Image

    from genfair.audit import summarize
    from genfair.audit.stats import interval_tables

    def png(value: float) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(np.full((8, 8, 3), int(255 * value), dtype=np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue()

    def build(harm: float = 1.0, *, seed: int = 0, latents: bool = True, speed: float = 1000.0):
        rng = np.random.default_rng(seed)
        rows = []
        for gender in ("female", "male"):
            for tone in ("darker", "lighter"):
                for person in range(6):
                    effect = rng.normal(0, 0.001)
                    for photo in range(4):
                        error = 0.01 + effect + rng.normal(0, 0.0005)
                        if gender == "female" and tone == "darker":
                            error *= harm
                        rows.append({"path": f"{gender}-{tone}-{person}-{photo}.png",
                                     "subject": f"{gender}-{tone}-{person}", "gender": gender, "skin_tone": tone,
                                     "mse_error": error, "mae_error": error * 5, "psnr_score": -10 * np.log10(error),
                                     "ssim_score": 1 - error * 10, "ita_shift": rng.normal(0, 1)})
        per_image = pd.DataFrame(rows)
        skin = np.random.default_rng([seed, 1])  # ΔL* and Δh* from their own stream: the draws above stay put
        per_image["lightness_shift"] = skin.normal(0, 1, len(per_image))
        per_image["hue_shift"] = skin.normal(0, 2, len(per_image))
        attributes = ["gender", "skin_tone"]
        metrics = ["mse_error", "mae_error", "psnr_score", "ssim_score"]
        options = {"n_resamples": 200, "n_permutations": 199, "seed": seed}
        tables = dict(zip(("group_intervals", "disparity_intervals"),
                          interval_tables(per_image, attributes=attributes, metrics=metrics, **options)))
        tables["skin_tone_intervals"], tables["skin_tone_disparities"] = interval_tables(
            per_image, attributes=attributes, metrics=["ita_shift", "lightness_shift", "hue_shift"], **options)
        tables["model_facts"] = pd.DataFrame({"grouping": ["overall"], "group": ["all"], "parameters": [1000.0],
                                              "seconds_to_predictions": [3.0], "images_per_second": [speed]})
        picks = per_image.drop_duplicates(attributes).index
        samples = per_image.loc[picks, ["path", "subject", *attributes]].reset_index(drop=True)
        samples["original_png"] = [png(0.5)] * len(samples)
        samples["output_png"] = [png(0.5 / harm)] * len(samples)
        tables["samples"] = samples
        if latents:
            codes = pd.DataFrame(rng.normal(size=(len(per_image), 4)), columns=[f"z_{i}" for i in range(4)])
            codes.insert(0, "path", per_image["path"])
            tables["latents"] = codes
        result = summarize(per_image, attributes=attributes, metrics=metrics,
                           metadata={"attributes": attributes, "dataset": "faces", "model": "x", "run": {"seed": seed},
                                     "model_config": {}})
        return type(result)(per_image=result.per_image, per_group=result.per_group, disparities=result.disparities,
                            metadata=result.metadata, tables=tables)

    return build
