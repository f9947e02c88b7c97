"""Delta tracing: what changed between two results files, problem by problem, and why.

The study's most useful finding came from reading every problem whose verdict changed: half of the
ASSERTION_FAIL drop was the model no longer appending self-tests, not better logic. This module does
the reading's first pass. For two results files of the same benchmark (base and tuned, or any two
models) it sorts the problems into transitions and, for every *changed* problem, compares the two
programs that were run and proposes cause labels, each with the program lines that justify it. A
person then confirms or corrects them (:mod:`idfu_lab.analysis.annotate`); the labels are a proposal.

Transitions (one program per problem: ``sample_index`` 0 where there are several samples):

- ``fail_to_pass``, ``pass_to_fail``, ``pass_to_pass``, ``fail_to_fail``;
- ``fail_to_fail_changed``: still failing, in another category — the (outcome, phase) pair differs
  (a self-test crash at load that became a wrong answer in the benchmark's check counts).

A *changed* problem is one of ``fail_to_pass``, ``pass_to_fail`` or ``fail_to_fail_changed``.

Cause labels (several allowed), computed with :mod:`ast` on the two programs:

- ``import_added`` / ``import_removed``: a name bound by an import in one program only;
- ``helper_defined`` / ``helper_removed``: a function or class (not the entry point) defined in one
  program only;
- ``self_test_removed`` / ``self_test_added``: top-level test code (``assert``, calls, ``print``,
  loops over test cases, ``if __name__ == "__main__":`` blocks, and module-level test data that no
  function reads) in one program only;
- ``extraction_fixed``: the base side had no runnable program — no code (NO_CODE), code that does
  not parse, no definition of the entry point — and the tuned side has one (no other label is then
  proposed: there is nothing to compare with); or the shape of the extraction changed (a fenced
  block in one reply only, a body appended to the prompt in one and a whole function in the other).
  ``extraction_broken`` is the reverse (the tuned side has no runnable program, or the shape changed
  on a problem that went from pass to fail);
- ``syntax_fixed`` / ``syntax_broken``: in place of ``extraction_*`` where the side without a runnable
  program is the model's own text, unchanged by post-processing (``raw``, or a policy that only put
  imports in front of it), and that text does not parse (a mis-indented line): the model wrote it so,
  and no extraction is to blame;
- ``logic_changed``: the entry point's AST differs beyond imports, docstrings and formatting
  (``ast.dump`` of the function with docstrings, nested imports and newly defined nested helpers
  removed), or a helper both programs define changed, or other module-level code changed;
- ``format_only``: both programs parse and none of the above differs: the programs are identical
  or differ only in comments, docstrings, blank lines or layout (a verdict that moved without a code
  change points at a timeout or non-determinism).

Behavioural vs algorithmic (:func:`split`): a ``fail_to_pass`` or ``pass_to_fail`` problem counts as
*logic* when it carries ``logic_changed`` (or a person labelled it so); otherwise it is explained
by behavioural labels only (imports, helpers, self-tests, extraction, formatting). With ``n``
problems compared, ``net = (f2p - p2f) / n`` and ``logic = (f2p_logic - p2f_logic) / n`` in
percentage points: "of +X pp, Y pp is logic".
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import datetime as _dt
import difflib
import io
import json
import logging
import tokenize
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from idfu_lab.analysis.taxonomy import (
    first_samples,
    program_for,
    read_results,
    reply_text,
    subcategory,
    undefined_name,
)
from idfu_lab.errors import IdfuError
from idfu_lab.outcomes import Outcome

if TYPE_CHECKING:  # pragma: no cover
    from idfu_lab.problems import Problem
    from idfu_lab.runs import Run

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

TRANSITIONS = ("fail_to_pass", "pass_to_fail", "pass_to_pass", "fail_to_fail")
CHANGED = ("fail_to_pass", "pass_to_fail", "fail_to_fail_changed")

#: Labels that describe what the tuned program does better or differently, in display order.
FORWARD_LABELS = (
    "import_added",
    "helper_defined",
    "self_test_removed",
    "extraction_fixed",
    "syntax_fixed",
    "logic_changed",
    "format_only",
)
#: Their reverses, for regressions (and fail-to-fail changes).
REVERSE_LABELS = ("import_removed", "helper_removed", "self_test_added", "extraction_broken", "syntax_broken")
LABELS = FORWARD_LABELS + REVERSE_LABELS
#: The labels that make a change algorithmic; every other label is behavioural.
LOGIC_LABELS = frozenset({"logic_changed"})
BEHAVIOURAL_LABELS = frozenset(LABELS) - LOGIC_LABELS

#: At most this many evidence lines per label (a rewritten function would otherwise list them all).
MAX_EVIDENCE = 8


# ----------------------------------------------------------------------------- data


@dataclass
class Evidence:
    """One program line that justifies a label: which side, its line number, its text."""

    side: str  # "base" | "tuned"
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.side}:{self.line}: {self.text}"


@dataclass
class Label:
    """A proposed cause of a change, with a one-line detail and the lines behind it."""

    name: str
    detail: str
    evidence: list[Evidence] = field(default_factory=list)


@dataclass
class ProblemDelta:
    """One changed problem: both verdicts, both programs, and the proposed labels."""

    task_id: str
    transition: str  # fail_to_pass | pass_to_fail | fail_to_fail_changed
    base: dict[str, Any]
    tuned: dict[str, Any]
    labels: list[Label]
    base_program: str
    tuned_program: str

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]


@dataclass
class Delta:
    """The whole comparison; :meth:`to_dict` is what ``delta.json`` holds."""

    n: int
    tasks: dict[str, list[str]]
    problems: list[ProblemDelta]
    sources: dict[str, str] = field(default_factory=dict)
    only_base: list[str] = field(default_factory=list)
    only_tuned: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        counts = {t: len(self.tasks.get(t, [])) for t in (*TRANSITIONS, "fail_to_fail_changed")}
        d: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "sources": self.sources,
            "sample_policy": "one program per task: sample_index 0 (else the first row)",
            "n": self.n,
            **counts,
            "tasks": self.tasks,
            "only_base": self.only_base,
            "only_tuned": self.only_tuned,
            "warnings": self.warnings,
            "label_counts": dict(Counter(name for p in self.problems for name in p.label_names)),
            "problems": [dataclasses.asdict(p) for p in self.problems],
        }
        d["split"] = split(d).as_dict()
        return d


# ----------------------------------------------------------------------------- program structure


def _strip_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str):
            return body[1:]
    return body


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def normalised_dump(node: ast.AST, drop_defs: Iterable[str] = ()) -> str:
    """``ast.dump`` of a definition without docstrings, imports and the named nested definitions.

    Formatting and comments never reach the AST, so two functions with equal dumps differ at most
    in layout, comments, docstrings, imports and the nested helpers named in ``drop_defs``.
    """
    drop = set(drop_defs)
    clone = copy.deepcopy(node)
    for sub in ast.walk(clone):
        for name in ("body", "orelse", "finalbody"):
            stmts = getattr(sub, name, None)
            if not isinstance(stmts, list) or not stmts or not isinstance(stmts[0], ast.stmt):
                continue
            if name == "body" and isinstance(sub, (*_DEFS, ast.Module)):
                stmts = _strip_docstring(stmts)
            kept = [
                s
                for s in stmts
                if not isinstance(s, ast.Import | ast.ImportFrom)
                and not (isinstance(s, _DEFS) and s.name in drop)
            ]
            setattr(sub, name, kept or [ast.Pass()])
    return ast.dump(clone, annotate_fields=True, include_attributes=False)


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    names = [node.test.left, *node.test.comparators]
    return any(isinstance(n, ast.Name) and n.id == "__name__" for n in names)


def _runs_tests(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert | ast.Call) for n in ast.walk(node))


@dataclass
class Program:
    """A program split into the parts the labels compare."""

    source: str
    tree: ast.Module | None
    error: str = ""  # why it does not parse ("line 3: invalid syntax")
    error_line: int = 0
    imports: dict[str, ast.stmt] = field(default_factory=dict)  # bound name -> import statement
    defs: dict[str, ast.stmt] = field(default_factory=dict)  # every def/class name -> last definition
    top_defs: dict[str, ast.stmt] = field(default_factory=dict)  # top-level definitions only
    self_tests: list[ast.stmt] = field(default_factory=list)
    other: list[ast.stmt] = field(default_factory=list)  # module-level code: constants and the like

    @property
    def parses(self) -> bool:
        return self.tree is not None

    @property
    def blank(self) -> bool:
        return not self.source.strip()

    def lines(self, node: ast.AST) -> list[tuple[int, str]]:
        src = self.source.splitlines()
        start = getattr(node, "lineno", 1)
        for d in getattr(node, "decorator_list", []) or []:
            start = min(start, d.lineno)
        end = getattr(node, "end_lineno", start) or start
        return [(i, src[i - 1]) for i in range(start, min(end, len(src)) + 1)]


def parse_program(source: str) -> Program:
    """Parse ``source`` and sort its statements into imports, definitions, self-tests and other code."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as e:  # ValueError: source with NUL bytes
        line = getattr(e, "lineno", 0) or 0
        msg = getattr(e, "msg", str(e))
        return Program(source, None, error=f"line {line}: {msg}" if line else msg, error_line=line)
    prog = Program(source, tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                if bound == "*":
                    bound = f"{getattr(node, 'module', '') or ''}.*"
                prog.imports.setdefault(bound, node)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            prog.defs[node.name] = node
    local = {
        n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    for node in _strip_docstring(tree.body):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            prog.top_defs[node.name] = node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            continue
        elif isinstance(node, ast.Try) and all(isinstance(n, ast.Import | ast.ImportFrom) for n in node.body):
            continue  # an optional import
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a stray string literal: as inert as a comment
        elif _is_main_guard(node) or isinstance(node, ast.Assert):
            prog.self_tests.append(node)
        elif isinstance(node, ast.Expr) and _runs_tests(node):
            prog.self_tests.append(node)  # print(f(3)), f(3), doctest.testmod()
        elif isinstance(node, ast.For | ast.While | ast.With | ast.Try | ast.If) and _runs_tests(node):
            prog.self_tests.append(node)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign) and any(
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name)
            and (n.func.id in local or n.func.id in ("print", "input"))
            for n in ast.walk(node)
        ):
            prog.self_tests.append(node)  # ``result = solve(3)``: calls the solution at load time
        else:
            prog.other.append(node)
    # Module-level assignments that no function reads (``operands = [2, 3]`` before ``print(f(operands))``)
    # cannot change what the benchmark's check sees: they are test scaffolding, not logic.
    read_in_defs = set().union(*(_free_names(top) for top in prog.top_defs.values()))
    scaffolding = [
        n
        for n in prog.other
        if isinstance(n, ast.Assign | ast.AnnAssign | ast.AugAssign) and not (_bound_names(n) & read_in_defs)
    ]
    prog.other = [n for n in prog.other if n not in scaffolding]
    prog.self_tests.extend(scaffolding)
    prog.self_tests.sort(key=lambda n: n.lineno)
    return prog


def _free_names(node: ast.AST) -> set[str]:
    """Names a definition reads but does not bind itself (parameters, assignments, imports, nested defs)."""
    loads, bound = set(), set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            (loads if isinstance(n.ctx, ast.Load) else bound).add(n.id)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, _DEFS) and n is not node:
            bound.add(n.name)
        elif isinstance(n, ast.alias):
            bound.add(n.asname or n.name.split(".")[0])
    return loads - bound


def _bound_names(node: ast.stmt) -> set[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


# ----------------------------------------------------------------------------- labelling


def _evidence(prog: Program, side: str, node: ast.AST, limit: int = 3) -> list[Evidence]:
    return [Evidence(side, i, text) for i, text in prog.lines(node)[:limit]]


def _code_lines(prog: Program, node: ast.AST, drop_defs: set[str]) -> list[tuple[int, str]]:
    """A definition's lines that the logic comparison sees: no docstrings, comments, blank lines, nested
    imports or the nested helpers in ``drop_defs`` (other labels account for those)."""
    skipped: set[int] = set()
    for sub in ast.walk(node):
        body = getattr(sub, "body", None)
        if isinstance(sub, (*_DEFS, ast.Module)) and body and _strip_docstring(body) is not body:
            skipped.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
        if sub is not node and (
            isinstance(sub, ast.Import | ast.ImportFrom) or (isinstance(sub, _DEFS) and sub.name in drop_defs)
        ):
            skipped.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))

    comments = _comment_columns(prog.source)
    out = []
    for i, text in prog.lines(node):
        if i in skipped:
            continue
        code = text[: comments[i]] if i in comments else text
        if code.strip():
            out.append((i, code.rstrip()))
    return out


def _comment_columns(source: str) -> dict[int, int]:
    """Line -> column where a ``#`` comment starts (tokenize knows a ``#`` inside a string is not one)."""
    cols: dict[int, int] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                cols[tok.start[0]] = tok.start[1]
    except (tokenize.TokenError, SyntaxError):
        pass
    return cols


def _changed_lines(
    base: Program, tuned: Program, bnode: ast.AST, tnode: ast.AST, drop_defs: set[str]
) -> list[Evidence]:
    """The code lines that differ between two versions of a definition (difflib, comments and docstrings left out)."""
    b = _code_lines(base, bnode, drop_defs)
    t = _code_lines(tuned, tnode, drop_defs)
    sm = difflib.SequenceMatcher(a=[x.strip() for _, x in b], b=[x.strip() for _, x in t], autojunk=False)
    out: list[Evidence] = []
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            continue
        out.extend(Evidence("base", *b[i]) for i in range(i1, i2))
        out.extend(Evidence("tuned", *t[j]) for j in range(j1, j2))
    return out[:MAX_EVIDENCE]


def _name_error_name(verdict: Mapping[str, Any]) -> str | None:
    if verdict.get("outcome") != Outcome.NAME_ERROR:
        return None
    return undefined_name(str(verdict.get("message") or ""))[0]


def _shape(row: Mapping[str, Any]) -> tuple[bool | None, str]:
    """How the code was extracted from a reply: (had a fenced block, 'completion' or 'solution')."""
    fenced: bool | None = None
    if isinstance(row.get("raw"), str):
        fenced = "```" in row["raw"]
    return fenced, "solution" if isinstance(row.get("solution"), str) else "completion"


def _runnable(prog: Program, verdict: Mapping[str, Any], entry_point: str | None) -> str:
    """Why a program is not runnable code for the problem ('' when it is)."""
    if verdict.get("outcome") == Outcome.NO_CODE or prog.blank:
        return "no code"
    if not prog.parses:
        return f"does not parse ({prog.error})"
    if entry_point and entry_point not in prog.top_defs:
        return f"does not define {entry_point}"
    return ""


def _own_syntax_error(prog: Program, row: Mapping[str, Any]) -> bool:
    """The program does not parse and its text is the model's own: no post-processing changed it.

    A row judged under a policy records the model's text as ``raw``; the code that ran is then the
    model's own when ``raw`` appears in it unchanged (a policy that only adds imports in front). A row
    without ``raw`` was run as given. A program holding a markdown fence is a reply nobody extracted
    code from: that stays an extraction label.
    """
    if prog.parses or prog.blank or "```" in prog.source:
        return False  # a markdown fence in the program: a reply that was not extracted, not bad code
    raw = row.get("raw")
    if not isinstance(raw, str):
        return True
    code = row.get("solution") if isinstance(row.get("solution"), str) else row.get("completion")
    return bool(raw.strip()) and isinstance(code, str) and raw.strip() in code


def _why_evidence(prog: Program, row: Mapping[str, Any], side: str) -> list[Evidence]:
    """Lines that show why a side has no runnable program: the syntax error's line, else the reply's start."""
    lines = prog.source.splitlines()
    if prog.error_line and prog.error_line <= len(lines):
        return [Evidence(side, prog.error_line, lines[prog.error_line - 1])]
    if prog.blank or row.get("outcome") == Outcome.NO_CODE:
        reply = [line for line in reply_text(row).splitlines() if line.strip()][:2]
        return [Evidence(f"{side} reply", i + 1, text) for i, text in enumerate(reply)]
    return [Evidence(side, i + 1, text) for i, text in enumerate(lines) if text.strip()][:2]


def label_change(
    base_row: Mapping[str, Any],
    tuned_row: Mapping[str, Any],
    base_program: str,
    tuned_program: str,
    entry_point: str | None = None,
) -> list[Label]:
    """Proposed cause labels for one changed problem (never empty), each with its evidence lines."""
    base, tuned = parse_program(base_program), parse_program(tuned_program)
    tuned_passes = tuned_row.get("outcome") == Outcome.PASS
    labels: list[Label] = []

    # --- extraction: is there runnable code on each side?
    why_base = _runnable(base, base_row, entry_point)
    why_tuned = _runnable(tuned, tuned_row, entry_point)
    if why_base and not why_tuned:
        ev = _why_evidence(base, base_row, "base")
        own = _own_syntax_error(base, base_row)
        labels.append(
            Label(
                "syntax_fixed" if own else "extraction_fixed",
                f"the base program {why_base}{' as the model wrote it' if own else ''}; the tuned one is runnable",
                ev,
            )
        )
    elif why_tuned:
        ev = _why_evidence(tuned, tuned_row, "tuned")
        own = _own_syntax_error(tuned, tuned_row)
        both = f"; the base program {why_base}" if why_base else ""
        labels.append(
            Label(
                "syntax_broken" if own else "extraction_broken",
                f"the tuned program {why_tuned}{' as the model wrote it' if own else ''}{both}",
                ev,
            )
        )
    if why_base or why_tuned:
        # One side has no program to compare with: any other difference would be an artefact of that
        # (a prompt-only program "changed its logic"), so extraction is the whole explanation.
        return labels
    (bf, bk), (tf, tk) = _shape(base_row), _shape(tuned_row)
    changes = []
    if bf is not None and tf is not None and bf != tf:
        changes.append("a fenced code block in the " + ("tuned" if tf else "base") + " reply only")
    if bk != tk:
        changes.append(f"base code ran as a {bk}, tuned as a {tk}")
    if changes:
        name = (
            "extraction_fixed"
            if tuned_passes or base_row.get("outcome") != Outcome.PASS
            else "extraction_broken"
        )
        labels.append(Label(name, "extraction changed: " + "; ".join(changes), []))

    # --- imports
    missing = _name_error_name(base_row)
    added = sorted(set(tuned.imports) - set(base.imports))
    if added:
        ev = [e for name in added for e in _evidence(tuned, "tuned", tuned.imports[name], 1)]
        why = f" (the base failed: name '{missing}' is not defined)" if missing in added else ""
        labels.append(Label("import_added", f"imports {', '.join(added)}{why}", _dedupe(ev)))
    removed = sorted(set(base.imports) - set(tuned.imports))
    if removed:
        ev = [e for name in removed for e in _evidence(base, "base", base.imports[name], 1)]
        labels.append(Label("import_removed", f"no longer imports {', '.join(removed)}", _dedupe(ev)))

    # --- helpers
    skip = {entry_point} if entry_point else set()
    new_helpers = sorted(set(tuned.defs) - set(base.defs) - skip)
    if new_helpers:
        ev = [e for name in new_helpers for e in _evidence(tuned, "tuned", tuned.defs[name], 1)]
        why = f" (the base failed: name '{missing}' is not defined)" if missing in new_helpers else ""
        labels.append(Label("helper_defined", f"defines {', '.join(new_helpers)}{why}", ev))
    gone_helpers = sorted(set(base.defs) - set(tuned.defs) - skip)
    if gone_helpers:
        ev = [e for name in gone_helpers for e in _evidence(base, "base", base.defs[name], 1)]
        labels.append(Label("helper_removed", f"no longer defines {', '.join(gone_helpers)}", ev))

    # --- self-tests
    b_tests = {ast.dump(n): n for n in base.self_tests}
    t_tests = {ast.dump(n): n for n in tuned.self_tests}
    for side, side_name, mine, other, verb in (
        (base, "base", b_tests, t_tests, "removed"),
        (tuned, "tuned", t_tests, b_tests, "added"),
    ):
        tests = [n for k, n in mine.items() if k not in other]
        if tests:
            guarded = all(_is_main_guard(n) for n in tests)
            note = " (inside if __name__ == '__main__': not run on import)" if guarded else ""
            ev = [e for n in tests for e in _evidence(side, side_name, n, 2)][:MAX_EVIDENCE]
            labels.append(
                Label(f"self_test_{verb}", f"{len(tests)} top-level test statement(s) {verb}{note}", ev)
            )

    # --- logic: the entry point, helpers defined on both sides, other module-level code
    logic: list[str] = []
    logic_ev: list[Evidence] = []
    compare_names = [entry_point] if entry_point else []
    compare_names += sorted((set(base.top_defs) & set(tuned.top_defs)) - skip)
    nested_new = set(new_helpers) | set(gone_helpers)
    for name in compare_names:
        bnode, tnode = base.top_defs.get(name), tuned.top_defs.get(name)
        if bnode is None or tnode is None:
            continue
        if normalised_dump(bnode, nested_new) != normalised_dump(tnode, nested_new):
            logic.append(name if name != entry_point else f"{name} (entry point)")
            logic_ev.extend(_changed_lines(base, tuned, bnode, tnode, nested_new))
    b_other = Counter(ast.dump(n) for n in base.other)
    t_other = Counter(ast.dump(n) for n in tuned.other)
    if b_other != t_other:
        logic.append("module-level code")
        logic_ev.extend(
            e
            for n in base.other
            if b_other[ast.dump(n)] > t_other[ast.dump(n)]
            for e in _evidence(base, "base", n, 1)
        )
        logic_ev.extend(
            e
            for n in tuned.other
            if t_other[ast.dump(n)] > b_other[ast.dump(n)]
            for e in _evidence(tuned, "tuned", n, 1)
        )
    if logic:
        labels.append(Label("logic_changed", "changed: " + ", ".join(logic), logic_ev[:MAX_EVIDENCE]))

    if not labels:
        same = base.source == tuned.source
        detail = (
            "the programs are identical: the verdict moved without a code change (timeout or non-determinism)"
            if same
            else "the programs differ only in comments, docstrings or layout"
        )
        labels.append(Label("format_only", detail, []))
    return labels


def _dedupe(evidence: list[Evidence]) -> list[Evidence]:
    seen: set[tuple[str, int]] = set()
    out = []
    for e in evidence:
        if (e.side, e.line) not in seen:
            seen.add((e.side, e.line))
            out.append(e)
    return out


# ----------------------------------------------------------------------------- tracing


def _verdict(
    row: Mapping[str, Any], program: str | None = None, entry_point: str | None = None
) -> dict[str, Any]:
    outcome = Outcome(row["outcome"])
    passed = bool(row.get("passed", outcome == Outcome.PASS))
    sub = subcategory(row, program, entry_point)
    return {
        "passed": passed,
        "outcome": str(outcome),
        "phase": row.get("phase"),
        "exception_type": row.get("exception_type"),
        "message": str(row.get("message") or "")[:500],
        "subcategory": sub.name if sub else None,
    }


def transition(base_passed: bool, tuned_passed: bool) -> str:
    """``fail_to_pass``, ``pass_to_fail``, ``pass_to_pass`` or ``fail_to_fail``."""
    return f"{'pass' if base_passed else 'fail'}_to_{'pass' if tuned_passed else 'fail'}"


def trace(
    base_rows: Sequence[Mapping[str, Any]],
    tuned_rows: Sequence[Mapping[str, Any]],
    problems: Mapping[str, Problem] | None = None,
    *,
    sources: Mapping[str, str] | None = None,
) -> Delta:
    """Compare two sets of results rows problem by problem and label every changed problem.

    ``problems`` rebuilds the programs that were run (prompt + completion); HumanEval is loaded when
    it is None. Tasks present on one side only are listed and left out of every count.
    """
    if problems is None:
        from idfu_lab.problems import load_humaneval

        problems = load_humaneval()
    base = first_samples(base_rows)
    tuned = first_samples(tuned_rows)
    common = sorted(set(base) & set(tuned), key=_task_key)
    warnings = []
    only_base = sorted(set(base) - set(tuned), key=_task_key)
    only_tuned = sorted(set(tuned) - set(base), key=_task_key)
    if only_base or only_tuned:
        msg = f"{len(only_base)} task(s) only in base, {len(only_tuned)} only in tuned: left out"
        logger.warning(msg)
        warnings.append(msg)
    policies = {
        side: {(r.get("postprocess"), r.get("imports")) for r in rows.values()}
        for side, rows in (("base", base), ("tuned", tuned))
    }
    if policies["base"] != policies["tuned"]:
        msg = f"the two files were post-processed differently: base {sorted(map(str, policies['base']))}, tuned {sorted(map(str, policies['tuned']))}"
        logger.warning(msg)
        warnings.append(msg)
    unknown = [t for t in common if t not in problems]
    if unknown:
        msg = f"{len(unknown)} task(s) not in the problem set (e.g. {unknown[0]}): their programs are the rows' code alone"
        logger.warning(msg)
        warnings.append(msg)

    tasks: dict[str, list[str]] = {t: [] for t in (*TRANSITIONS, "fail_to_fail_changed")}
    changed: list[ProblemDelta] = []
    for task in common:
        b, t = _verdict(base[task]), _verdict(tuned[task])
        kind = transition(b["passed"], t["passed"])
        tasks[kind].append(task)
        if kind == "fail_to_fail":
            if (b["outcome"], b["phase"]) == (t["outcome"], t["phase"]):
                continue
            kind = "fail_to_fail_changed"
            tasks[kind].append(task)
        elif kind == "pass_to_pass":
            continue
        problem = problems.get(task)
        entry_point = problem.entry_point if problem else None
        bp = program_for(base[task], problem)
        tp = program_for(tuned[task], problem)
        b, t = _verdict(base[task], bp, entry_point), _verdict(tuned[task], tp, entry_point)
        labels = label_change(base[task], tuned[task], bp, tp, entry_point)
        changed.append(ProblemDelta(task, kind, b, t, labels, bp, tp))
    return Delta(
        n=len(common),
        tasks=tasks,
        problems=changed,
        sources=dict(sources or {}),
        only_base=only_base,
        only_tuned=only_tuned,
        warnings=warnings,
    )


def _task_key(task: str) -> tuple[str, int, str]:
    prefix, _, number = task.rpartition("/")
    return (prefix, int(number), task) if number.isdigit() else (task, -1, task)


def _check_same_benchmark(base: Path, tuned: Path) -> None:
    metas = {}
    for p in (base, tuned):
        meta = Path(f"{p}.meta.json")
        if meta.is_file():
            try:
                metas[p] = json.loads(meta.read_text())
            except json.JSONDecodeError:
                raise IdfuError(f"{meta}: not valid JSON") from None
    if len(metas) == 2:
        hb, ht = (metas[p].get("dataset_hash") for p in (base, tuned))
        if hb and ht and hb != ht:
            raise IdfuError(f"{tuned}: results of another benchmark than {base} (dataset hashes differ)")


def trace_files(
    base_path: str | Path,
    tuned_path: str | Path,
    out_dir: str | Path | None = None,
    problems: Mapping[str, Problem] | None = None,
) -> dict[str, Any]:
    """Trace two results files; with ``out_dir``, write ``delta.json`` there.

    Returns the ``delta.json`` content (:func:`idfu_lab.report.delta_html.write_page` renders it).
    """
    base_path, tuned_path = Path(base_path), Path(tuned_path)
    _check_same_benchmark(base_path, tuned_path)
    delta = trace(
        read_results(base_path),
        read_results(tuned_path),
        problems,
        sources={"base": str(base_path), "tuned": str(tuned_path)},
    )
    data = delta.to_dict()
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _write(out / "delta.json", json.dumps(data, indent=1) + "\n")
        logger.info("wrote %s", out / "delta.json")
    return data


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def load_delta(path: str | Path) -> dict[str, Any]:
    """A ``delta.json`` (or the folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "delta.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IdfuError(f"{p}: no such delta file (run `idfu-lab delta BASE TUNED --out DIR`)") from None
    except json.JSONDecodeError as e:
        raise IdfuError(f"{p}: not valid JSON ({e.msg})") from None
    for key in ("n", "tasks", "problems"):
        if key not in data:
            raise IdfuError(f"{p}: missing key '{key}' (not a delta file?)")
    return data


# ----------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Split:
    """The net change in pass@1 and how much of it is a change of logic."""

    n: int
    fail_to_pass: int
    pass_to_fail: int
    f2p_logic: int
    p2f_logic: int
    human_labels: int  # how many of the counted problems used a person's label

    @property
    def net_pp(self) -> float:
        return 100.0 * (self.fail_to_pass - self.pass_to_fail) / self.n if self.n else 0.0

    @property
    def logic_pp(self) -> float:
        return 100.0 * (self.f2p_logic - self.p2f_logic) / self.n if self.n else 0.0

    @property
    def behavioural_pp(self) -> float:
        return self.net_pp - self.logic_pp

    @property
    def sentence(self) -> str:
        counted = self.fail_to_pass + self.pass_to_fail
        who = (
            f"Labels: {self.human_labels} by a person, {counted - self.human_labels} automatic."
            if self.human_labels
            else "Labels: automatic."
        )
        return (
            f"Of {self.net_pp:+.2f} pp, {self.logic_pp:+.2f} pp is logic: {self.f2p_logic} of "
            f"{self.fail_to_pass} fixed and {self.p2f_logic} of {self.pass_to_fail} broken problems changed "
            f"the solution's logic; the other {self.behavioural_pp:+.2f} pp is behavioural (imports, helpers, "
            f"self-tests, extraction, formatting). {who}"
        )

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(
            net_pp=self.net_pp,
            logic_pp=self.logic_pp,
            behavioural_pp=self.behavioural_pp,
            sentence=self.sentence,
        )
        return d


def is_logic(labels: Iterable[str], human: str | None = None) -> bool:
    """Whether a change counts as algorithmic: a person's label decides where given, else ``logic_changed``."""
    if human and human in LABELS:
        return human in LOGIC_LABELS
    return any(name in LOGIC_LABELS for name in labels)


def _label_names(problem: Mapping[str, Any]) -> list[str]:
    return [lab["name"] if isinstance(lab, Mapping) else lab.name for lab in problem.get("labels", [])]


def split(delta: Mapping[str, Any], human: Mapping[str, str] | None = None) -> Split:
    """The algorithmic vs behavioural split of the net change (rule in the module docstring).

    ``human`` maps task ids to a person's label; a label in :data:`LABELS` overrides the automatic
    ones for that problem, anything else (``unclear``, empty) leaves them in charge.
    """
    human = human or {}
    counts = Counter()
    used_human = 0
    for p in delta["problems"]:
        kind = p["transition"]
        if kind not in ("fail_to_pass", "pass_to_fail"):
            continue
        h = human.get(p["task_id"])
        if h in LABELS:
            used_human += 1
        if is_logic(_label_names(p), h):
            counts[kind] += 1
    tasks = delta["tasks"]
    return Split(
        n=int(delta["n"]),
        fail_to_pass=len(tasks.get("fail_to_pass", [])),
        pass_to_fail=len(tasks.get("pass_to_fail", [])),
        f2p_logic=counts["fail_to_pass"],
        p2f_logic=counts["pass_to_fail"],
        human_labels=used_human,
    )


def transition_table(delta: Mapping[str, Any]) -> pd.DataFrame:
    """Problems per transition, with their share of the problems compared."""
    n = int(delta["n"]) or 1
    rows = [
        {
            "transition": t,
            "problems": len(delta["tasks"].get(t, [])),
            "share_pct": 100.0 * len(delta["tasks"].get(t, [])) / n,
        }
        for t in (*TRANSITIONS, "fail_to_fail_changed")
    ]
    return pd.DataFrame(rows).set_index("transition").round(2)


def changed_frame(delta: Mapping[str, Any]) -> pd.DataFrame:
    """One row per changed problem: transition, verdicts on each side, labels and their details."""
    rows = []
    for p in delta["problems"]:
        rows.append(
            {
                "task_id": p["task_id"],
                "transition": p["transition"],
                "base": verdict_text(p["base"]),
                "tuned": verdict_text(p["tuned"]),
                "labels": ", ".join(_label_names(p)),
                "details": "; ".join(lab["detail"] for lab in p["labels"]),
            }
        )
    return pd.DataFrame(rows, columns=["task_id", "transition", "base", "tuned", "labels", "details"])


def label_table(delta: Mapping[str, Any]) -> pd.DataFrame:
    """How often each label was proposed, per changed transition."""
    counts = Counter((p["transition"], name) for p in delta["problems"] for name in _label_names(p))
    table = pd.DataFrame(0, index=list(LABELS), columns=list(CHANGED))
    for (kind, name), n in counts.items():
        table.loc[name, kind] = n
    table["total"] = table.sum(axis=1)
    table.index.name = "label"
    return table[table["total"] > 0]


def verdict_text(v: Mapping[str, Any]) -> str:
    if v.get("passed"):
        return "PASS"
    phase = f" ({v['phase']})" if v.get("phase") else ""
    return f"{v['outcome']}{phase}"


# ----------------------------------------------------------------------------- across seeds


def across_seeds(source: Run | Mapping[int, Mapping[str, Any] | str | Path]) -> pd.DataFrame:
    """Problems that flip (fail_to_pass or pass_to_fail) in at least one seed, and how consistently.

    ``source`` is a run (every seed with a ``delta/delta.json``) or ``{seed: delta dict or path}``.
    Columns: ``task_id``, one ``seed-<s>`` column per seed with that seed's transition, ``flips``
    (seeds in which it flipped), ``direction`` (fail_to_pass, pass_to_fail or mixed) and ``pattern``:
    ``every seed`` (the same flip in all seeds), ``one seed`` or ``some seeds``.
    """
    deltas: dict[int, Mapping[str, Any]] = {}
    if hasattr(source, "seeds") and hasattr(source, "layout"):
        for seed in source.seeds:
            p = source.layout.delta_json(seed)
            if p.is_file():
                deltas[seed] = load_delta(p)
    else:
        for seed, d in source.items():
            deltas[int(seed)] = load_delta(d) if isinstance(d, str | Path) else d
    seeds = list(deltas)  # the run's seed order (or the mapping's), never re-sorted
    per_task: dict[str, dict[int, str]] = {}
    for seed in seeds:
        for kind in TRANSITIONS:
            for task in deltas[seed]["tasks"].get(kind, []):
                per_task.setdefault(task, {})[seed] = kind
    rows = []
    for task, kinds in per_task.items():
        flips = {s: k for s, k in kinds.items() if k in ("fail_to_pass", "pass_to_fail")}
        if not flips:
            continue
        directions = set(flips.values())
        direction = directions.pop() if len(directions) == 1 else "mixed"
        if len(flips) == len(seeds) and direction != "mixed":
            pattern = "every seed"
        elif len(flips) == 1:
            pattern = "one seed"
        else:
            pattern = "some seeds"
        rec = {"task_id": task}
        rec.update({f"seed-{s}": kinds.get(s, "") for s in seeds})
        rec.update(flips=len(flips), direction=direction, pattern=pattern)
        rows.append(rec)
    columns = ["task_id", *(f"seed-{s}" for s in seeds), "flips", "direction", "pattern"]
    frame = pd.DataFrame(rows, columns=columns)
    if not frame.empty:
        frame = frame.sort_values(["pattern", "direction", "task_id"], key=lambda c: c.map(str)).reset_index(
            drop=True
        )
    frame.attrs["seeds"] = seeds
    return frame


def across_seeds_summary(frame: pd.DataFrame) -> dict[str, int]:
    """Counts for the book: consistent fixes and regressions, one-seed flips, the rest."""
    seeds = frame.attrs.get("seeds", [])
    every = frame[frame["pattern"] == "every seed"]
    return {
        "seeds": len(seeds),
        "flipping_problems": len(frame),
        "every_seed_fail_to_pass": int((every["direction"] == "fail_to_pass").sum()),
        "every_seed_pass_to_fail": int((every["direction"] == "pass_to_fail").sum()),
        "one_seed": int((frame["pattern"] == "one seed").sum()),
        "some_seeds": int((frame["pattern"] == "some seeds").sum()),
    }


# ----------------------------------------------------------------------------- HTML
