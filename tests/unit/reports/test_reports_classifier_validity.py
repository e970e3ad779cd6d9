"""The attribute classifier's validity in the terminal and in MLflow's metrics, and the claims it withholds."""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich.console import Console

from genfair.audit.attributes import CLASSIFIER_UNRELIABLE, classified_column, classifier_tables
from genfair.audit.result import summarize
from genfair.reports import terminal
from genfair.reports.tracking import audit_metrics


def _audit() -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """6 people in each of 4 groups, 3 photos; the classifier calls every female / darker original male."""
    rows = []
    for gender in ("female", "male"):
        for tone in ("darker", "lighter"):
            for person in range(6):
                for photo in range(3):
                    seen = "male" if (gender, tone) == ("female", "darker") else gender
                    rows.append({"path": f"{gender}-{tone}-{person}-{photo}.png", "subject": f"{gender}-{tone}-{person}",
                                 "gender": gender, "skin_tone": tone, "mse_error": 0.01 * (1 + photo),
                                 classified_column("gender"): seen, classified_column("gender", output=True): seen,
                                 classified_column("skin_tone"): tone, classified_column("skin_tone", output=True): tone})
    per_image = pd.DataFrame(rows)
    tables = classifier_tables(per_image, attributes=["gender", "skin_tone"],
                               majority={"gender": "male", "skin_tone": "lighter"}, seed=0)
    return per_image, tables


def test_the_terminal_shows_the_validity_and_marks_what_it_withholds() -> None:
    per_image, tables = _audit()
    result = summarize(per_image, attributes=["gender", "skin_tone"], metrics=["mse_error"])
    result = type(result)(per_image=result.per_image, per_group=result.per_group, disparities=result.disparities,
                          metadata={"run": {"classifier_min_accuracy": 0.9}}, tables=tables)
    console = Console(width=240, record=True)
    terminal.print_audit(console, result)
    text = console.export_text()
    assert "Attribute classifier validity: accuracy on held-out originals (95% CI)" in text
    (line,) = [line for line in text.splitlines() if line.strip().startswith("female / darker") and "(unreliable)" in line]
    assert line.split()[:5] == ["female", "/", "darker", "6", "0.00"]  # people, then its gender accuracy
    assert "Below 0.90 (--classifier-min-accuracy)" in text  # the run's own threshold
    assert sum(line.strip().startswith("female / darker") and "withheld⁴" in line for line in text.splitlines()) == 1
    assert "male / darker" in text and "[" in next(line for line in text.splitlines()
                                                   if line.strip().startswith("male / darker") and "→" in line)
    assert any(line.split()[:2] == ["gender", "RDP"] and "withheld" in line for line in text.splitlines())
    assert any(line.split()[:2] == ["skin_tone", "RDP"] and "withheld" not in line for line in text.splitlines())
    assert terminal.UNRELIABLE == CLASSIFIER_UNRELIABLE


def test_mlflow_gets_each_groups_accuracy_and_the_table_its_interval() -> None:
    per_image, tables = _audit()
    result = summarize(per_image, attributes=["gender", "skin_tone"], metrics=["mse_error"])
    metrics = audit_metrics(result.per_group, result.disparities, tables=tables)
    validity = tables["classifier_validity"].set_index(["grouping", "group", "attribute"])
    key = "classifier_validity/gender_x_skin_tone/female_darker/gender"
    assert metrics[f"{key}/accuracy"] == 0.0 == validity.loc[("gender x skin_tone", "female / darker", "gender"),
                                                             "accuracy"]
    hits = (per_image[classified_column("gender")] == per_image["gender"])[per_image["gender"] == "female"].mean()
    assert metrics["classifier_validity/gender/female/gender/accuracy"] == hits == 0.5
    assert metrics["classifier_validity/gender/accuracy"] == 0.75  # the overall row: 3 groups of 4 read right
    assert not any(key.endswith(("/ci_low", "/ci_high")) for key in metrics if key.startswith("classifier_validity"))
    assert not any(key.endswith(("/n_subjects", "/status")) for key in metrics if key.startswith("classifier_validity"))
    assert "representation_tests/gender/rdp/p_value" not in metrics  # withheld: NaN is not logged
    assert np.isfinite(metrics["representation_tests/skin_tone/rdp/p_value"])
