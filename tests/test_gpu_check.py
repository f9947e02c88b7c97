"""benchmarks/gpu_check.py: the GPU check's script, run on a CPU (--dry-run), and what it says when packages are missing."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import load_script

from idfu_lab.config import repo_root

gpu_check = load_script(repo_root() / "benchmarks" / "gpu_check.py")


def test_missing_packages_name_the_wheels_to_carry_and_their_sizes() -> None:
    assert gpu_check.missing_packages() == []  # this environment has all of them
    msg = gpu_check.missing_message(["trl", "bitsandbytes"])
    assert "trl==1.16.0" in msg and "bitsandbytes==0.50.2" in msg and "44.1 MB" in msg
    assert "pip download --no-deps --python-version 3.12" in msg and "pip install --no-index" in msg
    assert "install the CUDA build first" in gpu_check.missing_message(["torch"])


def test_without_cuda_it_says_to_use_the_dry_run(tmp_path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("with CUDA the check really runs")
    # in this process, which has torch imported already (a second interpreter would only import it again)
    assert gpu_check.main(["--out", str(tmp_path / "x.json")]) == 2
    assert "--dry-run" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


@pytest.mark.slow  # trains a 2-layer NF4 model twice and generates, on a CPU
def test_dry_run_on_cpu_writes_the_whole_report(tmp_path) -> None:
    out = tmp_path / "gpu_check.json"
    # in this process (no second start-up), at the narrowest width: the same path in less CPU time
    assert gpu_check.main(["--dry-run", "--width", "sixteenth", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    arch = r["architecture"]
    assert r["ok"] is True and arch["num_hidden_layers"] == 2 and arch["hidden_size"] == 128
    # grouped-query attention, as in the model: two query heads share each key/value head
    assert arch["num_attention_heads"] == 2 * arch["num_key_value_heads"]
    assert (
        r["precision"]["load_in_4bit"] is True and r["precision"]["bf16"] is True
    )  # the NF4 path, rehearsed
    for label in ("worst_case", "typical"):
        t = r["training"][label]
        assert t["lora"]["stayed_fp32"] and t["lora"]["all_moved"] and t["lora"]["tensors"] == 2 * 2 * 7
        assert t["numerics"]["hidden_states"] == {"layer_0": "bfloat16", "layers_1_on": "float32"}
        assert t["step_seconds_median"] > 0 and t["tokens_per_second"] > 0
    m = r["training"]["worst_case"]["memory"]  # measured exactly by the profiler (on the worst case only)
    assert m["measured_peak_tensors_bytes"] > m["model_bytes_before_training"] > 0
    assert m["estimate"]["tensors"] > 0 and m["how_measured"].startswith("profiler")
    g = r["generation"]
    assert g["prompts_done"] == 4 and g["decoding"]["repetition_penalty"] == 1.0
    assert g["new_tokens"] == 4 * 8  # random weights never stop early: the worst case
