"""``idfu-lab delta BASE_RESULTS TUNED_RESULTS --out DIR``: what changed, problem by problem, and why."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from idfu_lab.commands._common import out_dir


def _delta(args: argparse.Namespace) -> int:
    from idfu_lab.analysis.annotate import human_labels, read_annotations, validate
    from idfu_lab.analysis.delta import split, trace_files, transition_table
    from idfu_lab.problems import load_problems
    from idfu_lab.report.delta_html import write_page

    problems = load_problems(args.problems)
    rows = read_annotations(args.annotations) if args.annotations else []
    human = human_labels(rows)
    data = trace_files(args.base, args.tuned, out_dir=args.out, problems=problems)
    write_page(data, Path(args.out) / "delta.html", human)
    if args.json:
        print(json.dumps({k: v for k, v in data.items() if k != "problems"}, indent=1))
        return 0
    print(transition_table(data).to_string())
    print()
    counts = data["label_counts"]
    if counts:
        print("labels: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])))
    print(split(data, human).sentence)
    for warning in (*data["warnings"], *validate(rows, data)):
        print(f"warning: {warning}")
    print(f"wrote {args.out}/delta.json and {args.out}/delta.html")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``delta``."""
    p = subparsers.add_parser(
        "delta",
        help="trace the problems whose verdict changed between two results files, with cause labels",
        description="Compare two results files of the same benchmark (base vs tuned, or any two models): "
        "transition counts, and for every changed problem a side-by-side diff of the two programs with "
        "automatic cause labels (import_added, helper_defined, self_test_removed, extraction_fixed, "
        "syntax_fixed, logic_changed, format_only, and their reverses). Writes DIR/delta.json and DIR/delta.html.",
    )
    p.add_argument("base", metavar="BASE_RESULTS", help="results JSONL of the reference side")
    p.add_argument("tuned", metavar="TUNED_RESULTS", help="results JSONL of the side compared with it")
    p.add_argument(
        "--out", required=True, type=out_dir, metavar="DIR", help="folder for delta.json and delta.html"
    )
    p.add_argument(
        "--problems",
        default="humaneval",
        help="problem set that rebuilds the programs: 'humaneval' (default) or a HumanEval/MBPP-format file",
    )
    p.add_argument(
        "--annotations", metavar="CSV", help="a person's labels (annotations/<run>/seed-<s>.csv) to show"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of tables")
    p.set_defaults(func=_delta)
