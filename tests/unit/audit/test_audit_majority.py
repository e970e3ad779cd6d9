"""One definition of the majority group: most training people, none when balanced or tied."""

from __future__ import annotations

import pandas as pd

from genfair.audit.panel import majority_groups, majority_notes


def people(counts: dict[tuple[str, str], int], images: int = 1) -> pd.DataFrame:
    """``counts[(gender, tone)]`` people of each group, ``images`` photos each."""
    rows = [{"subject": f"{g}{t}{i}", "gender": g, "tone": t}
            for (g, t), n in counts.items() for i in range(n) for _ in range(images)]
    return pd.DataFrame(rows)


def test_the_majority_counts_people_not_images():
    frame = pd.concat([people({("f", "d"): 2}, images=20), people({("m", "l"): 3}, images=1)], ignore_index=True)
    assert majority_groups(frame, ["gender"]) == {"gender": "m"}  # 40 images of 2 women, 3 images of 3 men


def test_a_balanced_or_tied_grouping_has_no_majority_and_says_why():
    frame = people({("f", "d"): 4, ("f", "l"): 4, ("m", "d"): 4, ("m", "l"): 6})
    assert majority_groups(frame, ["gender", "tone"]) == {"gender": "m", "tone": "l", "gender x tone": "m / l"}
    balanced = people({("f", "d"): 3, ("f", "l"): 3, ("m", "d"): 3, ("m", "l"): 3})
    assert majority_groups(balanced, ["gender", "tone"]) == {}
    assert majority_notes(balanced, ["gender"]) == [
        "gender has no majority group: the training split is balanced (6 people per group), so no drift toward a "
        "majority is measured"]
    tied = people({("f", "d"): 5, ("m", "d"): 5, ("x", "d"): 2})
    assert majority_groups(tied, ["gender"]) == {}
    assert majority_notes(tied, ["gender"]) == [
        "gender has no majority group: f, m tie with 5 training people each, so no drift toward a majority is "
        "measured"]
