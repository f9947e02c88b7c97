"""Post-processing reads untrusted replies in the orchestrator: linear time, and one row never costs the run.

No test here asserts a duration (figures are the benchmark's job): the inputs are sized so that the
former quadratic fence pattern would take hours on them (3 backticks + 100,000 spaces took 54 s), so
a regression shows as a test that does not finish rather than as a flaky threshold.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from idfu_lab.analysis.judge import evaluate_file
from idfu_lab.generation import postprocess
from idfu_lab.generation.postprocess import build_program, extract_code, fenced_blocks, sanitize_code
from idfu_lab.problems import load_humaneval

MB = 1_000_000

HOSTILE = {
    "fence then spaces": "```" + " " * MB,
    "fence then tabs": "```" + "\t" * MB,
    "fence, tag, no newline": "```python" + " x" * (MB // 2),
    "spaces then fence": " " * MB + "```",
    "fence and space, repeated": "``` " * (MB // 4),
    "fence lines": "```\n" * (MB // 4),
    "def then spaces": "```python\ndef " + " " * MB,
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_megabyte_of_hostile_reply_is_post_processed(text: str) -> None:
    problem = load_humaneval()["HumanEval/23"]
    for policy in ("extract", "sanitize"):
        field, code = build_program(text, problem, postprocess=policy, imports="header")
        assert field in ("completion", "solution") and isinstance(code, str)


def test_the_fence_tag_is_still_read_after_spaces() -> None:
    # the info string's leading blanks are stripped after matching, as before
    assert fenced_blocks("```   python  \nx = 1\n```\n") == [("python", "x = 1\n")]
    assert extract_code("text\n```  js\nlet a\n```\n``` \t python\ny = 2\n```\n") == "y = 2\n"


DEEP = {
    "unary minus": "x = " + "-" * 200_000 + "1\n",
    "not": "x = " + "not " * 100_000 + "1\n",
    "additions": "x = " + "1+" * 200_000 + "1\n",
    "attributes": "x = a" + ".b" * 200_000 + "\n",
}


@pytest.mark.parametrize("code", DEEP.values(), ids=DEEP.keys())
def test_sanitize_leaves_code_too_deep_for_the_parser_as_it_is(code: str) -> None:
    assert sanitize_code(code) == code  # RecursionError / MemoryError inside ast.parse, not raised


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GOOD = "```python\ndef strlen(string: str) -> int:\n    return len(string)\n\nprint(strlen('ab'))\n```\n"


def test_a_reply_too_deep_to_sanitize_fails_alone(tmp_path: Path) -> None:
    deep = (
        "```python\ndef strlen(string: str) -> int:\n    x = "
        + "1+" * 200_000
        + "1\n    return len(string)\n```"
    )
    samples = _write(
        tmp_path / "s.jsonl",
        [
            {"task_id": "HumanEval/23", "completion": GOOD},
            {"task_id": "HumanEval/23", "completion": deep},
            {"task_id": "HumanEval/23", "completion": GOOD},
        ],
    )
    summary = evaluate_file(samples, tmp_path / "r.jsonl", postprocess="sanitize", workers=1)
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert summary.n_samples == 3 and [r["passed"] for r in rows] == [True, False, True]
    assert rows[1]["phase"] == "definition" and rows[1]["exception_type"] in ("RecursionError", "MemoryError")
    assert rows[1]["raw"] == deep and rows[1]["postprocess"] == "sanitize"


def test_any_error_in_post_processing_fails_that_row_with_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: whatever the policy raises on a row (here a RecursionError on the second
    reply), that row gets OTHER_ERROR naming it and is not run; the others are judged."""
    real = postprocess.apply_policy

    def failing(row: dict, problem: object, **kw: str) -> dict:
        if "boom" in row["completion"]:
            raise RecursionError("maximum recursion depth exceeded")
        return real(row, problem, **kw)

    monkeypatch.setattr(postprocess, "apply_policy", failing)
    samples = _write(
        tmp_path / "s.jsonl",
        [
            {"task_id": "HumanEval/23", "completion": GOOD},
            {"task_id": "HumanEval/23", "completion": GOOD + "# boom\n", "tag": 7},
        ],
    )
    evaluate_file(samples, tmp_path / "r.jsonl", postprocess="extract", workers=1)
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert rows[0]["passed"] is True
    failed = rows[1]
    assert (failed["passed"], failed["outcome"], failed["phase"]) == (False, "OTHER_ERROR", "definition")
    assert failed["exception_type"] == "RecursionError"
    assert (
        failed["message"]
        == "post-processing (extract) failed: RecursionError: maximum recursion depth exceeded"
    )
    assert failed["tag"] == 7 and failed["raw"] == GOOD + "# boom\n" and failed["duration_s"] == 0.0
