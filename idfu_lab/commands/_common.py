"""Arguments every command spells the same way, and checks that run before any work starts.

``--config`` is always a recipe (a YAML file or a profile name); ``--seeds`` is always the training
seeds (one or more); ``--seed`` is always one sampling seed; ``--no-progress`` always turns progress bars
off; ``--out`` is checked to be writable when the arguments are parsed, so an unusable path is an
argument error before a model is loaded or a sample is run.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

CONFIG_HELP = "a YAML recipe or a profile name (e.g. tiny, paper)"


def add_config(p: argparse.ArgumentParser, *, required: bool = False, default: str | None = None) -> None:
    p.add_argument(
        "--config",
        required=required,
        default=default,
        help=CONFIG_HELP + (f" (default: {default})" if default else ""),
    )


def add_seeds(p: argparse.ArgumentParser, help_text: str = "training seeds (default: the recipe's)") -> None:
    p.add_argument("--seeds", "--seed", dest="seeds", type=int, nargs="+", metavar="SEED", help=help_text)


def add_no_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-progress", "--quiet", dest="no_progress", action="store_true", help="no progress bars"
    )


def _first_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _check_ancestor(path: Path) -> None:
    ancestor = _first_existing(path.parent)
    if not ancestor.is_dir():
        raise argparse.ArgumentTypeError(f"{path}: cannot be created under {ancestor}, which is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{path}: {ancestor} is not writable")


def out_file(text: str) -> Path:
    """An output file path: not a folder, and creatable (its nearest existing folder writable)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{path} is not writable")
    _check_ancestor(path)
    return path


def out_dir(text: str) -> Path:
    """An output folder: an existing writable folder, or one that can be created."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file; give a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{path} is not writable")
        return path
    _check_ancestor(path)
    return path


def non_negative_int(text: str) -> int:
    """An option's whole number, 0 or more (argparse's error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def positive_int(text: str) -> int:
    """An option's whole number, 1 or more (argparse's error otherwise)."""
    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value
