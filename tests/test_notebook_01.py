"""Notebook 01 executed by papermill on the tiny profile: the audit of the fixture, its files and glued numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import execute, glued, text

from idfu_lab.data.pairs import TRAIN_FIELDS
from idfu_lab.jsonl import read_records as read_jsonl

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "01_data_audit.ipynb"


def test_notebook_01_audits_the_fixture(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "tiny"
    out = tmp_path / "01_data_audit.ipynb"
    nb = execute(NOTEBOOK, out, run_dir=str(run_dir))
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    values = {name: text(bundle) for name, bundle in glued(nb).items()}
    expected = {
        "n_rows": "25",
        "n_pairs": "25",
        "n_quarantined": "0",
        "chosen_pass": "25",
        "rejected_fail": "24",
        "parity_violations": "1",
        "n_train_pairs": "24",
        "near_duplicates": "0",
        "contaminated": "0",
        "suspected_synthetic": "1",
        "over_max_prompt_length": "0",
        "over_max_length": "0",
        "train_rejected_name_error": "7",
        "train_rejected_assertion_fail": "7",
        "train_rejected_type_error": "2",
    }
    assert {k: values[k] for k in expected} == expected
    for fig in ("fig_audit_outcome_mix", "fig_audit_edit_distances", "fig_audit_lengths"):
        assert "image/png" in glued(nb)[fig], fig

    audit_dir = run_dir / "audit"
    summary = json.loads((audit_dir / "audit.json").read_text())
    assert summary["parity_violation_ids"] == ["fx-023"] and summary["tokenizer"] == "tiny"
    train = read_jsonl(audit_dir / "train_pairs.jsonl")
    assert len(train) == 24 and all(tuple(r) == TRAIN_FIELDS for r in train)
    assert "fx-023" not in {r["id"] for r in train}
    assert len(read_jsonl(audit_dir / "pairs_annotated.jsonl")) == 25
    assert (audit_dir / "quarantine.jsonl").read_text() == ""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert sorted(manifest["steps"]["audit"]["outputs"]) == sorted(
        f"audit/{n}" for n in ("audit.json", "pairs_annotated.jsonl", "quarantine.jsonl", "train_pairs.jsonl")
    )


def test_notebook_01_curates_honest_pairs_from_the_miniature_s_own_samples(demo_run: Path) -> None:
    """The default run: no hand-written pair; notebook 01 samples, gates and pairs, then audits."""
    import nbformat

    nb = nbformat.read(demo_run / "notebooks" / "01_data_audit.ipynb", as_version=4)
    values = {name: text(bundle) for name, bundle in glued(nb).items()}
    assert int(values["curated_pairs"]) > 0 and values["n_pairs"] == values["curated_pairs"]
    assert values["parity_violations"] == "0" and values["n_train_pairs"] == values["n_pairs"]
    report = json.loads((demo_run / "curate" / "pairs.jsonl.report.json").read_text())
    assert report["problems"] == "mini-train" and report["n_usable_problems"] == 120
    decoding = report["settings"]["decoding"]
    assert decoding["do_sample"] is True and decoding["temperature"] > 0
    assert report["n_candidates"] == 120 * report["settings"]["samples"]
    pairs = read_jsonl(demo_run / "curate" / "pairs.jsonl")
    assert all(p["problem_id"].startswith("MiniTrain/") for p in pairs)
    assert all(p["chosen_outcome"] == "PASS" and p["rejected_outcome"] != "PASS" for p in pairs)
    assert {p["rejected_outcome"] for p in pairs} >= {"NAME_ERROR", "ASSERTION_FAIL"}
    summary = json.loads((demo_run / "audit" / "audit.json").read_text())
    assert summary["source"].endswith("curate/pairs.jsonl")  # what the audit read: the curated pairs
    assert summary["contaminated"] == 0
