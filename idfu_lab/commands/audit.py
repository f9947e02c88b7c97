"""``idfu-lab audit`` (check a pair set before training) and ``idfu-lab curate`` (build one from a model's samples)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from idfu_lab.commands._common import add_config, out_dir, out_file
from idfu_lab.errors import IdfuError


def register(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser(
        "audit",
        help="audit preference pairs: gate parity, duplicates, HumanEval overlap, synthetic bugs, lengths",
        description=(
            "Re-run both sides of every pair through the executor and check what DPO on them assumes. Writes "
            "DIR/audit.json, DIR/pairs_annotated.jsonl, DIR/quarantine.jsonl and DIR/train_pairs.jsonl "
            "(the pairs with gate parity)."
        ),
    )
    a.add_argument("pairs", help="a JSONL/JSON/Parquet file, a saved datasets folder, or a Hub dataset id")
    a.add_argument(
        "--problems",
        help="problem set that pairs' problem_id refer to: an MBPP/HumanEval file, 'humaneval' or a Hub id",
    )
    a.add_argument("--out", required=True, type=out_dir, help="output folder")
    a.add_argument(
        "--config",
        help="a recipe (or profile name): its tokenizer, length limits, thresholds and column names; "
        "without it lengths are counted in characters and the defaults are used",
    )
    a.add_argument("--workers", type=int, help="executor processes (default: one per core)")
    a.add_argument("--strict", action="store_true", help="exit with status 1 when a checklist item fails")
    a.add_argument("--json", action="store_true", help="print audit.json instead of the checklist")
    a.set_defaults(func=_audit)

    c = sub.add_parser(
        "curate",
        help="build honest pairs: sample K replies per problem, gate them, pair passes with failures",
        description=(
            "Sample replies from the configured model, run each through the audit's gates, and pair passing with "
            "failing replies of the same problem. Writes PAIRS.jsonl (when any pair was made) and "
            "PAIRS.jsonl.report.json; the samples are cached in PAIRS.jsonl.generations.jsonl (a re-run resumes)."
        ),
    )
    add_config(c, required=True)
    c.add_argument(
        "--problems",
        help="problem pool: 'mini-train', an MBPP/HumanEval file or a Hub id (default: the recipe's data.problems)",
    )
    c.add_argument("--out", required=True, type=out_file, help="output pairs file (.jsonl)")
    c.add_argument(
        "--samples", type=int, help="samples per problem, K (default: the recipe's data.curate.samples)"
    )
    c.add_argument(
        "--max-pairs-per-problem",
        type=int,
        help="at most M pairs per problem (default: the recipe's data.curate.max_pairs_per_problem)",
    )
    c.add_argument("--balance", action="store_true", help="spread the rejected side over outcome categories")
    c.add_argument("--task-ids", help="use only these problem ids, e.g. 511-974 (MBPP's training side)")
    c.add_argument("--limit", type=int, help="use only the first N problems (after --task-ids)")
    c.add_argument("--seed", type=int, help="sampling seed (default: the recipe's data.curate.seed)")
    c.add_argument(
        "--temperature",
        type=float,
        help="sampling temperature (default: the recipe's data.curate.temperature)",
    )
    c.add_argument("--workers", type=int, help="executor processes (default: one per core)")
    c.set_defaults(func=_curate)


def _audit(args: argparse.Namespace) -> int:
    from idfu_lab.data.audit import audit_config, audit_pairs
    from idfu_lab.data.pairs import load, load_problem_set

    if args.config:
        from idfu_lab.config import load_config

        cfg = load_config(args.config)
        report = audit_config(
            cfg, pairs=args.pairs, problems=args.problems, workers=args.workers, progress=True
        )
    else:
        problems = load_problem_set(args.problems) if args.problems else None
        pair_set = load(args.pairs, problems=problems)
        report = audit_pairs(pair_set, workers=args.workers, progress=True, problems_source=args.problems)
    paths = report.write(args.out)
    s = report.summary
    if s["n_pairs"] == 0:
        first = report.quarantine[0] if report.quarantine else None
        detail = f"; first: row {first['line']}: {first['reason']}" if first else ""
        raise IdfuError(
            f"{args.pairs}: no usable pairs ({s['n_quarantined']} rows quarantined{detail}); see {paths['quarantine.jsonl']}"
        )
    if args.json:
        print(json.dumps(s, indent=2, ensure_ascii=False, default=str))
    else:
        print(
            f"{s['n_pairs']} pairs ({s['n_quarantined']} quarantined), {s['parity_violations']} parity violations, "
            f"{s['n_train_pairs']} kept for training"
        )
        width = max(len(item["item"]) for item in s["checklist"])
        for item in s["checklist"]:
            print(f"  [{item['status']:>4}] {item['item']:<{width}}  {item['evidence']}")
        print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 1 if args.strict and s["checklist_failed"] else 0


def _curate(args: argparse.Namespace) -> int:
    from idfu_lab.config import load_config
    from idfu_lab.data.curate import curate, select_problems
    from idfu_lab.data.pairs import load_problem_set

    cfg = load_config(args.config)
    c = cfg.data.curate  # the recipe's curation settings: what notebook 01 uses, unless overridden here
    source = args.problems or cfg.data.problems
    if not source:
        raise IdfuError(f"--problems is needed: the recipe {args.config} names no data.problems")
    problems = select_problems(load_problem_set(source) or {}, task_ids=args.task_ids, limit=args.limit)
    out = Path(args.out)
    result = curate(
        cfg,
        problems,
        samples=c.samples if args.samples is None else args.samples,
        max_pairs_per_problem=c.max_pairs_per_problem
        if args.max_pairs_per_problem is None
        else args.max_pairs_per_problem,
        balance=args.balance or c.balance,
        seed=c.seed if args.seed is None else args.seed,
        temperature=c.temperature if args.temperature is None else args.temperature,
        top_p=c.top_p,
        cache_path=out.with_name(out.name + ".generations.jsonl"),
        workers=args.workers,
    )
    written = result.write(out)
    r = result.report
    print(
        f"{r['n_problems']} problems ({len(r['reference_failures'])} with a failing reference, not used), "
        f"{r['n_candidates']} samples: {r['n_pass']} pass, {r['n_fail']} fail"
    )
    report_path = out.with_name(out.name + ".report.json")
    if written is None:
        print(f"no pairs: {result.reason}")
        print(f"nothing written to {out}; report: {report_path}")
        return 1
    outcomes = ", ".join(f"{k} {v}" for k, v in r["rejected_outcomes"].items())
    print(f"{r['n_pairs']} pairs from {r['problems_paired']} problems (rejected: {outcomes})")
    print(f"written: {written}; report: {report_path}")
    return 0
