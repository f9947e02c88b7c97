"""DPO training throughput under the paper recipe, on a GPU: step time, tokens/s, peak memory.

The study reports about 3-4 h per seed (375 optimizer steps) on one 8 GB RTX 4060. This benchmark
measures what one optimizer step of the same recipe costs on the machine at hand, without needing the
model or the pairs: a **randomly initialised** model with Qwen2.5-Coder-3B's architecture (the config
values in ``idfu_lab.training.memory.QWEN25_CODER_3B``; nothing is downloaded) is saved once to the idfu-lab
cache and then loaded through the very path training uses (``idfu_lab.generation.models.load_model``: NF4 4-bit,
bf16 compute, prepared for k-bit training), wrapped with the recipe's LoRA, and trained by TRL's
``DPOTrainer`` with the recipe's ``DPOConfig`` on random token ids of the study's lengths (by default
the worst case: a 512-token prompt and completions filling ``max_length`` 2048). Speed does not depend
on the weights' values or on the tokens, only on the shapes, so the numbers transfer to the real model.

It compares ``precompute_ref_log_probs`` off (the reference = the adapter disabled, one extra forward
per step) and on (one pass over the pairs before training, no reference forward during it), and
reports the estimate of ``idfu_lab.training.memory.estimate_training_memory`` next to the measured peak.

    python benchmarks/train_throughput.py [--steps 8] [--prompt-tokens 512] [--completion-tokens 1536]
                                          [--out benchmarks/results/train_throughput.json]

Without CUDA it prints ``skipped: no CUDA`` and exits 0 (``--smoke`` runs the same code with the tiny
shape on a CPU, to check the script itself; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: The study's schedule: 500 pairs x 3 epochs / effective batch 4.
STUDY_STEPS = 375
STUDY_PAIRS = 500
STUDY_HOURS = (3.0, 4.0)


def _versions() -> dict[str, str | None]:
    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "idfu-lab"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def random_checkpoint(shape: Any, directory: Path, *, seed: int = 0) -> Path:
    """Save a randomly initialised Qwen2 model of ``shape`` (bf16) with a tokenizer, once."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from idfu_lab.config import ModelConfig
    from idfu_lab.generation import models

    if (directory / "config.json").exists() and (directory / "tokenizer_config.json").exists():
        return directory
    print(
        f"building a random {shape.num_parameters() / 1e9:.2f} B-parameter Qwen2 checkpoint in {directory} ..."
    )
    config = Qwen2Config(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        tie_word_embeddings=shape.tie_word_embeddings,
    )
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # initialise in bf16: half the host memory of fp32
    try:
        model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    tmp = directory.with_name(directory.name + ".partial")
    model.save_pretrained(tmp)
    # any tokenizer with a pad token will do: the benchmark feeds token ids, never text
    models.load_tokenizer(ModelConfig(name_or_path="tiny")).save_pretrained(tmp)
    del model
    tmp.rename(directory)
    return directory


def random_pairs(n: int, prompt_tokens: int, completion_tokens: int, vocab: int, seed: int = 0):
    """A pre-tokenised preference dataset: random ids, every pair of the same lengths."""
    import torch
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)

    def ids(k: int) -> list[list[int]]:
        return torch.randint(0, vocab, (n, k), generator=g).tolist()

    return Dataset.from_dict(
        {
            "prompt_ids": ids(prompt_tokens),
            "chosen_ids": ids(completion_tokens),
            "rejected_ids": ids(completion_tokens),
        }
    )


def _pretokenized_trainer_class():
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """DPOTrainer fed token ids directly: the random pairs have no text to tokenise."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):  # noqa: ANN001
            return dataset

    return PretokenizedDPOTrainer


def measure(
    cfg: Any,
    *,
    precompute: bool,
    steps: int,
    warmup: int,
    prompt_tokens: int,
    completion_tokens: int,
    vocab: int,
) -> dict[str, Any]:
    """Train ``warmup + steps`` optimizer steps; time the last ``steps``."""
    import torch
    from transformers.trainer_utils import SaveStrategy

    from idfu_lab.generation import models
    from idfu_lab.training import dpo as train
    from idfu_lab.training import memory

    cuda = torch.cuda.is_available()
    dpo = dataclasses.replace(
        cfg.dpo,
        max_steps=warmup + steps,
        precompute_ref_log_probs=precompute,
        logging_steps=1,
        save_steps=10**9,
    )
    precision = train.training_precision(cfg.model)
    per_step = dpo.per_device_train_batch_size * dpo.gradient_accumulation_steps
    n_pairs = (warmup + steps) * per_step
    dataset = random_pairs(n_pairs, prompt_tokens, completion_tokens, vocab)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    tokenizer = models.load_tokenizer(cfg.model)
    t_load = time.perf_counter()
    model = models.load_model(cfg.model, for_training=True)
    load_s = time.perf_counter() - t_load
    out_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "idfu-train-throughput"
    timer = memory.step_timer(cuda)
    t_init = time.perf_counter()
    # the project's trainer (LoRA kept fp32, the study's dtypes), fed token ids
    trainer = train.build_trainer(
        dataclasses.replace(cfg, dpo=dataclasses.replace(dpo, report_to=[])),
        None,
        output_dir=out_dir,
        seed=0,
        precision=precision,
        model=model,
        tokenizer=tokenizer,
        dataset=dataset,
        trainer_cls=_pretokenized_trainer_class(),
        callbacks=[timer],
        progress=False,
    )
    trainer.args.save_strategy = SaveStrategy.NO
    init_s = time.perf_counter() - t_init  # includes the reference pass when precomputing
    trainer.train()
    times = timer.step_times()[warmup:]
    step_s = statistics.median(times)
    tokens_per_step = per_step * 2 * (prompt_tokens + completion_tokens)  # chosen and rejected sequences
    result = {
        "precompute_ref_log_probs": precompute,
        "optimizer_steps_timed": len(times),
        "step_seconds_median": step_s,
        "step_seconds_all": times,
        "tokens_per_second": tokens_per_step / step_s,
        "pairs_per_second": per_step / step_s,
        "model_load_seconds": load_s,
        "trainer_init_seconds": init_s,
        "peak_allocated_bytes": int(torch.cuda.max_memory_allocated()) if cuda else None,
        "peak_reserved_bytes": int(torch.cuda.max_memory_reserved()) if cuda else None,
        "final_loss": next((r["loss"] for r in reversed(trainer.state.log_history) if "loss" in r), None),
    }
    precompute_per_pair = init_s / n_pairs if precompute else 0.0
    result["projected_hours_per_seed"] = (STUDY_STEPS * step_s + STUDY_PAIRS * precompute_per_pair) / 3600
    del trainer, model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=8, help="optimizer steps timed (after the warm-up)")
    p.add_argument("--warmup", type=int, default=2, help="optimizer steps run first and not timed")
    p.add_argument(
        "--prompt-tokens", type=int, default=512, help="prompt length (the study's max_prompt_length)"
    )
    p.add_argument(
        "--completion-tokens",
        type=int,
        default=1536,
        help="length of each reply (default: fills max_length 2048)",
    )
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train_throughput.json")
    p.add_argument(
        "--model-dir", type=Path, help="where the random checkpoint is kept (default: the idfu-lab cache)"
    )
    p.add_argument(
        "--smoke", action="store_true", help="tiny shape, CPU allowed: checks the script, not the GPU"
    )
    args = p.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.smoke:
        print("skipped: no CUDA (this benchmark measures DPO training on a GPU; nothing was run)")
        return 0

    from idfu_lab.config import load_config
    from idfu_lab.generation import models
    from idfu_lab.training import dpo as train
    from idfu_lab.training import memory

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.smoke:
        base = load_config("tiny")
        shape = memory.model_shape(base.model)
        shape = dataclasses.replace(shape, vocab_size=len(models.load_tokenizer(base.model)))
        label = "tiny-random"
    else:
        base = load_config("paper")
        shape = memory.QWEN25_CODER_3B
        label = "qwen2.5-coder-3b-random"
    model_dir = args.model_dir or models.cache_dir() / f"bench-{label}"
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    random_checkpoint(shape, model_dir)
    model_cfg = dataclasses.replace(base.model, name_or_path=str(model_dir))
    if args.smoke:
        model_cfg = dataclasses.replace(model_cfg, torch_dtype="float32")
    max_length = args.prompt_tokens + args.completion_tokens
    cfg = dataclasses.replace(base, model=model_cfg, dpo=dataclasses.replace(base.dpo, max_length=max_length))
    precision = train.training_precision(cfg.model)
    estimate = memory.check_cuda_memory(cfg, precision)

    runs = []
    for precompute in (False, True):
        r = measure(
            cfg,
            precompute=precompute,
            steps=args.steps,
            warmup=args.warmup,
            prompt_tokens=args.prompt_tokens,
            completion_tokens=args.completion_tokens,
            vocab=shape.vocab_size,
        )
        runs.append(r)
        peak = "-" if r["peak_allocated_bytes"] is None else f"{r['peak_allocated_bytes'] / 2**30:.2f} GiB"
        print(
            f"precompute_ref_log_probs={str(precompute):5s}  step {r['step_seconds_median']:.3f} s  "
            f"{r['tokens_per_second']:,.0f} tokens/s  peak {peak}  "
            f"-> {r['projected_hours_per_seed']:.2f} h per seed ({STUDY_STEPS} steps)"
        )
    print(
        f"study: {STUDY_HOURS[0]:.0f}-{STUDY_HOURS[1]:.0f} h per seed on an 8 GB RTX 4060 "
        f"(at these worst-case lengths the projection is an upper bound)"
    )
    report = {
        "benchmark": "train_throughput",
        "model": label,
        "shape": dataclasses.asdict(shape),
        "recipe": {"lora": dataclasses.asdict(cfg.lora), "dpo": dataclasses.asdict(cfg.dpo)},
        "prompt_tokens": args.prompt_tokens,
        "completion_tokens": args.completion_tokens,
        "precision": precision,
        "memory_estimate": estimate.as_dict() if estimate else memory.estimate_for_config(cfg).as_dict(),
        "runs": runs,
        "environment": {
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "packages": _versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
