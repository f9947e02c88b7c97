"""Failure taxonomy: sub-category rules (synthetic and hand-checked real failures), tables, stability, collapse."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from helpers import result_row as _row

from idfu_lab.analysis import taxonomy
from idfu_lab.errors import IdfuError
from idfu_lab.outcomes import Outcome
from idfu_lab.problems import load_humaneval

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
QWEN3 = SHARED / "humaneval-generations" / "qwen3-0.6b-n10"


@pytest.fixture(scope="module")
def problems():
    return load_humaneval()


# ----------------------------------------------------------------------------- NAME_ERROR rules


@pytest.mark.parametrize(
    ("message", "program", "expected"),
    [
        # a module used as one, never imported
        ("name 'math' is not defined", "def f(x):\n    return math.ceil(x)\n", "missing_import"),
        # a typing name in a signature: importable from typing
        ("name 'List' is not defined", "def f(x: List[int]) -> int:\n    return 1\n", "missing_import"),
        # Counter: collections (typing re-exports it, but collections is where it lives)
        ("name 'Counter' is not defined", "def f(xs):\n    return Counter(xs)\n", "missing_import"),
        # a module imported inside another function only
        (
            "name 're' is not defined",
            "def g():\n    import re\n\ndef f(s):\n    return re.sub('a', '', s)\n",
            "missing_import",
        ),
        # a helper called and never defined
        ("name 'is_prime' is not defined", "def f(n):\n    return is_prime(n)\n", "undefined_helper"),
        # a helper defined inside another function, called from outside it
        (
            "name 'helper' is not defined",
            "def g():\n    def helper(x):\n        return x\n\ndef f(n):\n    return helper(n)\n",
            "undefined_helper",
        ),
        # a variable assigned in one scope, used in another
        ("name 'total' is not defined", "def g():\n    total = 1\n\ndef f():\n    return total\n", "other"),
        # UnboundLocalError: no import can fix a name the function assigns
        (
            "cannot access local variable 'gcd' where it is not associated with a value",
            "def f(a, b):\n    gcd = gcd(a, b)\n    return gcd\n",
            "other",
        ),
        # prose that leaked into the program
        ("name 'Wait' is not defined", "def f():\n    return 1\nWait, but\n", "other"),
        # appended test code calling a misnamed function
        ("name 'cube' is not defined", "def iscube(a):\n    return True\n\ncube(64)\n", "other"),
        # the entry point shadowed inside itself
        (
            "local variable 'f' referenced before assignment",
            "def f(x):\n    assert f(1) == 1\n    def f(y):\n        return y\n",
            "other",
        ),
        # no name in the message at all
        ("free-form failure text", "def f():\n    pass\n", "other"),
    ],
)
def test_name_error_rules(message, program, expected):
    sub = taxonomy.name_error_subcategory(message, program, entry_point="f")
    assert sub.name == expected, sub.reason
    assert sub.outcome == Outcome.NAME_ERROR


def test_name_error_without_program_uses_the_name_only():
    assert taxonomy.name_error_subcategory("name 'heapq' is not defined").name == "missing_import"
    assert taxonomy.name_error_subcategory("name 'sqrt' is not defined").name == "missing_import"
    assert taxonomy.name_error_subcategory("name 'is_prime' is not defined").name == "other"
    # one-letter names are variables, never math.e
    assert taxonomy.name_error_subcategory("name 'e' is not defined").name == "other"


def test_importable_names_point_at_the_home_module():
    names = taxonomy.importable_names()
    assert names["Counter"] == "collections"
    assert names["List"] == "typing"
    assert names["reduce"] == "functools"
    assert names["heappush"] == "heapq"
    assert "e" not in names


# The hand-checked sample: real NameError failures of Qwen3-0.6B on HumanEval (sample ids
# "HumanEval/N__k"), each read in full. Three rules were corrected on this sample: Counter was first
# attributed to typing (it re-exports it), ``cube(64)`` appended after ``def iscube`` was first an
# "undefined helper" (it is test code calling a misnamed function), and the entry point shadowed by
# a nested redefinition of itself was first an "undefined helper" too.
HAND_CHECKED = {
    # chat replies, post-processed bodies
    ("chat", "HumanEval/1__3"): "other",  # result.append(...) with result never initialised
    ("chat", "HumanEval/39__3"): "undefined_helper",  # is_prime(fibs[-1] + fibs[-2]), no def
    ("chat", "HumanEval/55__1"): "missing_import",  # @lru_cache(maxsize=None) without functools
    ("chat", "HumanEval/76__0"): "missing_import",  # math.log without import math
    ("chat", "HumanEval/113__1"): "other",  # {n} in an f-string copied from the docstring
    ("chat", "HumanEval/129__1"): "missing_import",  # heapq.heappush without import heapq
    ("chat", "HumanEval/143__4"): "other",  # len(word) in primes; primes never built
    ("chat", "HumanEval/144__1"): "other",  # gcd = gcd(a, b): unbound local, an import would not help
    # plain completions, post-processed
    ("completion_pp", "HumanEval/10__3"): "undefined_helper",  # reverse(pal[-1]), no def
    ("completion_pp", "HumanEval/34__3"): "missing_import",  # Counter(l) without collections
    ("completion_pp", "HumanEval/76__3"): "missing_import",  # log(n) meaning math.log
    ("completion_pp", "HumanEval/100__7"): "other",  # level + 1, level never assigned
    ("completion_pp", "HumanEval/106__1"): "missing_import",  # factorial(i) meaning math.factorial
    ("completion_pp", "HumanEval/109__5"): "other",  # a stray "py" line (a fence's tag)
    ("completion_pp", "HumanEval/128__9"): "undefined_helper",  # product *= sign(num), no def
    # plain completions, raw
    ("completion_raw", "HumanEval/77__6"): "other",  # cube(64) ... appended after def iscube
    ("completion_raw", "HumanEval/99__2"): "other",  # closest_integer shadowed inside itself
    ("completion_raw", "HumanEval/120__3"): "other",  # "Wait, but" prose at column 0
    ("completion_raw", "HumanEval/147__2"): "undefined_helper",  # return count_triples(arr), no def
}

QWEN3_FILES = {
    "chat": "chat/humaneval_completions_multi_chat_postprocessed_fenceaware.jsonl_results.jsonl",
    "completion_pp": "completion_1/humaneval_completions_multi_postprocessed_fenceaware.jsonl_results.jsonl",
    "completion_raw": "completion_1/humaneval_completions_multi.jsonl_results.jsonl",
}


@pytest.fixture(scope="module")
def qwen3_name_errors():
    if not QWEN3.is_dir():
        pytest.skip("../shared/data is absent (real-data tests run where it is present)")
    out = {}
    for key, rel in QWEN3_FILES.items():
        with open(QWEN3 / rel, encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                if "is not defined" in rec["result"] or "referenced before assignment" in rec["result"]:
                    out[(key, rec["sample_id"])] = rec
    return out


def test_hand_checked_real_name_errors(qwen3_name_errors, problems):
    wrong = {}
    for key, expected in HAND_CHECKED.items():
        rec = qwen3_name_errors[key]
        program = rec["prompt"] + rec["completion"]
        sub = taxonomy.name_error_subcategory(rec["result"], program, problems[rec["task_id"]].entry_point)
        if sub.name != expected:
            wrong[key] = (expected, sub.name, sub.reason)
    assert not wrong


def test_real_name_errors_all_classified(qwen3_name_errors, problems):
    """Every real NameError gets a sub-category, and all three occur (the split is informative)."""
    seen = set()
    for rec in qwen3_name_errors.values():
        program = rec["prompt"] + rec["completion"]
        sub = taxonomy.name_error_subcategory(rec["result"], program, problems[rec["task_id"]].entry_point)
        assert sub.name in taxonomy.SUBCATEGORIES[Outcome.NAME_ERROR]
        seen.add(sub.name)
    assert seen == {"missing_import", "undefined_helper", "other"}
    assert len(qwen3_name_errors) > 150


# ----------------------------------------------------------------------------- other sub-categories


def test_assertion_and_no_code_subcategories():
    assert taxonomy.subcategory(_row("t", "ASSERTION_FAIL", "definition")).name == "self_test"
    assert taxonomy.subcategory(_row("t", "ASSERTION_FAIL", "test")).name == "wrong_answer"
    assert taxonomy.subcategory(_row("t", "ASSERTION_FAIL", None)).name == "unknown"
    assert taxonomy.subcategory(_row("t", "NO_CODE", None, completion="", raw="   ")).name == "empty"
    refusal = _row("t", "NO_CODE", None, completion="", raw="I cannot help with that.")
    assert taxonomy.subcategory(refusal).name == "prose_only"
    assert taxonomy.subcategory(_row("t", "TYPE_ERROR", "test")) is None


def test_classify_uses_the_problem_prompt(problems):
    # HumanEval/12's prompt imports List and Optional; the completion calls an undefined helper.
    rows = [
        _row(
            "HumanEval/12",
            "NAME_ERROR",
            "test",
            "name 'longest_of' is not defined",
            completion="    return longest_of(strings)\n",
        ),
        _row(
            "HumanEval/12",
            "NAME_ERROR",
            "definition",
            "name 'Optional' is not defined",
            solution="def longest(strings: List[str]) -> Optional[str]:\n    return None\n",
        ),
    ]
    frame = taxonomy.classify(rows, problems)
    assert list(frame["subcategory"]) == ["undefined_helper", "missing_import"]


# ----------------------------------------------------------------------------- tables


def _results(counts: dict[str, int], phase: dict[str, str] | None = None) -> list[dict]:
    rows, i = [], 0
    for outcome, n in counts.items():
        for _ in range(n):
            rows.append(
                _row(
                    f"HumanEval/{i}",
                    outcome,
                    (phase or {}).get(outcome, "test") if outcome != "PASS" else None,
                )
            )
            i += 1
    return rows


def test_compare_puts_the_study_categories_first():
    base = _results({"PASS": 130, "ASSERTION_FAIL": 23, "NAME_ERROR": 6, "TYPE_ERROR": 1, "SYNTAX_ERROR": 4})
    tuned = _results({"PASS": 138, "ASSERTION_FAIL": 19, "NAME_ERROR": 4, "TYPE_ERROR": 1, "INDEX_ERROR": 2})
    table = taxonomy.compare(base, tuned)
    assert list(table.index) == [
        "NAME_ERROR",
        "ASSERTION_FAIL",
        "TYPE_ERROR",
        "SYNTAX_ERROR",
        "INDEX_ERROR",
        "PASS",
    ]
    assert table.loc["NAME_ERROR", "base"] == 6 and table.loc["NAME_ERROR", "tuned"] == 4
    assert table.loc["NAME_ERROR", "change"] == -2
    assert table.loc["NAME_ERROR", "change_pct"] == pytest.approx(-100 * 2 / 6)
    assert (
        table.loc["ASSERTION_FAIL", "base_test"] == 23 and table.loc["ASSERTION_FAIL", "base_definition"] == 0
    )
    assert math.isnan(table.loc["INDEX_ERROR", "change_pct"])
    assert table[["base", "tuned"]].sum().tolist() == [164, 164]


def test_compare_keeps_zero_study_categories():
    table = taxonomy.compare(_results({"PASS": 3}), _results({"PASS": 2, "SYNTAX_ERROR": 1}))
    assert list(table.index) == ["NAME_ERROR", "ASSERTION_FAIL", "TYPE_ERROR", "SYNTAX_ERROR", "PASS"]
    assert table.loc["TYPE_ERROR"].tolist()[:2] == [0, 0]


def test_subcategory_table_counts_self_tests_and_wrong_answers():
    base = _results({"ASSERTION_FAIL": 3}, {"ASSERTION_FAIL": "definition"}) + _results({"ASSERTION_FAIL": 2})
    tuned = _results({"ASSERTION_FAIL": 2})
    subs = taxonomy.subcategory_table(base, tuned)
    assert subs.loc[("ASSERTION_FAIL", "self_test")].tolist() == [3, 0, -3]
    assert subs.loc[("ASSERTION_FAIL", "wrong_answer")].tolist() == [2, 2, 0]
    assert ("NAME_ERROR", "missing_import") in subs.index


def test_seed_table_marks_stable_categories():
    base = _results({"PASS": 10, "NAME_ERROR": 6, "TYPE_ERROR": 1})
    per_seed = {
        42: {"base": base, "tuned": _results({"PASS": 12, "NAME_ERROR": 4, "TYPE_ERROR": 1})},
        123: {"base": base, "tuned": _results({"PASS": 13, "NAME_ERROR": 3, "TYPE_ERROR": 1})},
        7: {"base": base, "tuned": _results({"PASS": 12, "NAME_ERROR": 4, "TYPE_ERROR": 1})},
    }
    tab = taxonomy.seed_table(per_seed)
    assert bool(tab.loc["TYPE_ERROR", "stable"])
    assert bool(tab.loc["TYPE_ERROR", "same_as_base"])
    assert not bool(tab.loc["NAME_ERROR", "stable"])
    assert tab.loc["NAME_ERROR", "tuned_mean"] == pytest.approx(11 / 3)
    assert tab.loc["NAME_ERROR", "tuned_std"] == pytest.approx(0.57735, abs=1e-4)  # the study's ± 0.58
    # the run's seed order (the mapping's), not a numeric or string sort
    assert [c for c in tab.columns if c.startswith("tuned@")] == ["tuned@42", "tuned@123", "tuned@7"]
    one = taxonomy.seed_table({42: per_seed[42]})
    assert one["stable"].isna().all()


def test_collapse_flags():
    base = _results({"PASS": 10, "ASSERTION_FAIL": 3, "NO_CODE": 1})
    tuned = _results({"PASS": 8, "ASSERTION_FAIL": 1, "NO_CODE": 3, "RECURSION_ERROR": 2})
    flags = {(f.outcome, f.kind): (f.base, f.tuned) for f in taxonomy.collapse_flags(base, tuned)}
    assert flags == {("NO_CODE", "collapse_sign_grew"): (1, 3), ("RECURSION_ERROR", "new_category"): (0, 2)}
    assert taxonomy.collapse_flags(base, base) == []
    frame = taxonomy.collapse_across_seeds(
        {42: {"base": base, "tuned": tuned}, 7: {"base": base, "tuned": base}}
    )
    assert frame["seed"].tolist() == [42, 42]


def test_glue_values():
    base = _results({"PASS": 10, "NAME_ERROR": 2, "ASSERTION_FAIL": 3}, {"ASSERTION_FAIL": "definition"})
    tuned = _results({"PASS": 13, "ASSERTION_FAIL": 2})
    values = taxonomy.glue_values(
        taxonomy.compare(base, tuned),
        taxonomy.subcategory_table(base, tuned),
        taxonomy.collapse_flags(base, tuned),
    )
    assert values["name_error_base"] == 2 and values["name_error_tuned"] == 0
    assert values["failures_base"] == 5 and values["failures_tuned"] == 2
    assert values["self_test_base"] == 3 and values["wrong_answer_tuned"] == 2
    assert values["name_error_other_base"] == 2  # no program given: the name is unknown
    assert values["collapse_flags"] == 0


# ----------------------------------------------------------------------------- reading


def test_read_results_errors_name_the_line(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"task_id": "HumanEval/0", "outcome": "PASS"}\n{"task_id": "HumanEval/1"}\n')
    with pytest.raises(IdfuError, match=r"r.jsonl:2: not a results row \(missing key\(s\) outcome\)"):
        taxonomy.read_results(p)
    p.write_text('{"task_id": "HumanEval/0", "outcome": "FINE"}\n')
    with pytest.raises(IdfuError, match="r.jsonl:1: unknown outcome 'FINE'"):
        taxonomy.read_results(p)
    p.write_text("{not json\n")
    with pytest.raises(IdfuError, match="r.jsonl:1: malformed JSON"):
        taxonomy.read_results(p)
    with pytest.raises(IdfuError, match="no such results file"):
        taxonomy.read_results(tmp_path / "absent.jsonl")


def test_first_samples_prefers_sample_zero():
    rows = [
        {"task_id": "A/1", "sample_index": 1, "outcome": "PASS"},
        {"task_id": "A/1", "sample_index": 0, "outcome": "TYPE_ERROR"},
        {"task_id": "A/2", "outcome": "PASS"},
    ]
    first = taxonomy.first_samples(rows)
    assert first["A/1"]["outcome"] == "TYPE_ERROR" and first["A/2"]["outcome"] == "PASS"


def test_program_for_rebuilds_what_ran(problems):
    p = problems["HumanEval/0"]
    assert taxonomy.program_for({"completion": "    return False\n"}, p) == p.prompt + "    return False\n"
    assert taxonomy.program_for({"solution": "def f(): pass\n"}, p) == "def f(): pass\n"
    assert taxonomy.program_for({"completion": "x = 1\n"}, None) == "x = 1\n"


def test_the_taxonomy_of_judged_designed_samples() -> None:
    """The study's story on six HumanEval problems judged by the real executor: the numbers notebook 04
    glues (through :func:`taxonomy.glue_values`) name each failure for what it is."""
    from helpers import judged_story

    from idfu_lab.problems import load_humaneval

    problems = load_humaneval()
    base, tuned = judged_story("base"), judged_story("tuned")
    table = taxonomy.compare(base, tuned)
    subs = taxonomy.subcategory_table(base, tuned, problems)
    flags = taxonomy.collapse_flags(base, tuned)
    values = taxonomy.glue_values(table, subs, flags)
    assert values["name_error_base"] == table.loc["NAME_ERROR", "base"] == 2
    assert values["name_error_tuned"] == table.loc["NAME_ERROR", "tuned"] == 0
    assert (
        values["assertion_fail_base"] == 2
        and values["self_test_base"] == 1
        and values["wrong_answer_base"] == 1
    )
    assert values["missing_import_base"] == 1 and values["undefined_helper_base"] == 1
    assert (
        values["type_error_tuned"] == 1 and values["collapse_flags"] == 1
    )  # TYPE_ERROR is new after training
    assert [f.outcome for f in flags] == ["TYPE_ERROR"] and flags[0].kind == "new_category"
