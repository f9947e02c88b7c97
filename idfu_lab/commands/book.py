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
        description="Serve _build/html locally, load every page the run's book must have in headless "
        "Chromium, and fail on a missing page, a broken image, a console error or a request that leaves "
        "the machine. Screenshots and report.json go to RUN_DIR/book-check/.",
    )
    c.add_argument(
        "--run", metavar="RUN_DIR", help="run directory the book was built from (default: the latest)"
    )
    c.add_argument("--shots", metavar="DIR", help="where screenshots go (default: RUN_DIR/book-check)")
    c.add_argument("--chromium", metavar="PATH", help="the Chromium executable (default: chromium on PATH)")
    c.add_argument(
        "--require-alt", action="store_true", help="fail on a figure without alt text (else a note)"
    )
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
    from idfu_lab.report import book, bookcheck

    run_dir = Path(args.run) if args.run else book.latest_run()
    report = bookcheck.check_book(
        run_dir, shots=args.shots, executable=args.chromium, require_alt=args.require_alt
    )
    for page in report.pages:
        mark = "ok  " if page.ok else "FAIL"
        print(f"{mark} {page.docname:45s} {page.content_images:3d} image(s)  {page.seconds:5.1f} s")
        for problem in page.problems:
            print(f"       {problem}")
        if page.images_without_alt and not args.require_alt:
            print(f"       note: {len(page.images_without_alt)} figure(s) without alt text")
    shots = Path(report.pages[0].screenshot).parent if report.pages and report.pages[0].screenshot else None
    print(f"{len(report.pages)} pages in {report.seconds:.1f} s with {report.browser}; screenshots: {shots}")
    if not report.ok:
        print(f"book-check failed: {len(report.problems())} problem(s)")
        return 1
    return 0
