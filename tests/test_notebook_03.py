"""Notebook 03 executed by papermill on the tiny profile, asserting on its glued numbers and its artefacts."""

from __future__ import annotations

import json

import pytest

from idfu_lab.config import repo_root

pytestmark = pytest.mark.slow


def _glued(nb) -> dict:
    """The values a notebook glued, by name: the text/plain of each (the mime bundle for figures)."""
    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                data = out.get("data", {})
                text = next((v for k, v in data.items() if k.endswith("text/plain")), None)
                values[name] = text if not any(k.endswith("image/png") for k in data) else data
    return values


def test_notebook_03_runs_on_the_tiny_profile(tmp_path):
    import nbformat
    import papermill as pm
    import torch
    from peft import LoraConfig, get_peft_model

    from idfu_lab import runs
    from idfu_lab.generation import models

    run_dir = tmp_path / "tiny"
    run = runs.open("tiny-humaneval", seed=42, run_dir=run_dir)
    # the adapter notebook 02 would train: a real LoRA adapter with random non-zero weights
    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(models.load_model(run.config.model), lora).save_pretrained(run.layout.adapter(run.seed))

    out = tmp_path / "03.ipynb"
    pm.execute_notebook(
        str(repo_root() / "notebooks" / "03_evaluation.ipynb"),
        str(out),
        parameters={"config_path": "tiny-humaneval", "seed": 42, "run_dir": str(run_dir)},
        kernel_name="python3",
        cwd=str(repo_root()),
        progress_bar=False,
    )
    nb = nbformat.read(out, as_version=4)
    glued = _glued(nb)
    for name in (
        "pass1_base",
        "pass1_tuned",
        "diff",
        "diff_low",
        "diff_high",
        "mcnemar_p",
        "discordant",
        "n_problems",
    ):
        assert name in glued, name
    assert glued["n_problems"] == "164"
    summary = json.loads((run_dir / "seed-42" / "results" / "evaluation.json").read_text())
    assert float(glued["pass1_base"]) == pytest.approx(100 * summary["pass1"]["base"])
    assert float(glued["diff_low"]) <= float(glued["diff"]) <= float(glued["diff_high"])
    assert (run_dir / "seed-42" / "results" / "sensitivity.csv").is_file()
    # the time-limit policy's row: the configured replies under auto beside the recipe's fixed 3 s
    import pandas as pd

    sens = pd.read_csv(run_dir / "seed-42" / "results" / "sensitivity.csv")
    assert set(sens["timeout"]) == {"fixed 3 s", "auto"} and (sens["timeout"] == "auto").sum() == 2
    auto = sens[sens["timeout"] == "auto"].set_index("model")["changed"]
    assert (
        int(glued["timeout_changed_base"]) == auto["base"]
        and int(glued["timeout_changed_tuned"]) == auto["tuned"]
    )
    assert summary["timeout_policy"]["kind"] == "fixed" and summary["timeout_policy"]["seconds"] == 3.0
    assert (run_dir / "seed-42" / "generations" / "tuned.jsonl").is_file()
    text = "\n".join(str(o.get("text", "")) for c in nb.cells for o in c.get("outputs", []))
    assert "HumanEval+" in text or any(
        "HumanEval+" in json.dumps(o.get("data", {})) for c in nb.cells for o in c.get("outputs", [])
    )
