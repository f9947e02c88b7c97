"""``idfu-lab train --plan``: what a run will do, offline, from a meta-device skeleton; and the start-up checks."""

from __future__ import annotations

import argparse
import json

import pytest

from idfu_lab.config import load_config, repo_root
from idfu_lab.errors import IdfuError
from idfu_lab.training import launch, plan

FIXTURE = repo_root() / "idfu_lab" / "data" / "fixture_pairs.jsonl"


@pytest.fixture(scope="module")
def paper_plan() -> dict:
    return plan.build_plan(load_config("paper"), card_gib=8)


def test_the_paper_plan_is_the_studys_run_without_a_download(paper_plan: dict) -> None:
    p = paper_plan
    assert p["model"]["parameters"] == 3_085_938_688  # Qwen2.5-Coder-3B, from the recipe's architecture
    assert p["model"]["architecture_source"] == "recipe (model.architecture)"
    assert p["precision"] == {
        "device": "cuda",
        "load_in_4bit": True,
        "quant_type": "nf4",
        "double_quant": False,
        "compute_dtype": "bfloat16",
        "mixed_precision": "bf16",
    }
    t = p["trainable"]
    assert t["parameters"] == 29_933_568 and t["dtype"] == ["float32"]  # PEFT's count; fp32 after TRL's bf16
    assert t["cast_to_bf16_by_trl_then_back_to_fp32"] == 36 * 7 * 2  # lora_A and lora_B of 7 projections
    assert p["activations"]["hidden_states"] == {"layer_0": "bfloat16", "layers_1_on": "float32"}
    assert p["dropout"]["lora_dropout"] == 0.0 and p["dropout"]["lora_dropout_in_recipe"] == 0.05
    assert p["loss"]["loss_type"] == "sigmoid" and p["loss"]["beta"] == 0.1
    assert p["schedule"]["optimizer_steps"] == 375 and p["lengths"] is None
    assert p["memory"]["fits"] is True and 5 < p["memory"]["estimate_gib"]["total"] < 8
    d = p["generation"]["decoding"]
    assert d["do_sample"] is False and d["repetition_penalty"] == 1.0 and d["max_new_tokens"] == 512
    json.dumps(p)  # plain data


def test_the_plan_prints_as_tables_and_json(paper_plan: dict, capsys) -> None:
    text = plan.plan_markdown(paper_plan)
    for title in ("Trainable parameters", "Activations", "Dropout in effect", "GPU memory", "Generation"):
        assert f"## {title}" in text
    assert "| parameters | 29,933,568 |" in text and "| optimizer_steps | 375 |" in text
    args = launch.build_parser().parse_args(["--config", "paper", "--plan", "--json", "--card-gib", "6"])
    out: list[str] = []
    assert launch.run_from_args(args, echo=out.append) == 0
    printed = json.loads(out[0])
    assert printed["memory"]["fits"] is False and printed["memory"]["card_gib"] == 6


def test_tiny_plan_with_pairs_counts_what_the_length_filter_drops() -> None:
    cfg = load_config("tiny", overrides={"dpo.max_prompt_length": 110})
    p = plan.build_plan(cfg, pairs_path=FIXTURE)
    lengths = p["lengths"]
    assert lengths["n_pairs"] == 25 and lengths["n_dropped_prompt_too_long"] > 0
    assert lengths["n_kept"] + lengths["n_dropped_prompt_too_long"] == 25
    kept = lengths["n_kept"]
    assert p["schedule"]["pairs"] == kept
    per_step = cfg.dpo.per_device_train_batch_size * cfg.dpo.gradient_accumulation_steps
    epochs = int(cfg.dpo.num_train_epochs)
    assert p["schedule"]["optimizer_steps"] == epochs * -(-kept // per_step)  # ceil per epoch
    assert p["precision"]["device"] == "cpu" and p["trainable"]["dtype"] == ["float32"]


def test_optimizer_steps_follow_the_trainers_arithmetic() -> None:
    d = load_config("paper").dpo
    assert plan.optimizer_steps(500, d) == 375
    assert plan.optimizer_steps(501, d) == 378  # a last partial accumulation is a step
    assert plan.optimizer_steps(500, d, processes=2) == 189  # 250 batches per process, 63 steps per epoch


def test_a_model_without_sizes_cannot_be_planned_offline() -> None:
    cfg = load_config("paper", overrides={"model.name_or_path": "someone/some-model"})
    cfg.model.architecture = None
    with pytest.raises(IdfuError, match="model.architecture"):
        plan.build_plan(cfg)


def test_several_gpus_and_one_process_get_told_how_to_run() -> None:
    assert launch.launcher_problem(1, {}) is None
    assert launch.launcher_problem(2, {"WORLD_SIZE": "2", "LOCAL_RANK": "0"}) is None  # accelerate launch
    msg = launch.launcher_problem(2, {}, config="configs/paper.yaml")
    assert "nn.DataParallel" in msg and "CUDA_VISIBLE_DEVICES=0" in msg
    assert "accelerate launch --config_file configs/accelerate/multi_gpu_ddp.yaml --num_processes 2" in msg
    assert "dpo.gradient_accumulation_steps=2" in msg
    assert "gradient_accumulation_steps=1" in launch.launcher_problem(4, {"WORLD_SIZE": "1"})


def test_estimate_memory_states_its_assumptions() -> None:
    args = launch.build_parser().parse_args(["--config", "paper", "--estimate-memory"])
    out: list[str] = []
    launch.run_from_args(args, echo=out.append)
    assert "Assumptions:" in out[-1] and "worst case" in out[-1]
    assert len([line for line in out if "GiB" in line]) == 4


def test_the_plan_options_are_on_idfu_lab_train() -> None:
    from idfu_lab.commands import train

    parser = argparse.ArgumentParser()
    train.register(parser.add_subparsers())
    args = parser.parse_args(["train", "--config", "tiny", "--plan", "--card-gib", "8"])
    assert args.plan and args.card_gib == 8.0


def test_the_plan_nests_under_a_pages_heading(paper_plan: dict) -> None:
    text = plan.plan_markdown(paper_plan, level=3)
    assert text.startswith("### Plan: ") and "\n#### Trainable parameters\n" in text and "\n## " not in text
