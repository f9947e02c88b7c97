"""Manual delta labels, kept as data: the study's post-training audit checklist as a workflow.

The automatic labels of :mod:`idfu_lab.analysis.delta` are proposals. A person reads each changed problem
(the side-by-side diff, the proposed labels with their evidence) and records the one cause they
judge decisive, with a note. The judgements live in a CSV file in the repository, next to the code
and not under ``runs/`` (a run directory can be deleted and recomputed; a person's reading cannot)::

    annotations/<run-name>/seed-<s>.csv

with the columns of :data:`COLUMNS`: ``task_id``, ``transition``, ``auto_labels`` (the automatic
labels when the person looked, ``;``-separated), ``human_label`` (one of :data:`HUMAN_LABELS`, or
empty: not yet judged), ``note``, ``annotator`` and ``date`` (ISO ``YYYY-MM-DD``).

In JupyterLab, :class:`AnnotationView` (ipywidgets) steps through the changed problems and writes
the file; in papermill runs notebook 05 only reads it (:func:`read_annotations`, :func:`merge`) and
shows where people and the automatic labels agree. Everything but the widget is a pure function of
its inputs and is tested without a browser.
"""

from __future__ import annotations

import csv
import datetime as _dt
import html
import io
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from idfu_lab.analysis.delta import CHANGED, LABELS, is_logic, load_delta
from idfu_lab.config import repo_root
from idfu_lab.errors import IdfuError
from idfu_lab.report.delta_html import diff_table

logger = logging.getLogger(__name__)

#: The CSV's columns, in order.
COLUMNS = ("task_id", "transition", "auto_labels", "human_label", "note", "annotator", "date")
#: What a person may record: the decisive cause (one of the delta labels) or ``unclear``.
HUMAN_LABELS = (*LABELS, "unclear")
#: Environment variable that moves the annotations folder (tests, or a shared drive).
ENV_DIR = "IDFU_LAB_ANNOTATIONS"


def annotations_dir(root: str | Path | None = None) -> Path:
    """Where annotation files live: ``root``, else ``$IDFU_LAB_ANNOTATIONS``, else ``annotations/`` in the repository."""
    if root:
        return Path(root)
    env = os.environ.get(ENV_DIR)
    return Path(env) if env else repo_root() / "annotations"


def annotations_path(run_name: str, seed: int, root: str | Path | None = None) -> Path:
    """``annotations/<run-name>/seed-<s>.csv`` (the folder is not created: reading must not write)."""
    return annotations_dir(root) / run_name / f"seed-{seed}.csv"


# ----------------------------------------------------------------------------- reading and writing


def _check_date(value: str, where: str) -> None:
    try:
        _dt.date.fromisoformat(value)
    except ValueError:
        raise IdfuError(f"{where}: date must be YYYY-MM-DD, got {value!r}") from None


def parse_annotations(text: str, where: str = "<annotations>") -> list[dict[str, str]]:
    """Rows of an annotation CSV, validated; errors name ``where`` and the line.

    Rules: the header has every column of :data:`COLUMNS` (extra columns are kept); a task appears
    once; ``transition`` is a changed transition or empty; ``human_label`` is one of
    :data:`HUMAN_LABELS` or empty; a row with a human label names its annotator and date.
    """
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise IdfuError(f"{where}:1: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
    rows: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        at = f"{where}:{line}"
        row = {k: (v or "").strip() for k, v in row.items() if k is not None}
        task = row["task_id"]
        if not task:
            raise IdfuError(f"{at}: empty task_id")
        if task in seen:
            raise IdfuError(f"{at}: task {task} already annotated on line {seen[task]}")
        seen[task] = line
        if row["transition"] and row["transition"] not in CHANGED:
            raise IdfuError(f"{at}: unknown transition {row['transition']!r} (one of {', '.join(CHANGED)})")
        label = row["human_label"]
        if label and label not in HUMAN_LABELS:
            raise IdfuError(f"{at}: unknown human_label {label!r} (one of {', '.join(HUMAN_LABELS)})")
        if label and not row["annotator"]:
            raise IdfuError(f"{at}: human_label {label!r} without an annotator")
        if label and not row["date"]:
            raise IdfuError(f"{at}: human_label {label!r} without a date")
        if row["date"]:
            _check_date(row["date"], at)
        rows.append(row)
    return rows


def read_annotations(path: str | Path) -> list[dict[str, str]]:
    """The rows of an annotation file; an absent file is no annotations (an empty list)."""
    p = Path(path)
    if not p.is_file():
        return []
    return parse_annotations(p.read_text(encoding="utf-8"), str(p))


def format_annotations(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text with :data:`COLUMNS` first (then any extra columns), rows sorted by task id."""
    rows = [dict(r) for r in rows]
    extra = sorted({k for r in rows for k in r} - set(COLUMNS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    for r in sorted(rows, key=lambda r: _task_key(str(r["task_id"]))):
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in (*COLUMNS, *extra)})
    return buf.getvalue()


def write_annotations(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write (atomically) an annotation file after validating it; returns the path."""
    p = Path(path)
    text = format_annotations(rows)
    parse_annotations(text, str(p))  # never write a file that could not be read back
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(p)
    return p


def record(
    problem: Mapping[str, Any], human_label: str, note: str = "", annotator: str = "", date: str | None = None
) -> dict[str, str]:
    """One annotation row for a changed problem of a delta (today's date unless given)."""
    return {
        "task_id": problem["task_id"],
        "transition": problem["transition"],
        "auto_labels": ";".join(_label_names(problem)),
        "human_label": human_label,
        "note": note,
        "annotator": annotator,
        "date": date or _dt.date.today().isoformat(),
    }


def upsert(rows: Sequence[Mapping[str, str]], new: Mapping[str, str]) -> list[dict[str, str]]:
    """``rows`` with ``new`` replacing the row of the same task (or appended)."""
    out = [dict(r) for r in rows if r["task_id"] != new["task_id"]]
    out.append(dict(new))
    return out


def save_annotation(path: str | Path, new: Mapping[str, str]) -> Path:
    """Read the file, replace or add one task's row, write it back."""
    return write_annotations(path, upsert(read_annotations(path), new))


# ----------------------------------------------------------------------------- comparing with the delta


def _label_names(problem: Mapping[str, Any]) -> list[str]:
    return [lab["name"] for lab in problem.get("labels", [])]


def validate(rows: Sequence[Mapping[str, str]], delta: Mapping[str, Any]) -> list[str]:
    """Warnings about annotations that no longer match the delta (recomputed since a person looked).

    A task that is no longer a changed problem, or whose automatic labels or transition changed,
    may deserve a second look; the rows are kept all the same.
    """
    problems = {p["task_id"]: p for p in delta["problems"]}
    warnings = []
    for r in rows:
        p = problems.get(r["task_id"])
        if p is None:
            warnings.append(f"{r['task_id']}: annotated but not a changed problem of this delta")
            continue
        if r.get("transition") and r["transition"] != p["transition"]:
            warnings.append(f"{r['task_id']}: annotated as {r['transition']}, now {p['transition']}")
        auto = ";".join(_label_names(p))
        if r.get("auto_labels") and r["auto_labels"] != auto:
            warnings.append(f"{r['task_id']}: automatic labels were {r['auto_labels']}, now {auto}")
    return warnings


def human_labels(rows: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """``task_id -> human_label`` for the rows a person has judged."""
    return {r["task_id"]: r["human_label"] for r in rows if r.get("human_label")}


def merge(delta: Mapping[str, Any], rows: Sequence[Mapping[str, str]] = ()) -> pd.DataFrame:
    """One row per changed problem: automatic labels, the person's label where there is one, agreement.

    Columns: ``task_id``, ``transition``, ``auto_labels``, ``human_label``, ``label`` (what the book
    shows: the person's label, else the automatic ones marked ``(automatic)``), ``source`` (human or
    automatic), ``agree`` (the person's label is among the automatic ones; empty when not judged or
    ``unclear``), ``kind_agree`` (both put the change on the same side of logic vs behavioural),
    ``note``, ``annotator``, ``date``.
    """
    by_task = {r["task_id"]: r for r in rows}
    out = []
    for p in delta["problems"]:
        auto = _label_names(p)
        r = by_task.get(p["task_id"], {})
        human = r.get("human_label", "")
        judged = human in LABELS
        out.append(
            {
                "task_id": p["task_id"],
                "transition": p["transition"],
                "auto_labels": ", ".join(auto),
                "human_label": human,
                "label": human if human else f"{', '.join(auto)} (automatic)",
                "source": "human" if human else "automatic",
                "agree": (human in auto) if judged else pd.NA,
                "kind_agree": (is_logic([], human) == is_logic(auto)) if judged else pd.NA,
                "note": r.get("note", ""),
                "annotator": r.get("annotator", ""),
                "date": r.get("date", ""),
            }
        )
    columns = [
        "task_id",
        "transition",
        "auto_labels",
        "human_label",
        "label",
        "source",
        "agree",
        "kind_agree",
        "note",
        "annotator",
        "date",
    ]
    return pd.DataFrame(out, columns=columns)


def changed_table(delta: Mapping[str, Any], rows: Sequence[Mapping[str, str]] = ()) -> pd.DataFrame:
    """What the book shows per changed problem: both verdicts and the label (a person's, else automatic)."""
    from idfu_lab.analysis.delta import changed_frame

    frame = changed_frame(delta)[["task_id", "transition", "base", "tuned"]]
    labels = merge(delta, rows)[["task_id", "label", "source", "note"]]
    return frame.merge(labels, on="task_id", how="left")


def agreement(merged: pd.DataFrame) -> dict[str, Any]:
    """How far people and the automatic labels agree, over the problems a person judged."""
    judged = merged[merged["agree"].notna()]
    n = len(judged)
    return {
        "changed": len(merged),
        "judged": n,
        "unclear": int((merged["human_label"] == "unclear").sum()),
        "agree": int(judged["agree"].astype(bool).sum()),
        "kind_agree": int(judged["kind_agree"].astype(bool).sum()),
        "agree_rate": float(judged["agree"].astype(bool).mean()) if n else float("nan"),
    }


def _task_key(task: str) -> tuple[str, int, str]:
    prefix, _, number = task.rpartition("/")
    return (prefix, int(number), task) if number.isdigit() else (task, -1, task)


# ----------------------------------------------------------------------------- the widget


class AnnotationView:
    """Steps through the changed problems of a delta and writes the person's labels to a CSV.

    Each step shows the verdicts, the automatic labels with their evidence and the side-by-side
    diff; the person picks the decisive cause, writes a note and saves. Display it in JupyterLab
    (it is the notebook cell's last expression). Tests drive it through :meth:`go`, the widgets'
    values and :meth:`save`, exactly as the buttons do.
    """

    def __init__(self, delta: Mapping[str, Any] | str | Path, path: str | Path, annotator: str = ""):
        import ipywidgets as w

        self.delta = load_delta(delta) if isinstance(delta, str | Path) else delta
        self.path = Path(path)
        self.problems = list(self.delta["problems"])
        self.index = 0
        self.header = w.HTML()
        self.labels_html = w.HTML()
        self.diff_html = w.HTML()
        self.choice = w.Dropdown(
            options=[("— not judged —", ""), *[(x, x) for x in HUMAN_LABELS]], description="cause"
        )
        self.note = w.Textarea(description="note", layout=w.Layout(width="90%"))
        self.annotator = w.Text(value=annotator, description="annotator")
        self.status = w.HTML()
        self.prev_button = w.Button(description="◀ previous")
        self.next_button = w.Button(description="next ▶")
        self.save_button = w.Button(description="save", button_style="success")
        self.prev_button.on_click(lambda _b: self.go(self.index - 1))
        self.next_button.on_click(lambda _b: self.go(self.index + 1))
        self.save_button.on_click(lambda _b: self.save())
        self.widget = w.VBox(
            [
                self.header,
                self.labels_html,
                self.diff_html,
                w.HBox([self.choice, self.annotator]),
                self.note,
                w.HBox([self.prev_button, self.save_button, self.next_button]),
                self.status,
            ]
        )
        self.go(0)

    def _ipython_display_(self) -> None:  # pragma: no cover - needs a front end
        from IPython.display import display

        display(self.widget)

    @property
    def current(self) -> Mapping[str, Any] | None:
        return self.problems[self.index] if self.problems else None

    def go(self, index: int) -> None:
        """Show problem ``index`` (clamped), with the label already recorded for it, if any."""
        if not self.problems:
            self.header.value = "<b>No changed problems: nothing to annotate.</b>"
            return
        self.index = max(0, min(index, len(self.problems) - 1))
        p = self.problems[self.index]
        existing = {r["task_id"]: r for r in read_annotations(self.path)}.get(p["task_id"], {})
        self.header.value = (
            f"<h3>{self.index + 1}/{len(self.problems)} — {html.escape(p['task_id'])}: "
            f"{html.escape(p['transition'])} ({p['base']['outcome']} → {p['tuned']['outcome']})</h3>"
        )
        items = []
        for lab in p["labels"]:
            ev = "<br>".join(html.escape(f"{e['side']}:{e['line']}: {e['text']}") for e in lab["evidence"])
            items.append(
                f"<li><b>{html.escape(lab['name'])}</b> <i>(automatic)</i> — {html.escape(lab['detail'])}"
                f"<div style='font-family:monospace;font-size:85%'>{ev}</div></li>"
            )
        self.labels_html.value = "<ul>" + "".join(items) + "</ul>"
        self.diff_html.value = diff_table(p["base_program"], p["tuned_program"])
        self.choice.value = existing.get("human_label", "")
        self.note.value = existing.get("note", "")
        if existing.get("annotator"):
            self.annotator.value = existing["annotator"]
        self.status.value = f"saved on {existing['date']}" if existing.get("date") else ""

    def save(self) -> Path | None:
        """Record the current problem's label and note in the CSV file."""
        p = self.current
        if p is None:
            return None
        if self.choice.value and not self.annotator.value.strip():
            self.status.value = "<b>Give an annotator name before saving.</b>"
            return None
        row = record(p, self.choice.value, self.note.value.strip(), self.annotator.value.strip())
        path = save_annotation(self.path, row)
        self.status.value = f"saved {p['task_id']} to {html.escape(str(path))}"
        logger.info("saved annotation for %s to %s", p["task_id"], path)
        return path


def view(delta: Mapping[str, Any] | str | Path, path: str | Path, annotator: str = "") -> AnnotationView:
    """The annotation widget for a delta (a dict, a ``delta.json`` or its folder) writing to ``path``."""
    return AnnotationView(delta, path, annotator=annotator or os.environ.get("USER", ""))
