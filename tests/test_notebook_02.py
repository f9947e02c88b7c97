"""Notebook 02 executed by papermill on the tiny profile: it trains, shows and glues what the book quotes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from helpers import execute, glued

from idfu_lab.config import repo_root
from idfu_lab.outcomes import outcome_for_exception

NOTEBOOK = repo_root() / "notebooks" / "02_training.ipynb"
FIXTURE = repo_root() / "idfu_lab" / "data" / "fixture_pairs.jsonl"


def _verdict(row: dict) -> tuple[str, str | None]:
    """Run the rejected code (definition phase), then the asserts (test phase): (outcome, phase)."""
    m = re.search(r"```python\n(.*?)```", row["rejected"], re.S)
    code = m.group(1) if m else row["rejected"]
    namespace: dict = {}
    for phase, source in (
        ("definition", row.get("test_setup_code", "") + "\n" + code),
        ("test", "\n".join(row["test_list"])),
    ):
        try:
            exec(compile(source, f"<{phase}>", "exec"), namespace)
        except BaseException as e:  # noqa: BLE001 - any failure is a verdict
            return str(outcome_for_exception(e)), phase
    return "PASS", None


def _write_audited_pairs(path: Path) -> int:
    """What notebook 01 leaves for training: fixture pairs whose rejected reply fails, with its verdict."""
    lines = []
    for row in (json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()):
        outcome, phase = _verdict(row)
        if outcome == "PASS":
            continue
        keep = {k: row[k] for k in ("id", "prompt", "chosen", "rejected")}
        lines.append(json.dumps({**keep, "rejected_outcome": outcome, "rejected_phase": phase}) + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return len(lines)


def _execute(run_dir: Path, out: Path) -> nbformat.NotebookNode:
    return execute(NOTEBOOK, out, seed=42, run_dir=str(run_dir))


@pytest.mark.slow
def test_notebook_trains_and_glues(tmp_path: Path) -> None:
    run_dir = tmp_path / "tiny"
    n_pairs = _write_audited_pairs(run_dir / "audit" / "train_pairs.jsonl")
    nb = _execute(run_dir, tmp_path / "02.ipynb")
    values = glued(nb)
    for name in (
        "train_final_loss",
        "train_reward_accuracy",
        "train_mean_margin",
        "train_n_filtered",
        "train_wall_time_s",
        "train_curves",
        "train_margins_by_category",
    ):
        assert name in values, name
    assert "image/png" in values["train_curves"] and "image/png" in values["train_margins_by_category"]

    summary = json.loads((run_dir / "seed-42" / "train" / "summary.json").read_text())
    assert float(values["train_final_loss"]["text/plain"]) == pytest.approx(summary["final_loss"])
    assert int(values["train_n_filtered"]["text/plain"]) == summary["n_filtered_prompt_too_long"] == 0
    assert summary["n_train"] == n_pairs
    # the demo: 3 epochs over the fixture at 4 pairs per optimizer step
    assert summary["global_steps"] == -(-n_pairs // 4) * 3 and summary["epochs"] == pytest.approx(3.0)
    assert summary["final_loss"] < summary["first_loss"]
    assert float(values["train_wall_time_s"]["text/plain"]) == pytest.approx(summary["wall_time_s"])
    text = json.dumps([c.get("outputs", []) for c in nb.cells]).replace("<wbr>", "")
    # the category table and the log history are shown
    assert "NAME_ERROR" in text and "rewards/margins" in text
