"""``idfu-lab``: the command line. A thin dispatcher; each command group lives in ``idfu_lab.commands``.

Bad input (an :class:`~idfu_lab.errors.IdfuError`) prints one line, ``idfu-lab: error: ...``, and exits
with status 2, without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from idfu_lab import __version__
from idfu_lab.errors import IdfuError

#: Loggers whose INFO lines are shown without -v: which steps run, are skipped, and why.
QUIET_BUT_INFO = ("idfu_lab.pipeline", "idfu_lab.runs")

#: Command groups, in the order ``--help`` lists them. Each module exposes ``register(subparsers)``.
COMMAND_MODULES = ("run", "compare", "evaluate", "calibrate", "audit", "train", "generate", "delta", "book")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idfu-lab",
        description="Reproduce and extend a small-data DPO study on a code model.",
    )
    parser.add_argument("--version", action="version", version=f"idfu-lab {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log what every step does (-vv: debug messages too)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"idfu_lab.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Commands print their own results; the package's INFO lines would say the same thing again. So by
    # default only warnings are logged, plus the resume decisions (which steps run and why) that no
    # command prints; -v logs every step, -vv debug messages too.
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for name in QUIET_BUT_INFO:
        logging.getLogger(name).setLevel(min(level, logging.INFO))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # A command reads and writes notebooks (papermill, nbformat) but never checks an IRI: as in the
    # kernels (idfu_lab.pipeline.WITHOUT_IRI_CHECKS), jsonschema is left to skip those checks instead
    # of compiling their parsers (1.6 s of CPU in a command that runs notebooks).
    sys.modules.setdefault("rfc3987_syntax", None)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except IdfuError as e:
        print(f"idfu-lab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("idfu-lab: interrupted; finished steps are kept and a re-run resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
