"""Notebook 01 as the pipeline executed it in the session's demo run: curation of honest pairs from the
miniature's own samples, then the audit, its files and the numbers it glued.

What the audit concludes on designed pairs (the fixture's parity violation, its synthetic pair, exact
counts) is tested on the package in ``test_audit.py``; here the notebook must show and glue what the
package wrote, for the run it belongs to.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import errors, executed, glued, text

from idfu_lab.data.pairs import TRAIN_FIELDS
from idfu_lab.jsonl import read_records as read_jsonl
from idfu_lab.runs import RunLayout

pytestmark = pytest.mark.slow

AUDIT_KEYS = (
    "n_rows",
    "n_pairs",
    "n_quarantined",
    "chosen_pass",
    "chosen_fail",
    "rejected_pass",
    "rejected_fail",
    "parity_violations",
    "n_train_pairs",
    "near_duplicates",
    "contaminated",
    "suspected_synthetic",
    "over_max_prompt_length",
    "over_max_length",
    "checklist_failed",
)


def test_notebook_01_glues_the_audit_it_wrote(demo_run: Path) -> None:
    layout = RunLayout(demo_run)
    nb = executed(demo_run, "01_data_audit")
    assert not errors(nb)
    bundles = glued(nb)
    values = {name: text(bundle) for name, bundle in bundles.items()}
    summary = json.loads(layout.audit_json.read_text())
    assert {k: values[k] for k in AUDIT_KEYS} == {k: str(summary[k]) for k in AUDIT_KEYS}
    for category in ("NAME_ERROR", "ASSERTION_FAIL", "TYPE_ERROR"):
        expected = summary["train_rejected_outcomes"].get(category, 0)
        assert values[f"train_rejected_{category.lower()}"] == str(expected), category
    for fig in ("fig_audit_outcome_mix", "fig_audit_edit_distances", "fig_audit_lengths"):
        assert "image/png" in bundles[fig], fig

    train = read_jsonl(layout.train_pairs)
    assert len(train) == summary["n_train_pairs"] and all(tuple(r) == TRAIN_FIELDS for r in train)
    assert len(read_jsonl(layout.audit_dir / "pairs_annotated.jsonl")) == summary["n_rows"]
    assert (layout.audit_dir / "quarantine.jsonl").read_text() == ""
    manifest = json.loads(layout.manifest.read_text())
    assert sorted(manifest["steps"]["audit"]["outputs"]) == sorted(
        f"audit/{n}" for n in ("audit.json", "pairs_annotated.jsonl", "quarantine.jsonl", "train_pairs.jsonl")
    )
    assert "Every pair has gate parity" in "".join(
        o.get("data", {}).get("text/markdown", "") for c in nb.cells for o in c.get("outputs", [])
    )


def test_notebook_01_curates_honest_pairs_from_the_miniature_s_own_samples(demo_run: Path) -> None:
    """The default run: no hand-written pair; notebook 01 samples, gates and pairs, then audits."""
    values = {name: text(bundle) for name, bundle in glued(executed(demo_run, "01_data_audit")).items()}
    assert int(values["curated_pairs"]) > 0 and values["n_pairs"] == values["curated_pairs"]
    assert values["parity_violations"] == "0" and values["n_train_pairs"] == values["n_pairs"]
    report = json.loads((demo_run / "curate" / "pairs.jsonl.report.json").read_text())
    assert values["curated_samples"] == str(report["n_candidates"])
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
