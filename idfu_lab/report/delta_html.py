"""The delta as a self-contained HTML page: side-by-side diffs of every changed problem."""

from __future__ import annotations

import difflib
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from idfu_lab.analysis.delta import TRANSITIONS, split, verdict_text

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.6em; border-top: 1px solid #ccc; padding-top: .6em; }
table.summary td, table.summary th { padding: 2px 10px; text-align: right; }
table.summary th { text-align: left; }
.labels li { margin: .2em 0; } .label { font-family: monospace; font-weight: bold; }
.auto { color: #666; font-style: italic; } .human { color: #05603a; font-weight: bold; }
.evidence { font-family: monospace; font-size: .85em; color: #444; white-space: pre; }
table.diff { font-family: monospace; font-size: .8em; border: 1px solid #ccc; border-collapse: collapse; }
table.diff td { padding: 0 4px; vertical-align: top; white-space: pre-wrap; }
table.diff th.diff_header { background: #e0e0e0; }
td.diff_header { text-align: right; color: #777; }
.diff_next { background-color: #c0c0c0; }
.diff_add { background-color: #aaffaa; } .diff_chg { background-color: #ffff77; } .diff_sub { background-color: #ffaaaa; }
"""


def diff_table(base_program: str, tuned_program: str) -> str:
    """A side-by-side HTML diff table (difflib) of the two programs, base on the left."""
    return difflib.HtmlDiff(tabsize=4, wrapcolumn=90).make_table(
        base_program.splitlines(), tuned_program.splitlines(), "base", "tuned", context=False
    )


def problem_html(problem: Mapping[str, Any], human: str | None = None, *, collapsed: bool = False) -> str:
    """The HTML of one changed problem: verdicts, labels with evidence, the side-by-side diff.

    ``collapsed`` folds it into a ``<details>`` element (a notebook page with dozens of diffs).
    """
    title = (
        f"{html.escape(problem['task_id'])} — {html.escape(problem['transition'])}: "
        f"{html.escape(verdict_text(problem['base']))} → {html.escape(verdict_text(problem['tuned']))}"
    )
    if collapsed:
        names = ", ".join(lab["name"] for lab in problem["labels"])
        label = f" [{html.escape(human)}]" if human else f" [{html.escape(names)} (automatic)]"
        parts = [f"<details><summary><b>{title}</b>{label}</summary>"]
    else:
        parts = [f"<h2 id='{html.escape(problem['task_id'])}'>{title}</h2>"]
    if human:
        parts.append(f"<p>Person's label: <span class='human'>{html.escape(human)}</span></p>")
    parts.append("<ul class='labels'>")
    for lab in problem["labels"]:
        ev = "\n".join(f"{e['side']}:{e['line']}: {e['text']}" for e in lab["evidence"])
        parts.append(
            f"<li><span class='label'>{html.escape(lab['name'])}</span> <span class='auto'>(automatic)</span> — "
            f"{html.escape(lab['detail'])}"
            + (f"<div class='evidence'>{html.escape(ev)}</div>" if ev else "")
            + "</li>"
        )
    parts.append("</ul>")
    parts.append(diff_table(problem["base_program"], problem["tuned_program"]))
    if collapsed:
        parts.append("</details>")
    return "\n".join(parts)


def render_html(
    delta: Mapping[str, Any], annotations: Mapping[str, str] | None = None, *, full: bool = True
) -> str:
    """``delta.html``: a self-contained page (inline CSS, no scripts) with every changed problem.

    With ``full=False`` the same content as a fragment for embedding in a notebook, each problem
    folded under a one-line summary.
    """
    annotations = annotations or {}
    sp = delta.get("split") or split(delta).as_dict()
    rows = "".join(
        f"<tr><th>{t}</th><td>{len(delta['tasks'].get(t, []))}</td></tr>"
        for t in (*TRANSITIONS, "fail_to_fail_changed")
    )
    src = delta.get("sources", {})
    body = [
        "<h1>Delta tracing</h1>",
        f"<p>base: <code>{html.escape(str(src.get('base', '?')))}</code><br>"
        f"tuned: <code>{html.escape(str(src.get('tuned', '?')))}</code><br>{delta['n']} problems compared "
        f"(one program per problem: sample 0).</p>",
        f"<table class='summary'>{rows}</table>",
        f"<p>{html.escape(sp['sentence'])}</p>",
        "<p>Labels marked <span class='auto'>(automatic)</span> are proposals computed from the two programs; "
        "a person's label, where one exists, is shown above them.</p>",
    ]
    for w in delta.get("warnings", []):
        body.append(f"<p><b>Warning:</b> {html.escape(w)}</p>")
    for p in delta["problems"]:
        body.append(problem_html(p, annotations.get(p["task_id"]), collapsed=not full))
    content = "\n".join(body)
    if not full:
        return f"<div class='idfu-delta'><style>{_CSS}</style>{content}</div>"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>Delta tracing</title>"
        f"<style>{_CSS}</style></head><body>\n{content}\n</body></html>\n"
    )


def write_page(
    delta: Mapping[str, Any], path: str | Path, annotations: Mapping[str, str] | None = None
) -> Path:
    """Write :func:`render_html` of ``delta`` to ``path`` (atomically); the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(render_html(delta, annotations), encoding="utf-8")
    tmp.replace(path)
    return path
