"""JSON Lines, read and written one way everywhere.

Every artefact that holds rows (samples, generations, results, pairs, margins) is JSONL. Reading
names the file and the line of anything malformed (bad JSON, bytes that are not UTF-8, nesting too
deep for the parser, a line that is not an object), as an :class:`~idfu_lab.errors.IdfuError`, and
skips blank lines; writing goes through a temporary file so that a killed process never leaves half a
file behind for a resumable step to mistake for a finished one.

What is written is always standard JSON in UTF-8, whatever the rows hold (model output and
exception messages are untrusted text):

* **Lone surrogates** (``"\\ud800"``: Python strings may hold them, from a JSON escape in the input
  or bytes decoded with ``surrogateescape``; UTF-8 cannot encode them) are written as the JSON
  escape ``\\udXXX`` of the same code point, inside the string they belong to. The file stays valid
  UTF-8, the rest of the text stays readable, and reading the line back gives exactly the same
  string. This is done by the text stream's encoding error handler (:data:`ENCODE_ERRORS`), so rows
  without surrogates cost nothing extra.
* **NaN and ±Infinity** are not JSON (Python's ``json`` writes them as bare ``NaN``/``Infinity`` by
  default, which most other readers reject): they are written as ``null``, as JavaScript's
  ``JSON.stringify`` does. Anything else ``json`` cannot encode is written as its ``str()``.
"""

from __future__ import annotations

import codecs
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from idfu_lab.errors import IdfuError

#: The encoding error handler under which every JSON text is written (see the module docstring).
ENCODE_ERRORS = "idfu-lab-json-escape"


def _escape_unencodable(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: each character UTF-8 cannot encode (a lone surrogate) as a JSON ``\\u`` escape.

    Only JSON text is written through it, where such a character can only sit inside a string
    literal, so the escape denotes the very same code point.
    """
    if not isinstance(error, UnicodeEncodeError):
        raise error
    bad = error.object[error.start : error.end]
    return "".join(f"\\u{ord(ch):04x}" for ch in bad), error.end


codecs.register_error(ENCODE_ERRORS, _escape_unencodable)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±Infinity) replaced by None, at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


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


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """``obj`` as standard JSON text: non-finite floats become ``null``, NumPy values plain numbers and lists, other objects their ``str()``.

    Non-ASCII text is kept as is (``ensure_ascii=False``); write the result through
    :func:`open_for_writing` (or encode it with ``errors=ENCODE_ERRORS``) so that lone surrogates
    are escaped.
    """
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_plain, indent=indent)
    except ValueError:  # a NaN or an Infinity somewhere: the rare case pays for a second pass
        return json.dumps(_finite(obj), ensure_ascii=False, allow_nan=False, default=_plain, indent=indent)


def open_for_writing(path: str | Path, mode: str = "w") -> IO[str]:
    """A UTF-8 text stream for JSON text (``"w"`` or ``"a"``): lone surrogates written as escapes."""
    return open(path, mode, encoding="utf-8", errors=ENCODE_ERRORS, newline="\n")


def _replace_atomically(path: Path, write: Any) -> Path:
    """Call ``write(stream)`` on a temporary file next to ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open_for_writing(tmp) as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(text: str, path: str | Path) -> Path:
    """Write a text file (a recipe, a cached page fragment), atomically."""
    return _replace_atomically(Path(path), lambda fh: fh.write(text))


def lock_beside(path: str | Path, name: str = "") -> Any:
    """A file lock for ``path``, as a hidden empty file beside it (``.<file>[.<name>].lock``).

    For files that several processes change (a run's manifest, a shared generation cache): hold it
    around a read-change-write or an append. ``name`` gives one file several independent locks.
    """
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(f".{path.name}{'.' + name if name else ''}.lock")))


def write_json(obj: Any, path: str | Path, *, indent: int | None = 2) -> Path:
    """Write one JSON document (a metadata sidecar, a summary), atomically."""
    return _replace_atomically(Path(path), lambda fh: fh.write(dumps(obj, indent=indent) + "\n"))


def write_records(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write rows as JSONL, atomically (a temporary file renamed over the target)."""

    def write(fh: IO[str]) -> None:
        for row in rows:
            fh.write(dumps(row) + "\n")

    return _replace_atomically(Path(path), write)


def parse_line(raw: bytes, where: str) -> dict[str, Any]:
    """One JSONL line (bytes, newline included or not) as an object; IdfuError naming ``where``."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise IdfuError(
            f"{where}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line)"
        ) from None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise IdfuError(f"{where}: malformed JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise IdfuError(f"{where}: JSON nested too deeply to read") from None
    if not isinstance(row, dict):
        raise IdfuError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def iter_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for every non-blank line; an error names ``path:line`` otherwise.

    Lines end at ``\\n`` (JSON Lines); a UTF-8 byte-order mark at the start of the file is ignored.
    """
    p = Path(path)
    if not p.is_file():
        raise IdfuError(f"{p}: no such file")
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            if not raw.strip():
                continue
            yield lineno, parse_line(raw, f"{p}:{lineno}")


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every object of a JSONL file, in order."""
    return [row for _, row in iter_records(path)]
