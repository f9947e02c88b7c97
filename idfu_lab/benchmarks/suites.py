"""Problems judged by several test suites (EvalPlus's ``base`` and ``plus``): one job per suite, one row.

A problem with :attr:`~idfu_lab.problems.Problem.suites` is judged by one sandbox job per suite, each
a complete verdict (outcome, phase, exception, message, time). :func:`expand` turns one job per sample
into those jobs and :func:`merge` turns their verdicts back into one results row's fields:

* the combined verdict in the usual fields (``passed``, ``outcome``, ``phase``, ...): passed when every
  suite passed, otherwise the first failing suite's verdict, in the problem's suite order, with the
  suites' times summed: what the benchmark's headline score counts (EvalPlus's "+" score);
* every suite's own verdict, prefixed by its name: ``base_passed``, ``base_outcome``, ``base_phase``,
  ``base_exception_type``, ``base_message``, ``base_duration_s``, then ``plus_...``.

Problems without suites go through unchanged (one job, the usual fields), so callers need not branch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from idfu_lab.problems import Problem
from idfu_lab.sandbox import Job, Verdict


def suite_names(problems: Mapping[str, Problem] | Sequence[Problem]) -> tuple[str, ...]:
    """The suites the problems are judged by (``("base", "plus")`` for EvalPlus), empty for one test."""
    values = problems.values() if isinstance(problems, Mapping) else problems
    names: list[str] = []
    for problem in values:
        for name, _ in problem.suites:
            if name not in names:
                names.append(name)
    return tuple(names)


def expand(
    jobs: Sequence[Job], problems: Sequence[Problem]
) -> tuple[list[Job], Callable[[Sequence[Verdict]], list[dict[str, Any]]]]:
    """Jobs for the executor (one per suite where a problem has suites) and the function that merges
    the executor's verdicts, in the same order, back into one dict of result fields per input job.

    ``jobs[i]`` is the single job :func:`idfu_lab.sandbox.job_for` built for a sample of ``problems[i]``.
    """
    if len(jobs) != len(problems):
        raise ValueError("one problem per job")
    flat: list[Job] = []
    spans: list[tuple[int, int, Problem]] = []
    for job, problem in zip(jobs, problems, strict=True):
        start = len(flat)
        if problem.suites:
            setup = f"{problem.setup}\n" if problem.setup else ""
            flat.extend(dataclasses.replace(job, test=setup + test) for _, test in problem.suites)
        else:
            flat.append(job)
        spans.append((start, len(flat), problem))

    def merge_all(verdicts: Sequence[Verdict]) -> list[dict[str, Any]]:
        if len(verdicts) != len(flat):
            raise ValueError(f"expected {len(flat)} verdicts, got {len(verdicts)}")
        return [merge(problem, verdicts[a:b]) for a, b, problem in spans]

    return flat, merge_all


def merge(problem: Problem, verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """One results row's verdict fields from the verdicts of ``problem``'s suites (see the module doc)."""
    if not problem.suites:
        (verdict,) = verdicts
        return verdict.as_dict()
    failed = next((v for v in verdicts if not v.passed), None)
    fields = (failed or verdicts[-1]).as_dict()
    fields["passed"] = failed is None
    fields["duration_s"] = round(sum(v.duration_s for v in verdicts), 6)
    cpu = [v.cpu_s for v in verdicts]
    fields["cpu_s"] = None if any(c is None for c in cpu) else round(sum(cpu), 6)  # type: ignore[arg-type]
    for (name, _), verdict in zip(problem.suites, verdicts, strict=True):
        for key, value in verdict.as_dict().items():
            fields[f"{name}_{key}"] = value
    return fields


def timeout_for(problems: Sequence[Problem] | Mapping[str, Problem], timeout: float) -> float:
    """The budget for jobs of these problems: ``timeout``, or a benchmark's own longer bound.

    Per task, :meth:`idfu_lab.benchmarks.calibrate.TimeoutPolicy.budget` composes a policy (fixed
    or ``auto``) with the bound the same way; the judge uses that.
    """
    values = problems.values() if isinstance(problems, Mapping) else problems
    bounds = [p.timeout_s for p in values if p.timeout_s]
    return max([timeout, *bounds])
