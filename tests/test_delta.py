"""Delta tracing: each cause label on small HumanEval programs, transitions, the split, seeds, HTML, CLI,
and a trace between two real models (qwen2 vs qwen2-72B chat replies, evaluated here)."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest
from helpers import result_row as _row

from idfu_lab.analysis import delta
from idfu_lab.problems import load_humaneval
from idfu_lab.report import delta_html

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CHAT = SHARED / "humaneval-generations" / "qwen2-llama3-chat"

GCD_SIG = "def greatest_common_divisor(a: int, b: int) -> int:\n"
GCD_OK = GCD_SIG + "    while b:\n        a, b = b, a % b\n    return a\n"
GCD_MATH = GCD_SIG + "    return math.gcd(a, b)\n"
PRIME_SIG = "def prime_length(string):\n"
PRIME_CALL = PRIME_SIG + "    return is_prime(len(string))\n"
IS_PRIME = (
    "def is_prime(n):\n    if n < 2:\n        return False\n    return all(n % i for i in range(2, n))\n"
)


@pytest.fixture(scope="module")
def problems():
    """HumanEval, plus copies of HumanEval/13 (gcd) as GCD/1..8 for the multi-problem tests."""
    he = load_humaneval()
    gcd = {
        f"GCD/{i}": dataclasses.replace(he["HumanEval/13"], task_id=f"GCD/{i}", benchmark="custom")
        for i in range(1, 9)
    }
    return {**he, **gcd}


def _labels(base_row, tuned_row, problems) -> dict[str, delta.Label]:
    d = delta.trace([base_row], [tuned_row], problems)
    assert len(d.problems) == 1
    return {lab.name: lab for lab in d.problems[0].labels}


# ----------------------------------------------------------------------------- one test per label


def test_import_added(problems):
    base = _row("HumanEval/13", "NAME_ERROR", "test", "name 'math' is not defined", solution=GCD_MATH)
    tuned = _row("HumanEval/13", "PASS", solution="import math\n\n\n" + GCD_MATH)
    labels = _labels(base, tuned, problems)
    assert set(labels) == {"import_added"}
    lab = labels["import_added"]
    assert "math" in lab.detail and "name 'math' is not defined" in lab.detail
    assert [(e.side, e.line, e.text) for e in lab.evidence] == [("tuned", 1, "import math")]


def test_import_moved_into_the_function_is_not_logic(problems):
    base = _row("HumanEval/13", "TIMEOUT", "test", solution="import math\n" + GCD_MATH)
    tuned = _row(
        "HumanEval/13",
        "PASS",
        solution=GCD_SIG
        + '    """gcd via the library."""\n    import math\n\n    return math.gcd(a, b)  # fast\n',
    )
    assert set(_labels(base, tuned, problems)) == {"format_only"}


def test_helper_defined_top_level_and_nested(problems):
    base = _row("HumanEval/82", "NAME_ERROR", "test", "name 'is_prime' is not defined", solution=PRIME_CALL)
    tuned = _row("HumanEval/82", "PASS", solution=IS_PRIME + "\n\n" + PRIME_CALL)
    labels = _labels(base, tuned, problems)
    assert set(labels) == {"helper_defined"}
    assert labels["helper_defined"].evidence[0].text == "def is_prime(n):"
    assert "name 'is_prime' is not defined" in labels["helper_defined"].detail
    nested = (
        PRIME_SIG
        + "".join("    " + line + "\n" for line in IS_PRIME.splitlines())
        + "    return is_prime(len(string))\n"
    )
    labels = _labels(base, _row("HumanEval/82", "PASS", solution=nested), problems)
    assert set(labels) == {
        "helper_defined"
    }  # the new nested helper is not a change of the entry point's logic


def test_self_test_removed_and_added(problems):
    base = _row(
        "HumanEval/13",
        "ASSERTION_FAIL",
        "definition",
        solution=GCD_OK
        + "\n\nassert greatest_common_divisor(3, 5) == 3\nprint(greatest_common_divisor(25, 15))\n",
    )
    tuned = _row("HumanEval/13", "PASS", solution=GCD_OK)
    labels = _labels(base, tuned, problems)
    assert set(labels) == {"self_test_removed"}
    texts = [e.text for e in labels["self_test_removed"].evidence]
    assert texts == ["assert greatest_common_divisor(3, 5) == 3", "print(greatest_common_divisor(25, 15))"]
    assert all(e.side == "base" for e in labels["self_test_removed"].evidence)
    # the reverse direction: a regression caused by an appended self-test
    labels = _labels(tuned, base, problems)
    assert set(labels) == {"self_test_added"}
    # a __main__ block is test code too, but it does not run on import: the detail says so
    guarded = GCD_OK + '\nif __name__ == "__main__":\n    assert greatest_common_divisor(3, 5) == 1\n'
    labels = _labels(_row("HumanEval/13", "TIMEOUT", "test", solution=guarded), tuned, problems)
    assert set(labels) == {"self_test_removed"}
    assert "not run on import" in labels["self_test_removed"].detail


def test_extraction_fixed_no_code(problems):
    base = _row("HumanEval/23", "NO_CODE", None, completion="", raw="I'm sorry, I can't do that.")
    tuned = _row("HumanEval/23", "PASS", completion="    return len(string)\n")
    labels = _labels(base, tuned, problems)
    assert set(labels) == {"extraction_fixed"}  # nothing to compare with: no logic change is claimed
    assert "no code" in labels["extraction_fixed"].detail
    assert labels["extraction_fixed"].evidence[0].text == "I'm sorry, I can't do that."


def test_extraction_fixed_syntax_and_missing_entry_point(problems):
    fenced = "```python\ndef strlen(string: str) -> int:\n    return len(string)\n```\n"
    base = _row("HumanEval/23", "SYNTAX_ERROR", "definition", solution=fenced)
    tuned = _row("HumanEval/23", "PASS", solution="def strlen(string: str) -> int:\n    return len(string)\n")
    labels = _labels(base, tuned, problems)
    assert set(labels) == {"extraction_fixed"}
    assert labels["extraction_fixed"].evidence[0].text == "```python"
    wrong_name = _row(
        "HumanEval/23",
        "NAME_ERROR",
        "test",
        "name 'strlen' is not defined",
        solution="def length(s):\n    return len(s)\n",
    )
    labels = _labels(wrong_name, tuned, problems)
    assert "extraction_fixed" in labels and "does not define strlen" in labels["extraction_fixed"].detail
    # the reverse
    labels = _labels(tuned | {"outcome": "PASS"}, base | {"passed": False}, problems)
    assert "extraction_broken" in labels


def test_extraction_shape_changed(problems):
    # Both runnable, but the base reply was a bare body (appended to the prompt) and the tuned one a
    # fenced, complete function: an output-format change even though the logic is the same.
    base = _row(
        "HumanEval/23",
        "TIMEOUT",
        "test",
        completion="    return len(string)\n",
        raw="    return len(string)\n",
    )
    tuned = _row(
        "HumanEval/23",
        "PASS",
        solution="def strlen(string: str) -> int:\n    return len(string)\n",
        raw="```python\ndef strlen(string: str) -> int:\n    return len(string)\n```",
    )
    labels = _labels(base, tuned, problems)
    assert "extraction_fixed" in labels
    assert "fenced code block in the tuned reply only" in labels["extraction_fixed"].detail
    assert "logic_changed" not in labels


def test_logic_changed(problems):
    base = _row("HumanEval/13", "ASSERTION_FAIL", "test", solution=GCD_SIG + "    return min(a, b)\n")
    tuned = _row("HumanEval/13", "PASS", solution=GCD_OK)
    labels = _labels(base, tuned, problems)
    assert set(labels) == {"logic_changed"}
    ev = {(e.side, e.text.strip()) for e in labels["logic_changed"].evidence}
    assert ("base", "return min(a, b)") in ev and ("tuned", "a, b = b, a % b") in ev
    assert "greatest_common_divisor (entry point)" in labels["logic_changed"].detail


def test_logic_changed_in_a_shared_helper(problems):
    slow = "def is_prime(n):\n    return n > 1 and all(n % i for i in range(2, n - 1))\n"
    base = _row("HumanEval/82", "ASSERTION_FAIL", "test", solution=slow + PRIME_CALL)
    tuned = _row("HumanEval/82", "PASS", solution=IS_PRIME + PRIME_CALL)
    labels = _labels(base, tuned, problems)
    assert set(labels) == {"logic_changed"} and "is_prime" in labels["logic_changed"].detail


def test_format_only(problems):
    base = _row("HumanEval/13", "TIMEOUT", "test", solution=GCD_OK)
    reformatted = (
        GCD_SIG
        + '    """Euclid."""\n    # loop until the remainder is zero\n    while b:\n\n        a, b = (b, a % b)\n    return a\n'
    )
    labels = _labels(base, _row("HumanEval/13", "PASS", solution=reformatted), problems)
    assert set(labels) == {"format_only"} and "comments, docstrings or layout" in labels["format_only"].detail
    labels = _labels(base, _row("HumanEval/13", "PASS", solution=GCD_OK), problems)
    assert set(labels) == {"format_only"} and "identical" in labels["format_only"].detail


def test_several_labels_at_once(problems):
    base = _row(
        "HumanEval/13",
        "NAME_ERROR",
        "definition",
        "name 'math' is not defined",
        solution=GCD_SIG + "    return min(a, b)\n\nprint(math.gcd(3, 5))\n",
    )
    tuned = _row("HumanEval/13", "PASS", solution="import math\n" + GCD_MATH)
    assert set(_labels(base, tuned, problems)) == {"import_added", "self_test_removed", "logic_changed"}


# ----------------------------------------------------------------------------- transitions and the split


def _pair_rows():
    ok = {"solution": GCD_OK}
    bad = {"solution": GCD_SIG + "    return min(a, b)\n"}
    base = [
        _row("GCD/1", "ASSERTION_FAIL", "test", **bad),
        _row("GCD/2", "NAME_ERROR", "test", "name 'math' is not defined", solution=GCD_MATH),
        _row("GCD/3", "PASS", **ok),
        _row("GCD/4", "PASS", **ok),
        _row("GCD/5", "ASSERTION_FAIL", "definition", solution=GCD_OK + "assert False\n"),
        _row("GCD/6", "TYPE_ERROR", "test", **bad),
        _row("GCD/7", "PASS", **ok),
    ]
    tuned = [
        _row("GCD/1", "PASS", **ok),  # fixed by logic
        _row("GCD/2", "PASS", solution="import math\n" + GCD_MATH),  # fixed by an import
        _row("GCD/3", "ASSERTION_FAIL", "test", **bad),  # broken by logic
        _row("GCD/4", "PASS", **ok),
        _row("GCD/5", "ASSERTION_FAIL", "test", **bad),  # still failing, other phase
        _row("GCD/6", "TYPE_ERROR", "test", **bad),  # unchanged failure
        _row("GCD/8", "PASS", **ok),  # only in tuned
    ]
    return base, tuned


def test_trace_transitions(problems):
    base, tuned = _pair_rows()
    d = delta.trace(base, tuned, problems).to_dict()
    assert d["n"] == 6
    assert (d["fail_to_pass"], d["pass_to_fail"], d["pass_to_pass"], d["fail_to_fail"]) == (2, 1, 1, 2)
    assert d["fail_to_fail_changed"] == 1 and d["tasks"]["fail_to_fail_changed"] == ["GCD/5"]
    assert [p["task_id"] for p in d["problems"]] == [
        "GCD/1",
        "GCD/2",
        "GCD/3",
        "GCD/5",
    ]
    assert d["only_base"] == ["GCD/7"] and d["only_tuned"] == ["GCD/8"]
    assert d["warnings"]
    first = d["problems"][0]
    assert first["base"]["outcome"] == "ASSERTION_FAIL" and first["tuned"]["outcome"] == "PASS"
    assert first["base"]["subcategory"] == "wrong_answer"
    assert d["problems"][1]["base"]["subcategory"] == "missing_import"
    assert all(p["labels"] for p in d["problems"])
    json.dumps(d)  # JSON-ready


def test_split_rule_and_sentence(problems):
    base, tuned = _pair_rows()
    d = delta.trace(base, tuned, problems).to_dict()
    sp = delta.split(d)
    # net: (2 fixed - 1 broken) / 6; logic: (1 fixed by logic - 1 broken by logic) / 6
    assert sp.net_pp == pytest.approx(100 / 6)
    assert sp.logic_pp == pytest.approx(0.0)
    assert sp.behavioural_pp == pytest.approx(100 / 6)
    assert sp.sentence.startswith("Of +16.67 pp, +0.00 pp is logic")
    assert d["split"]["logic_pp"] == pytest.approx(0.0)
    # a person overrides: the broken problem was, on reading, a formatting matter
    sp = delta.split(d, {"GCD/3": "format_only", "GCD/1": "unclear"})
    assert sp.logic_pp == pytest.approx(100 / 6) and sp.human_labels == 1


def test_across_seeds(problems):
    base, tuned = _pair_rows()
    d1 = delta.trace(base, tuned, problems).to_dict()
    tuned2 = [r if r["task_id"] != "GCD/3" else _row("GCD/3", "PASS", solution=GCD_OK) for r in tuned]
    d2 = delta.trace(base, tuned2, problems).to_dict()
    frame = delta.across_seeds({42: d1, 7: d2})
    by_task = frame.set_index("task_id")
    assert by_task.loc["GCD/1", "pattern"] == "every seed"
    assert by_task.loc["GCD/1", "direction"] == "fail_to_pass"
    assert by_task.loc["GCD/3", "pattern"] == "one seed"
    assert by_task.loc["GCD/3", "seed-7"] == "pass_to_pass"
    summary = delta.across_seeds_summary(frame)
    assert summary == {
        "seeds": 2,
        "flipping_problems": 3,
        "every_seed_fail_to_pass": 2,
        "every_seed_pass_to_fail": 0,
        "one_seed": 1,
        "some_seeds": 0,
    }


def test_html_is_self_contained(problems, tmp_path):
    base, tuned = _pair_rows()
    for name, rows in (("base", base), ("tuned", tuned)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = delta.trace_files(
        tmp_path / "base.jsonl",
        tmp_path / "tuned.jsonl",
        tmp_path / "out",
        problems,
    )
    delta_html.write_page(data, tmp_path / "out" / "delta.html", {"GCD/1": "logic_changed"})
    page = (tmp_path / "out" / "delta.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    for p in data["problems"]:
        assert p["task_id"] in page
    assert page.count("(automatic)") >= sum(len(p["labels"]) for p in data["problems"])
    assert "Person's label" in page
    assert "diff_chg" in page or "diff_add" in page
    assert delta.load_delta(tmp_path / "out")["fail_to_pass"] == 2


def test_cli(problems, tmp_path, capsys):
    from idfu_lab.cli import main

    base, tuned = _pair_rows()
    for name, rows in (("base", base), ("tuned", tuned)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc = main(
        ["delta", str(tmp_path / "base.jsonl"), str(tmp_path / "tuned.jsonl"), "--out", str(tmp_path / "d")]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "fail_to_pass" in out and "pp is logic" in out
    assert (tmp_path / "d" / "delta.json").is_file() and (tmp_path / "d" / "delta.html").is_file()
    (tmp_path / "bad.jsonl").write_text('{"task_id": "GCD/1"}\n')
    rc = main(
        ["delta", str(tmp_path / "bad.jsonl"), str(tmp_path / "tuned.jsonl"), "--out", str(tmp_path / "d")]
    )
    assert rc == 2 and "bad.jsonl:1: not a results row (missing key(s) outcome)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- two real models


@pytest.fixture(scope="module")
def qwen2_results(tmp_path_factory, problems):
    """qwen2 and qwen2-72B chat replies, imported, extracted and evaluated by our executor."""
    if not CHAT.is_dir():
        pytest.skip("../shared/data is absent (real-data tests run where it is present)")
    judge = pytest.importorskip("idfu_lab.analysis.judge")
    from idfu_lab.generation.importers import read_humaneval
    from idfu_lab.generation.postprocess import apply_rows

    out = tmp_path_factory.mktemp("qwen2")
    paths = {}
    for model in ("qwen2", "qwen2_72B"):
        rows = read_humaneval(CHAT / model / "generations_python.jsonl", model=model, field="generation")
        rows = apply_rows(rows, problems, postprocess="extract", imports="none")
        results = judge.evaluate_rows(rows, problems, timeout=5.0)
        paths[model] = out / f"{model}.jsonl"
        paths[model].write_text("".join(json.dumps(r) + "\n" for r in results))
    return paths


def test_real_trace_between_two_models(qwen2_results, problems, tmp_path):
    data = delta.trace_files(qwen2_results["qwen2"], qwen2_results["qwen2_72B"], tmp_path, problems)
    delta_html.write_page(data, tmp_path / "delta.html")
    base = {
        json.loads(line)["task_id"]: json.loads(line)
        for line in qwen2_results["qwen2"].read_text().splitlines()
    }
    tuned = {
        json.loads(line)["task_id"]: json.loads(line)
        for line in qwen2_results["qwen2_72B"].read_text().splitlines()
    }
    assert len(base) == len(tuned) == 164 == data["n"]
    direct = Counter(delta.transition(base[t]["passed"], tuned[t]["passed"]) for t in base)
    for kind in delta.TRANSITIONS:
        assert data[kind] == direct[kind], kind
    changed_f2f = sum(
        1
        for t in base
        if not base[t]["passed"]
        and not tuned[t]["passed"]
        and (base[t]["outcome"], base[t]["phase"]) != (tuned[t]["outcome"], tuned[t]["phase"])
    )
    assert data["fail_to_fail_changed"] == changed_f2f
    assert len(data["problems"]) == data["fail_to_pass"] + data["pass_to_fail"] + data["fail_to_fail_changed"]
    assert data["fail_to_pass"] > data["pass_to_fail"]  # the larger model is better
    for p in data["problems"]:
        assert p["labels"], p["task_id"]
        for lab in p["labels"]:
            assert lab["name"] in delta.LABELS
    html = (tmp_path / "delta.html").read_text()
    assert all(p["task_id"] in html for p in data["problems"])


def test_refuses_results_of_two_benchmarks(problems, tmp_path):
    from idfu_lab.errors import IdfuError

    base, tuned = _pair_rows()
    for name, rows, digest in (("base", base, "aaa"), ("tuned", tuned, "bbb")):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp_path / f"{name}.jsonl.meta.json").write_text(json.dumps({"dataset_hash": digest}))
    with pytest.raises(IdfuError, match="another benchmark"):
        delta.trace_files(tmp_path / "base.jsonl", tmp_path / "tuned.jsonl", problems=problems)


def test_cli_shows_a_persons_labels(problems, tmp_path, capsys):
    from idfu_lab.analysis import annotate
    from idfu_lab.cli import main

    base, tuned = _pair_rows()
    for name, rows in (("base", base), ("tuned", tuned)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    problem = {"task_id": "GCD/3", "transition": "pass_to_fail", "labels": [{"name": "logic_changed"}]}
    notes = annotate.write_annotations(
        tmp_path / "seed-1.csv", [annotate.record(problem, "format_only", "", "ana", "2025-01-02")]
    )
    args = [str(tmp_path / "base.jsonl"), str(tmp_path / "tuned.jsonl"), "--out", str(tmp_path / "d")]
    # GCD/* are not HumanEval ids: give the problems as a file, as a bring-your-own user would
    he = problems["HumanEval/13"]
    (tmp_path / "gcd.jsonl").write_text(
        "".join(
            json.dumps(
                {"task_id": f"GCD/{i}", "prompt": he.prompt, "test": he.test, "entry_point": he.entry_point}
            )
            + "\n"
            for i in range(1, 9)
        )
    )
    assert main(["delta", *args, "--problems", str(tmp_path / "gcd.jsonl"), "--annotations", str(notes)]) == 0
    out = capsys.readouterr().out
    assert "+16.67 pp is logic" in out and "Labels: 1 by a person" in out
    assert "Person's label" in (tmp_path / "d" / "delta.html").read_text()
    assert main(["delta", *args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["fail_to_pass"] == 2 and "problems" not in summary


def test_syntax_broken_and_fixed_when_no_post_processing_changed_the_program(problems):
    """A whole program that the model mis-indented, run as written: the model's output does not parse."""
    good = "def strlen(string: str) -> int:\n    return len(string)\n"
    bad = "def strlen(string: str) -> int:\n    n = len(string)\n      return n\n"  # unexpected indent
    passing = _row("HumanEval/23", "PASS", solution=good)
    broken = _row("HumanEval/23", "SYNTAX_ERROR", "definition", "unexpected indent", solution=bad)
    labels = _labels(passing, broken, problems)
    assert set(labels) == {"syntax_broken"}
    assert "as the model wrote it" in labels["syntax_broken"].detail
    assert labels["syntax_broken"].evidence[0].text == "      return n"
    assert set(_labels(broken, passing, problems)) == {"syntax_fixed"}
    # judged under a policy that only put imports in front: still the model's own text
    header = "import math\n"
    with_policy = broken | {"solution": header + bad, "raw": bad, "postprocess": "raw", "imports": "header"}
    assert set(_labels(passing, with_policy, problems)) == {"syntax_broken"}
    # post-processing changed the program (a block taken out of a chat reply): an extraction label
    reply = "Here it is:\n```python\n" + bad + "```\nHope it helps."
    extracted = broken | {"solution": bad, "raw": reply, "postprocess": "extract", "imports": "none"}
    assert set(_labels(passing, extracted, problems)) == {"extraction_broken"}
    assert "syntax_broken" in delta.REVERSE_LABELS and "syntax_fixed" in delta.FORWARD_LABELS
    assert "syntax_broken" in delta.BEHAVIOURAL_LABELS
