"""What a training run will do, worked out before any GPU hour: ``idfu-lab train --config C --plan``.

Offline and without weights: the model's skeleton is built on PyTorch's ``meta`` device from the
sizes written in the recipe (``model.architecture``; the tiny profile's own shape; a local folder's
``config.json``), the adapter is added with the recipe's ``LoraConfig`` exactly as TRL adds it, and
the same steps a real run takes are applied to it — PEFT's k-bit preparation (what it upcasts), TRL's
casting of the adapter and its dropout switch, then :func:`idfu_lab.training.dpo.set_training_dtypes`
— so the dtypes, the trainable parameters and the dropout the plan reports are the ones the real
code produces, not a restatement of the recipe. Around it: the loss, the length filter (when pairs are
given), the optimizer steps, the memory estimate for a card, and the decoding settings generation
will use.

:func:`build_plan` returns plain data (JSON); :func:`plan_markdown` renders it as tables (the
command's output, and what a report page can include).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

from idfu_lab.config import Config, ModelConfig
from idfu_lab.errors import IdfuError

logger = logging.getLogger(__name__)

GIB = 1024**3


# --------------------------------------------------------------------------- the model's skeleton


def architecture(model_cfg: ModelConfig) -> tuple[dict[str, Any], str]:
    """The model's ``config.json`` sizes and where they came from, without the network."""
    from idfu_lab.training.memory import KNOWN_SHAPES

    if model_cfg.architecture is not None:
        return dataclasses.asdict(model_cfg.architecture), "recipe (model.architecture)"
    if model_cfg.name_or_path == "tiny":
        t = model_cfg.tiny
        sizes = {
            "model_type": "qwen2",
            "hidden_size": t.hidden_size,
            "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "num_key_value_heads": t.num_key_value_heads,
            "intermediate_size": t.intermediate_size,
            "vocab_size": t.vocab_size,
            "max_position_embeddings": t.max_position_embeddings,
            "tie_word_embeddings": True,
        }
        return sizes, "recipe (model.tiny)"
    folder = Path(model_cfg.name_or_path)
    if (folder / "config.json").is_file():
        import json

        data = json.loads((folder / "config.json").read_text())
        return data, f"{folder / 'config.json'}"
    if model_cfg.name_or_path in KNOWN_SHAPES:
        s = KNOWN_SHAPES[model_cfg.name_or_path]
        sizes = {"model_type": "qwen2", **dataclasses.asdict(s)}
        return sizes, "idfu_lab.training.memory.KNOWN_SHAPES"
    raise IdfuError(
        f"cannot plan '{model_cfg.name_or_path}' offline: write its config.json sizes into the recipe as "
        "model.architecture (model_type, hidden_size, num_hidden_layers, num_attention_heads, "
        "num_key_value_heads, intermediate_size, vocab_size, max_position_embeddings, tie_word_embeddings, "
        "rms_norm_eps, rope_theta)"
    )


def meta_skeleton(sizes: dict[str, Any], dtype: str) -> Any:
    """The architecture on the ``meta`` device: every module and shape, no memory, no weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    sizes = dict(sizes)
    model_type = sizes.pop("model_type", "qwen2")
    keep = {k: v for k, v in sizes.items() if not k.startswith("_") and k not in ("architectures",)}
    config = AutoConfig.for_model(model_type, **keep)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))


def _prepare_like_a_real_run(model: Any, cfg: Config, precision: dict[str, Any]) -> dict[str, Any]:
    """Apply to the skeleton what loading, PEFT, TRL and idfu_lab do to the real model, in their order."""
    import torch
    from peft import get_peft_model

    from idfu_lab.training import dpo

    targets = set(cfg.lora.target_modules)
    quantised = precision["load_in_4bit"]
    if quantised:
        # peft.prepare_model_for_kbit_training: freeze, and upcast every non-4-bit parameter to fp32
        # (on the real model the targeted projections are Params4bit and are left alone)
        for name, param in model.named_parameters():
            param.requires_grad = False
            quantised_weight = name.endswith(".weight") and name.rsplit(".", 2)[-2] in targets
            if not quantised_weight and param.dtype in (torch.float16, torch.bfloat16):
                param.data = param.data.to(torch.float32)
    model = get_peft_model(model, dpo.lora_config(cfg.lora))
    trl_cast = 0
    if quantised:  # TRL 1.16's DPOTrainer: trainable parameters of a quantised model to bf16
        for param in model.parameters():
            if param.requires_grad:
                param.data = param.data.to(torch.bfloat16)
                trl_cast += 1
    if cfg.dpo.disable_dropout:
        from trl.trainer.utils import disable_dropout_in_model

        disable_dropout_in_model(model)
    numerics = dpo.set_training_dtypes(model, cfg.model, precision)
    return {"model": model, "numerics": numerics, "trl_cast_to_bf16": trl_cast}


# --------------------------------------------------------------------------- steps and lengths


def optimizer_steps(n_pairs: int, dpo_cfg: Any, processes: int = 1) -> int:
    """Optimizer steps the Trainer will take for ``n_pairs`` (its own arithmetic, transformers 5)."""
    if dpo_cfg.max_steps > 0:
        return dpo_cfg.max_steps
    batches = math.ceil(n_pairs / (dpo_cfg.per_device_train_batch_size * processes))
    per_epoch = max(
        batches // dpo_cfg.gradient_accumulation_steps
        + int(batches % dpo_cfg.gradient_accumulation_steps > 0),
        1,
    )
    return math.ceil(dpo_cfg.num_train_epochs * per_epoch)


def _lengths(cfg: Config, pairs_path: Path) -> dict[str, Any]:
    from idfu_lab.generation import models
    from idfu_lab.training import dpo

    pairs = dpo.read_train_pairs(pairs_path)
    if cfg.data.limit is not None:
        pairs = pairs[: cfg.data.limit]
    try:
        tokenizer = models.load_tokenizer(cfg.model)
    except IdfuError as e:
        return {"pairs_file": str(pairs_path), "n_pairs": len(pairs), "tokenizer": f"not available: {e}"}
    report = dpo.filter_pairs(
        pairs,
        tokenizer,
        chat=cfg.model.chat,
        max_prompt_length=cfg.dpo.max_prompt_length,
        max_length=cfg.dpo.max_length,
    )
    longest = max(
        (max(p["chosen_sequence_tokens"], p["rejected_sequence_tokens"]) for p in report.kept), default=0
    )
    d = report.as_dict()
    return {
        "pairs_file": str(pairs_path),
        "n_pairs": d["n_pairs_in"],
        "n_kept": d["n_kept"],
        "n_dropped_prompt_too_long": d["n_filtered_prompt_too_long"],
        "dropped_ids": d["filtered_ids"],
        "n_truncated_over_max_length": d["n_over_max_length"],
        "prompt_tokens_max": d["prompt_tokens_max"],
        "prompt_tokens_mean": round(d["prompt_tokens_mean"], 1),
        "longest_sequence_tokens": longest,
    }


# --------------------------------------------------------------------------- the plan


def build_plan(
    cfg: Config,
    *,
    device: str | None = None,
    pairs_path: str | Path | None = None,
    card_gib: float | None = None,
    processes: int = 1,
) -> dict[str, Any]:
    """Everything a run of ``cfg`` will do, as plain data (see the module docstring). Offline; no weights.

    ``device``: ``cuda`` or ``cpu``; by default ``cuda`` when the recipe asks for 4-bit or a 16-bit
    dtype (what it is written for), else ``cpu``. ``card_gib``: the card's memory, to say whether the
    estimate fits. ``pairs_path``: a pairs JSONL whose lengths to check (the tokenizer must be local).
    """
    from idfu_lab.generation import generate as gen
    from idfu_lab.generation.models import precision_choice
    from idfu_lab.training import dpo, memory

    m = cfg.model
    if device is None:
        device = "cuda" if (m.load_in_4bit or m.torch_dtype in ("bfloat16", "float16")) else "cpu"
    if device not in ("cuda", "cpu"):
        raise IdfuError(f"--device must be cuda or cpu, got '{device}'")
    precision = dpo._trainer_flags(precision_choice(m, cuda=device == "cuda", device_name=device))
    sizes, source = architecture(m)
    skeleton_dtype = precision["torch_dtype"]
    model = meta_skeleton(sizes, skeleton_dtype)
    n_params = sum(p.numel() for p in model.parameters())
    prepared = _prepare_like_a_real_run(model, cfg, precision)
    peft_model, numerics = prepared["model"], prepared["numerics"]
    by_module: dict[str, int] = {}
    for name, p in peft_model.named_parameters():
        if p.requires_grad:
            module = next((t for t in cfg.lora.target_modules if f".{t}." in name), "other")
            by_module[module] = by_module.get(module, 0) + p.numel()
    dropout = dpo.dropout_in_effect(peft_model)

    shape = memory.ModelShape(
        hidden_size=sizes["hidden_size"],
        num_hidden_layers=sizes["num_hidden_layers"],
        num_attention_heads=sizes["num_attention_heads"],
        num_key_value_heads=sizes.get("num_key_value_heads") or sizes["num_attention_heads"],
        intermediate_size=sizes["intermediate_size"],
        vocab_size=sizes["vocab_size"],
        tie_word_embeddings=bool(sizes.get("tie_word_embeddings", False)),
    )
    d = cfg.dpo
    est = memory.estimate_training_memory(
        shape,
        load_in_4bit=precision["load_in_4bit"],
        torch_dtype=precision["torch_dtype"],
        compute_dtype=precision["compute_dtype"],
        double_quant=m.bnb_4bit_use_double_quant,
        norm_dtype=m.norm_dtype,
        lora_r=cfg.lora.r,
        target_modules=cfg.lora.target_modules,
        lora_dropout=dropout.get("lora_dropout", 0.0),
        max_length=d.max_length,
        per_device_train_batch_size=d.per_device_train_batch_size,
        gradient_checkpointing=d.gradient_checkpointing,
    )
    mem: dict[str, Any] = {
        "estimate_gib": {k: round(v / GIB, 3) for k, v in est.as_dict().items()},
        "assumptions": list(memory.ASSUMPTIONS),
    }
    if card_gib is not None:
        mem["card_gib"] = card_gib
        mem["fits"] = est.total <= card_gib * GIB
    lengths = _lengths(cfg, Path(pairs_path)) if pairs_path is not None else None
    if lengths and "n_kept" in lengths:
        n_train, n_source = lengths["n_kept"], "pairs kept by the length filter"
    elif cfg.data.limit is not None:
        n_train, n_source = cfg.data.limit, "data.limit (no pairs given: the length filter may drop some)"
    else:
        n_train, n_source = None, "unknown (give --pairs)"
    steps = (
        optimizer_steps(n_train, d, processes)
        if n_train is not None
        else (d.max_steps if d.max_steps > 0 else None)
    )

    backend = cfg.generation.backend
    decoding = gen.decoding_spec(cfg.generation, seed=0, backend=backend)
    if not cfg.generation.do_sample:
        decoding.pop("seed", None)
    generation = {"template": cfg.generation.template if m.chat else "completion", "decoding": decoding}
    if backend == "vllm":
        generation["vllm_weights"] = gen.vllm_weights(m, precision)
        generation["vllm_differs_from_training"] = gen.vllm_differences(m, precision)

    return {
        "recipe": cfg.source,
        "profile": cfg.profile,
        "model": {
            "name": m.name_or_path,
            "architecture": sizes,
            "architecture_source": source,
            "parameters": n_params,
        },
        "precision": {
            "device": device,
            "load_in_4bit": precision["load_in_4bit"],
            "quant_type": precision["bnb_4bit_quant_type"],
            "double_quant": precision["bnb_4bit_use_double_quant"],
            "compute_dtype": precision["compute_dtype"],
            "mixed_precision": "bf16" if precision["bf16"] else ("fp16" if precision["fp16"] else "no"),
        },
        "trainable": {
            "parameters": numerics["trainable_parameters"],
            "share_of_model": numerics["trainable_parameters"] / n_params,
            "by_module": by_module,
            "dtype": numerics["trainable_dtypes"],
            "cast_to_bf16_by_trl_then_back_to_fp32": prepared["trl_cast_to_bf16"],
        },
        "activations": {
            "embedding_dtype": numerics["embedding_dtype"],
            "norm_dtype": numerics["norm_dtype"],
            "hidden_states": numerics["hidden_states"],
            "gradient_checkpointing": d.gradient_checkpointing,
        },
        "dropout": {
            "lora_dropout_in_recipe": cfg.lora.lora_dropout,
            "disable_dropout": d.disable_dropout,
            **dropout,
        },
        "loss": {
            "loss_type": d.loss_type,
            "beta": d.beta,
            "reference": "precomputed log-probs of the base"
            if d.precompute_ref_log_probs
            else "the base with the adapter disabled, every step",
            "learning_rate": d.learning_rate,
            "lr_scheduler_type": d.lr_scheduler_type,
            "optimizer": d.optim,
        },
        "lengths": lengths,
        "schedule": {
            "pairs": n_train,
            "pairs_from": n_source,
            "effective_batch": d.per_device_train_batch_size * d.gradient_accumulation_steps * processes,
            "epochs": d.num_train_epochs,
            "optimizer_steps": steps,
            "processes": processes,
            "max_length": d.max_length,
            "max_prompt_length": d.max_prompt_length,
        },
        "memory": mem,
        "generation": generation,
        "logging": {
            "report_to": list(d.report_to),
            "push_to_hub": d.push_to_hub,
            "hub_model_id": d.hub_model_id,
        },
    }


def _rows(section: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in section.items():
        if isinstance(value, dict) and value and key not in ("by_module",):
            rows.extend(_rows(value, f"{prefix}{key}."))
        elif key == "by_module":
            rows.append((f"{prefix}{key}", "; ".join(f"{k} {v:,}" for k, v in value.items())))
        elif isinstance(value, bool) or value is None:
            rows.append((f"{prefix}{key}", str(value)))
        elif isinstance(value, int):
            rows.append((f"{prefix}{key}", f"{value:,}"))
        elif isinstance(value, float):
            rows.append((f"{prefix}{key}", f"{value:.4g}"))
        elif isinstance(value, list | tuple):
            rows.append((f"{prefix}{key}", ", ".join(str(v) for v in value) or "none"))
        else:
            rows.append((f"{prefix}{key}", str(value)))
    return rows


#: The plan's sections in the order a reader wants them, with a title each.
SECTIONS = (
    ("model", "Model"),
    ("precision", "Precision"),
    ("trainable", "Trainable parameters"),
    ("activations", "Activations"),
    ("dropout", "Dropout in effect"),
    ("loss", "Loss and optimizer"),
    ("lengths", "Lengths of the pairs"),
    ("schedule", "Schedule"),
    ("memory", "GPU memory (estimate)"),
    ("generation", "Generation"),
    ("logging", "Logs and publishing"),
)


def plan_markdown(plan: dict[str, Any], *, level: int = 1) -> str:
    """The plan as Markdown tables, one per section (what ``--plan`` prints).

    ``level`` is the heading level of the title (sections one below): 3 for a page that includes the
    plan under its own second-level heading, as the book's reproducibility page can.
    """
    h = "#" * level
    out = [f"{h} Plan: {plan['recipe'] or plan['profile']}", ""]
    for key, title in SECTIONS:
        section = plan.get(key)
        if key == "memory" and section:
            section = {k: v for k, v in section.items() if k != "assumptions"}
        if key == "model" and section:
            section = {k: v for k, v in section.items() if k != "architecture"}
        out.append(f"{h}# {title}")
        out.append("")
        if section is None:
            out.append("not computed (give --pairs FILE)")
            out.append("")
            continue
        out.append("| item | value |")
        out.append("|---|---|")
        for item, value in _rows(section):
            out.append(f"| {item} | {value.replace('|', '/')} |")
        out.append("")
    if plan.get("memory", {}).get("assumptions"):
        out.append("Memory estimate assumes:")
        out.extend(f"- {a}" for a in plan["memory"]["assumptions"])
        out.append("")
    return "\n".join(out)
