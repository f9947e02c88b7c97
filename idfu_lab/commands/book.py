"""``idfu-lab book`` and ``idfu-lab book-check``: the report from a run, and a browser's look at it.

``book`` re-executes nothing: it copies the run's executed notebooks into ``book/results/``, writes the
run-dependent pages into ``book/_generated/`` and builds ``_build/html`` with ``-W -n``. Point it at any
run directory with ``--run``; without it, the run whose notebooks were executed last under ``runs/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "book",
        help="build the HTML report (Jupyter Book) from a run directory, running nothing",
        description="Copy a run's executed notebooks into the book, generate its run-dependent pages "
        "(recipe, provenance, results overview) and build _build/html with `jupyter-book build . -W -n "
        "--keep-going`: any warning fails the build.",
    )
    p.add_argument("--run", metavar="RUN_DIR", help="run directory (default: the latest run under runs/)")
    p.add_argument(
        "--prepare-only",
        action="store_true",
        help="write book/results/ and book/_generated/ but do not build the HTML",
    )
    p.set_defaults(func=run_book)

    c = subparsers.add_parser(
        "book-check",
        help="open the built book in headless Chromium and check every page",
        description="Run tools/book_check.py: serve _build/html locally, check that it is RUN_DIR's book, "
        "load every page in headless Chromium (Selenium with Debian's chromium and chromedriver) and fail "
        "on what a reader would notice: a missing page or image, an image without alt text, a console "
        "error, a request that leaves the machine, 'nan' in the results, a table wider than its column, "
        "an absolute path of this machine, a toy run's page without its note, the seeds out of the run's "
        "order. Screenshots and report.json go to RUN_DIR/book-check/.",
    )
    c.add_argument(
        "--run", metavar="RUN_DIR", help="run directory the book was built from (default: the latest)"
    )
    c.add_argument("--shots", metavar="DIR", help="where screenshots go (default: RUN_DIR/book-check)")
    c.add_argument("--chromium", metavar="PATH", help="the Chromium executable (default: chromium on PATH)")
    c.add_argument("--chromedriver", metavar="PATH", help="its chromedriver (default: chromedriver on PATH)")
    c.set_defaults(func=run_book_check)


def run_book(args: argparse.Namespace) -> int:
    from idfu_lab.report import book

    run_dir = Path(args.run) if args.run else book.latest_run()
    if args.prepare_only:
        prepared = book.prepare(run_dir)
        print(f"book prepared from {run_dir}: {len(prepared.notebooks)} notebooks in {book.RESULTS_DIR}/")
        return 0
    result = book.build(run_dir)
    print(f"book built from {run_dir} in {result.seconds:.1f} s, {len(result.warnings)} warnings")
    print(f"open {result.index}")
    return 0


def run_book_check(args: argparse.Namespace) -> int:
    """The browser check is a tool of the repository (``tools/book_check.py``), not of the runtime
    package: it runs where the book is built, from a clone, with the interpreter running this command."""
    import subprocess
    import sys

    from idfu_lab.config import repo_root
    from idfu_lab.errors import IdfuError

    script = repo_root() / "tools" / "book_check.py"
    if not script.is_file():
        raise IdfuError(f"{script} is missing: book-check runs from a clone of the repository")
    argv = [sys.executable, str(script)]
    for flag in ("run", "shots", "chromium", "chromedriver"):
        value = getattr(args, flag)
        if value:
            argv += [f"--{flag}", str(value)]
    return subprocess.run(argv, check=False).returncode
