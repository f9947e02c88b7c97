"""The delta as a self-contained HTML page: side-by-side diffs of every changed problem."""

from __future__ import annotations

import difflib
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from idfu_lab.analysis.delta import TRANSITIONS, split, verdict_text

#: The page's styles, as (selector, declarations). The standalone page applies them to the document;
#: the fragment embedded in a notebook scopes every selector under ``.idfu-delta``, so it never
#: restyles the page around it (the book's title and headings keep the book's look).
_RULES = (
    ("body", "font-family: system-ui, sans-serif; margin: 1.5em; color: #222;"),
    ("h1", "font-size: 1.4em;"),
    ("h2", "font-size: 1.1em; margin-top: 1.6em; border-top: 1px solid #ccc; padding-top: .6em;"),
    ("table.summary td, table.summary th", "padding: 2px 10px; text-align: right;"),
    ("table.summary th", "text-align: left;"),
    (".labels li", "margin: .2em 0;"),
    (".label", "font-family: monospace; font-weight: bold;"),
    (".auto", "color: #666; font-style: italic;"),
    (".human", "color: #05603a; font-weight: bold;"),
    (".evidence", "font-family: monospace; font-size: .85em; color: #444; white-space: pre-wrap;"),
    ("details", "margin: .4em 0;"),
    (".idfu-scroll", "overflow-x: auto; max-width: 100%;"),
    (
        "table.diff",
        "font-family: monospace; font-size: .8em; border: 1px solid #ccc; border-collapse: collapse;",
    ),
    ("table.diff td", "padding: 0 4px; vertical-align: top; white-space: pre-wrap;"),
    ("table.diff th.diff_header", "background: #e0e0e0;"),
    ("td.diff_header", "text-align: right; color: #777;"),
    (".diff_next", "background-color: #c0c0c0;"),
    (".diff_add", "background-color: #aaffaa;"),
    (".diff_chg", "background-color: #ffff77;"),
    (".diff_sub", "background-color: #ffaaaa;"),
)

#: The class of the embedded fragment's root element.
SCOPE = "idfu-delta"


def stylesheet(scope: str | None = None) -> str:
    """The CSS of the page; with ``scope``, every rule applies only inside ``.scope`` (``body`` and
    the headings' rules are dropped there: the embedding page has its own)."""
    lines = []
    for selector, rules in _RULES:
        if scope is None:
            lines.append(f"{selector} {{ {rules} }}")
        elif selector not in ("body", "h1", "h2"):
            scoped = ", ".join(f".{scope} {part.strip()}" for part in selector.split(","))
            lines.append(f"{scoped} {{ {rules} }}")
    return "\n".join(lines)


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
    parts.append(
        f"<div class='idfu-scroll'>{diff_table(problem['base_program'], problem['tuned_program'])}</div>"
    )
    if collapsed:
        parts.append("</details>")
    return "\n".join(parts)


def _shown(path: Any, relative_to: str | Path | None) -> str:
    """A source path as a page shows it: relative to ``relative_to`` (the run directory) when inside it,
    else its file name only, never the layout of the machine that made it."""
    if path is None:
        return "?"
    p = Path(str(path))
    if relative_to is not None:
        try:
            return p.resolve().relative_to(Path(relative_to).resolve()).as_posix()
        except ValueError:
            pass
    return p.name if p.is_absolute() else p.as_posix()


def render_html(
    delta: Mapping[str, Any],
    annotations: Mapping[str, str] | None = None,
    *,
    full: bool = True,
    relative_to: str | Path | None = None,
) -> str:
    """``delta.html``: a self-contained page (inline CSS, no scripts) with every changed problem.

    With ``full=False`` the same content as a fragment for embedding in a notebook: no title of its
    own, styles scoped to the fragment, each problem folded under a one-line summary. The two results
    files are named relative to ``relative_to`` (the run directory).
    """
    annotations = annotations or {}
    sp = delta.get("split") or split(delta).as_dict()
    rows = "".join(
        f"<tr><th>{t}</th><td>{len(delta['tasks'].get(t, []))}</td></tr>"
        for t in (*TRANSITIONS, "fail_to_fail_changed")
    )
    src = delta.get("sources", {})
    body = [
        "<h1>Delta tracing</h1>" if full else "",
        f"<p>base: <code>{html.escape(_shown(src.get('base'), relative_to))}</code><br>"
        f"tuned: <code>{html.escape(_shown(src.get('tuned'), relative_to))}</code><br>{delta['n']} problems "
        "compared (one program per problem: sample 0).</p>",
        f"<table class='summary'>{rows}</table>",
        f"<p>{html.escape(sp['sentence'])}</p>",
        "<p>Labels marked <span class='auto'>(automatic)</span> are proposals computed from the two programs; "
        "a person's label, where one exists, is shown above them.</p>",
    ]
    for w in delta.get("warnings", []):
        body.append(f"<p><b>Warning:</b> {html.escape(w)}</p>")
    for p in delta["problems"]:
        body.append(problem_html(p, annotations.get(p["task_id"]), collapsed=not full))
    content = "\n".join(b for b in body if b)
    if not full:
        return f"<div class='{SCOPE}'><style>{stylesheet(SCOPE)}</style>{content}</div>"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>Delta tracing</title>"
        f"<style>{stylesheet()}</style></head><body>\n{content}\n</body></html>\n"
    )


def write_page(
    delta: Mapping[str, Any],
    path: str | Path,
    annotations: Mapping[str, str] | None = None,
    *,
    relative_to: str | Path | None = None,
) -> Path:
    """Write :func:`render_html` of ``delta`` to ``path`` (atomically); the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(render_html(delta, annotations, relative_to=relative_to), encoding="utf-8")
    tmp.replace(path)
    return path
