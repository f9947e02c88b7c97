"""``idfu-lab run`` (the whole pipeline) and ``idfu-lab config`` (show a resolved recipe)."""

from __future__ import annotations

import argparse

from idfu_lab.commands._common import CONFIG_HELP, add_config, add_seeds, out_dir, positive_int
from idfu_lab.errors import IdfuError
from idfu_lab.pipeline import NOTEBOOKS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="execute the notebooks with papermill: 01 once, 02-05 per seed, 06 over all seeds",
        description="Execute the study's notebooks with papermill into a run directory (resumable).",
    )
    add_config(p, default="configs/tiny.yaml")
    add_seeds(p)
    p.add_argument("--run-dir", type=out_dir, help="run directory (default: runs/<config stem>)")
    p.add_argument("--force", action="store_true", help="re-run notebooks and steps that are already done")
    p.add_argument(
        "--only", nargs="+", choices=NOTEBOOKS, metavar="NOTEBOOK", help="run only these notebooks"
    )
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        metavar="N",
        help="seeds run at the same moment, each in kernels of its own (default 1; on one GPU keep 1)",
    )
    p.set_defaults(func=_run)

    c = sub.add_parser(
        "config",
        help="validate a recipe and print it with every default resolved",
        description="Load a recipe exactly as a run would (unknown keys, wrong types and repeated keys are "
        "errors naming the key and line) and print it with every default written out, or list every key.",
    )
    c.add_argument("recipe", nargs="?", metavar="CONFIG", help=CONFIG_HELP)
    add_config(c)
    c.add_argument("--keys", action="store_true", help="list every key with its default and meaning")
    c.set_defaults(func=_config)


def _run(args: argparse.Namespace) -> int:
    from idfu_lab.pipeline import run_pipeline

    results = run_pipeline(
        args.config,
        args.seeds,
        args.run_dir,
        force=args.force,
        only=args.only,
        kernel_name=args.kernel,
        jobs=args.jobs,
    )
    ran = [r for r in results if not r.skipped]
    run_dir = results[0].output.parents[1] if results and results[0].seed is None else None
    for r in results:
        status = "skipped (done)" if r.skipped else f"{r.seconds:6.1f} s"
        seed = "" if r.seed is None else f" seed {r.seed}"
        print(f"  {r.notebook}{seed}: {status}")
    print(f"{len(ran)} notebook(s) executed, {len(results) - len(ran)} skipped")
    if run_dir is not None:
        print(f"run directory: {run_dir}")
    return 0


def _config(args: argparse.Namespace) -> int:
    from idfu_lab.config import config_hash, describe, load_config, to_yaml

    source = args.config or args.recipe
    if args.keys and source is None:
        for key, default, help_text in describe():
            print(f"{key:45s} {default:30s} {help_text}")
        return 0
    if source is None:
        raise IdfuError("give a recipe: idfu-lab config tiny, or --config configs/paper.yaml")
    cfg = load_config(source)
    if args.keys:
        for key, default, help_text in describe():
            print(f"{key:45s} {default:30s} {help_text}")
        return 0
    print(f"# {cfg.source}  (config hash {config_hash(cfg)[:12]})")
    print(to_yaml(cfg), end="")
    return 0
