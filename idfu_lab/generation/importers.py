"""Bring your own generations: other harnesses' sample files in our generations format.

So that the failure taxonomy, the per-seed evaluation and the delta tracing work on any model's
outputs, three common formats are read:

- ``humaneval``: OpenAI human-eval ``samples.jsonl``, one ``{"task_id", "completion"}`` per line; the
  completion continues the prompt. ``field`` names another text field (e.g. ``generation`` for files
  that keep a raw chat reply there); task ids written ``Python/N`` (HumanEval-X, MultiPL-E) are read
  as ``HumanEval/N``.
- ``evalplus``: EvalPlus samples, ``{"task_id", "solution"}`` (a complete program) or
  ``{"task_id", "completion"}`` (a body, as human-eval).
- ``bigcode``: bigcode-evaluation-harness ``generations.json``, a JSON list with one entry per problem
  in the benchmark's order, each a list of strings that are complete programs (prompt + completion).
- ``idfu``: our own generations files (``idfu-lab generate``, a run's ``generations/*.jsonl``), one
  ``{"task_id", "completion" | "solution", ...}`` per line, every field kept.

:func:`check_coverage` holds an imported file to one generation per task of a benchmark (``compare``'s
contract): a duplicate task, a task the benchmark does not have, or a missing task is an error naming
the file and the task, unless missing tasks are allowed, in which case each becomes an empty
generation (judged NO_CODE) marked ``missing``.

Each row records which field its text came from: a complete program is kept as ``solution`` (run as
it is), a continuation as ``completion`` (appended to the prompt), so the post-processing policies
(:mod:`idfu_lab.generation.postprocess`) treat it correctly. ``sample_index`` counts a task's samples in file order.
A malformed input is an :class:`~idfu_lab.errors.IdfuError` naming the file and the line (or item).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from idfu_lab.errors import IdfuError
from idfu_lab.jsonl import iter_records

logger = logging.getLogger(__name__)

FORMATS = ("idfu", "humaneval", "evalplus", "bigcode")

_HUMANEVAL_X = re.compile(r"^Python/(\d+)$")


def normalise_task_id(task_id: Any) -> str:
    """``HumanEval/N`` for HumanEval-X style ``Python/N``; other ids as strings, unchanged."""
    text = str(task_id)
    m = _HUMANEVAL_X.match(text)
    return f"HumanEval/{m.group(1)}" if m else text


_MBPP_ID = re.compile(r"^(?:mbpp|MBPP|Mbpp)(?:Eval)?/(\d+)$")


def align_task_id(task_id: str, known: set[str] | dict[str, Any]) -> str:
    """A task id as the benchmark spells it: MBPP tasks are ``11`` in MBPP's file and ``Mbpp/11`` in
    EvalPlus's, and harnesses write either; anything else (or an id the benchmark has) is unchanged."""
    if task_id in known:
        return task_id
    m = _MBPP_ID.match(task_id)
    if m and m.group(1) in known:
        return m.group(1)
    if task_id.isdigit() and f"Mbpp/{task_id}" in known:
        return f"Mbpp/{task_id}"
    return task_id


def _key(model: str, fmt: str, task_id: str, sample_index: int, text: str) -> str:
    blob = json.dumps([model, fmt, task_id, sample_index, hashlib.sha256(text.encode()).hexdigest()])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _row(
    task_id: str, sample_index: int, field: str, text: str, *, model: str, fmt: str, source: str
) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "sample_index": sample_index,
        field: text,
        "model": model,
        "adapter": None,
        "decoding": {"imported": fmt},
        "template": None,
        "seed": None,
        "key": _key(model, fmt, task_id, sample_index, text),
        "source_format": fmt,
        "source_field": field,
        "source_file": source,
    }


def _text(rec: dict[str, Any], field: str, path: Path, line: int) -> str:
    value = rec[field]
    if not isinstance(value, str):
        raise IdfuError(f"{path}: line {line}: '{field}' must be a string, got {type(value).__name__}")
    return value


def _read_jsonl(
    path: Path,
    *,
    model: str,
    fmt: str,
    pick: Callable[[dict[str, Any], int], tuple[str, str]],
    extras: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Rows of a JSONL samples file. ``pick(record, line)`` says which field holds the text and
    which field of ours keeps it (``completion`` or ``solution``); ``extras`` are fields copied as
    ``source_<name>`` (a harness's own verdict, kept for comparison)."""
    counts: dict[str, int] = defaultdict(int)
    rows = []
    for i, rec in iter_records(path):
        if "task_id" not in rec:
            raise IdfuError(f"{path}: line {i} has no 'task_id'")
        read_from, kept_as = pick(rec, i)
        task_id = normalise_task_id(rec["task_id"])
        text = _text(rec, read_from, path, i)
        row = _row(task_id, counts[task_id], kept_as, text, model=model, fmt=fmt, source=str(path))
        row["source_line"] = i
        for extra in extras:
            if extra in rec:
                row[f"source_{extra}"] = rec[extra]
        counts[task_id] += 1
        rows.append(row)
    return rows


def read_humaneval(path: str | Path, *, model: str, field: str = "completion") -> list[dict[str, Any]]:
    """human-eval ``samples.jsonl`` (``task_id`` + ``completion``, or the text in ``field``)."""
    path = Path(path)

    def pick(rec: dict[str, Any], line: int) -> tuple[str, str]:
        if field not in rec:
            raise IdfuError(
                f"{path}: line {line} has no '{field}' (a human-eval sample needs task_id and completion)"
            )
        return field, "completion"

    return _read_jsonl(path, model=model, fmt="humaneval", pick=pick, extras=("passed", "result"))


def read_evalplus(path: str | Path, *, model: str) -> list[dict[str, Any]]:
    """EvalPlus samples: ``task_id`` and ``solution`` (complete program) or ``completion`` (a body)."""
    path = Path(path)

    def pick(rec: dict[str, Any], line: int) -> tuple[str, str]:
        for field in ("solution", "completion"):
            if field in rec:
                return field, field
        raise IdfuError(f"{path}: line {line} has neither 'solution' nor 'completion'")

    return _read_jsonl(path, model=model, fmt="evalplus", pick=pick)


def read_bigcode(path: str | Path, *, model: str, task_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """bigcode-evaluation-harness ``generations.json``: a list (per problem, in order) of lists of programs.

    ``task_ids`` names the problems in order (default: ``HumanEval/0``, ``HumanEval/1``, ...).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise IdfuError(f"{path}: line {e.lineno} is not valid JSON ({e.msg})") from None
    if not isinstance(data, list):
        raise IdfuError(
            f"{path}: a bigcode generations file is a JSON list of lists of strings, got {type(data).__name__}"
        )
    if task_ids is None:
        task_ids = [f"HumanEval/{i}" for i in range(len(data))]
    if len(data) > len(task_ids):
        raise IdfuError(f"{path}: {len(data)} problems, but the benchmark has only {len(task_ids)}")
    rows = []
    for i, samples in enumerate(data):
        if not isinstance(samples, list):
            raise IdfuError(
                f"{path}: item {i} ({task_ids[i]}) must be a list of strings, got {type(samples).__name__}"
            )
        for j, text in enumerate(samples):
            if not isinstance(text, str):
                raise IdfuError(
                    f"{path}: item {i} ({task_ids[i]}), sample {j} must be a string, got {type(text).__name__}"
                )
            rows.append(_row(task_ids[i], j, "solution", text, model=model, fmt="bigcode", source=str(path)))
            rows[-1]["source_line"] = i + 1  # the item's position in the list, 1-based
    if len(data) < len(task_ids):
        logger.warning("%s: %d problems of %d (the rest are missing)", path, len(data), len(task_ids))
    return rows


def read_idfu(path: str | Path, *, model: str) -> list[dict[str, Any]]:
    """Our generations format: ``task_id`` and ``completion`` or ``solution``; every other field kept.

    ``model`` is recorded where a row does not name its own.
    """
    path = Path(path)
    rows = []
    for i, rec in iter_records(path):
        if "task_id" not in rec:
            raise IdfuError(f"{path}: line {i} has no 'task_id'")
        fields = [f for f in ("completion", "solution") if rec.get(f) is not None]
        if len(fields) != 1:
            which = "both 'completion' and 'solution'" if fields else "neither 'completion' nor 'solution'"
            raise IdfuError(f"{path}: line {i} has {which}; a generation has exactly one")
        _text(rec, fields[0], path, i)
        row = dict(rec)
        row["task_id"] = normalise_task_id(rec["task_id"])
        row.setdefault("model", model)
        row.update(source_format="idfu", source_field=fields[0], source_file=str(path), source_line=i)
        rows.append(row)
    return rows


def import_file(
    path: str | Path,
    fmt: str,
    *,
    model: str | None = None,
    field: str = "completion",
    task_ids: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Read ``path`` in format ``fmt`` as generations rows; ``model`` defaults to the file's stem.

    ``task_ids``: the benchmark's tasks in order, which a bigcode file lists by position.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise IdfuError(f"unknown format '{fmt}' (formats: {', '.join(FORMATS)})")
    if not path.is_file():
        raise IdfuError(f"file not found: {path}")
    name = model or path.stem
    if fmt == "humaneval":
        rows = read_humaneval(path, model=name, field=field)
    elif fmt == "evalplus":
        rows = read_evalplus(path, model=name)
    elif fmt == "idfu":
        rows = read_idfu(path, model=name)
    else:
        rows = read_bigcode(path, model=name, task_ids=task_ids)
    if not rows:
        raise IdfuError(f"{path}: no samples found")
    logger.info(
        "imported %d samples for %d problems from %s (%s)",
        len(rows),
        len({r["task_id"] for r in rows}),
        path,
        fmt,
    )
    return rows


def check_task_ids(rows: list[dict[str, Any]], known: set[str], path: str | Path) -> None:
    """An error naming the first sample whose task id the benchmark does not have."""
    for i, row in enumerate(rows, start=1):
        row["task_id"] = align_task_id(str(row["task_id"]), known)
        if row["task_id"] not in known:
            raise IdfuError(
                f"{path}: sample {i} has task_id {row['task_id']!r}, which the benchmark does not have"
            )


def _where(row: dict[str, Any], path: str | Path) -> str:
    line = row.get("source_line")
    return f"{path}: line {line}" if line is not None else f"{path}"


def check_coverage(
    rows: list[dict[str, Any]],
    problems: dict[str, Any],
    path: str | Path,
    *,
    benchmark: str = "the benchmark",
    allow_missing: bool = False,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Exactly one generation per task of ``problems``, in the benchmark's order: ``(rows, missing)``.

    Task ids are aligned to the benchmark's spelling (:func:`align_task_id`). A second generation for a
    task, or a task ``problems`` does not have, is an IdfuError naming ``path``, the line and the task.
    Missing tasks are an error too, naming how many and the first ones, unless ``allow_missing``: then
    each gets an empty completion (judged NO_CODE, as a model that answered nothing) marked
    ``"missing": true``, and their ids are returned so that the report can say so.
    """
    by_task: dict[str, dict[str, Any]] = {}
    for row in rows:
        task = align_task_id(str(row["task_id"]), problems)
        if task not in problems:
            raise IdfuError(
                f"{_where(row, path)}: task {row['task_id']!r} is not a task of {benchmark} "
                f"(a file from another benchmark? {benchmark} has e.g. {next(iter(problems))!r})"
            )
        if task in by_task:
            first = by_task[task].get("source_line")
            raise IdfuError(
                f"{_where(row, path)}: a second generation for task {task!r}"
                + (f" (the first is on line {first})" if first is not None else "")
                + "; compare takes one generation per task (several files for several runs)"
            )
        by_task[task] = {**row, "task_id": task}
    missing = [t for t in problems if t not in by_task]
    if missing and not allow_missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise IdfuError(
            f"{path}: no generation for {len(missing)} of the {len(problems)} tasks of {benchmark} ({shown}); "
            "pass --allow-missing to count them as NO_CODE"
        )
    out = []
    for task in problems:
        if task in by_task:
            out.append(by_task[task])
        else:
            out.append({"task_id": task, "sample_index": 0, "completion": "", "missing": True})
    return out, missing
