"""``idfu-lab compare``: the book's analysis for generations you already have, without training anything.

``idfu-lab compare BASE TUNED [TUNED ...] --run-dir runs/NAME`` imports the files (one generation per
task each; several TUNED files are replicates — seeds or checkpoints — and take the seeds' places),
then executes notebooks 03-06 on them with papermill, resumably, as ``idfu-lab run`` does for a
training run. ``idfu-lab book --run runs/NAME`` then builds the report. See
:mod:`idfu_lab.analysis.compare`.
"""

from __future__ import annotations

import argparse

from idfu_lab.commands._common import add_no_progress, out_dir


def register(sub: argparse._SubParsersAction) -> None:
    from idfu_lab.commands._common import positive_int
    from idfu_lab.commands.evaluate import IMPORTS_CHOICES, POSTPROCESS_CHOICES, timeout_arg
    from idfu_lab.generation.importers import FORMATS
    from idfu_lab.problems import BENCHMARKS

    p = sub.add_parser(
        "compare",
        help="the report for two (or more) sets of generations you already have: typed failures, delta, statistics",
        description="Import BASE and TUNED generations (one per task each), judge them in the sandbox and run "
        "the evaluation, taxonomy, delta-tracing and summary notebooks on them into a run directory "
        "(resumable); then `idfu-lab book --run RUN_DIR` builds the book. Several TUNED files are replicates "
        "(seeds or checkpoints) and take the seeds' places.",
    )
    p.add_argument("base", metavar="BASE", help="generations of the reference model")
    p.add_argument("tuned", metavar="TUNED", nargs="+", help="generations of the model(s) compared with it")
    p.add_argument("--run-dir", required=True, type=out_dir, help="run directory to write (runs/NAME)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="idfu",
        help="the files' format: idfu (our generations), humaneval (task_id + completion), evalplus "
        "(task_id + solution or completion), bigcode (a JSON list per task) (default: idfu)",
    )
    p.add_argument(
        "--field", default="completion", help="humaneval format: the field holding the text (e.g. generation)"
    )
    p.add_argument(
        "--benchmark",
        default="humaneval",
        type=str.lower,
        choices=(*BENCHMARKS, "humaneval_plus", "mbpp_plus"),
        help="humaneval (bundled), humaneval+ or mbpp+ (EvalPlus's semantics), mbpp (test split) (default: humaneval)",
    )
    p.add_argument(
        "--problems",
        metavar="FILE",
        help="the benchmark's problem file (EvalPlus .jsonl/.jsonl.gz, MBPP's file or a Hub id); default: "
        "$HUMANEVAL_OVERRIDE_PATH / $MBPP_OVERRIDE_PATH, then EvalPlus's cache",
    )
    p.add_argument(
        "--labels",
        help="comma-separated names, BASE first then each TUNED (default: the files' names)",
    )
    p.add_argument(
        "--postprocess",
        choices=POSTPROCESS_CHOICES,
        default="extract",
        help="how a reply becomes a program (default: extract)",
    )
    p.add_argument(
        "--imports",
        choices=IMPORTS_CHOICES,
        default="none",
        help="imports put before the code (default: none)",
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="count a task a file has no generation for as NO_CODE (default: an error naming the file and task)",
    )
    p.add_argument(
        "--no-sensitivity",
        dest="sensitivity",
        action="store_false",
        help="judge under the chosen policy only, not also under the eight others",
    )
    p.add_argument(
        "--timeout",
        type=timeout_arg,
        default=3.0,
        metavar="SECONDS|auto",
        help="seconds per sample (default: 3), or auto (calibrated per task, as 'evaluate --timeout auto')",
    )
    p.add_argument("--memory-mb", type=int, default=4096, help="address-space cap per sample (default: 4096)")
    p.add_argument("--workers", type=positive_int, help="executor processes (default: one per CPU)")
    p.add_argument("--force", action="store_true", help="re-run notebooks that are already done")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    add_no_progress(p)
    p.set_defaults(func=_compare)


def _compare(args: argparse.Namespace) -> int:
    from idfu_lab.analysis.compare import prepare, sentence
    from idfu_lab.pipeline import run_pipeline

    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    run = prepare(
        args.base,
        args.tuned,
        args.run_dir,
        fmt=args.format,
        field=args.field,
        benchmark=args.benchmark,
        problems=args.problems,
        labels=labels,
        postprocess=args.postprocess,
        imports=args.imports,
        allow_missing=args.allow_missing,
        sensitivity=args.sensitivity,
        timeout=args.timeout,
        memory_mb=args.memory_mb,
        workers=args.workers,
    )
    print(sentence(run).replace("**", ""))
    results = run_pipeline(
        run.layout.config,
        run_dir=run.dir,
        force=args.force,
        kernel_name=args.kernel,
        progress=not args.no_progress,
    )
    for r in results:
        status = "skipped (done)" if r.skipped else f"{r.seconds:6.1f} s"
        where = "" if r.seed is None else f" replicate {r.seed}"
        print(f"  {r.notebook}{where}: {status}")
    _print_headline(run)
    print(f"run directory: {run.dir}\nbook: idfu-lab book --run {run.dir}")
    return 0


def _print_headline(run: object) -> None:
    """pass@1 and the transitions of every replicate, from the files the notebooks wrote."""
    import json

    from idfu_lab.analysis.compare import spec

    s = spec(run)  # type: ignore[arg-type]
    layout = run.layout  # type: ignore[attr-defined]
    for t in s["tuned"]:
        seed = t["seed"]
        summary = json.loads(layout.results_dir(seed).joinpath("evaluation.json").read_text())
        c = summary["comparison"]
        line = (
            f"  {s['base']['label']}: {round(c['base_pass1'] * c['n_problems'])} passed, {t['label']}: "
            f"{round(c['tuned_pass1'] * c['n_problems'])} passed of {c['n_problems']}"
        )
        delta = layout.delta_json(seed)
        if delta.is_file():
            d = json.loads(delta.read_text())
            line += (
                f"; fail->pass {d['fail_to_pass']}, pass->fail {d['pass_to_fail']}, "
                f"pass->pass {d['pass_to_pass']}, fail->fail {d['fail_to_fail']}"
            )
        print(line)
