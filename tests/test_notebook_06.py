"""Notebook 06 as the pipeline executed it in the session's demo run (two of the recipe's three seeds):
the summary across seeds, its figures as files, and the numbers the book quotes glued from the package.

The statistics on designed runs (a seed missing, none with results, a malformed line, nothing passing)
are tested on the package in ``test_summary.py``.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import pytest
from conftest import DEMO_SEEDS
from helpers import errors, executed, glued, text

from idfu_lab import runs
from idfu_lab.analysis.summary import summarise

pytestmark = pytest.mark.slow


def test_notebook_06_glues_the_summary(demo_run: Path) -> None:
    run = runs.open(demo_run / "config.yaml", run_dir=demo_run)
    left_out = [s for s in run.config.seeds if s not in DEMO_SEEDS]
    assert left_out  # the recipe has a seed the demo run never ran: the page says so and goes on
    nb = executed(demo_run, "06_summary")
    assert not errors(nb)
    values = glued(nb)

    expected = summarise(run, write=False).book_numbers()
    for name, value in expected.items():
        got = float(text(values[name]))
        assert got == pytest.approx(value, rel=1e-9) or (math.isnan(got) and math.isnan(value)), name
    assert float(text(values["n_seeds_used"])) == len(DEMO_SEEDS)
    assert any(k.endswith("text/html") for k in values["headline_table"])  # the table itself, rendered
    for fig in ("fig_pass1_per_seed", "fig_paired_differences", "fig_category_counts", "fig_taxonomy_seeds"):
        assert any(k.endswith("image/png") for k in values[fig]), fig
    assert float(text(values["taxonomy_seeds"])) == len(DEMO_SEEDS)  # the views across seeds
    for name in ("pass1_per_seed", "paired_differences", "category_counts", "taxonomy_seeds"):
        for suffix in ("png", "svg"):  # the page's figures, as files to reuse
            assert run.layout.summary_figure(name, suffix).stat().st_size > 1000, (name, suffix)

    summary = json.loads(run.layout.summary_json.read_text())
    in_order = [s for s in run.config.seeds if s in DEMO_SEEDS]
    assert summary["seeds"] == in_order and {str(s) for s in left_out} == set(summary["missing"])
    assert datetime.fromisoformat(summary["written"]).tzinfo is not None  # ISO 8601, as the manifests
    assert summary["files"]["summary.json"] == "summary/summary.json"  # relative to the run
    markdown = "".join(
        o.get("data", {}).get("text/markdown", "")
        for c in nb.cells
        for o in c.get("outputs", [])
        if "data" in o
    )
    assert all(f"Seed {s} is left out" in markdown for s in left_out)
    assert f"Seeds with results: {', '.join(map(str, in_order))}." in markdown and "Seeds traced:" in markdown
