"""configs/paper.yaml is the study's recipe, value for value, and reaches PEFT and TRL unchanged.

The study ("What 500 curated failure pairs actually fix", three seeds): Qwen2.5-Coder-3B-Instruct;
DPO with TRL; LoRA r 16, alpha 32, dropout 0.05 on q/k/v/o/gate/up/down; beta 0.1; learning rate
5e-5; batch 1 x gradient accumulation 4; 3 epochs (375 optimizer steps for 500 pairs); NF4 4-bit with
bf16 compute; gradient checkpointing; max_length 2048, max_prompt_length 512; seeds 42, 123, 7;
HumanEval pass@1 with greedy decoding.
"""

from __future__ import annotations

import math

import pytest
import yaml

from idfu_lab.config import load_config, repo_root
from idfu_lab.training import dpo as train
from idfu_lab.training import memory

PAPER = repo_root() / "configs" / "paper.yaml"

#: The study's values, keyed as the recipe spells them.
STUDY = {
    "seeds": [42, 123, 7],
    "model.name_or_path": "Qwen/Qwen2.5-Coder-3B-Instruct",
    "model.chat": True,
    "model.load_in_4bit": True,
    "model.bnb_4bit_quant_type": "nf4",
    "model.bnb_4bit_compute_dtype": "bfloat16",
    "data.limit": 500,
    "lora.r": 16,
    "lora.lora_alpha": 32,
    "lora.lora_dropout": 0.05,
    "lora.target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "dpo.beta": 0.1,
    "dpo.learning_rate": 5e-5,
    "dpo.per_device_train_batch_size": 1,
    "dpo.gradient_accumulation_steps": 4,
    "dpo.num_train_epochs": 3,
    "dpo.max_steps": -1,
    "dpo.gradient_checkpointing": True,
    "dpo.max_length": 2048,
    "dpo.max_prompt_length": 512,
    "generation.do_sample": False,
    "evaluation.benchmark": "humaneval",
}


def _get(data: dict, dotted: str):
    node = data
    for part in dotted.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("key", sorted(STUDY))
def test_paper_yaml_states_the_studys_value(key: str) -> None:
    """Written in the file itself, not inherited from a default that could change under it."""
    raw = yaml.safe_load(PAPER.read_text())
    assert _get(raw, key) == STUDY[key]
    assert _get(load_config(PAPER).to_dict(), key) == STUDY[key]


def test_loss_is_the_original_dpo_loss() -> None:
    cfg = load_config(PAPER)
    assert cfg.dpo.loss_type == "sigmoid" and cfg.profile == "paper"


def test_the_schedule_is_375_optimizer_steps() -> None:
    d = load_config(PAPER).dpo
    per_step = d.per_device_train_batch_size * d.gradient_accumulation_steps
    assert per_step == 4  # the effective batch
    assert math.ceil(500 / per_step) * d.num_train_epochs == 375


def test_peft_and_trl_receive_the_recipe(tmp_path) -> None:
    cfg = load_config(PAPER)
    lora = train.lora_config(cfg.lora)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (16, 32, 0.05)
    assert set(lora.target_modules) == set(STUDY["lora.target_modules"]) and lora.task_type == "CAUSAL_LM"
    import torch

    # what training_precision gives on an Ampere+ GPU; transformers refuses bf16 without one unless use_cpu
    bf16 = {"bf16": True, "fp16": False, "use_cpu": not torch.cuda.is_available()}
    args = train.dpo_config(cfg.dpo, output_dir=tmp_path, seed=42, precision=bf16, progress=False)
    assert args.beta == 0.1 and args.learning_rate == 5e-5 and args.loss_type == ["sigmoid"]
    assert args.per_device_train_batch_size == 1 and args.gradient_accumulation_steps == 4
    assert args.num_train_epochs == 3 and args.max_length == 2048
    assert args.gradient_checkpointing is True and args.bf16 is True
    assert args.precompute_ref_log_probs is False  # the reference is the adapter disabled, every step
    assert args.disable_dropout is True  # as TRL 0.x did: the study most likely ran without LoRA dropout


def test_the_paper_recipe_fits_the_studys_8_gb_card() -> None:
    est = memory.estimate_for_config(load_config(PAPER))
    assert est.total < 8 * memory.GIB


def test_paper_yaml_states_the_decisions_that_make_it_the_studys_run() -> None:
    """Written in the file: TRL 0.x's dropout and dtypes, plain greedy decoding, the model's real sizes."""
    import dataclasses

    raw = yaml.safe_load(PAPER.read_text())
    assert raw["dpo"]["disable_dropout"] is True  # TRL 0.x zeroed LoRA dropout after wrapping
    assert raw["model"]["norm_dtype"] == "float32"  # as TRL 0.x left the norms
    assert raw["generation"]["repetition_penalty"] == 1.0 and raw["generation"]["top_k"] == 0
    assert raw["dpo"]["report_to"] == ["tensorboard"] and raw["dpo"]["push_to_hub"] is False
    arch = load_config(PAPER).model.architecture
    shape = memory.QWEN25_CODER_3B
    for f in dataclasses.fields(shape):
        assert getattr(arch, f.name) == getattr(shape, f.name), f.name
