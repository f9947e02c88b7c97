"""Every committed notebook: no outputs, a `parameters` cell first, the project's kernel, thin cells."""

from __future__ import annotations

import ast

import nbformat
import pytest

from idfu_lab.config import repo_root
from idfu_lab.pipeline import NOTEBOOKS as ORDER

NOTEBOOKS = repo_root() / "notebooks"

PATHS = [NOTEBOOKS / f"{name}.ipynb" for name in ORDER]


def test_the_notebooks_are_the_pipeline_s() -> None:
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(ORDER)


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_committed_without_outputs_with_a_parameters_cell(path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    params = code[0].source.splitlines()
    assert params and all(":" in line and "=" in line and "#" in line for line in params)  # typed, commented
    assert "runs.open(" in code[1].source  # the cell after resolves everything


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_cells_stay_thin(path) -> None:
    """Logic lives in the package: no cell defines a function or class, none holds more than 14 statements.

    Statements, not lines: a call formatted over ten lines is one statement; glue and display calls count.
    """
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse("\n".join(ln for ln in cell.source.splitlines() if not ln.startswith("%")))
        nodes = list(ast.walk(tree))
        assert not any(isinstance(n, ast.FunctionDef | ast.ClassDef) for n in nodes), cell.source[:80]
        statements = sum(isinstance(n, ast.stmt) for n in nodes)
        assert statements <= 14, f"{path.name}: a cell of {statements} statements belongs in the package"
