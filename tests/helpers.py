"""Helpers shared by the tests: results rows written by hand, and notebooks executed by papermill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat

from idfu_lab.config import repo_root

NOTEBOOKS = repo_root() / "notebooks"


def execute(notebook: str | Path, out: Path, **parameters: Any) -> nbformat.NotebookNode:
    """Run ``notebook`` (a path, or a name in notebooks/) as the pipeline does: cwd = repository, python3."""
    import papermill as pm

    source = Path(notebook) if Path(notebook).is_absolute() else NOTEBOOKS / notebook
    pm.execute_notebook(
        str(source),
        str(out),
        parameters={"config_path": "tiny-humaneval", **parameters},
        kernel_name="python3",
        cwd=str(repo_root()),
        progress_bar=False,
    )
    return nbformat.read(out, as_version=4)


def glued(nb: nbformat.NotebookNode) -> dict[str, dict[str, Any]]:
    """Every glued output of an executed notebook, by name: its mime bundle (myst-nb's prefix removed)."""
    found: dict[str, dict[str, Any]] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook", {})
            if meta.get("name"):
                prefix = len(meta.get("mime_prefix", ""))
                found[meta["name"]] = {k[prefix:]: v for k, v in out.get("data", {}).items()}
    return found


def text(bundle: dict[str, Any]) -> str:
    """The text/plain of a glued bundle (how a number was glued)."""
    return next(v for k, v in bundle.items() if k.endswith("text/plain"))


def result_row(
    task: str, outcome: str, phase: str | None = None, message: str = "", **code: Any
) -> dict[str, Any]:
    """A results row as the executor writes it (``code``: completion, solution, raw, ...)."""
    return {
        "task_id": task,
        "passed": outcome == "PASS",
        "outcome": outcome,
        "phase": phase,
        "message": message,
        **code,
    }
