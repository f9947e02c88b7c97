"""JSON Lines, read and written one way everywhere.

Every artefact that holds rows (samples, generations, results, pairs, margins) is JSONL. Reading
names the file and the line of anything malformed, as an :class:`~idfu_lab.errors.IdfuError`, and
skips blank lines; writing goes through a temporary file so that a killed process never leaves half a
file behind for a resumable step to mistake for a finished one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from idfu_lab.errors import IdfuError


def iter_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line; an error names ``path:line`` otherwise."""
    p = Path(path)
    if not p.is_file():
        raise IdfuError(f"{p}: no such file")
    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise IdfuError(f"{p}:{lineno}: malformed JSON: {e.msg} (column {e.colno})") from None
            if not isinstance(row, dict):
                raise IdfuError(f"{p}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield lineno, row


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every object of a JSONL file, in order."""
    return [row for _, row in iter_records(path)]


def _plain(value: Any) -> Any:
    """JSON for what ``json`` cannot write: NumPy arrays and scalars (from Parquet, pandas) as lists and
    numbers, anything else as its text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            return value.item()
        except (ValueError, TypeError):
            pass
    return str(value)


def write_records(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write rows as JSONL, atomically (a temporary file renamed over the target)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=_plain) + "\n")
    os.replace(tmp, p)
    return p
