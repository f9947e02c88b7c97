"""Loading and validating pair sets: every source format, every kind of malformed row, fast offline failure."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from idfu_lab.data.pairs import Columns, iter_rows, load, load_problem_set, validate_row
from idfu_lab.errors import IdfuError
from idfu_lab.jsonl import read_records as read_jsonl

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "idfu_lab" / "data" / "fixture_pairs.jsonl"

CHOSEN = "Here it is:\n\n```python\ndef add(a, b):\n    return a + b\n```"
REJECTED = "Here it is:\n\n```python\ndef add(a, b):\n    return a - b\n```"
TESTS = ["assert add(1, 2) == 3"]


def good(i: int | str, **kw) -> dict:
    row = {
        "id": str(i),
        "prompt": "Write add(a, b).",
        "chosen": CHOSEN,
        "rejected": REJECTED,
        "test_list": TESTS,
    }
    row.update(kw)
    return row


def write_lines(path: Path, lines: list[str | dict]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write((json.dumps(line) if isinstance(line, dict) else line) + "\n")
    return path


def test_fixture_loads_whole_with_mbpp_style_tests():
    ps = load(FIXTURE)
    assert (ps.n_rows, ps.n_pairs, ps.n_quarantined) == (25, 25, 0)
    pair = ps.pairs[0]
    assert pair.id == "fx-001" and pair.tests_from == "test_list"
    assert pair.problem.benchmark == "mbpp" and pair.problem.entry_point == "compass_bearing"
    assert pair.problem.test.count("assert") == 3
    assert pair.chosen_code.startswith("import math") and "```" not in pair.rejected_code
    assert len({p.id for p in ps.pairs}) == 25


def test_malformed_rows_of_every_kind_go_to_quarantine(tmp_path):
    """Each bad line is quarantined with its line number and reason; nothing crashes, nothing vanishes."""
    bad_lines: list[tuple[str | dict, str]] = [
        ('{"id": "broken", "prompt": ', "invalid JSON"),
        ("[1, 2, 3]", "not a JSON object"),
        ({"id": "a1", "prompt": "p", "rejected": REJECTED, "test_list": TESTS}, "missing field 'chosen'"),
        ({"id": "a2", "prompt": "p", "chosen": CHOSEN, "test_list": TESTS}, "missing field 'rejected'"),
        (good("a3", prompt="   "), "empty field 'prompt'"),
        (good("a4", chosen="\n\t "), "empty field 'chosen'"),
        (good("a5", rejected=CHOSEN), "chosen and rejected are identical"),
        ({"id": "a6", "prompt": "p", "chosen": CHOSEN, "rejected": REJECTED}, "no tests"),
        (good("a7", test_list="assert add(1, 2) == 3"), "field 'test_list' must be a list"),
        (good("a8", test_list=[]), "field 'test_list' is empty"),
        (
            good("a9", test_list=None, test="def check(f):\n    assert f(1, 2) == 3"),
            "field 'test' needs 'entry_point'",
        ),
        (good("a10", chosen=42), "field 'chosen' must be text"),
        (good("a11", prompt={"text": "p"}), "field 'prompt' must be text"),
        (good("a12", problem_id="7", test_list=None), "problem_id '7' but no problem set"),
        (good("a13", test_setup_code=["x = 1"]), "field 'test_setup_code' must be text"),
        (
            good(
                "a14",
                prompt=[
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "c"},
                ],
            ),
            "multi-turn prompt",
        ),
        (
            good("a15", chosen=[{"role": "user", "content": CHOSEN}]),
            "field 'chosen' must be one assistant message",
        ),
        (good("ok-1"), None),
        (good("ok-1"), "duplicate id 'ok-1'"),
        ({**good("x"), "id": ["not", "an", "id"]}, "field 'id' must be a string or an integer"),
    ]
    lines = [line for line, _ in bad_lines]
    lines.insert(3, "")  # a blank line is not a row
    path = write_lines(tmp_path / "pairs.jsonl", lines)
    with path.open("ab") as fh:
        fh.write(b'{"id": "latin1", "prompt": "caf\xe9"}\n')  # not UTF-8
    ps = load(path)
    expected = [reason for _, reason in bad_lines if reason] + ["not UTF-8"]
    assert ps.n_rows == len(bad_lines) + 1
    assert ps.n_pairs == 1 and ps.pairs[0].id == "ok-1"
    assert ps.n_quarantined == len(expected) == ps.n_rows - ps.n_pairs
    for q, reason in zip(ps.quarantine, expected, strict=True):
        assert reason in q.reason, (q.line, q.reason)
    # physical line numbers (the blank line 4 is skipped), and the first duplicate named
    assert [q.line for q in ps.quarantine[:4]] == [1, 2, 3, 5]
    dup = next(q for q in ps.quarantine if q.reason.startswith("duplicate"))
    assert "first at row" in dup.reason and dup.id == "ok-1"
    out = ps.write_quarantine(tmp_path / "quarantine.jsonl")
    rows = read_jsonl(out)
    assert (
        len(rows) == ps.n_quarantined
        and rows[0]["line"] == 1
        and rows[0]["row"].startswith('{"id": "broken"')
    )
    assert sum(ps.quarantine_reasons().values()) == ps.n_quarantined


def test_problem_ids_resolve_against_mbpp_and_humaneval(tmp_path):
    mbpp = write_lines(
        tmp_path / "problems.jsonl",
        [
            {
                "task_id": 901,
                "text": "Write a function to add two numbers.",
                "code": "def add(a, b):\r\n    return a + b",
                "test_list": TESTS,
                "test_setup_code": "",
            }
        ],
    )
    problems = load_problem_set(mbpp)
    rows = [
        {"id": "p1", "prompt": "Add.", "chosen": CHOSEN, "rejected": REJECTED, "problem_id": 901},
        {"id": "p2", "prompt": "Add.", "chosen": CHOSEN, "rejected": REJECTED, "task_id": "901"},
        {"id": "p3", "prompt": "Add.", "chosen": CHOSEN, "rejected": REJECTED, "problem_id": "902"},
    ]
    ps = load(write_lines(tmp_path / "pairs.jsonl", rows), problems=problems)
    assert [p.problem_id for p in ps.pairs] == ["901", "901"]
    assert ps.pairs[0].problem is problems["901"] and ps.pairs[0].tests_from == "problem_set"
    assert ps.quarantine[0].reason == "problem_id '902' is not in the problem set"

    he = load_problem_set("humaneval")
    pair = validate_row(
        {"prompt": "p", "chosen": CHOSEN, "rejected": REJECTED, "problem_id": "HumanEval/0"}, 1, problems=he
    )
    assert pair.problem.entry_point == "has_close_elements" and pair.id == "row-1"


def test_humaneval_style_inline_tests():
    row = good("h1", test_list=None, test="def check(f):\n    assert f(1, 2) == 3\n", entry_point="add")
    pair = validate_row(row, 3)
    assert pair.tests_from == "test" and pair.problem.test.endswith("check(add)")


def test_json_parquet_and_saved_dataset_sources(tmp_path):
    rows = [good(i) for i in range(3)]
    (tmp_path / "list.json").write_text(json.dumps(rows))
    (tmp_path / "split.json").write_text(json.dumps({"train": rows, "test": rows[:1]}))
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    (tmp_path / "columns.json").write_text(json.dumps(columns))
    for name in ("list.json", "split.json", "columns.json"):
        ps = load(tmp_path / name)
        assert [p.id for p in ps.pairs] == ["0", "1", "2"], name

    import datasets
    import pandas as pd

    pd.DataFrame(rows).to_parquet(tmp_path / "pairs.parquet")
    ps = load(tmp_path / "pairs.parquet")
    assert ps.n_pairs == 3 and ps.pairs[0].problem.test == TESTS[0]  # arrays from Parquet become lists

    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    assert load(tmp_path / "saved").n_pairs == 3
    with pytest.raises(IdfuError, match="no split 'dev'"):
        load(tmp_path / "saved", split="dev")


def test_conversational_rows_become_plain_texts_and_back_to_trl(tmp_path):
    user = {"role": "user", "content": "Write add(a, b)."}
    explicit = good(
        "c1",
        prompt=[{"role": "system", "content": "You are terse."}, user],
        chosen=[{"role": "assistant", "content": CHOSEN}],
        rejected=[{"role": "assistant", "content": REJECTED}],
    )
    implicit = {
        "id": "c2",
        "chosen": [user, {"role": "assistant", "content": CHOSEN}],
        "rejected": [user, {"role": "assistant", "content": REJECTED}],
        "test_list": TESTS,
    }
    ps = load(write_lines(tmp_path / "conv.jsonl", [explicit, implicit]))
    assert ps.n_quarantined == 0
    c1, c2 = ps.pairs
    assert (c1.prompt, c1.system, c1.chosen) == ("Write add(a, b).", "You are terse.", CHOSEN)
    assert (c2.prompt, c2.system, c2.rejected) == ("Write add(a, b).", None, REJECTED)
    assert c1.conversational and c2.conversational
    trl = c1.as_trl()
    assert trl["prompt"][0]["role"] == "system" and trl["chosen"] == [
        {"role": "assistant", "content": CHOSEN}
    ]
    assert c2.as_trl(conversational=False) == {
        "prompt": "Write add(a, b).",
        "chosen": CHOSEN,
        "rejected": REJECTED,
    }


def test_columns_are_mapped_and_limit_keeps_the_first_valid_pairs(tmp_path):
    rows = [
        {"uid": f"u{i}", "question": "Write add.", "good": CHOSEN, "bad": REJECTED, "test_list": TESTS}
        for i in range(5)
    ]
    rows.insert(1, {"uid": "broken", "question": "Write add.", "good": CHOSEN})
    path = write_lines(tmp_path / "mapped.jsonl", rows)
    cols = Columns(prompt="question", chosen="good", rejected="bad", id="uid")
    ps = load(path, columns=cols, limit=3)
    assert [p.id for p in ps.pairs] == ["u0", "u1", "u2"]
    assert (
        ps.n_beyond_limit == 2 and ps.n_quarantined == 1 and "missing field 'bad'" in ps.quarantine[0].reason
    )
    assert ps.pairs[0].extra == {"test_list": TESTS}


def test_bad_sources_are_errors_that_name_the_file(tmp_path):
    with pytest.raises(IdfuError, match="no_such.jsonl: no such file"):
        load(tmp_path / "no_such.jsonl")
    (tmp_path / "doc.json").write_text('[\n{"id": 1},\n{"id": 2,,}\n]')
    with pytest.raises(IdfuError, match=r"doc\.json:3: not valid JSON"):
        load(tmp_path / "doc.json")
    (tmp_path / "pairs.csv").write_text("id,prompt\n")
    with pytest.raises(IdfuError, match=r"pairs\.csv: unsupported format '\.csv'"):
        load(tmp_path / "pairs.csv")
    (tmp_path / "obj.json").write_text('{"meta": 1}')
    with pytest.raises(IdfuError, match="expected a list of pair objects"):
        list(iter_rows(tmp_path / "obj.json"))
    with pytest.raises(IdfuError, match="problem set not found"):
        load_problem_set(str(tmp_path / "missing_problems.jsonl"))


def test_hub_ids_fail_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(IdfuError, match=r"namakoo/idfu-verified-code.*offline \(HF_HUB_OFFLINE=1\)"):
        load("namakoo/idfu-verified-code")
    with pytest.raises(IdfuError, match="offline"):
        load_problem_set("google-research-datasets/mbpp")
    assert time.perf_counter() - t0 < 20


def test_relative_paths_resolve_from_the_repository(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # as from notebooks/ or any other folder
    assert load("idfu_lab/data/fixture_pairs.jsonl").n_pairs == 25
