"""Failure taxonomy: which failures a model makes, before and after training, and whether that moved.

An aggregate pass@1 hides shifts between failure types; the study's findings are such shifts
(NAME_ERROR falls 39 %, ASSERTION_FAIL falls 19 %, TYPE_ERROR stays at one). This module counts
results rows by :class:`~idfu_lab.outcomes.Outcome` and :class:`~idfu_lab.outcomes.Phase`, with the
study's three categories first, and splits two of them where the study's story needs it:

``NAME_ERROR``, from the name in the error message and the program that raised it:

- ``missing_import``: the name is a standard-library module used as one (``math.ceil`` without
  ``import math``), a module imported in another scope of the program only, or a name that a
  standard-library module exports and that the program neither defines nor assigns
  (``List``, ``Counter``, ``sqrt``, ``reduce``; see :data:`IMPORTABLE_MODULES`);
- ``undefined_helper``: a function the solution calls (``is_prime(n)``) but never defines where the
  call can see it — never defined, defined inside another function, or defined after the call;
- ``other``: everything else — a variable used out of scope or before assignment
  (``UnboundLocalError``: ``gcd = gcd(a, b)`` cannot be fixed by an import), a stray word of prose
  (``Wait``), a markdown tag (``py``), top-level test code calling a misnamed function (``cube(64)``
  after ``def iscube``), the entry point shadowed by a nested redefinition of itself.

The rules were checked by hand against real failures of a small model (the cases are test
expectations in ``tests/test_taxonomy.py``); without the program only the name is used, and a name
that is neither a module nor importable is ``other``.

``ASSERTION_FAIL``: ``self_test`` when it happened in the DEFINITION phase (an ``assert`` the model
appended runs when the program is loaded: the study's behavioural artefact), ``wrong_answer`` when it
happened in the TEST phase (the benchmark's ``check`` rejected the answer).

``NO_CODE``: ``empty`` (a blank reply) or ``prose_only`` (a reply with text but no code, e.g. a
refusal): the two faces of a collapse.

Counts are per results row (per sample); a results file of greedy pass@1 has one row per problem.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import logging
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from idfu_lab.outcomes import STUDY_CATEGORIES, Outcome, Phase, category_order

if TYPE_CHECKING:  # pragma: no cover
    from idfu_lab.problems import Problem
    from idfu_lab.runs import Run

logger = logging.getLogger(__name__)

#: Sub-categories, per outcome, in display order.
SUBCATEGORIES: dict[Outcome, tuple[str, ...]] = {
    Outcome.NAME_ERROR: ("missing_import", "undefined_helper", "other"),
    Outcome.ASSERTION_FAIL: ("self_test", "wrong_answer"),
    Outcome.NO_CODE: ("empty", "prose_only"),
}

#: Standard-library modules whose public names a program may use after ``from M import name``:
#: an undefined name exported by one of these is a missing import. Deliberately the modules a
#: HumanEval solution reaches for, not the whole library: ``os.sep`` or ``tkinter.E`` are not names a
#: model forgets to import, while a variable called ``sep`` is an ordinary scoping bug.
IMPORTABLE_MODULES = (
    "collections",
    "typing",
    "math",
    "itertools",
    "functools",
    "heapq",
    "bisect",
    "string",
    "statistics",
    "fractions",
    "decimal",
)

#: Single names from other modules that solutions import with ``from M import name``.
EXTRA_IMPORTABLE: dict[str, str] = {
    "deepcopy": "copy",
    "randint": "random",
    "itemgetter": "operator",
    "attrgetter": "operator",
    "datetime": "datetime",
    "date": "datetime",
    "timedelta": "datetime",
    "md5": "hashlib",
    "sha256": "hashlib",
    "ascii_lowercase": "string",
}

#: Outcomes whose appearance or growth after training suggests a collapse of the output
#: distribution: no code at all (refusals, empty replies) and programs that no longer compile.
COLLAPSE_SIGNS: tuple[Outcome, ...] = (Outcome.NO_CODE, Outcome.SYNTAX_ERROR)

_NOT_DEFINED = re.compile(r"name '([^']+)' is not defined")
_UNBOUND = re.compile(r"(?:local|free) variable '([^']+)'")
_REQUIRED = ("task_id", "outcome")


# ----------------------------------------------------------------------------- reading results


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """A results JSONL file as a list of rows; a malformed line or a row without an outcome is an error.

    The executor's own reader returns a DataFrame; the taxonomy and the delta need the rows with their
    code fields intact, and errors that name the line.
    """
    from idfu_lab.results import read_result_rows

    return read_result_rows(path, required=_REQUIRED)


def first_samples(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """One row per task: ``sample_index`` 0 where samples are numbered, else the first row seen.

    The delta compares one program per problem on each side. For greedy pass@1 there is only one;
    with several samples per problem, sample 0 is the one a greedy-equivalent comparison would use
    and, unlike "the best sample", it does not favour either side.
    """
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        task = str(row["task_id"])
        index = row.get("sample_index")
        if task not in out:
            out[task] = dict(row)
        elif index is not None and int(index) == 0 and int(out[task].get("sample_index") or 0) != 0:
            out[task] = dict(row)
    return out


def program_for(row: Mapping[str, Any], problem: Problem | None) -> str:
    """The program that was run for a results row: the solution, or the prompt followed by the completion.

    For MBPP problems the setup code follows the code, as the executor runs it. Without a problem (an
    unknown task id) the row's own code is all there is.
    """
    solution = row.get("solution")
    completion = row.get("completion")
    if problem is None:
        return solution if isinstance(solution, str) else (completion or "")
    try:
        from idfu_lab.sandbox import job_for

        kw = {"solution": solution} if isinstance(solution, str) else {"completion": completion or ""}
        return job_for(problem, **kw).program
    except ImportError:  # pragma: no cover - the executor ships with the package
        pass
    if isinstance(solution, str):
        code = solution
    elif problem.benchmark == "mbpp":
        code = completion or ""
    else:
        code = problem.prompt + (completion or "")
    return (
        f"{code}\n{problem.setup}" if problem.setup else code
    )  # MBPP: setup after the code, as the executor


def reply_text(row: Mapping[str, Any]) -> str:
    """What the model said: ``raw`` when a post-processing policy recorded it, else the code field."""
    for key in ("raw", "completion", "solution"):
        value = row.get(key)
        if isinstance(value, str):
            return value
    return ""


# ----------------------------------------------------------------------------- sub-categories


@functools.cache
def importable_names() -> dict[str, str]:
    """``name -> module`` for the public names of :data:`IMPORTABLE_MODULES` (plus a few singles).

    One-letter names (``math.e``) are left out: an undefined ``e`` is a variable, not ``math.e``.
    """
    table: dict[str, str] = {}
    for module_name in IMPORTABLE_MODULES:
        module = importlib.import_module(module_name)
        for name in dir(module):
            if name.startswith("_") or len(name) < 2 or name in table:
                continue
            if type(getattr(module, name, None)).__name__ == "module":
                continue  # typing.re, statistics.math: modules are handled as modules
            table[name] = module_name
    for name, module_name in EXTRA_IMPORTABLE.items():
        table.setdefault(name, module_name)
    return table


@dataclass(frozen=True)
class SubCategory:
    """A sub-category with the reason the rules gave (shown in the notebook next to the count)."""

    outcome: Outcome
    name: str
    reason: str


def undefined_name(message: str) -> tuple[str | None, bool]:
    """The name a NameError message is about, and whether it was an unbound local (``UnboundLocalError``)."""
    m = _NOT_DEFINED.search(message or "")
    if m:
        return m.group(1), False
    m = _UNBOUND.search(message or "")
    if m:
        return m.group(1), True
    return None, False


@dataclass
class _Usage:
    called: bool = False  # name(...) anywhere
    called_in_function: bool = False  # name(...) inside a def (not only in top-level test code)
    attribute_base: bool = False  # name.attr
    imported: bool = False  # bound by an import somewhere
    defined: bool = False  # def/class name somewhere
    assigned: bool = False  # any other binding (assignment, parameter, loop target, ...)
    defined_lines: tuple[int, ...] = ()


def _usage(tree: ast.Module, name: str) -> _Usage:
    u = _Usage()
    defs: list[int] = []
    in_functions: set[int] = set()
    for top in tree.body:
        if isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            in_functions.update(id(n) for n in ast.walk(top))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name:
            u.called = True
            u.called_in_function = u.called_in_function or id(node) in in_functions
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == name:
            u.attribute_base = True
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name:
            u.defined = True
            defs.append(node.lineno)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                if bound == name:
                    u.imported = True
        elif isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Store | ast.Del):
            u.assigned = True
        elif isinstance(node, ast.arg) and node.arg == name:
            u.assigned = True
        elif isinstance(node, ast.ExceptHandler) and node.name == name:
            u.assigned = True
    u.defined_lines = tuple(sorted(defs))
    return u


def name_error_subcategory(
    message: str, program: str | None = None, entry_point: str | None = None
) -> SubCategory:
    """Classify one NameError by its message and, when given, the program that raised it.

    Without the program only the name is known: a module or importable name is a missing import,
    anything else is ``other`` (a helper cannot be told from a variable without seeing the call).
    The rules, and the real failures they were checked against, are in the module docstring and
    ``tests/test_taxonomy.py``.
    """
    name, unbound = undefined_name(message)

    def sub(name_: str, reason: str) -> SubCategory:
        return SubCategory(Outcome.NAME_ERROR, name_, reason)

    if name is None:
        return sub("other", "no name in the message")
    tree = None
    if program:
        try:
            tree = ast.parse(program)
        except SyntaxError:
            tree = None
    module_like = name in sys.stdlib_module_names and not hasattr(builtins, name)
    importable = importable_names().get(name)

    if tree is None:
        if unbound:
            return sub("other", f"'{name}' used before assignment")
        if module_like:
            return sub("missing_import", f"'{name}' is a standard-library module")
        if importable:
            return sub("missing_import", f"'{name}' can be imported from {importable}")
        return sub("other", f"'{name}' is not a standard-library name")

    u = _usage(tree, name)
    if name == entry_point:
        return sub("other", f"'{name}' is the entry point itself, shadowed or referenced out of scope")
    if u.defined and (u.called or unbound):
        where = ", ".join(str(n) for n in u.defined_lines)
        return sub(
            "undefined_helper", f"'{name}' is defined (line {where}) but not where the call can see it"
        )
    if u.imported:
        return sub("missing_import", f"'{name}' is imported in another scope only")
    if unbound or u.assigned:
        # ``gcd = gcd(a, b)`` inside a function: no import can fix a name the function assigns.
        return sub("other", f"'{name}' is a variable used out of scope or before assignment")
    if module_like and (u.attribute_base or not u.called):
        return sub("missing_import", f"'{name}' is a standard-library module")
    if importable:
        return sub("missing_import", f"'{name}' can be imported from {importable}")
    if u.called and not u.called_in_function:
        # ``cube(64)`` after ``def iscube``: appended test code calls a name the solution never needs.
        return sub("other", f"'{name}' is called only by top-level code appended after the solution")
    if u.called:
        return sub("undefined_helper", f"'{name}' is called but never defined")
    return sub("other", f"'{name}' is neither a standard-library name nor a called function")


def subcategory(
    row: Mapping[str, Any], program: str | None = None, entry_point: str | None = None
) -> SubCategory | None:
    """The sub-category of a results row, or None for outcomes without sub-categories.

    ``program`` is what was run (see :func:`program_for`) and ``entry_point`` the function the
    benchmark calls; only NAME_ERROR uses them.
    """
    outcome = Outcome(row["outcome"])
    if outcome == Outcome.NAME_ERROR:
        return name_error_subcategory(str(row.get("message") or ""), program, entry_point)
    if outcome == Outcome.ASSERTION_FAIL:
        phase = row.get("phase")
        if phase == Phase.DEFINITION:
            return SubCategory(outcome, "self_test", "the assertion failed while the program was loaded")
        if phase == Phase.TEST:
            return SubCategory(outcome, "wrong_answer", "the benchmark's check failed")
        return SubCategory(outcome, "unknown", "no phase recorded")
    if outcome == Outcome.NO_CODE:
        if reply_text(row).strip():
            return SubCategory(outcome, "prose_only", "the reply has text but no code")
        return SubCategory(outcome, "empty", "the reply is blank")
    return None


def classify(
    rows: Sequence[Mapping[str, Any]], problems: Mapping[str, Problem] | None = None
) -> pd.DataFrame:
    """One line per row: task, sample, passed, outcome, phase, sub-category and its reason."""
    records = []
    for row in rows:
        task = str(row["task_id"])
        outcome = Outcome(row["outcome"])
        program = entry_point = None
        if outcome == Outcome.NAME_ERROR:
            problem = problems.get(task) if problems is not None else None
            program = program_for(row, problem)
            entry_point = problem.entry_point if problem is not None else None
        sub = subcategory(row, program, entry_point)
        records.append(
            {
                "task_id": task,
                "sample_index": row.get("sample_index", 0),
                "passed": bool(row.get("passed", outcome == Outcome.PASS)),
                "outcome": str(outcome),
                "phase": row.get("phase") or "",
                "subcategory": sub.name if sub else "",
                "reason": sub.reason if sub else "",
                "message": str(row.get("message") or ""),
            }
        )
    return pd.DataFrame.from_records(
        records,
        columns=["task_id", "sample_index", "passed", "outcome", "phase", "subcategory", "reason", "message"],
    )


# ----------------------------------------------------------------------------- tables


def outcome_order(present: Iterable[str] = (), *, include_pass: bool = True) -> list[str]:
    """The row order of every table: the study's three categories, then the other failures, then PASS.

    The three always appear (a zero is a finding); other outcomes only where ``present``.
    """
    known = {str(o) for o in Outcome}
    order = category_order(str(o) for o in present if str(o) in known)
    return order + [str(Outcome.PASS)] if include_pass else order


def _count(rows: Sequence[Mapping[str, Any]]) -> Counter:
    return Counter((str(Outcome(r["outcome"])), r.get("phase") or "") for r in rows)


def compare(
    base: Sequence[Mapping[str, Any]],
    tuned: Sequence[Mapping[str, Any]],
    *,
    labels: tuple[str, str] = ("base", "tuned"),
) -> pd.DataFrame:
    """Outcome x phase counts, base vs tuned: one row per outcome, the study's three first.

    Columns: ``<label>`` (all phases), ``<label>_definition``, ``<label>_test`` for each side, then
    ``change`` (tuned - base) and ``change_pct`` (relative to base; empty where base is 0).
    """
    counts = {labels[0]: _count(base), labels[1]: _count(tuned)}
    present = {o for c in counts.values() for (o, _p), n in c.items() if n}
    rows = []
    for outcome in outcome_order(present):
        rec: dict[str, Any] = {"outcome": outcome}
        for label, c in counts.items():
            rec[label] = sum(n for (o, _p), n in c.items() if o == outcome)
        for label, c in counts.items():
            rec[f"{label}_definition"] = c.get((outcome, str(Phase.DEFINITION)), 0)
            rec[f"{label}_test"] = c.get((outcome, str(Phase.TEST)), 0)
        rec["change"] = rec[labels[1]] - rec[labels[0]]
        rec["change_pct"] = 100.0 * rec["change"] / rec[labels[0]] if rec[labels[0]] else float("nan")
        rows.append(rec)
    return pd.DataFrame(rows).set_index("outcome")


def subcategory_table(
    base: Sequence[Mapping[str, Any]],
    tuned: Sequence[Mapping[str, Any]],
    problems: Mapping[str, Problem] | None = None,
    *,
    labels: tuple[str, str] = ("base", "tuned"),
) -> pd.DataFrame:
    """Counts by (outcome, sub-category), base vs tuned, with the change; every sub-category listed."""
    frames = {labels[0]: classify(base, problems), labels[1]: classify(tuned, problems)}
    rows = []
    for outcome, names in SUBCATEGORIES.items():
        extra = sorted(
            {s for f in frames.values() for s in f.loc[f["outcome"] == str(outcome), "subcategory"]}
            - set(names)
        )
        for name in (*names, *extra):
            rec: dict[str, Any] = {"outcome": str(outcome), "subcategory": name}
            for label, f in frames.items():
                rec[label] = int(((f["outcome"] == str(outcome)) & (f["subcategory"] == name)).sum())
            rec["change"] = rec[labels[1]] - rec[labels[0]]
            rows.append(rec)
    return pd.DataFrame(rows).set_index(["outcome", "subcategory"])


# ----------------------------------------------------------------------------- collapse flags


@dataclass(frozen=True)
class CollapseFlag:
    """A sign that training narrowed or broke the output distribution, with the numbers behind it."""

    outcome: str
    kind: str  # "new_category" | "collapse_sign_grew"
    base: int
    tuned: int
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def collapse_flags(
    base: Sequence[Mapping[str, Any]], tuned: Sequence[Mapping[str, Any]]
) -> list[CollapseFlag]:
    """Flags for a possible distribution collapse.

    - ``new_category``: a failure outcome absent from the base results appears after training
      (a new error type the preference data never showed);
    - ``collapse_sign_grew``: replies without code (refusals, empty outputs) or programs that no
      longer compile are more frequent than before, even where the base already had some.
    """
    b = Counter(str(Outcome(r["outcome"])) for r in base)
    t = Counter(str(Outcome(r["outcome"])) for r in tuned)
    flags: list[CollapseFlag] = []
    for outcome in Outcome:
        if outcome == Outcome.PASS:
            continue
        nb, nt = b.get(str(outcome), 0), t.get(str(outcome), 0)
        if nb == 0 and nt > 0:
            flags.append(
                CollapseFlag(
                    str(outcome), "new_category", nb, nt, f"{outcome} appears only after training ({nt})"
                )
            )
        elif outcome in COLLAPSE_SIGNS and nt > nb:
            flags.append(
                CollapseFlag(str(outcome), "collapse_sign_grew", nb, nt, f"{outcome} grew from {nb} to {nt}")
            )
    return flags


# ----------------------------------------------------------------------------- across seeds


def problems_for(run: Run) -> dict[str, Problem]:
    """The run's benchmark problems by task id: they rebuild the programs that were run."""
    from idfu_lab.analysis.evaluation import load_benchmark

    return load_benchmark(run.config.evaluation.benchmark, run.config.evaluation.problems)


def load_pair(run: Run, seed: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """``{"base": rows, "tuned": rows}`` from a seed's ``results/`` folder."""
    return {
        side: read_results(run.layout.results(run.seed if seed is None else seed, side))
        for side in run.layout.MODELS
    }


def load_seeds(run: Run) -> dict[int, dict[str, list[dict[str, Any]]]]:
    """The base/tuned results of every seed of the recipe whose two results files exist."""
    out: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for seed in run.seeds:
        base, tuned = (run.layout.results(seed, side) for side in run.layout.MODELS)
        if base.is_file() and tuned.is_file():
            out[seed] = {"base": read_results(base), "tuned": read_results(tuned)}
    return out


def seed_table(per_seed: Mapping[int, Mapping[str, Sequence[Mapping[str, Any]]]]) -> pd.DataFrame:
    """Failure counts per seed, their spread, and which categories are stable.

    One row per outcome (study's three first). Columns: ``base`` (mean over seeds: the base model is
    generated once, so it normally does not vary), ``tuned@<seed>`` per seed, ``tuned_mean``,
    ``tuned_std`` (sample standard deviation, as the study's ``± 0.58``), ``tuned_min``,
    ``tuned_max``, ``stable`` (the tuned count is the same in every seed; needs two seeds or more,
    otherwise empty) and ``same_as_base`` (stable *and* equal to the base count: the study's
    TYPE_ERROR evidence that the distribution did not collapse).
    """
    seeds = list(per_seed)  # the caller's order (the run's seed order), never re-sorted
    base_counts = {s: Counter(str(Outcome(r["outcome"])) for r in per_seed[s]["base"]) for s in seeds}
    tuned_counts = {s: Counter(str(Outcome(r["outcome"])) for r in per_seed[s]["tuned"]) for s in seeds}
    present = {o for c in (*base_counts.values(), *tuned_counts.values()) for o, n in c.items() if n}
    rows = []
    for outcome in outcome_order(present):
        rec: dict[str, Any] = {"outcome": outcome}
        base_values = [base_counts[s].get(outcome, 0) for s in seeds]
        tuned_values = [tuned_counts[s].get(outcome, 0) for s in seeds]
        rec["base"] = sum(base_values) / len(base_values) if base_values else float("nan")
        for s, v in zip(seeds, tuned_values, strict=True):
            rec[f"tuned@{s}"] = v
        series = pd.Series(tuned_values, dtype=float)
        rec["tuned_mean"] = series.mean()
        rec["tuned_std"] = series.std(ddof=1) if len(series) > 1 else float("nan")
        rec["tuned_min"] = series.min()
        rec["tuned_max"] = series.max()
        if len(seeds) > 1:
            stable = bool(series.nunique() == 1)
            rec["stable"] = stable
            rec["same_as_base"] = bool(
                stable and len(set(base_values)) == 1 and base_values[0] == tuned_values[0]
            )
        else:
            rec["stable"] = pd.NA
            rec["same_as_base"] = pd.NA
        rows.append(rec)
    return pd.DataFrame(rows).set_index("outcome")


def collapse_across_seeds(per_seed: Mapping[int, Mapping[str, Sequence[Mapping[str, Any]]]]) -> pd.DataFrame:
    """Every collapse flag of every seed, one row each (seed, outcome, kind, base, tuned, message)."""
    rows = [
        {"seed": seed, **flag.as_dict()}
        for seed in per_seed
        for flag in collapse_flags(per_seed[seed]["base"], per_seed[seed]["tuned"])
    ]
    return pd.DataFrame(rows, columns=["seed", "outcome", "kind", "base", "tuned", "message"])


# ----------------------------------------------------------------------------- numbers for the book


def glue_values(table: pd.DataFrame, subs: pd.DataFrame, flags: Sequence[CollapseFlag]) -> dict[str, Any]:
    """The numbers notebook 04 glues, under stable names (``name_error_base``, ``self_test_tuned``, ...)."""
    values: dict[str, Any] = {}
    for outcome in STUDY_CATEGORIES:
        for side in ("base", "tuned"):
            values[f"{str(outcome).lower()}_{side}"] = int(table.loc[str(outcome), side])
    failures = table.drop(index=str(Outcome.PASS), errors="ignore")
    for side in ("base", "tuned"):
        values[f"failures_{side}"] = int(failures[side].sum())
        for (outcome, name), row in subs.iterrows():
            key = name if name not in ("other", "unknown") else f"{outcome.lower()}_{name}"
            values[f"{key}_{side}"] = int(row[side])
    values["collapse_flags"] = len(flags)
    return values
