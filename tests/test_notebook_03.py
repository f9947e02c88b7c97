"""Notebook 03 as the pipeline executed it for each seed of the session's demo run: base and tuned
generated and judged on mini's 164 eval problems, the comparison, the sensitivity table, and the
numbers the book quotes glued from what the package wrote.

The evaluation step itself (its files, resume, the sensitivity counts, HumanEval+ judged as EvalPlus
does, the precision baseline) is tested on the package in ``test_evaluation_step.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import DEMO_SEEDS
from helpers import errors, executed, glued, shown, text

from idfu_lab.analysis import evaluation
from idfu_lab.jsonl import read_records as read_jsonl
from idfu_lab.problems import load_benchmark
from idfu_lab.runs import RunLayout

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", DEMO_SEEDS)
def test_notebook_03_glues_what_the_evaluation_wrote(demo_run: Path, seed: int) -> None:
    layout = RunLayout(demo_run)
    nb = executed(demo_run, "03_evaluation", seed)
    assert not errors(nb)
    values = glued(nb)
    for fig in ("fig_eval_pass1", "fig_eval_outcomes", "fig_eval_sensitivity"):
        assert "image/png" in values[fig], fig

    summary = json.loads((layout.results_dir(seed) / "evaluation.json").read_text())
    comparison = summary["comparison"]
    assert (
        summary["benchmark"] == "mini"
        and int(text(values["n_problems"])) == len(load_benchmark("mini")) == 164
    )
    for model in ("base", "tuned"):
        rows = read_jsonl(layout.results(seed, model))
        assert len(rows) == 164 and layout.generations(seed, model).is_file()
        assert summary["pass1"][model] == pytest.approx(sum(r["passed"] for r in rows) / len(rows))
        assert float(text(values[f"pass1_{model}"])) == pytest.approx(100 * summary["pass1"][model])
    assert float(text(values["diff"])) == pytest.approx(100 * comparison["diff"])
    assert float(text(values["diff_low"])) <= float(text(values["diff"])) <= float(text(values["diff_high"]))
    assert int(text(values["discordant"])) == comparison["discordant"]
    assert float(text(values["mcnemar_p"])) == pytest.approx(comparison["mcnemar_p"])

    sensitivity = pd.read_csv(layout.results_dir(seed) / "sensitivity.csv")
    assert int(text(values["changed_verdicts_max"])) == evaluation.policy_rows(sensitivity)["changed"].max()
    # the spread over post-processing policies, under the run's own time limit
    spread = evaluation.policy_rows(sensitivity).groupby("model")["pass1"].agg(lambda x: x.max() - x.min())
    assert float(text(values["policy_spread_base"])) == pytest.approx(100 * spread["base"])
    assert (layout.results_dir(seed) / "sensitivity_transitions.csv").is_file()
    # the time-limit policy's row: the configured replies under auto beside the recipe's fixed 3 s
    assert (
        set(sensitivity["timeout"]) == {"fixed 3 s", "auto"} and (sensitivity["timeout"] == "auto").sum() == 2
    )
    auto = sensitivity[sensitivity["timeout"] == "auto"].set_index("model")["changed"]
    assert int(text(values["timeout_changed_base"])) == auto["base"]
    assert int(text(values["timeout_changed_tuned"])) == auto["tuned"]
    assert summary["timeout_policy"]["kind"] == "fixed" and summary["timeout_policy"]["seconds"] == 3.0
    outputs = shown(nb)
    assert "HumanEval+" in outputs  # what HumanEval+ needs, said whether or not it is present
    # the sensitivity table shows each policy's pass@1 beside its counts
    table = next(o for o in outputs.split('"text/html"') if "postprocess</th>" in o)
    assert "pass@1 (%)</th>" in table.split("</table>")[0]
