"""The paper path's numerics, rehearsed on a CPU: NF4 base through bitsandbytes, bf16 autocast, TRL 1.16.

What a GPU run will do, checked where no GPU is: the trainable LoRA parameters stay fp32 (TRL 1.16
casts them to bf16 on a 4-bit base) and every one of them moves; the hidden states entering the decoder
layers have the dtypes of the study's TRL 0.x set-up; dropout is what the recipe says.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train import write_train_pairs

from idfu_lab.config import load_config
from idfu_lab.generation import models
from idfu_lab.training import dpo

pytestmark = pytest.mark.slow  # trains the tiny model in NF4 on a CPU

#: The tiny model loaded as the paper profile loads Qwen: NF4 4-bit, bf16 compute, checkpointing, lr 5e-5,
#: one pair a micro-batch (the paper's; without a bf16 unit a CPU multiplies bf16 matrices slowly).
PAPER_NUMERICS = {
    "model.load_in_4bit": True,
    "model.torch_dtype": "bfloat16",
    "dpo.learning_rate": 5e-5,
    "dpo.gradient_checkpointing": True,
    "dpo.per_device_train_batch_size": 1,
    "dpo.max_steps": 2,
    "dpo.report_to": [],
}


def _trainer(tmp_path: Path, **overrides):
    cfg = load_config("tiny", overrides={**PAPER_NUMERICS, **overrides})
    pairs = write_train_pairs(tmp_path / "pairs.jsonl")[:8]
    precision = dpo.training_precision(cfg.model, cpu_quantised=True)
    model = models.load_model(cfg.model, for_training=True, precision=precision, gradient_checkpointing=True)
    trainer = dpo.build_trainer(
        cfg, pairs, output_dir=tmp_path / "out", seed=0, precision=precision, model=model, progress=False
    )
    return cfg, precision, trainer


def _record_layer_inputs(trainer) -> dict[int, set[str]]:
    seen: dict[int, set[str]] = {}

    def hook(i):
        def record(module, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            seen.setdefault(i, set()).add(str(x.dtype).removeprefix("torch."))

        return record

    for i, layer in enumerate(trainer.model.get_base_model().model.layers):
        layer.register_forward_pre_hook(hook(i), with_kwargs=True)
    return seen


@pytest.fixture(scope="module")
def trained_4bit(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("numerics")
    cfg, precision, trainer = _trainer(tmp)
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in trainer.model.modules())  # really the NF4 path
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    seen = _record_layer_inputs(trainer)
    trainer.train()
    return cfg, precision, trainer, before, seen


def test_trainable_lora_parameters_stay_fp32_and_every_one_moves(trained_4bit) -> None:
    _, precision, trainer, before, _ = trained_4bit
    assert precision["load_in_4bit"] and precision["bf16"] and precision["device"] == "cpu"
    after = dict(trainer.model.named_parameters())
    assert before and all("lora_" in n for n in before)  # only the adapter trains
    assert {after[n].dtype for n in before} == {torch.float32}
    for name, old in before.items():
        changed = (after[name].detach() != old).float().mean().item()
        # fp32 takes every AdamW update; in bf16, 42 % of the elements did not move in the same two steps
        assert changed > 0.99, f"{name}: only {changed:.1%} of its elements moved"
    assert trainer.idfu_numerics["trainable_dtypes"] == ["float32"]
    assert trainer.idfu_numerics["upcast_to_fp32"] == len(before)  # TRL had cast every one to bf16


def test_hidden_states_have_the_studys_dtypes(trained_4bit) -> None:
    """TRL 0.x: embeddings bf16 and norms fp32, so layer 0 sees bf16 and, after the first residual add, fp32."""
    _, _, trainer, _, seen = trained_4bit
    numerics = trainer.idfu_numerics
    assert numerics["embedding_dtype"] == "bfloat16" and numerics["norm_dtype"] == "float32"
    assert seen[0] == {numerics["hidden_states"]["layer_0"]} == {"bfloat16"}
    assert seen[1] == {numerics["hidden_states"]["layers_1_on"]} == {"float32"}
    assert trainer.model.get_input_embeddings().weight.dtype == torch.bfloat16  # and the tied LM head
    assert trainer.model.get_output_embeddings().weight.dtype == torch.bfloat16


def test_bf16_norms_keep_every_hidden_state_bf16(tmp_path: Path) -> None:
    _, _, trainer = _trainer(tmp_path, **{"model.norm_dtype": "bfloat16"})
    seen = _record_layer_inputs(trainer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert seen == {0: {"bfloat16"}, 1: {"bfloat16"}}
    assert trainer.idfu_numerics["hidden_states"] == {"layer_0": "bfloat16", "layers_1_on": "bfloat16"}


def test_dropout_is_the_recipes_choice(trained_4bit, tmp_path: Path) -> None:
    cfg, _, trainer, _, _ = trained_4bit
    assert cfg.dpo.disable_dropout is True and cfg.lora.lora_dropout == 0.05
    assert trainer.idfu_dropout["lora_dropout"] == 0.0  # TRL zeroes it after wrapping, as TRL 0.x did
    assert trainer.args.disable_dropout is True


def test_the_cpu_path_without_rehearsal_declines_4bit() -> None:
    if torch.cuda.is_available():
        pytest.skip("checks the CPU path")
    precision = dpo.training_precision(load_config("paper").model)
    assert precision["load_in_4bit"] is False and precision["compute_dtype"] == "float32"
    assert dpo.hidden_state_dtypes("float32", "float32", quantised=False) == {
        "layer_0": "float32",
        "layers_1_on": "float32",
    }


def test_the_plan_predicts_what_the_real_path_does(trained_4bit) -> None:
    """The meta-device plan and the CPU rehearsal agree on every dtype, count and dropout."""
    from idfu_lab.training.plan import build_plan

    cfg, _, trainer, _, seen = trained_4bit
    p = build_plan(cfg, device="cuda")
    real = trainer.idfu_numerics
    assert p["trainable"]["parameters"] == real["trainable_parameters"]
    assert p["trainable"]["dtype"] == real["trainable_dtypes"] == ["float32"]
    assert p["trainable"]["cast_to_bf16_by_trl_then_back_to_fp32"] == real["upcast_to_fp32"]
    assert p["activations"]["hidden_states"] == real["hidden_states"]
    assert {p["activations"]["hidden_states"]["layer_0"]} == seen[0]
    assert {p["activations"]["hidden_states"]["layers_1_on"]} == seen[1]
    assert p["activations"]["embedding_dtype"] == real["embedding_dtype"]
    assert p["activations"]["norm_dtype"] == real["norm_dtype"] == "float32"
    assert p["dropout"]["lora_dropout"] == trainer.idfu_dropout["lora_dropout"]
