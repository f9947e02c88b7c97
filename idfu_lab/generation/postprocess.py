"""From a model's reply to the program that is judged: post-processing and import policies.

How code is pulled out of a chat reply, and which imports are put in front of it, can move a
HumanEval score by more than training does. So both are named options, recorded on every result
row, and the sensitivity table (:mod:`idfu_lab.analysis.evaluation`) evaluates the same generations under each.

Post-processing (``postprocess``):

- ``raw``: the text as generated, appended to the prompt (a ``solution`` row is run as it is).
- ``extract``: the first fenced Python block (else the first fenced block, else the text). If that
  code defines the entry point it runs as a complete program, after the prompt's own import lines;
  otherwise it is appended to the prompt (a body that continues the signature).
- ``sanitize``: ``extract``, then the top-level statements that are not imports, definitions or
  assignments of constants are dropped: self-tests, prints, ``if __name__ == "__main__":`` blocks.
  A program that does not parse is left as ``extract`` built it (its syntax error is the verdict);
  so is one nested too deeply for the parser (RecursionError or MemoryError from ``ast.parse``):
  the sandbox then judges it, and it fails there, under the sample's own limits, with its message.

Every policy takes time linear in the reply's length (see the patterns below), so a hostile reply
costs its own row a moment, never the run.

Imports (``imports``):

- ``none``: nothing is added.
- ``prompt``: the prompt's own import lines are put in front of a complete program (a ``solution``)
  that lacks them. A completion appended to the prompt has them already.
- ``header``: the import block of the Qwen2.5-Coder evaluation suite (and several harnesses built
  the same way) goes in front of everything: it hides exactly the missing-import failures
  (NAME_ERROR) the study counts, which is why it is an option and never a default.

Faithfulness: with ``extract`` + ``header`` the pass@1 of four published chat-model runs of that
suite is reproduced exactly (``tests/test_published_scores.py``). Two details of that harness matter
and are kept: the fence may carry any language tag (the reply's first fenced block is what the
harness takes when there is no Python one), and stray fence markers left in the code are removed.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from idfu_lab.errors import IdfuError

if TYPE_CHECKING:  # pragma: no cover
    from idfu_lab.problems import Problem

logger = logging.getLogger(__name__)

POSTPROCESS = ("raw", "extract", "sanitize")
IMPORTS = ("none", "prompt", "header")

#: The import block of the Qwen2.5-Coder evaluation suite's Python harness, in its order. ``numpy``
#: is added only where it is installed (see :func:`header_lines`): a missing module must not turn
#: every program into an IMPORT_ERROR.
HEADER_IMPORTS = (
    "import math",
    "import re",
    "import sys",
    "import copy",
    "import datetime",
    "import itertools",
    "import collections",
    "import heapq",
    "import statistics",
    "import functools",
    "import hashlib",
    "import numpy",
    "import string",
    "from typing import *",
    "from collections import *",
)

#: Language tags that mark a fenced block as Python.
PYTHON_TAGS = ("python", "python3", "py", "py3", "")

# A fence: three or more backticks at the start of a line (after optional indentation), an optional
# info string, then the block up to the next fence. An opening fence without a closing one (a reply
# cut by max_new_tokens) runs to the end of the text.
#
# Replies are untrusted text, so every pattern here runs in time linear in the reply: no two
# adjacent quantifiers may match the same characters. (The info string used to be preceded by its
# own ``[ \t]*``: on three backticks and 100,000 spaces with no newline the engine tried every
# split of the spaces between the two, 54 s; the tag is stripped after matching instead.) Each
# pattern is anchored at a line start, so it is tried once per line, and fails within that line.
_FENCE_OPEN = re.compile(r"^[ \t]*```([^\n`]*)\n", re.MULTILINE)
_FENCE_CLOSE = re.compile(r"^[ \t]*```", re.MULTILINE)
_ANY_FENCE = re.compile(r"```")


def header_lines() -> list[str]:
    """The ``header`` policy's import lines on this machine (``import numpy`` only where installed)."""
    has_numpy = importlib.util.find_spec("numpy") is not None
    return [line for line in HEADER_IMPORTS if has_numpy or "numpy" not in line]


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Every fenced block of a markdown reply, in order, as ``(language tag, code)``."""
    blocks: list[tuple[str, str]] = []
    pos = 0
    while True:
        m = _FENCE_OPEN.search(text, pos)
        if m is None:
            return blocks
        tag = m.group(1).strip().lower()
        end = _FENCE_CLOSE.search(text, m.end())
        if end is None:
            blocks.append((tag, text[m.end() :]))
            return blocks
        blocks.append((tag, text[m.end() : end.start()]))
        # skip past the closing fence's line
        nl = text.find("\n", end.end())
        pos = len(text) if nl == -1 else nl + 1


def extract_code(text: str) -> str:
    """The code in a reply: the first fenced Python block, else the first fenced block, else the text.

    Stray fence markers left in the result (a reply that opens a second block without closing the
    first) are removed, as the published harness does, so they cannot become a syntax error that
    says nothing about the model's code.
    """
    blocks = fenced_blocks(text)
    python = [code for tag, code in blocks if _is_python(tag)]
    if python:
        code = python[0]
    elif blocks:
        code = blocks[0][1]
    else:
        code = text
    return _ANY_FENCE.sub("", code)


def _is_python(tag: str) -> bool:
    first = tag.split()[0] if tag.split() else ""
    return first in PYTHON_TAGS


def defines(code: str, name: str | None) -> bool:
    """True when ``code`` defines ``name`` at the top level (a ``def`` or ``class`` at column 0)."""
    if not name:
        return False
    return (
        re.search(rf"^(?:async[ \t]+)?(?:def|class)[ \t]+{re.escape(name)}\b", code, re.MULTILINE) is not None
    )


def prompt_imports(prompt: str) -> list[str]:
    """The prompt's own top-level import statements, as source lines, in order."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return [
            line.rstrip()
            for line in prompt.splitlines()
            if re.match(r"^(?:import[ \t]+\w|from[ \t]+[\w.]+[ \t]+import[ \t])", line)
        ]
    lines: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            segment = ast.get_source_segment(prompt, node)
            if segment:
                lines.append(segment)
    return lines


def _missing_imports(imports: list[str], code: str) -> list[str]:
    present = {line.strip() for line in code.splitlines()}
    return [imp for imp in imports if imp.strip() not in present]


def _with_imports(imports: list[str], code: str) -> str:
    missing = _missing_imports(imports, code)
    return "\n".join(missing) + "\n" + code if missing else code


def _calls_local(node: ast.AST, local: set[str]) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            if isinstance(func, ast.Name) and func.id in local:
                return True
            if isinstance(func, ast.Name) and func.id in ("print", "input", "exit", "quit"):
                return True
    return False


def _keep_statement(node: ast.stmt, local: set[str]) -> bool:
    if isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return True
    if isinstance(node, ast.Assign | ast.AnnAssign):
        value = node.value
        return value is not None and not _calls_local(value, local)
    if isinstance(node, ast.Try):
        # ``try: import numpy`` / ``except ImportError: ...``: an optional import, not a self-test.
        return all(isinstance(n, ast.Import | ast.ImportFrom) for n in node.body)
    return False


def sanitize_code(code: str) -> str:
    """Drop top-level statements other than imports, definitions and constant assignments.

    A constant assignment is one whose value calls none of the functions defined in the code (nor
    ``print``/``input``): ``MOD = 10**9 + 7`` stays, ``result = solve(3)`` goes. Code that does not
    parse is returned unchanged, and so is code nested too deeply for the parser (it raises
    RecursionError or MemoryError on a few thousand levels of ``-``, ``not``, ``a.b.c...``), or that
    holds a null byte (ValueError on some Python versions).
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code
    local = {
        n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    kept = [node for node in tree.body if _keep_statement(node, local)]
    if len(kept) == len(tree.body):
        return code
    lines = code.splitlines()
    parts: list[str] = []
    for node in kept:
        start = node.lineno
        if getattr(node, "decorator_list", None):
            start = min(d.lineno for d in node.decorator_list)
        parts.append("\n".join(lines[start - 1 : node.end_lineno]))
    return "\n".join(parts) + "\n"


def _check_policy(postprocess: str, imports: str) -> None:
    if postprocess not in POSTPROCESS:
        raise IdfuError(f"unknown postprocess policy '{postprocess}' (choose from {', '.join(POSTPROCESS)})")
    if imports not in IMPORTS:
        raise IdfuError(f"unknown imports policy '{imports}' (choose from {', '.join(IMPORTS)})")


def _prompt_is_code(problem: Problem) -> bool:
    """HumanEval-style problems: the prompt is a signature + docstring that a completion continues."""
    return bool(getattr(problem, "prompt_is_code", getattr(problem, "benchmark", "humaneval") != "mbpp"))


def build_program(
    text: str, problem: Problem, *, postprocess: str = "raw", imports: str = "none", is_solution: bool = False
) -> tuple[str, str]:
    """``(field, code)``: the code to run and whether it is a ``completion`` (after the prompt) or a ``solution``.

    ``text`` is the raw reply; ``is_solution`` says the input row was a complete program already.
    """
    _check_policy(postprocess, imports)
    prompt = problem.prompt
    appendable = _prompt_is_code(problem)
    if postprocess == "raw":
        if is_solution or not appendable:
            field, code = "solution", text
        else:
            field, code = "completion", text
    else:
        extracted = extract_code(text)
        if is_solution or not appendable or defines(extracted, problem.entry_point):
            field = "solution"
            code = _with_imports(prompt_imports(prompt), extracted) if appendable else extracted
        else:
            field, code = "completion", extracted
        if postprocess == "sanitize":
            if field == "completion":
                field, code = "solution", prompt + code
            code = sanitize_code(code)
    if imports == "prompt" and field == "solution" and appendable:
        code = _with_imports(prompt_imports(prompt), code)
    elif imports == "header":
        if field == "completion":
            field, code = "solution", prompt + code
        code = "\n".join(header_lines()) + "\n" + code
    return field, code


def apply_policy(
    row: Mapping[str, Any], problem: Problem, *, postprocess: str = "raw", imports: str = "none"
) -> dict[str, Any]:
    """A new row with the code to run under a policy.

    The raw text is read from ``completion`` (or ``solution``); the result carries exactly one of
    ``completion``/``solution`` (the code to run), plus ``raw`` (the original text), ``postprocess``
    and ``imports``. Other fields are kept.
    """
    if "completion" in row and row["completion"] is not None:
        text, is_solution = row["completion"], False
    elif "solution" in row and row["solution"] is not None:
        text, is_solution = row["solution"], True
    else:
        raise IdfuError(f"row for {row.get('task_id', '?')} has neither 'completion' nor 'solution'")
    if not isinstance(text, str):
        raise IdfuError(
            f"row for {row.get('task_id', '?')}: the completion must be a string, got {type(text).__name__}"
        )
    field, code = build_program(
        text, problem, postprocess=postprocess, imports=imports, is_solution=is_solution
    )
    out = {k: v for k, v in row.items() if k not in ("completion", "solution")}
    out[field] = code
    out["raw"] = text
    out["postprocess"] = postprocess
    out["imports"] = imports
    return out


def apply_rows(
    rows: Iterable[Mapping[str, Any]],
    problems: Mapping[str, Problem],
    *,
    postprocess: str = "raw",
    imports: str = "none",
) -> list[dict[str, Any]]:
    """:func:`apply_policy` over rows; a task id that is not in ``problems`` is an error naming the row."""
    _check_policy(postprocess, imports)
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows, start=1):
        task_id = row.get("task_id")
        if task_id not in problems:
            raise IdfuError(f"row {i}: unknown task_id {task_id!r} for this benchmark")
        out.append(apply_policy(row, problems[task_id], postprocess=postprocess, imports=imports))
    return out
