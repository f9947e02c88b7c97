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

#: Command groups, in the order ``--help`` lists them. Each module exposes ``register(subparsers)``.
COMMAND_MODULES = ("run", "evaluate", "audit", "train", "generate", "delta", "book")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idfu-lab",
        description="Reproduce and extend a small-data DPO study on a code model.",
    )
    parser.add_argument("--version", action="version", version=f"idfu-lab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"idfu_lab.commands.{name}")
        except ModuleNotFoundError as e:  # TEMPORARY while command groups land
            if e.name != f"idfu_lab.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
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
