"""Preference pairs: load them from anywhere, validate every row, and put them through the gates.

A pair is a prompt and two replies to it, ``chosen`` (passing) and ``rejected`` (failing), plus the
tests that decide which is which. The study's claim rests on both sides meeting *the same gates*, so
a pair that does not name runnable tests cannot be trusted and is not used. A pair names its tests in
one of three ways:

- ``problem_id`` (or ``task_id``): a problem of a problem set given separately (``--problems``: an
  MBPP or HumanEval file, ``humaneval``, or a Hub id);
- MBPP-style ``test_list`` (assert statements) with optional ``test_setup_code``: the program is the
  code of the reply (a complete function); the setup code then the asserts run as the test phase
  (setup after the code, as MBPP's own harness: its setups build objects of classes the code defines);
- HumanEval-style ``test`` (defining ``check``) with ``entry_point``: as the evaluation runs HumanEval.

Sources: a local JSONL / JSON / Parquet file, a folder saved with ``datasets``' ``save_to_disk``, or
a Hugging Face Hub dataset id. Columns map by configuration (``data.prompt_column`` ...). Replies may
be plain text or TRL's conversational format (lists of ``{"role", "content"}`` messages, with an
explicit ``prompt`` or the prompt left implicit as the shared beginning of both conversations); both
become plain text here (the user's text and the assistant's reply), which is what the templates in
:mod:`idfu_lab.generation.prompts` and the trainer take.

Nothing is lost: a row that cannot be used goes to a quarantine list with its line number and the
reason, and the counts are reported. Loading never crashes on a bad row and never drops one silently.
Only problems with the *source itself* (a missing file, a JSON document that does not parse, an
unreachable Hub id) are errors, with a message that names the file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from idfu_lab.errors import IdfuError
from idfu_lab.jsonl import write_records

if TYPE_CHECKING:  # pragma: no cover
    from idfu_lab.config import DataConfig
    from idfu_lab.problems import Problem
    from idfu_lab.sandbox import Job, Verdict

logger = logging.getLogger(__name__)

#: File suffixes read as local pair files.
LOCAL_FORMATS = (".jsonl", ".ndjson", ".json", ".parquet")

#: Fields of ``audit/train_pairs.jsonl`` (what training reads), in order.
TRAIN_FIELDS = (
    "id",
    "prompt",
    "chosen",
    "rejected",
    "problem_id",
    "chosen_outcome",
    "rejected_outcome",
    "rejected_phase",
)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class Columns:
    """Which source columns hold the prompt, the two replies and the pair's id."""

    prompt: str = "prompt"
    chosen: str = "chosen"
    rejected: str = "rejected"
    id: str = "id"

    @classmethod
    def from_config(cls, data: DataConfig) -> Columns:
        return cls(
            prompt=data.prompt_column,
            chosen=data.chosen_column,
            rejected=data.rejected_column,
            id=data.id_column,
        )


@dataclass
class Pair:
    """One usable pair: plain texts, the tests that judge it, and where it came from.

    ``prompt`` is the user's text (what :func:`idfu_lab.generation.prompts.messages` wraps), ``chosen`` and
    ``rejected`` are whole assistant replies (prose and a fenced code block); the code the gates run
    is :attr:`chosen_code` / :attr:`rejected_code`. ``extra`` keeps the row's other columns
    (provenance, recorded outcomes) untouched.
    """

    id: str
    prompt: str
    chosen: str
    rejected: str
    problem: Problem
    problem_id: str
    line: int
    tests_from: str  # "problem_set" | "test_list" | "test"
    system: str | None = None
    conversational: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def chosen_code(self) -> str:
        from idfu_lab.generation.postprocess import extract_code

        return extract_code(self.chosen)

    @property
    def rejected_code(self) -> str:
        from idfu_lab.generation.postprocess import extract_code

        return extract_code(self.rejected)

    def as_trl(self, *, conversational: bool = True) -> dict[str, Any]:
        """The pair in TRL's preference format (conversational by default, as an instruct model trains)."""
        if not conversational:
            return {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}
        prompt = [{"role": "system", "content": self.system}] if self.system else []
        prompt.append({"role": "user", "content": self.prompt})
        return {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": self.chosen}],
            "rejected": [{"role": "assistant", "content": self.rejected}],
        }


@dataclass(frozen=True)
class Quarantined:
    """A row that cannot be used, with the reason; ``line`` is the 1-based row (line) number."""

    line: int
    reason: str
    id: str | None = None
    row: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "id": self.id, "reason": self.reason, "row": _jsonable(self.row)}


@dataclass
class PairSet:
    """The result of loading: usable pairs, quarantined rows, and counts that add up."""

    source: str
    pairs: list[Pair]
    quarantine: list[Quarantined]
    n_rows: int
    n_beyond_limit: int = 0

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)

    @property
    def n_quarantined(self) -> int:
        return len(self.quarantine)

    def quarantine_reasons(self) -> dict[str, int]:
        """Reason kind (the text before the first colon or quote) -> count."""
        counts: dict[str, int] = {}
        for q in self.quarantine:
            kind = _reason_kind(q.reason)
            counts[kind] = counts.get(kind, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def write_quarantine(self, path: str | Path) -> Path:
        """One JSON object per quarantined row: line, id, reason, and the row as read."""
        return write_records([q.as_dict() for q in self.quarantine], path)


def _reason_kind(reason: str) -> str:
    return re.split(r"[:'(]", reason, maxsplit=1)[0].strip()


# --------------------------------------------------------------------------- reading sources


def _offline() -> bool:
    return any(
        os.environ.get(v, "") not in ("", "0", "false", "False")
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def looks_like_hub_id(source: str) -> bool:
    """``owner/name`` that is not a local path and has no file suffix."""
    s = str(source)
    return bool(_HUB_ID.match(s)) and not Path(s).exists() and Path(s).suffix.lower() not in LOCAL_FORMATS


def _hub_rows(source: str, split: str | None) -> list[dict[str, Any]]:
    """Rows of a Hub dataset (all splits when ``split`` is None); errors say whether we are offline."""
    import datasets

    offline = _offline()
    try:
        ds = datasets.load_dataset(source, split=split)
    except Exception as e:  # datasets raises many kinds (ConnectionError, FileNotFoundError, ValueError ...)
        if offline:
            raise IdfuError(
                f"'{source}' is not a local file or folder, and cannot be loaded from the Hugging Face Hub: "
                "offline (HF_HUB_OFFLINE=1) and not in the local datasets cache; download it once with network "
                "access, or give a local file"
            ) from None
        raise IdfuError(
            f"cannot load '{source}' from the Hugging Face Hub: {type(e).__name__}: {e}"
        ) from None
    if hasattr(ds, "keys") and not hasattr(ds, "to_list"):  # a DatasetDict: every split, in order
        rows: list[dict[str, Any]] = []
        for name in ds:
            rows.extend(ds[name].to_list())
        return rows
    logger.info("loaded %s (split %s) from the Hub: %d rows", source, split, len(ds))
    return ds.to_list()


def _saved_dataset_rows(path: Path, split: str) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # not a saved dataset
        raise IdfuError(f"{path}: a folder, but not a dataset saved with save_to_disk ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise IdfuError(f"{path}: no split '{split}' (splits: {', '.join(ds)})")
        ds = ds[split]
    return ds.to_list()


def _jsonable(value: Any) -> Any:
    """Plain JSON types (NumPy arrays and scalars from Parquet become lists and numbers)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            return value.item()
        except (ValueError, TypeError):
            return str(value)
    return value


def iter_rows(source: str | Path, *, split: str = "train") -> Iterator[tuple[int, Any, str | None]]:
    """``(row number, row, error)`` for every row of a source; ``error`` is set when a line is unreadable.

    Row numbers are physical line numbers for JSONL (blank lines are skipped, not counted as rows)
    and 1-based positions otherwise.
    """
    s = str(source)
    path = Path(s).expanduser()
    if not path.exists():
        from idfu_lab.config import resolve_data_path

        resolved = resolve_data_path(s)
        if resolved is not None:
            path = resolved
        elif looks_like_hub_id(s):
            for i, row in enumerate(_hub_rows(s, split), start=1):
                yield i, row, None
            return
        else:
            raise IdfuError(f"{s}: no such file (nor a Hugging Face Hub id of the form owner/name)")
    if path.is_dir():
        for i, row in enumerate(_saved_dataset_rows(path, split), start=1):
            yield i, row, None
        return
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        try:
            fh = path.open("rb")
        except OSError as e:
            raise IdfuError(f"{path}: cannot read ({e.strerror})") from None
        with fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    yield lineno, raw[:500].decode("utf-8", errors="replace"), "not UTF-8 text"
                    continue
                if not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line), None
                except json.JSONDecodeError as e:
                    yield lineno, line.rstrip("\n")[:500], f"invalid JSON: {e.msg} (column {e.colno})"
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise IdfuError(f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise IdfuError(f"{path}: cannot read ({e})") from None
        if isinstance(data, dict):
            if isinstance(data.get(split), list):
                data = data[split]
            elif isinstance(data.get("data"), list):
                data = data["data"]
            elif data and all(isinstance(v, list) for v in data.values()):  # columns -> rows
                lengths = {len(v) for v in data.values()}
                if len(lengths) != 1:
                    raise IdfuError(f"{path}: columns of different lengths {sorted(lengths)}")
                keys = list(data)
                data = [dict(zip(keys, values, strict=True)) for values in zip(*data.values(), strict=True)]
        if not isinstance(data, list):
            raise IdfuError(f"{path}: expected a list of pair objects (or {{'{split}': [...]}})")
        for i, row in enumerate(data, start=1):
            yield i, row, None
    elif suffix == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises its own error types
            raise IdfuError(f"{path}: cannot read as Parquet ({e})") from None
        for i, row in enumerate(frame.to_dict("records"), start=1):
            yield i, _jsonable(row), None
    else:
        raise IdfuError(
            f"{path}: unsupported format '{suffix}' (use {', '.join(LOCAL_FORMATS)} or a saved dataset)"
        )


# --------------------------------------------------------------------------- validation


class _Bad(Exception):
    """A row-level problem: becomes a quarantine reason, never escapes this module."""


def _message_text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"field '{name}' has a message whose content is not text")
    return value


def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list) and all(isinstance(m, Mapping) and "role" in m for m in value) and bool(value)
    )


def _split_conversation(prompt: Any, chosen: Any, rejected: Any) -> tuple[str, str | None, str, str]:
    """Conversational pair -> (user text, system text, chosen reply, rejected reply)."""
    if prompt is None:  # implicit prompt: the shared beginning of both conversations
        if not (_is_messages(chosen) and _is_messages(rejected)):
            raise _Bad("missing field 'prompt' (and the replies are not conversations that contain it)")
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        prompt, chosen, rejected = list(chosen[:n]), list(chosen[n:]), list(rejected[n:])
        if not prompt:
            raise _Bad(
                "conversations share no prompt (implicit-prompt format needs the same user turn in both)"
            )
    if isinstance(prompt, str):
        user, system = prompt, None
    elif _is_messages(prompt):
        roles = [m.get("role") for m in prompt]
        if roles == ["user"]:
            system = None
        elif roles == ["system", "user"]:
            system = _message_text(prompt[0].get("content"), "prompt")
        else:
            raise _Bad(
                f"multi-turn prompt (roles {roles}): one user turn, optionally after a system turn, is supported"
            )
        user = _message_text(prompt[-1].get("content"), "prompt")
    else:
        raise _Bad(f"field 'prompt' must be text or a list of messages, got {type(prompt).__name__}")
    replies = []
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if isinstance(value, str):
            replies.append(value)
        elif _is_messages(value):
            if [m.get("role") for m in value] != ["assistant"]:
                raise _Bad(
                    f"field '{name}' must be one assistant message, got roles {[m.get('role') for m in value]}"
                )
            replies.append(_message_text(value[0].get("content"), name))
        else:
            raise _Bad(f"field '{name}' must be text or a list of messages, got {type(value).__name__}")
    return user, system, replies[0], replies[1]


def _tests_for(
    row: Mapping[str, Any], pair_id: str, prompt: str, problems: Mapping[str, Problem] | None
) -> tuple[Problem, str, str]:
    """The problem (tests) a row names -> (problem, problem_id, how it was named)."""
    from idfu_lab.problems import Problem

    problem_id = row.get("problem_id", row.get("task_id"))
    problem_id = None if problem_id is None else str(problem_id)
    if "test_list" in row and row["test_list"] is not None:
        tests = row["test_list"]
        if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            raise _Bad("field 'test_list' must be a list of assert statements (strings)")
        if not any(t.strip() for t in tests):
            raise _Bad("field 'test_list' is empty: nothing would be tested")
        setup = row.get("test_setup_code") or ""
        if not isinstance(setup, str):
            raise _Bad("field 'test_setup_code' must be text")
        entry = row.get("entry_point")
        problem = Problem(
            task_id=problem_id or pair_id,
            prompt=prompt,
            test="\n".join(tests),
            entry_point=entry if isinstance(entry, str) and entry else None,
            setup=setup,
            benchmark="mbpp",
        )
        return problem, problem.task_id, "test_list"
    if "test" in row and row["test"] is not None:
        test, entry = row["test"], row.get("entry_point")
        if not isinstance(test, str) or not test.strip():
            raise _Bad("field 'test' is empty or not text")
        if not isinstance(entry, str) or not entry.strip():
            raise _Bad("field 'test' needs 'entry_point' (the function check() is called with)")
        problem = Problem(
            task_id=problem_id or pair_id,
            prompt=prompt,
            test=test + f"\ncheck({entry})",
            entry_point=entry,
            benchmark="custom",
        )
        return problem, problem.task_id, "test"
    if problem_id is not None:
        if problems is None:
            raise _Bad(f"problem_id '{problem_id}' but no problem set was given (--problems / data.problems)")
        if problem_id not in problems:
            raise _Bad(f"problem_id '{problem_id}' is not in the problem set")
        return problems[problem_id], problem_id, "problem_set"
    raise _Bad(
        "no tests: a pair needs problem_id, test_list (MBPP-style) or test + entry_point (HumanEval-style)"
    )


def validate_row(
    row: Any, line: int, *, columns: Columns = Columns(), problems: Mapping[str, Problem] | None = None
) -> Pair:
    """One source row -> a :class:`Pair`; raises ``ValueError`` with the quarantine reason otherwise."""
    try:
        return _validate(row, line, columns, problems)
    except _Bad as e:
        raise ValueError(str(e)) from None


def _validate(row: Any, line: int, columns: Columns, problems: Mapping[str, Problem] | None) -> Pair:
    if not isinstance(row, Mapping):
        raise _Bad(f"not a JSON object (got {type(row).__name__})")
    raw_id = row.get(columns.id)
    if raw_id is not None and not isinstance(raw_id, str | int):
        raise _Bad(f"field '{columns.id}' must be a string or an integer")
    pair_id = str(raw_id) if raw_id not in (None, "") else f"row-{line}"
    for name in (columns.chosen, columns.rejected):
        if row.get(name) is None:
            raise _Bad(f"missing field '{name}'")
    prompt = row.get(columns.prompt)
    if isinstance(prompt, str) or _is_messages(prompt) or prompt is None:
        user, system, chosen, rejected = _split_conversation(
            prompt, row[columns.chosen], row[columns.rejected]
        )
    else:
        raise _Bad(
            f"field '{columns.prompt}' must be text or a list of messages, got {type(prompt).__name__}"
        )
    conversational = not all(
        isinstance(row.get(c), str) for c in (columns.prompt, columns.chosen, columns.rejected)
    )
    for name, text in (("prompt", user), ("chosen", chosen), ("rejected", rejected)):
        if not text.strip():
            raise _Bad(f"empty field '{name}'")
    if chosen.strip() == rejected.strip():
        raise _Bad("chosen and rejected are identical")
    problem, problem_id, tests_from = _tests_for(row, pair_id, user, problems)
    used = {columns.id, columns.prompt, columns.chosen, columns.rejected}
    extra = {k: _jsonable(v) for k, v in row.items() if k not in used}
    return Pair(
        id=pair_id,
        prompt=user,
        chosen=chosen,
        rejected=rejected,
        problem=problem,
        problem_id=problem_id,
        line=line,
        tests_from=tests_from,
        system=system,
        conversational=conversational,
        extra=extra,
    )


# --------------------------------------------------------------------------- loading


def load_problem_set(source: str | Path | None, *, split: str | None = None) -> dict[str, Problem] | None:
    """A problem set by name (``humaneval``, ``mini``, ``mini-train``), local MBPP/HumanEval file, or Hub
    id; None for no source."""
    if source is None or str(source) == "":
        return None
    from idfu_lab import problems as problems_mod
    from idfu_lab.config import resolve_data_path

    s = str(source)
    if problems_mod.benchmark_name(s) is not None:  # humaneval, humaneval+, mbpp, mbpp+
        return problems_mod.load_benchmark(s)
    path = resolve_data_path(s)
    if path is not None:
        return problems_mod.load_problems(path)
    if looks_like_hub_id(s):
        rows = _hub_rows(s, split)
        with tempfile.TemporaryDirectory(prefix="idfu-problems-") as tmp:
            local = Path(tmp) / "problems.jsonl"
            write_records(rows, local)
            try:
                return problems_mod.load_problems(local)
            except IdfuError as e:
                raise IdfuError(f"{s} (Hub): {str(e).replace(str(local), 'row')}") from None
    raise IdfuError(
        f"problem set not found: {s} (give 'humaneval', 'mini', 'mini-train', an MBPP/HumanEval file, or a Hub id)"
    )


def load(
    source: str | Path,
    *,
    problems: Mapping[str, Problem] | str | Path | None = None,
    columns: Columns | None = None,
    split: str = "train",
    limit: int | None = None,
) -> PairSet:
    """Load and validate every row of a pair source.

    ``problems`` is a problem set (or its source) that ``problem_id`` refers to. ``limit`` keeps the
    first N *valid* pairs (the rest are counted in ``n_beyond_limit``). Duplicate ids: the first row
    wins, later ones are quarantined with the line of the first.
    """
    if isinstance(problems, str | Path):
        problems = load_problem_set(problems)
    columns = columns or Columns()
    pairs: list[Pair] = []
    quarantine: list[Quarantined] = []
    seen: dict[str, int] = {}
    n_rows = 0
    beyond = 0
    for line, row, error in iter_rows(source, split=split):
        n_rows += 1
        row_id = row.get(columns.id) if isinstance(row, Mapping) else None
        row_id = None if row_id is None else str(row_id)
        if error is not None:
            quarantine.append(Quarantined(line=line, reason=error, id=None, row=row))
            continue
        try:
            pair = _validate(row, line, columns, problems)
        except _Bad as e:
            quarantine.append(Quarantined(line=line, reason=str(e), id=row_id, row=row))
            continue
        if pair.id in seen:
            quarantine.append(
                Quarantined(
                    line=line,
                    reason=f"duplicate id '{pair.id}' (first at row {seen[pair.id]})",
                    id=pair.id,
                    row=row,
                )
            )
            continue
        seen[pair.id] = line
        if limit is not None and len(pairs) >= limit:
            beyond += 1
            continue
        pairs.append(pair)
    result = PairSet(
        source=str(source), pairs=pairs, quarantine=quarantine, n_rows=n_rows, n_beyond_limit=beyond
    )
    logger.info(
        "%s: %d rows, %d pairs, %d quarantined%s",
        source,
        n_rows,
        len(pairs),
        len(quarantine),
        f", {beyond} beyond the limit" if beyond else "",
    )
    for q in quarantine[:5]:
        logger.warning("%s row %d quarantined: %s", source, q.line, q.reason)
    return result


# --------------------------------------------------------------------------- the gates


def job_for_code(problem: Problem, code: str) -> Job:
    """The executor job for a complete program (the reply's code) against a problem's tests.

    The same construction as the evaluation's (``sandbox.job_for`` with ``solution=``): for MBPP-style
    tests the program is the code; the setup code and then the asserts run as the test phase.
    """
    from idfu_lab.sandbox import job_for

    return job_for(problem, solution=code)


def gate_pairs(
    pairs: Sequence[Pair],
    *,
    timeout: float = 3.0,
    memory_mb: int = 4096,
    workers: int | None = None,
    progress: bool = False,
) -> list[tuple[Verdict, Verdict]]:
    """Run both sides of every pair through the executor: ``[(chosen verdict, rejected verdict), ...]``."""
    from idfu_lab.sandbox import run_jobs

    jobs = []
    for pair in pairs:
        jobs.append(job_for_code(pair.problem, pair.chosen_code))
        jobs.append(job_for_code(pair.problem, pair.rejected_code))
    verdicts = run_jobs(jobs, workers=workers, timeout=timeout, memory_mb=memory_mb, progress=progress)
    return [(verdicts[2 * i], verdicts[2 * i + 1]) for i in range(len(pairs))]


# --------------------------------------------------------------------------- files
