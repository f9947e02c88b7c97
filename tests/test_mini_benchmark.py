"""The ``mini`` benchmark: HumanEval's format, deterministic, two disjoint splits, every reference passes."""

from __future__ import annotations

import ast
import re
from collections import Counter

import pytest

from idfu_lab.benchmarks import mini
from idfu_lab.data.audit import contamination_hits
from idfu_lab.data.pairs import load_problem_set
from idfu_lab.problems import load_problems
from idfu_lab.sandbox import job_for, run_jobs


@pytest.fixture(scope="module")
def splits() -> dict[str, dict]:
    return {"eval": load_problems("mini"), "train": load_problems("mini-train")}


def test_sizes_and_task_ids(splits) -> None:
    assert len(splits["eval"]) == 164  # HumanEval's size
    assert 300 <= len(splits["train"]) <= 600  # a few hundred problems to sample pairs from
    assert list(splits["eval"]) == [f"Mini/{i}" for i in range(164)]
    assert list(splits["train"])[:2] == ["MiniTrain/0", "MiniTrain/1"]
    assert load_problem_set("mini") == splits["eval"]  # the audit and curate resolve the names too
    assert load_problem_set("mini-train") == splits["train"]


def test_problems_have_humaneval_format(splits) -> None:
    for problem in [*splits["eval"].values(), *splits["train"].values()]:
        assert problem.benchmark == "mini" and problem.prompt_is_code
        module = ast.parse(problem.prompt + "    pass\n")
        (fn,) = module.body
        assert isinstance(fn, ast.FunctionDef) and fn.name == problem.entry_point
        assert ast.get_docstring(fn)  # a docstring says what to do
        assert "import" not in problem.prompt  # the model must import what it uses
        assert problem.test.startswith("\n\ndef check(candidate):\n")
        assert problem.test.endswith(f"\ncheck({problem.entry_point})")
        assert problem.reference and problem.reference.startswith(problem.prompt)


def test_every_canonical_solution_passes_its_tests_in_the_sandbox(splits) -> None:
    problems = [*splits["eval"].values(), *splits["train"].values()]
    verdicts = run_jobs([job_for(p, solution=p.reference) for p in problems])
    failed = [
        (p.task_id, str(v.outcome), v.message)
        for p, v in zip(problems, verdicts, strict=True)
        if not v.passed
    ]
    assert failed == []


def test_splits_share_families_but_no_problem(splits) -> None:
    records = {split: mini.records(split) for split in ("eval", "train")}
    train_prompts = {r["prompt"] for r in records["train"]}
    train_solutions = {r["canonical_solution"] for r in records["train"]}
    assert not [r["task_id"] for r in records["eval"] if r["prompt"] in train_prompts]
    assert not [r["task_id"] for r in records["eval"] if r["canonical_solution"] in train_solutions]
    # nor within a split: every problem is a different task
    for split in records.values():
        assert len({r["canonical_solution"] for r in split}) == len(split)
    families = {split: Counter(t.family for t in mini.tasks(split)) for split in ("eval", "train")}
    assert set(families["eval"]) == set(families["train"]) == set(mini.FAMILY_BY_KEY)
    assert max(families["eval"].values()) - min(families["eval"].values()) <= 1  # spread evenly


def test_several_families_need_a_standard_library_name(splits) -> None:
    needs = Counter()
    for task in mini.tasks("eval"):
        match = re.match(r"\s*(?:import (\w+)|from (\w+) import)", task.canonical_solution)
        if match:
            needs[match.group(1) or match.group(2)] += 1
    assert set(needs) == {"math", "re", "collections", "itertools"}
    assert sum(needs.values()) >= 164 // 3


def test_a_missing_import_is_a_name_error_like_on_humaneval(splits) -> None:
    """A reply that uses math.ceil (re.sub, Counter...) without importing it fails with NameError."""
    problems = [p for p in splits["eval"].values() if "import" in p.reference][:20]
    without = [re.sub(r"\n    (import \w+|from \w+ import \w+)\n", "\n", p.reference) for p in problems]
    verdicts = run_jobs([job_for(p, solution=code) for p, code in zip(problems, without, strict=True)])
    assert {str(v.outcome) for v in verdicts} == {"NAME_ERROR"}


def test_the_benchmark_is_a_constant_of_the_code() -> None:
    again = mini.build.__wrapped__()
    assert {s: [t.record() for t in ts] for s, ts in again.items()} == {
        s: mini.records(s) for s in ("eval", "train")
    }


def test_no_prompt_overlaps_humaneval(splits) -> None:
    """Curation drops problems whose prompt shares a 13-gram with HumanEval: mini must not."""
    for problem in splits["train"].values():
        assert contamination_hits({"prompt": problem.prompt, "code": problem.reference}, 13) == []


def test_unknown_split_is_an_error() -> None:
    with pytest.raises(ValueError, match="splits"):
        mini.tasks("test")
