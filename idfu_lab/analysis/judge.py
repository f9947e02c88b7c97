"""Judging samples: rows or a samples file -> jobs -> verdicts -> results rows and file."""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idfu_lab.benchmarks import suites
from idfu_lab.errors import IdfuError
from idfu_lab.jsonl import iter_records
from idfu_lab.problems import Problem, dataset_hash, load_benchmark
from idfu_lab.results import counts_dict, estimate_pass_at_k
from idfu_lab.sandbox.executor import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    Job,
    _run,
    job_for,
    protections,
    run_jobs,
    usable_cpus,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationSummary:
    """What :func:`evaluate_file` wrote and the figures a reader looks at first."""

    out: Path
    meta: Path
    n_samples: int
    n_tasks: int
    n_passed: int
    pass_at_k: dict[str, float]
    counts: dict[str, dict[str, int]]
    protections: dict[str, bool]
    duration_s: float


def _row_job(row: Mapping[str, Any], problems: Mapping[str, Problem], where: str) -> Job:
    """Validate one input row and build its job; IdfuError naming ``where`` otherwise."""
    if not isinstance(row, Mapping):
        raise IdfuError(f"{where}: a sample must be a JSON object, not {type(row).__name__}")
    if "task_id" not in row or row["task_id"] in (None, ""):
        raise IdfuError(f"{where}: the row has no task_id")
    task_id = str(row["task_id"])
    problem = problems.get(task_id)
    if problem is None:
        raise IdfuError(f"{where}: unknown task_id {task_id!r}")
    has_completion, has_solution = row.get("completion") is not None, row.get("solution") is not None
    if has_completion == has_solution:
        which = (
            "both 'completion' and 'solution'" if has_completion else "neither 'completion' nor 'solution'"
        )
        raise IdfuError(f"{where}: the row has {which}; give exactly one")
    key = "completion" if has_completion else "solution"
    if not isinstance(row[key], str):
        raise IdfuError(f"{where}: '{key}' must be a string, not {type(row[key]).__name__}")
    return job_for(problem, **{key: row[key]})


def _apply_policy(
    rows: list[dict], problems: Mapping[str, Problem], postprocess: str, imports: str
) -> tuple[list[dict], bool]:
    """Rows after a post-processing policy; (rows, applied). raw/none leaves the rows untouched."""
    if postprocess in ("raw", None) and imports in ("none", None):
        return rows, False
    from idfu_lab.generation import postprocess as policy  # imported only when a policy is asked for

    if postprocess not in policy.POSTPROCESS:
        raise IdfuError(f"unknown postprocess {postprocess!r} (choose from {', '.join(policy.POSTPROCESS)})")
    if imports not in policy.IMPORTS:
        raise IdfuError(f"unknown imports policy {imports!r} (choose from {', '.join(policy.IMPORTS)})")
    return policy.apply_rows(rows, problems, postprocess=postprocess, imports=imports), True


def evaluate_rows(rows: list[dict], problems: Mapping[str, Problem], **run_kw: Any) -> list[dict]:
    """Judge rows with ``task_id`` and ``completion`` or ``solution``: input fields + verdict fields.

    Every other input field is passed through; the verdict fields (:data:`VERDICT_FIELDS`) come last
    and replace input fields of the same name. Bad rows raise IdfuError naming the row (1-based)
    before anything runs. ``run_kw``: :func:`run_jobs`'s keyword arguments.
    """
    jobs = [_row_job(row, problems, f"row {number}") for number, row in enumerate(rows, start=1)]
    # a problem with several test suites (EvalPlus's base and plus) is one job per suite, one row
    row_problems = [problems[str(row["task_id"])] for row in rows]
    jobs, merge = suites.expand(jobs, row_problems)
    run_kw["timeout"] = suites.timeout_for(row_problems, run_kw.get("timeout", DEFAULT_TIMEOUT_S))
    fields = merge(run_jobs(jobs, **run_kw))
    return [{**row, **verdict} for row, verdict in zip(rows, fields, strict=True)]


def _read_samples(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) for every non-blank line of a JSONL file; IdfuError naming the line."""
    if not path.is_file():
        raise IdfuError(f"{path}: no such samples file")
    rows = list(iter_records(path))
    if not rows:
        raise IdfuError(f"{path}: no samples")
    return rows


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def evaluate_file(
    samples: str | Path,
    out: str | Path,
    *,
    benchmark: str = "humaneval",
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    postprocess: str = "raw",
    imports: str = "none",
    progress: bool = False,
    problems_file: str | Path | None = None,
) -> EvaluationSummary:
    """Judge a samples JSONL file; write the results JSONL and its ``.meta.json`` sidecar.

    Every row is validated first (malformed JSON, no task_id, neither or both of completion and
    solution, unknown task_id: IdfuError naming the line) so that nothing is run or written for a
    bad file; both outputs are written atomically. ``benchmark``: a name (``humaneval``,
    ``humaneval+``, ``mbpp``, ``mbpp+``, whose data ``problems_file`` gives where needed) or a problems
    file (see :func:`idfu_lab.problems.load_benchmark`). ``postprocess``/``imports``: a policy from
    :mod:`idfu_lab.generation.postprocess` applied to each row first (``raw``/``none``: the text as given).
    """
    started = time.monotonic()
    samples, out = Path(samples), Path(out)
    problems = load_benchmark(benchmark, problems_file)
    numbered = _read_samples(samples)
    for lineno, row in numbered:
        _row_job(row, problems, f"{samples}:{lineno}")
    rows = [row for _, row in numbered]
    rows, applied = _apply_policy(rows, problems, postprocess, imports)
    jobs = [
        _row_job(row, problems, f"{samples}: row {n} after post-processing") for n, row in enumerate(rows, 1)
    ]
    row_problems = [problems[str(row["task_id"])] for row in rows]
    jobs, merge = suites.expand(jobs, row_problems)  # one job per test suite (EvalPlus: base, plus)
    timeout = suites.timeout_for(row_problems, timeout)
    verdicts, active = _run(jobs, workers=workers, timeout=timeout, memory_mb=memory_mb, progress=progress)
    results = [{**row, **verdict} for row, verdict in zip(rows, merge(verdicts), strict=True)]

    out.parent.mkdir(parents=True, exist_ok=True)
    meta_path = out.with_name(out.name + ".meta.json")
    _write_atomically(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results))
    from idfu_lab import __version__

    summary = EvaluationSummary(
        out=out,
        meta=meta_path,
        n_samples=len(results),
        n_tasks=len({str(r["task_id"]) for r in results}),
        n_passed=sum(r["passed"] for r in results),
        pass_at_k=estimate_pass_at_k(results),
        counts=counts_dict(results),
        protections=dict(active if active is not None else protections()),
        duration_s=round(time.monotonic() - started, 3),
    )
    meta = {
        "samples": str(samples),
        "benchmark": benchmark,
        "problems_file": str(problems_file) if problems_file else None,
        "suites": list(suites.suite_names(problems)),
        "dataset_hash": dataset_hash(problems),
        "n_problems": len(problems),
        "n_samples": summary.n_samples,
        "n_tasks": summary.n_tasks,
        "timeout_s": timeout,
        "memory_mb": memory_mb,
        "workers": workers or usable_cpus(),
        "policy": {"postprocess": postprocess, "imports": imports, "applied": applied},
        "protections": summary.protections,
        "pass_at_k": summary.pass_at_k,
        "executor": "idfu_lab.sandbox.executor",
        "package_version": __version__,
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": summary.duration_s,
    }
    _write_atomically(meta_path, json.dumps(meta, indent=2) + "\n")
    logger.info("wrote %d results to %s", summary.n_samples, out)
    return summary
