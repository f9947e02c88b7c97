"""``idfu-lab calibrate``: measure (or show) the calibration behind ``evaluate --timeout auto``.

``evaluate --timeout auto`` calibrates by itself the first time it needs to; this command does it
ahead of time (before a job array starts, say), shows what a cached calibration holds, and with
``--force`` measures again. See :mod:`idfu_lab.benchmarks.calibrate` for the policy, the cache and
when it recalibrates. Exit status 0, also when some canonical solutions failed (they are listed and
get the fixed default); bad input is status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from idfu_lab.commands._common import add_no_progress


def register(subparsers: Any) -> None:
    """Add the ``calibrate`` subcommand."""
    from idfu_lab.commands._common import positive_int

    p = subparsers.add_parser(
        "calibrate",
        help="time a benchmark's canonical solutions here: the per-task budgets of 'evaluate --timeout auto'",
        description=(
            "Run every canonical solution of the benchmark through the sandbox a few times, keep the median "
            "CPU time per task and cache it under the idfu-lab cache ($IDFU_LAB_CACHE or ~/.cache/idfu-lab, "
            "in calibration/). 'evaluate --timeout auto' gives each task max(1 s, 10 x that time). A cached "
            "calibration of the same machine, Python, benchmark content and calibration version is reused; "
            "--force measures again."
        ),
    )
    p.add_argument(
        "--benchmark",
        default="humaneval",
        help="a benchmark name (humaneval, mini, mbpp, humaneval+, mbpp+) or a problems file (default: humaneval)",
    )
    p.add_argument("--problems", metavar="FILE", help="the named benchmark's problem file, as for evaluate")
    p.add_argument("--force", action="store_true", help="measure again even when a calibration is cached")
    p.add_argument("--workers", type=positive_int, default=None, help="parallel workers (default: CPUs)")
    p.add_argument("--json", action="store_true", help="print the calibration's summary and budgets as JSON")
    add_no_progress(p)
    p.set_defaults(func=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    """``idfu-lab calibrate``: the calibration, its budgets, and every task it could not calibrate."""
    from idfu_lab.benchmarks.calibrate import AUTO, time_policy
    from idfu_lab.problems import load_benchmark

    problems = load_benchmark(args.benchmark, args.problems)
    policy = time_policy(
        AUTO,
        problems,
        benchmark=str(args.benchmark),
        force=args.force,
        workers=args.workers,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    calibration = policy.calibration
    assert calibration is not None
    budgets = policy.budgets(problems)
    if args.json:
        print(json.dumps({"timeout_policy": policy.metadata(), "budgets": budgets}, indent=2))
        return 0
    how = "reused from the cache" if calibration.reused else f"measured now in {calibration.duration_s:.1f} s"
    print(f"calibration {calibration.id} of {calibration.benchmark}: {how} ({calibration.created})")
    print(f"  file: {calibration.path or '(not cached: the cache folder is not writable)'}")
    machine = calibration.machine
    print(f"  machine: {machine['hostname']}, {machine['cpu_model']}, Python {machine['python']}")
    print(
        f"  {len(calibration.times)} tasks calibrated ({calibration.measure} time, median of "
        f"{calibration.runs} runs); budget = max({policy.floor_s:g} s, {policy.multiple:g} x that time)"
    )
    above = {t: b for t, b in budgets.items() if t in calibration.times and b > policy.floor_s}
    at_floor = sum(1 for t in calibration.times if budgets[t] <= policy.floor_s)
    print(f"  at the floor: {at_floor}; above it: {len(above)}")
    for task_id, budget in sorted(above.items(), key=lambda kv: -kv[1])[:10]:
        print(f"    {task_id}: {budget:.3f} s (canonical {calibration.times[task_id]:.4f} s)")
    if calibration.own_limits:
        print(
            f"  {len(calibration.own_limits)} tasks keep their benchmark's own limits "
            "(EvalPlus: each input timed against the reference in the same job)"
        )
    if calibration.failed:
        print(f"  NOT calibrated ({len(calibration.failed)}; they get the fixed {policy.seconds:g} s):")
        for task_id, why in calibration.failed.items():
            print(f"    {task_id}: {why}")
    print(
        "  recalibrates by itself on another machine or Python, an edited benchmark or a new calibration "
        "version; --force measures again now"
    )
    return 0
