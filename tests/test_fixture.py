"""The shipped fixture: both sides of every pair through the real executor give the documented verdicts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from idfu_lab.data.audit import contamination_hits
from idfu_lab.data.pairs import gate_pairs, load

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "idfu_lab" / "data"
MBPP = REPO.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"

#: id -> (rejected outcome, rejected phase); every chosen side passes. Mirrors FIXTURE.md.
EXPECTED = {
    "fx-001": ("NAME_ERROR", "test"),
    "fx-002": ("NAME_ERROR", "test"),
    "fx-003": ("NAME_ERROR", "test"),
    "fx-004": ("NAME_ERROR", "test"),
    "fx-005": ("ASSERTION_FAIL", "test"),
    "fx-006": ("ASSERTION_FAIL", "definition"),
    "fx-007": ("ASSERTION_FAIL", "definition"),
    "fx-008": ("TYPE_ERROR", "test"),
    "fx-009": ("TYPE_ERROR", "test"),
    "fx-010": ("INDEX_ERROR", "test"),
    "fx-011": ("INDEX_ERROR", "test"),
    "fx-012": ("KEY_ERROR", "test"),
    "fx-013": ("ZERO_DIVISION", "test"),
    "fx-014": ("ASSERTION_FAIL", "test"),
    "fx-015": ("ASSERTION_FAIL", "test"),
    "fx-016": ("VALUE_ERROR", "test"),
    "fx-017": ("ATTRIBUTE_ERROR", "test"),
    "fx-018": ("SYNTAX_ERROR", "definition"),
    "fx-019": ("NAME_ERROR", "definition"),
    "fx-020": ("NAME_ERROR", "test"),
    "fx-021": ("RECURSION_ERROR", "test"),
    "fx-022": ("ASSERTION_FAIL", "test"),
    "fx-023": ("PASS", None),
    "fx-024": ("ASSERTION_FAIL", "test"),
    "fx-025": ("NAME_ERROR", "test"),
}


@pytest.fixture(scope="module")
def fixture_pairs():
    return load(DATA / "fixture_pairs.jsonl")


def test_fixture_rows_have_the_contract_fields():
    fields = {"id", "prompt", "chosen", "rejected", "test_list", "test_setup_code", "entry_point"}
    rows = [json.loads(line) for line in (DATA / "fixture_pairs.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == list(EXPECTED)
    for row in rows:
        assert set(row) == fields, row["id"]
        assert f"def {row['entry_point']}(" in row["prompt"], row["id"]
        assert "```python" in row["chosen"] and "```python" in row["rejected"], row["id"]
        assert row["test_setup_code"] == "" and len(row["test_list"]) == 3


def test_both_sides_get_the_documented_verdicts(fixture_pairs):
    verdicts = gate_pairs(fixture_pairs.pairs, timeout=5.0)
    got = {}
    for pair, (chosen, rejected) in zip(fixture_pairs.pairs, verdicts, strict=True):
        assert chosen.passed, (pair.id, chosen.outcome, chosen.message)
        got[pair.id] = (str(rejected.outcome), None if rejected.phase is None else str(rejected.phase))
    assert got == EXPECTED


def test_fixture_md_documents_the_same_verdicts():
    text = (DATA / "FIXTURE.md").read_text()
    assert "not training data" in text.lower()
    table = {
        m.group(1): (m.group(2), None if m.group(3) == "–" else m.group(3))
        for m in re.finditer(r"^\| (fx-\d{3}) \| `\w+` \| (\w+) \| ([\w–]+) \|", text, re.MULTILINE)
    }
    assert table == EXPECTED


def test_fixture_is_disjoint_from_humaneval(fixture_pairs):
    from idfu_lab.problems import load_humaneval

    he_entry_points = {p.entry_point for p in load_humaneval().values()}
    for pair in fixture_pairs.pairs:
        assert pair.problem.entry_point not in he_entry_points, pair.id
        fields = {"prompt": pair.prompt, "chosen": pair.chosen_code, "rejected": pair.rejected_code}
        assert contamination_hits(fields, 13) == [], pair.id


def test_fixture_is_not_copied_from_mbpp(fixture_pairs):
    if not MBPP.is_file():
        pytest.skip("../shared/data/mbpp is absent")
    rows = [json.loads(line) for line in MBPP.read_text().splitlines() if line.strip()]
    mbpp_names = {m for r in rows for m in re.findall(r"^def\s+(\w+)", r["code"], re.MULTILINE)}
    mbpp_asserts = {t.replace(" ", "") for r in rows for t in r["test_list"]}
    for pair in fixture_pairs.pairs:
        assert pair.problem.entry_point not in mbpp_names, pair.id
        for test in pair.problem.test.splitlines():
            assert test.replace(" ", "") not in mbpp_asserts, pair.id
