"""The tiny model: built offline, deterministic, reloaded through the same path as a Hub model."""

from __future__ import annotations

import json

import pytest
import torch

from idfu_lab.config import ModelConfig, TinyModelConfig, load_config
from idfu_lab.errors import IdfuError
from idfu_lab.generation import models


def test_tiny_model_reloads_with_identical_token_ids() -> None:
    cfg = load_config("tiny-humaneval").model
    tok = models.load_tokenizer(cfg)
    assert type(tok).__name__ == "Qwen2Tokenizer"  # what AutoTokenizer gives for model_type qwen2
    assert tok.padding_side == "left" and tok.pad_token and tok.eos_token == "<|im_end|>"
    import tokenizers

    raw = tokenizers.Tokenizer.from_file(str(models.tiny_path(cfg.tiny) / "tokenizer.json"))
    text = "def f(xs: list[int]) -> int:\n    return math.ceil(sum(xs) / 2)  # café\n"
    assert tok(text)["input_ids"] == raw.encode(text).ids  # the saved pipeline survives the reload
    assert tok.decode(tok(text)["input_ids"]) == text
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_build_is_deterministic(tmp_path) -> None:
    tiny = TinyModelConfig(warmup_steps=3)  # a short warm-up: the same code path, seconds instead of a minute
    a = models.build_tiny(tiny, tmp_path / "a")
    b = models.build_tiny(tiny, tmp_path / "b")
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert json.loads((a / "config.json").read_text())["model_type"] == "qwen2"


def test_batched_greedy_generation_equals_one_by_one() -> None:
    cfg = load_config("tiny-humaneval").model
    tok, model = models.load_tokenizer(cfg), models.load_model(cfg)
    prompts = ["def add(a, b):\n", "import math\n\ndef area(r):\n    return"]
    enc = tok(prompts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        batched = model.generate(**enc, max_new_tokens=6, do_sample=False)[:, enc["input_ids"].shape[1] :]
        for i, p in enumerate(prompts):
            one = tok(p, return_tensors="pt")
            single = model.generate(**one, max_new_tokens=6, do_sample=False)[0, one["input_ids"].shape[1] :]
            assert tok.decode(single, skip_special_tokens=True) == tok.decode(
                batched[i], skip_special_tokens=True
            )


def test_precision_is_chosen_from_cuda_not_from_exceptions() -> None:
    choice = models.device_and_precision(load_config("paper").model)
    if torch.cuda.is_available():
        assert choice["load_in_4bit"] and choice["torch_dtype"] == "bfloat16"
    else:
        assert choice == {**choice, "device": "cpu", "load_in_4bit": False, "torch_dtype": "float32"}
        assert "not used without CUDA" in choice["reason"]


def test_unreachable_hub_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(IdfuError, match="cannot load model 'no-such-org/no-such-model'"):
        models.load_tokenizer(ModelConfig(name_or_path="no-such-org/no-such-model"))
