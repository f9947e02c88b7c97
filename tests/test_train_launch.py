"""The Accelerate entry point: ``accelerate launch -m idfu_lab.training.launch`` on one CPU process, tiny profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from idfu_lab.config import repo_root

FIXTURE = repo_root() / "idfu_lab" / "data" / "fixture_pairs.jsonl"


def _write_pairs(run_dir: Path, n: int) -> None:
    """A few fixture pairs, without the audit's outcome labels (training must not need them)."""
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()][:n]
    out = run_dir / "audit" / "train_pairs.jsonl"
    out.parent.mkdir(parents=True)
    keep = ("id", "prompt", "chosen", "rejected")
    out.write_text("".join(json.dumps({k: r[k] for k in keep}) + "\n" for r in rows))


@pytest.mark.slow
def test_accelerate_launch_trains_one_seed_on_cpu(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_dir = tmp_path / "tiny"
    _write_pairs(run_dir, 8)
    accelerate = Path(sys.executable).with_name("accelerate")
    if not accelerate.exists():
        pytest.skip("the accelerate launcher is not installed next to this interpreter")
    cmd = [
        str(accelerate),
        "launch",
        "--config_file",
        str(repo_root() / "configs" / "accelerate" / "cpu_single.yaml"),
        "--num_cpu_threads_per_process",
        "2",
        "-m",
        "idfu_lab.training.launch",
        "--config",
        "tiny-humaneval",
        "--seed",
        "42",
        "--run-dir",
        str(run_dir),
        "--set",
        "dpo.max_steps=2",
        "--no-progress",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=repo_root(), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train_dir = run_dir / "seed-42" / "train"
    summary = json.loads((train_dir / "summary.json").read_text())
    assert summary["global_steps"] == 2 and summary["n_train"] == 8
    assert summary["precision"]["device"] == "cpu"
    assert (train_dir / "adapter" / "adapter_model.safetensors").exists()
    margins = [json.loads(line) for line in (train_dir / "margins.jsonl").read_text().splitlines()]
    assert len(margins) == 8 and {m["rejected_outcome"] for m in margins} == {"UNKNOWN"}
    manifest = json.loads((run_dir / "seed-42" / "manifest.json").read_text())
    assert manifest["steps"]["train"]["config_hash"] == summary["config_hash"]

    # the same entry point again: the finished seed is skipped (run in this process: the launcher
    # added nothing to what the command does, and a second interpreter would only load torch again)
    from idfu_lab.training import launch

    with caplog.at_level("INFO", logger="idfu_lab.training.launch"):
        assert launch.main(cmd[cmd.index("idfu_lab.training.launch") + 1 :]) == 0
    assert "seed 42: already trained" in caplog.text
