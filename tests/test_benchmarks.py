"""Benchmarks as data: HumanEval+ and MBPP+ with EvalPlus's semantics (base and plus verdicts, typed),
MBPP's test split, and how each is found (or said to be missing).

HumanEval+ is tested on a small file built here from HumanEval's own problems in EvalPlus's schema
(nothing is downloaded); MBPP+ on EvalPlus's real file in ../shared/data (skipped where absent).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from idfu_lab.analysis.judge import evaluate_rows
from idfu_lab.benchmarks import evalplus
from idfu_lab.errors import IdfuError
from idfu_lab.problems import benchmark_name, load_benchmark, load_humaneval, load_problems

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MBPP_PLUS = SHARED / "mbpp" / "MbppPlus-v0.1.0.jsonl"
MBPP = SHARED / "mbpp" / "mbpp.jsonl"

#: HumanEval problems in EvalPlus's schema: task -> (base inputs, plus inputs, atol).
HE_INPUTS = {
    "HumanEval/0": ([[[1.0, 2.0, 3.0], 0.5], [[1.0, 2.8, 3.0, 4.0], 0.3]], [[[], 1.0], [[1.0, 1.0], 0.0]], 0),
    "HumanEval/2": ([[3.5], [1.33]], [[123.456], [0.0], [999.999]], 0),
    "HumanEval/13": ([[3, 7], [10, 15]], [[0, 5], [1071, 462], [2**40, 2**20]], 0),
    "HumanEval/32": ([[[1, 2]], [[-6, 11, -6, 1]]], [[[2, -3, 0, 1]]], 1e-6),
    "HumanEval/23": ([[""], ["abc"]], [["x" * 10_000]], 0),
}


def _he_plus_records() -> list[dict]:
    he = load_humaneval()
    out = []
    for tid, (base, plus, atol) in HE_INPUTS.items():
        p = he[tid]
        out.append(
            {
                "task_id": tid,
                "prompt": p.prompt,
                "entry_point": p.entry_point,
                "canonical_solution": p.reference[len(p.prompt) :],
                "base_input": base,
                "plus_input": plus,
                "atol": atol,
            }
        )
    return out


@pytest.fixture(scope="module")
def he_plus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("heplus") / "HumanEvalPlus-mini.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _he_plus_records()))
    return path


@pytest.fixture(scope="module")
def he_plus(he_plus_file):
    return load_benchmark("humaneval+", he_plus_file)


def _body(problem) -> str:
    return problem.reference[len(problem.prompt) :]


def _judge(problems, rows):
    return {r["note"]: r for r in evaluate_rows(rows, problems, timeout=10.0)}


def test_names_and_aliases():
    assert benchmark_name("HumanEval+") == "humaneval+" and benchmark_name("humaneval_plus") == "humaneval+"
    assert benchmark_name("mbpp_plus") == "mbpp+" and benchmark_name("mbpp") == "mbpp"
    assert benchmark_name("some/file.jsonl") is None


def test_humaneval_plus_canonical_mutated_and_typed(he_plus):
    p = he_plus
    assert {t.benchmark for t in p.values()} == {"humaneval+"}
    assert [name for name, _ in p["HumanEval/13"].suites] == ["base", "plus"]
    rows = [
        {"note": f"canonical {tid}", "task_id": tid, "completion": _body(prob)} for tid, prob in p.items()
    ]
    rows += [
        # wrong everywhere: ASSERTION_FAIL in the test phase of base (reported first)
        {"note": "wrong", "task_id": "HumanEval/13", "completion": "    return a * b\n"},
        # right on the base inputs only; the plus input 0 hits a ZeroDivisionError: plus-only, typed
        {
            "note": "plus only",
            "task_id": "HumanEval/13",
            "completion": "    b % a\n" + _body(p["HumanEval/13"]),
        },
        # right on the base inputs, wrong on a plus input: ASSERTION_FAIL in plus
        {
            "note": "plus wrong",
            "task_id": "HumanEval/2",
            "completion": "    return round(number % 1.0, 2) if number < 100 else 0.5\n",
        },
        # floats within atol pass (EvalPlus's 1e-6 for float outputs)
        {"note": "close", "task_id": "HumanEval/2", "completion": "    return number % 1.0 + 1e-9\n"},
        # find_zero is judged by the polynomial's value at the answer, not by equality with the reference
        {
            "note": "other root",
            "task_id": "HumanEval/32",
            "completion": "    import numpy\n    return float(sorted(numpy.roots(list(reversed(xs))).real)[-1])\n",
        },
        # quadratic on a long input: past its per-input time limit (max(1 s, 4 x the reference's time))
        {
            "note": "slow",
            "task_id": "HumanEval/23",
            "completion": "    n = 0\n    for a in string:\n        for b in string:\n            n += a == b\n"
            "    return len(string) if n >= 0 else 0\n",
        },
        {"note": "renamed", "task_id": "HumanEval/13", "solution": "def gcd(a, b):\n    return a\n"},
        # a candidate module that defines `sum` and `max` must not change how it is judged
        {
            "note": "shadows builtins",
            "task_id": "HumanEval/13",
            "completion": _body(p["HumanEval/13"]) + "\nsum = max = len = None\n",
        },
        {"note": "empty", "task_id": "HumanEval/13", "completion": "   \n"},
    ]
    got = _judge(p, rows)
    for tid in p:
        r = got[f"canonical {tid}"]
        assert (r["passed"], r["base_outcome"], r["plus_outcome"]) == (True, "PASS", "PASS"), r
    r = got["wrong"]
    assert (r["passed"], r["outcome"], r["phase"]) == (False, "ASSERTION_FAIL", "test")
    assert (r["base_outcome"], r["plus_outcome"]) == ("ASSERTION_FAIL", "ASSERTION_FAIL")
    assert "base input 0: greatest_common_divisor(3, 7) returned 21, expected 1" in r["base_message"]
    r = got["plus only"]
    assert (r["base_passed"], r["plus_passed"], r["passed"]) == (True, False, False)
    assert (r["outcome"], r["phase"], r["plus_exception_type"]) == (
        "ZERO_DIVISION",
        "test",
        "ZeroDivisionError",
    )
    r = got["plus wrong"]
    assert (r["base_outcome"], r["plus_outcome"], r["plus_phase"]) == ("PASS", "ASSERTION_FAIL", "test")
    assert "plus input 0: truncate_number(123.456)" in r["plus_message"]
    assert got["close"]["passed"] and got["other root"]["passed"]
    r = got["slow"]
    assert (r["base_outcome"], r["plus_outcome"], r["plus_phase"]) == ("PASS", "TIMEOUT", "test"), r
    assert "ran past its time limit" in r["plus_message"]
    assert (got["renamed"]["outcome"], got["renamed"]["phase"]) == ("NAME_ERROR", "test")
    assert got["shadows builtins"]["passed"]
    assert got["empty"]["outcome"] == "NO_CODE" and got["empty"]["plus_outcome"] == "NO_CODE"


def test_humaneval_plus_found_by_override_variable_or_cache_and_missing_says_where(
    he_plus_file, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("HUMANEVAL_OVERRIDE_PATH", raising=False)
    with pytest.raises(IdfuError) as err:
        load_benchmark("humaneval+")
    message = str(err.value)
    assert "HUMANEVAL_OVERRIDE_PATH" in message and "--problems" in message
    assert "github.com/evalplus/humanevalplus_release" in message and "Nothing is downloaded" in message
    monkeypatch.setenv("HUMANEVAL_OVERRIDE_PATH", str(he_plus_file))
    assert set(load_benchmark("humaneval+")) == set(HE_INPUTS)
    monkeypatch.delenv("HUMANEVAL_OVERRIDE_PATH")
    cached = tmp_path / "cache" / "evalplus" / "HumanEvalPlus-v0.1.10.jsonl"
    cached.parent.mkdir(parents=True)
    cached.write_text(he_plus_file.read_text())
    assert set(load_benchmark("humaneval+")) == set(HE_INPUTS)
    # a file given by path is recognised by its schema
    assert set(load_problems(he_plus_file)) == set(HE_INPUTS)
    with pytest.raises(IdfuError, match="not a mbpp\\+ task"):
        load_benchmark("mbpp+", he_plus_file)


def test_a_file_of_another_schema_is_refused(tmp_path):
    bad = tmp_path / "plain.jsonl"
    bad.write_text(
        json.dumps({"task_id": "HumanEval/0", "prompt": "x", "test": "y", "entry_point": "f"}) + "\n"
    )
    with pytest.raises(IdfuError, match="not an EvalPlus record"):
        load_benchmark("humaneval+", bad)


# ----------------------------------------------------------------------------- MBPP+ (real data)


@pytest.fixture(scope="module")
def mbpp_plus():
    if not MBPP_PLUS.is_file():
        pytest.skip("../shared/data is absent (real-data tests run where it is present)")
    return load_benchmark("mbpp+", MBPP_PLUS)


#: Tasks whose inputs EvalPlus turns back into tuples, sets, dicts or complex numbers (one per kind),
#: and tasks with a special oracle: each must judge its own canonical solution correct.
CONVERTED = ["Mbpp/2", "Mbpp/63", "Mbpp/75", "Mbpp/106", "Mbpp/115", "Mbpp/124", "Mbpp/250", "Mbpp/259"]
CONVERTED += ["Mbpp/278", "Mbpp/307", "Mbpp/722", "Mbpp/252", "Mbpp/580", "Mbpp/164", "Mbpp/295"]
CONVERTED += ["Mbpp/581", "Mbpp/558", "Mbpp/126", "Mbpp/793"]  # 126 defines `sum`; 793 has no plus inputs


def _canonical_verdicts(problems, task_ids):
    rows = [{"note": t, "task_id": t, "solution": problems[t].reference} for t in task_ids]
    return _judge(problems, rows)


def test_mbpp_plus_canonical_solutions_pass_base_and_plus(mbpp_plus):
    assert len(mbpp_plus) == 399
    # every 16th task (a spread over the file) and every input conversion and special oracle
    sample = list(mbpp_plus)[::16] + [t for t in CONVERTED if t in mbpp_plus]
    got = _canonical_verdicts(mbpp_plus, sample)
    failed = {
        t: (r["base_outcome"], r["plus_outcome"], r["message"]) for t, r in got.items() if not r["passed"]
    }
    assert not failed


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("IDFU_LAB_FULL_BENCHMARKS"),
    reason="all 399 MBPP+ references take minutes on 2 cores: set IDFU_LAB_FULL_BENCHMARKS=1",
)
def test_mbpp_plus_every_canonical_solution_passes(mbpp_plus):
    got = _canonical_verdicts(mbpp_plus, list(mbpp_plus))
    failed = {
        t: (r["base_outcome"], r["plus_outcome"], r["message"]) for t, r in got.items() if not r["passed"]
    }
    assert not failed


def test_mbpp_plus_mutants_fail_where_expected(mbpp_plus):
    p = mbpp_plus
    ref = {t: p[t].reference for t in ("Mbpp/2", "Mbpp/3", "Mbpp/4", "Mbpp/11")}
    base_inputs = {t: json.loads(json.dumps(r)) for t, r in ((t, _record(t)["base_input"]) for t in ref)}

    def only_base(tid: str, other: str) -> str:
        """The reference on the base inputs, ``other`` (an expression) anywhere else."""
        entry = p[tid].entry_point
        return (
            ref[tid].replace(f"def {entry}(", f"def _ref_{entry}(")
            + f"\n_BASE = {base_inputs[tid]!r}\n"
            + f"def {entry}(*args):\n"
            + "    if [list(a) if isinstance(a, tuple) else a for a in args] in _BASE:\n"
            + f"        return _ref_{entry}(*args)\n"
            + f"    return {other}\n"
        )

    rows = [
        # similar_elements: EvalPlus compares its output as a set, so another order is still right
        {
            "note": "set order",
            "task_id": "Mbpp/2",
            "solution": "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b), reverse=True))\n",
        },
        # is_not_prime inverted: wrong on base already
        {
            "note": "negated",
            "task_id": "Mbpp/3",
            "solution": ref["Mbpp/3"] + "\n_f = is_not_prime\ndef is_not_prime(n):\n    return not _f(n)\n",
        },
        {"note": "plus wrong", "task_id": "Mbpp/4", "solution": only_base("Mbpp/4", "[]")},
        {
            "note": "plus crash",
            "task_id": "Mbpp/11",
            "solution": only_base("Mbpp/11", "args[0][len(args[0]) + 5]"),
        },
        {"note": "plus type", "task_id": "Mbpp/3", "solution": only_base("Mbpp/3", "'no' + args[0]")},
    ]
    got = _judge(p, rows)
    assert got["set order"]["passed"]
    r = got["negated"]
    assert (r["base_outcome"], r["phase"], r["passed"]) == ("ASSERTION_FAIL", "test", False)
    for note, outcome in (
        ("plus wrong", "ASSERTION_FAIL"),
        ("plus crash", "INDEX_ERROR"),
        ("plus type", "TYPE_ERROR"),
    ):
        r = got[note]
        assert (r["base_outcome"], r["base_passed"]) == ("PASS", True), (note, r)
        assert (r["plus_outcome"], r["plus_phase"], r["passed"]) == (outcome, "test", False), (note, r)
        assert (r["outcome"], r["phase"]) == (outcome, "test")


def _record(task_id: str) -> dict:
    for line in MBPP_PLUS.read_text().splitlines():
        rec = json.loads(line)
        if rec["task_id"] == task_id:
            return rec
    raise KeyError(task_id)


def test_evaluate_command_reproduces_mbpp_plus_verdicts(mbpp_plus, tmp_path):
    """``idfu-lab evaluate --benchmark mbpp+ --problems FILE``: canonical and mutated solutions."""
    tids = ["Mbpp/2", "Mbpp/3", "Mbpp/4"]
    samples = [{"task_id": t, "solution": mbpp_plus[t].reference} for t in tids]
    samples.append(
        {"task_id": "Mbpp/4", "solution": "def heap_queue_largest(nums, n):\n    return nums[:n]\n"}
    )
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    out = tmp_path / "results.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "idfu_lab.cli",
        "evaluate",
        str(path),
        "--out",
        str(out),
        "--benchmark",
        "mbpp+",
    ]
    proc = subprocess.run(
        [*cmd, "--problems", str(MBPP_PLUS), "--no-progress"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 passed" in proc.stdout and "base tests only" in proc.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["passed"] for r in rows] == [True, True, True, False]
    assert (rows[3]["base_outcome"], rows[3]["phase"]) == ("ASSERTION_FAIL", "test")
    meta = json.loads((tmp_path / "results.jsonl.meta.json").read_text())
    assert meta["benchmark"] == "mbpp+" and meta["suites"] == ["base", "plus"]
    assert meta["timeout_s"] == evalplus.JOB_TIMEOUT_S


# ----------------------------------------------------------------------------- MBPP (test split)


def test_mbpp_test_split_from_a_file():
    if not MBPP.is_file():
        pytest.skip("../shared/data is absent (real-data tests run where it is present)")
    split = load_benchmark("mbpp", MBPP)
    assert len(split) == 500 and min(int(t) for t in split) == 11 and max(int(t) for t in split) == 510
    assert all(p.benchmark == "mbpp" and not p.suites for p in split.values())
    sample = list(split)[::25]
    got = _judge(split, [{"note": t, "task_id": t, "solution": split[t].reference} for t in sample])
    assert all(r["passed"] for r in got.values()), {
        t: r["message"] for t, r in got.items() if not r["passed"]
    }
    assert len(load_problems(MBPP)) == 974  # a file by path is taken whole (curation reads its training side)
