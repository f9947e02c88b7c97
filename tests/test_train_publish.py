"""The model card of an evaluated seed carries its results with intervals (the demo run's seed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from idfu_lab import runs
from idfu_lab.training.publish import model_card

pytestmark = pytest.mark.slow  # reads the session's papermill run of the whole pipeline


def test_an_evaluated_seeds_card_has_pass1_with_intervals(demo_run: Path) -> None:
    run = runs.Run(config=runs.load_config(demo_run / "config.yaml"), dir=demo_run, seed=42)
    card = model_card(run)
    assert "Not evaluated yet" not in card
    assert "| base | " in card and "| tuned | " in card and "(wilson)" in card
    assert "paired bootstrap" in card and "McNemar p = " in card
    assert "data.pairs" in card  # the data hashes of the run's manifest
