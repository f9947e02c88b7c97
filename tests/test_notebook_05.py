"""Notebook 05 as the pipeline executed it for each seed of the session's demo run: the seed's delta
traced, written (JSON and the standalone page), shown and glued as the package computes it.

Reading a person's labels from an annotation file and the split that follows are tested on the
package in ``test_annotate.py``; the labelling rules in ``test_delta.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DEMO_SEEDS
from helpers import errors, executed, glued, shown, text

from idfu_lab import runs
from idfu_lab.analysis import delta, taxonomy

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", DEMO_SEEDS)
def test_notebook_05_traces_writes_and_glues_the_delta(demo_run: Path, seed: int) -> None:
    run = runs.open(demo_run / "config.yaml", seed=seed, run_dir=demo_run)
    layout = run.layout
    nb = executed(demo_run, "05_delta_tracing", seed)
    assert not errors(nb)
    values = glued(nb)

    written = delta.load_delta(layout.delta_dir(seed))
    again = delta.trace_files(
        layout.results(seed, "base"), layout.results(seed, "tuned"), problems=taxonomy.problems_for(run)
    )
    for key in ("fail_to_pass", "pass_to_fail", "pass_to_pass", "fail_to_fail", "fail_to_fail_changed"):
        assert int(text(values[key])) == written[key] == again[key], key
    assert int(text(values["delta_n"])) == written["n"] == 164
    assert written["fail_to_pass"] > 0  # the miniature's DPO fixes something in every seed
    split = delta.split(written, {})  # nobody has judged the demo run: automatic labels only
    assert text(values["split_sentence"]).strip("'\"") == split.sentence
    assert float(text(values["net_pp"])) == pytest.approx(split.net_pp)
    assert float(text(values["logic_pp"])) + float(text(values["behavioural_pp"])) == pytest.approx(
        split.net_pp
    )
    assert int(text(values["human_judged"])) == 0
    assert layout.delta_html(seed).is_file()
    assert "image/png" in values["fig_delta_labels"]
    outputs = shown(nb)
    assert "(automatic)" in outputs and "No person has judged this seed yet" in outputs
    assert "diff_header" in outputs  # the embedded side-by-side diffs
    # the problems that flip across seeds are read on the summary page (06), after every seed ran
    assert "Seeds traced" not in outputs
