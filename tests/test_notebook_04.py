"""Notebook 04 as the pipeline executed it for each seed of the session's demo run: the failure taxonomy
of that seed's results, shown and glued as the package computes it.

What the taxonomy concludes on designed samples (a missing import, a self-test, an undefined helper, a
wrong answer, a new TYPE_ERROR after training) is tested on the package in ``test_taxonomy.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DEMO_SEEDS
from helpers import errors, executed, glued, shown, text

from idfu_lab import runs
from idfu_lab.analysis import taxonomy

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", DEMO_SEEDS)
def test_notebook_04_shows_and_glues_the_seed_s_taxonomy(demo_run: Path, seed: int) -> None:
    run = runs.open(demo_run / "config.yaml", seed=seed, run_dir=demo_run)
    nb = executed(demo_run, "04_failure_taxonomy", seed)
    assert not errors(nb)
    values = glued(nb)

    results = taxonomy.load_pair(run)
    problems = taxonomy.problems_for(run)
    table = taxonomy.compare(results["base"], results["tuned"])
    expected = taxonomy.glue_values(
        table,
        taxonomy.subcategory_table(results["base"], results["tuned"], problems),
        taxonomy.collapse_flags(results["base"], results["tuned"]),
    )
    assert {name: float(text(values[name])) for name in expected} == pytest.approx(expected)
    # the miniature's habit: a missing import is the base model's NAME_ERROR
    assert expected["name_error_base"] == table.loc["NAME_ERROR", "base"] > 0
    assert expected["missing_import_base"] > 0
    for fig in ("fig_taxonomy_outcomes", "fig_taxonomy_subcategories"):
        assert "image/png" in values[fig], fig
    outputs = shown(nb)
    assert "subcategory" in outputs and "NAME_ERROR" in outputs
    # views across seeds live on the summary page (06), so this page reads the same whatever order seeds ran
    assert "taxonomy_seeds" not in values and "tuned@" not in outputs
