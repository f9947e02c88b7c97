"""Notebook 02 as the pipeline executed it for each seed of the session's demo run: it trained on the
audited pairs, showed the recipe, the log history and the margins, and glued what the book quotes.

The trainer's own guarantees (LoRA weights move and base weights do not, resume, determinism, the
implicit-reward margins) are tested on the package in ``test_train*.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import DEMO_SEEDS
from helpers import errors, executed, glued, shown, text

from idfu_lab import runs
from idfu_lab.jsonl import read_records as read_jsonl

pytestmark = pytest.mark.slow

GLUED = (
    "train_final_loss",
    "train_reward_accuracy",
    "train_mean_margin",
    "train_share_margin_positive",
    "train_n_filtered",
    "train_n_pairs",
    "train_steps",
    "train_wall_time_s",
    "train_curves",
    "train_margins_by_category",
)


@pytest.mark.parametrize("seed", DEMO_SEEDS)
def test_notebook_02_trains_and_glues(demo_run: Path, seed: int) -> None:
    run = runs.open(demo_run / "config.yaml", seed=seed, run_dir=demo_run)
    nb = executed(demo_run, "02_training", seed)
    assert not errors(nb)
    values = glued(nb)
    assert set(GLUED) <= set(values)
    assert "image/png" in values["train_curves"] and "image/png" in values["train_margins_by_category"]

    summary = json.loads((run.layout.train_dir(seed) / "summary.json").read_text())
    assert float(text(values["train_final_loss"])) == pytest.approx(summary["final_loss"])
    assert float(text(values["train_mean_margin"])) == pytest.approx(summary["mean_margin"])
    assert float(text(values["train_wall_time_s"])) == pytest.approx(summary["wall_time_s"])
    assert int(text(values["train_n_filtered"])) == summary["n_filtered_prompt_too_long"] == 0
    assert int(text(values["train_n_pairs"])) == summary["n_train"] == len(read_jsonl(run.layout.train_pairs))
    # every pair seen once per epoch, in optimizer steps of batch x accumulation pairs
    dpo = run.config.dpo
    per_step = dpo.per_device_train_batch_size * dpo.gradient_accumulation_steps
    expected_steps = math.ceil(summary["n_train"] / per_step) * dpo.num_train_epochs
    assert int(text(values["train_steps"])) == summary["global_steps"] == expected_steps
    assert summary["final_loss"] < summary["first_loss"]  # DPO's loss starts at log 2 and falls
    assert (run.layout.adapter(seed) / "adapter_model.safetensors").is_file()
    assert (run.layout.train_dir(seed) / "curves.png").is_file()

    outputs = shown(nb)
    # the recipe, the category table and the log history are shown
    assert "dpo.beta" in outputs and "NAME_ERROR" in outputs and "rewards/margins" in outputs
