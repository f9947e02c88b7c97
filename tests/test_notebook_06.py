"""Notebook 06 executed by papermill on a run whose seeds hold results on the real HumanEval task ids."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import pytest
from helpers import execute, glued, text
from test_summary import build_run

from idfu_lab import runs
from idfu_lab.analysis.summary import summarise

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "06_summary.ipynb"


def test_notebook_06_glues_the_summary(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "tiny"
    build_run(run_dir, seeds=(42, 123))  # seed 7 of the recipe never ran: the notebook says so and goes on
    out = tmp_path / "06_summary.ipynb"
    nb = execute(NOTEBOOK, out, run_dir=str(run_dir))
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    values = glued(nb)

    expected = summarise(runs.open("tiny-humaneval", run_dir=run_dir), write=False).book_numbers()
    for name, value in expected.items():
        got = float(text(values[name]))
        assert got == pytest.approx(value, rel=1e-9) or (math.isnan(got) and math.isnan(value)), name
    assert float(text(values["n_seeds_used"])) == 2
    assert 8 < float(text(values["mde_pp"])) < 13
    assert any(k.endswith("text/html") for k in values["headline_table"])  # the table itself, rendered
    for fig in ("fig_pass1_per_seed", "fig_paired_differences", "fig_category_counts", "fig_taxonomy_seeds"):
        assert any(k.endswith("image/png") for k in values[fig]), fig
    assert float(text(values["taxonomy_seeds"])) == 2  # the views across seeds: every seed with results
    for name in ("pass1_per_seed", "paired_differences", "category_counts", "taxonomy_seeds"):
        for suffix in ("png", "svg"):  # the page's figures, as files to reuse
            assert (run_dir / "summary" / f"{name}.{suffix}").stat().st_size > 1000, (name, suffix)

    summary = json.loads((run_dir / "summary" / "summary.json").read_text())
    assert summary["seeds"] == [42, 123] and "7" in summary["missing"]
    assert datetime.fromisoformat(summary["written"]).tzinfo is not None  # ISO 8601, as the manifests
    assert summary["files"]["summary.json"] == "summary/summary.json"  # relative to the run
    shown = "".join(
        o.get("data", {}).get("text/markdown", "")
        for c in nb.cells
        for o in c.get("outputs", [])
        if "data" in o
    )
    assert "Seed 7 is left out" in shown
    assert "Seeds with results: 42, 123." in shown and "Seeds traced:" in shown  # the views across seeds
