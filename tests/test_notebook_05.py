"""Notebook 05 executed by papermill on the tiny profile: it traces the seed's delta, reads a person's
labels from an annotation file, and glues the transitions and the logic/behaviour split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import execute, glued
from test_notebook_04 import write_run

from idfu_lab.analysis import annotate, delta
from idfu_lab.config import repo_root

NOTEBOOK = repo_root() / "notebooks" / "05_delta_tracing.ipynb"


@pytest.mark.slow
def test_notebook_traces_reads_annotations_and_glues(tmp_path: Path) -> None:
    run_dir = tmp_path / "tiny"
    write_run(run_dir, {42: "tuned", 123: "tuned-b"})
    # seed 123 was traced before (its notebook ran first): the cross-seed table must pick it up
    delta.trace_files(
        run_dir / "seed-123" / "results" / "base.jsonl",
        run_dir / "seed-123" / "results" / "tuned.jsonl",
        out_dir=run_dir / "seed-123" / "delta",
    )
    # a person judged one problem of seed 42
    expected = delta.trace_files(
        run_dir / "seed-42" / "results" / "base.jsonl", run_dir / "seed-42" / "results" / "tuned.jsonl"
    )
    judged = next(p for p in expected["problems"] if p["task_id"] == "HumanEval/23")
    notes = tmp_path / "annotations"
    annotate.write_annotations(
        annotate.annotations_path("tiny", 42, notes),
        [annotate.record(judged, "self_test_removed", "the assert expected 4", "ana", "2025-05-01")],
    )

    nb = execute(NOTEBOOK, tmp_path / "05.ipynb", seed=42, run_dir=str(run_dir), annotations_dir=str(notes))
    values = glued(nb)

    def value(name: str) -> str:
        return values[name]["text/plain"]

    written = delta.load_delta(run_dir / "seed-42" / "delta")
    assert (run_dir / "seed-42" / "delta" / "delta.html").is_file()
    for key in ("fail_to_pass", "pass_to_fail", "pass_to_pass", "fail_to_fail", "fail_to_fail_changed"):
        assert int(value(key)) == written[key] == expected[key], key
    assert (written["fail_to_pass"], written["pass_to_fail"]) == (3, 1)
    split = delta.split(written, {"HumanEval/23": "self_test_removed"})
    assert value("split_sentence").strip("'\"") == split.sentence
    assert float(value("net_pp")) == pytest.approx(split.net_pp) == pytest.approx(100 * 2 / 6)
    assert int(value("human_judged")) == 1 and int(value("human_agree")) == 1
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "(automatic)" in text and "the assert expected 4" in text
    # the problems that flip across seeds are read on the summary page (06), after every seed ran
    assert "Seeds traced" not in text
    assert "diff_header" in text  # the embedded side-by-side diffs
    assert "image/png" in values["fig_delta_labels"]
