"""The vLLM backend's pure parts (vLLM itself needs CUDA and is not installed where the tests run)."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from idfu_lab.config import load_config
from idfu_lab.errors import IdfuError
from idfu_lab.generation import generate as g
from idfu_lab.generation.models import precision_choice

EOS = [151645, 151643]


def test_an_end_token_is_not_counted_and_a_stop_string_is_recorded_as_such() -> None:
    # finished by the EOS token: vLLM's token_ids end with it; the transformers backend does not count it
    assert g.vllm_result("def f(): ...", [10, 11, 12, 151645], "stop", None, EOS) == (
        "def f(): ...",
        3,
        "eos",
    )
    # finished by a stop string: vLLM also says "stop"; stop_reason names the string
    assert g.vllm_result("def f():", [10, 11, 12], "stop", "\ndef ", EOS) == ("def f():", 3, "stop")
    # a stop token id other than EOS
    assert g.vllm_result("x", [10, 7], "stop", 7, EOS) == ("x", 1, "eos")
    assert g.vllm_result("x" * 5, [1, 2, 3, 4, 5], "length", None, EOS) == ("xxxxx", 5, "length")
    assert g.vllm_result("", [], "stop", None, EOS) == ("", 0, "eos")


def test_what_vllm_loads_is_recorded_and_differences_are_named() -> None:
    paper = load_config("paper").model
    on_gpu = precision_choice(paper, cuda=True, device_name="GPU")
    loaded = g.vllm_weights(paper, on_gpu)
    assert loaded == {
        "quantization": "bitsandbytes",
        "quant_type": "nf4",
        "double_quant": True,
        "compute_dtype": "bfloat16",
    }
    diffs = g.vllm_differences(paper, on_gpu)
    assert len(diffs) == 1 and "double quantisation" in diffs[0]
    same = dataclasses.replace(paper, bnb_4bit_use_double_quant=True)
    assert g.vllm_differences(same, precision_choice(same, cuda=True)) == []
    fp4 = dataclasses.replace(paper, bnb_4bit_quant_type="fp4")
    assert any("nf4" in d for d in g.vllm_differences(fp4, precision_choice(fp4, cuda=True)))
    unquantised = dataclasses.replace(paper, load_in_4bit=False)
    assert g.vllm_weights(unquantised, precision_choice(unquantised, cuda=True))["quantization"] is None


def test_one_engine_with_lora_enabled_and_the_adapters_rank(tmp_path) -> None:
    paper = load_config("paper").model
    kwargs = g.vllm_engine_kwargs(paper, g.vllm_lora_rank(None))
    assert kwargs["enable_lora"] is True and kwargs["max_lora_rank"] == 16 and kwargs["max_loras"] == 1
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 24}))
    assert g.vllm_lora_rank(adapter) == 32
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 1024}))
    with pytest.raises(IdfuError, match="above vLLM's largest"):
        g.vllm_lora_rank(adapter)
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(IdfuError, match="adapter_config.json: cannot read the adapter's rank"):
        g.vllm_lora_rank(adapter)


def test_sampling_params_carry_every_field_explicitly() -> None:
    gen = load_config("paper").generation
    greedy = g.vllm_sampling_kwargs(gen, seed=5)
    assert greedy["temperature"] == 0.0 and greedy["repetition_penalty"] == 1.0 and greedy["top_k"] == -1
    assert greedy["seed"] is None and greedy["max_tokens"] == gen.max_new_tokens
    sampled = g.vllm_sampling_kwargs(
        dataclasses.replace(gen, do_sample=True, temperature=0.8, top_p=0.95, top_k=20), seed=5
    )
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"], sampled["seed"]) == (0.8, 0.95, 20, 5)


def test_the_cache_key_knows_the_backend_and_its_weights(caplog) -> None:
    cfg = load_config("paper")
    ident_t = g.model_identity(cfg.model, "transformers")
    ident_v = g.model_identity(cfg.model, "vllm")
    assert "vllm_weights" in ident_v and "vllm_weights" not in ident_t
    with caplog.at_level(logging.WARNING):
        assert g.resolve_backend(dataclasses.replace(cfg.generation, backend="vllm")) == "transformers"
    assert "vllm" in caplog.text
