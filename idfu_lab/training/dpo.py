"""DPO training with TRL and LoRA: the study's recipe as configuration, one seed per call.

One function, :func:`train_seed`, is what ``idfu-lab train``, notebook ``02_training`` and
``accelerate launch -m idfu_lab.training.launch`` all run. It reads the pairs notebook 01 kept
(``audit/train_pairs.jsonl``), trains a LoRA adapter with TRL's ``DPOTrainer`` and writes, per seed,
under ``seed-<s>/train/``::

    adapter/            LoRA weights (safetensors) and the tokenizer
    log_history.csv     the trainer's log: loss, rewards/chosen, rewards/rejected, margins, accuracies
    margins.jsonl       what training did to each pair: its implicit reward margin after training,
                        joined with the rejected side's outcome from the audit
    summary.json        pairs kept and filtered, steps, wall time, peak memory, precision, final metrics
    curves.png          the training curves (drawn by :mod:`idfu_lab.report.plots.training`)
    margins_by_category.png

Why these choices
-----------------
* **The recipe is the study's** (``configs/paper.yaml``): NF4 4-bit weights with bf16 compute,
  LoRA r 16 / alpha 32 / dropout 0.05 on the seven projections, beta 0.1, lr 5e-5, batch 1 x
  accumulation 4, 3 epochs, gradient checkpointing, max_length 2048. The reference model is the base
  with the adapter disabled (TRL does this when given a ``peft_config``): no second copy in memory.
* **Precision is chosen, not discovered**: :func:`idfu_lab.generation.models.device_and_precision` decides from
  ``torch.cuda.is_available()`` and the config (bitsandbytes loads 4-bit weights on some CPUs without
  an error, so an exception is never the signal). Without CUDA the very same code path trains in
  fp32. The choice is written to the seed's manifest.
* **max_prompt_length is ours to enforce**: TRL 1.x dropped the option. Prompts are tokenised here
  exactly as TRL will tokenise them (the chat template with a generation prompt); pairs whose prompt
  is longer than ``dpo.max_prompt_length`` are dropped, counted, logged and reported. (TRL 0.x, which
  the study used, truncated such prompts instead; dropping keeps every trained prompt intact and makes
  the difference visible.) Pairs whose prompt + completion exceed ``dpo.max_length`` are counted too:
  TRL truncates their completions.
* **Seeds decide everything random**: data order (``seed``/``data_seed``), the LoRA initialisation
  (TRL seeds before ``get_peft_model``) and dropout where it is in effect. On a CPU, the same seed
  gives bit-identical adapters (tested).
* **Dropout is a recipe key** (``dpo.disable_dropout``): TRL zeroes every dropout module after adding
  the adapter when it is true, LoRA's included. Every TRL 0.x release did so by default, and the study
  ran TRL 0.x (its recipe names ``max_prompt_length``, which only 0.x had), so the paper profile sets it
  true: LoRA's 0.05 was most likely never in effect. The dropout in effect is in ``summary.json``.
* **The study's numerics** (:func:`set_training_dtypes`, after TRL builds the trainer and before the
  optimizer exists): TRL 1.16 casts the trainable LoRA parameters of a 4-bit base to bf16, where AdamW's
  small updates round away (measured on the CPU rehearsal, two steps at lr 5e-5: about half of the
  elements unchanged, against none in fp32); they are put back in fp32, as TRL 0.x kept them. On a
  4-bit base the embeddings and LM head return to bf16 and the norms stay fp32 (``model.norm_dtype``),
  as TRL 0.x's ``peft_module_casting_to_bf16`` left them: the hidden states enter layer 0 in bf16 and
  the later layers in fp32, exactly as in the study's set-up (``summary.json``: ``numerics``).
* **Resumable**: a checkpoint every ``dpo.save_steps`` optimizer steps goes to
  ``train/checkpoints``; an interrupted run resumes from the last one (optimizer, scheduler and RNG
  states included). A finished seed (same config hash, same pairs file) is skipped unless ``force``.
* **Memory is checked before loading** on CUDA: :func:`idfu_lab.training.memory.estimate_training_memory`
  adds up, from first principles and with its assumptions stated, 4-bit weights, LoRA parameters,
  gradients, AdamW states, the activations at ``max_length`` (with or without checkpointing) and TRL's
  fused LM head; a card without room gets a clear error instead of an OOM an hour in.
* **Logs where researchers look**: ``dpo.report_to`` (TensorBoard under ``train/logs`` by default;
  wandb / mlflow where installed and configured), see :mod:`idfu_lab.training.logs`.

Seeds as independent jobs
-------------------------
Each seed is a separate invocation with no shared state except the run directory's layout, so seeds
run one after another on one GPU, in parallel on several, or as separate jobs on any scheduler::

    idfu-lab train --config configs/paper.yaml --seed 42
    idfu-lab train --config configs/paper.yaml --seed 123
    idfu-lab train --config configs/paper.yaml --seed 7

(e.g. a Slurm array: ``--seed ${SEEDS[$SLURM_ARRAY_TASK_ID]}``, all writing into the same
``--run-dir`` on a shared file system). ``idfu-lab train --config configs/paper.yaml
--estimate-memory`` prints the memory estimate for the recipe without a GPU, to pick a card.

More than one GPU
-----------------
The module is also an Accelerate entry point, so data-parallel training of one seed is::

    accelerate launch --config_file configs/accelerate/multi_gpu_ddp.yaml \\
        -m idfu_lab.training.launch --config configs/paper.yaml --seed 42
    accelerate launch --config_file configs/accelerate/deepspeed_zero2.yaml \\
        -m idfu_lab.training.launch --config configs/paper.yaml --seed 42

The effective batch is ``processes x per_device_train_batch_size x gradient_accumulation_steps``:
to keep the study's effective batch of 4 on 2 GPUs, override ``dpo.gradient_accumulation_steps=2``
(``--set dpo.gradient_accumulation_steps=2``). One process that sees several GPUs stops at start-up
with these instructions (:func:`idfu_lab.training.launch.launcher_problem`): the Trainer would wrap the
model in ``nn.DataParallel``, which TRL refuses. ZeRO-2 shards optimizer states and gradients only,
so every process holds the full (frozen) base and the per-pair margins are computed on the main
process after training; ZeRO-3 is not supported. DeepSpeed needs ``pip install deepspeed``.

ZeRO-2's numerics are not one GPU's (DeepSpeed 0.19's engine, read from its source): with bf16 it casts
every floating parameter of the module to bf16, the norms and the LoRA weights included, and keeps an
fp32 master copy of the trainable ones in its optimizer. So the adapter's updates are still applied in
fp32, but the forward uses bf16 LoRA weights (as autocast does on one GPU), the hidden states between
layers are bf16 (not fp32 as with the study's fp32 norms), and gradients are accumulated over the
micro-batches in bf16 (its ``grad_accum_dtype`` defaults to the model dtype) where one GPU accumulates
them in fp32. A ZeRO-2 run is a close variant of the recipe, not a reproduction of the study's numerics;
DDP (``multi_gpu_ddp.yaml``) keeps them.
``configs/accelerate/cpu_single.yaml`` runs the same entry point on one CPU process (what the
tests launch).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idfu_lab.config import Config, DPOSection, LoraSection, ModelConfig
from idfu_lab.errors import IdfuError
from idfu_lab.jsonl import iter_records
from idfu_lab.outcomes import UNKNOWN_OUTCOME, category_order
from idfu_lab.training.memory import PeakMemory, check_cuda_memory

logger = logging.getLogger(__name__)

#: Name of the resumable step in the seed's manifest.
STEP = "train"
#: Required fields of a training pair.
PAIR_FIELDS = ("id", "prompt", "chosen", "rejected")
#: Checkpoints kept on disk while training (the last one is the resume point).
SAVE_TOTAL_LIMIT = 2
#: Marker written next to the checkpoints, so a checkpoint is resumed only by the recipe that made it.
CHECKPOINT_MARKER = "idfu_checkpoint.json"


# --------------------------------------------------------------------------- paths and results


@dataclass(frozen=True)
class TrainPaths:
    """Every artefact of one seed's training (created through the run object)."""

    dir: Path
    adapter: Path
    checkpoints: Path
    log_history: Path
    margins: Path
    summary: Path
    curves: Path
    margins_figure: Path
    logs: Path

    @classmethod
    def for_run(cls, run: Any) -> TrainPaths:
        d = run.layout.train_dir(run.seed)
        d.mkdir(parents=True, exist_ok=True)
        return cls(
            dir=d,
            adapter=run.layout.adapter(run.seed),
            checkpoints=d / "checkpoints",
            log_history=d / "log_history.csv",
            margins=d / "margins.jsonl",
            summary=d / "summary.json",
            curves=d / "curves.png",
            margins_figure=d / "margins_by_category.png",
            logs=d / "logs",
        )

    def outputs(self) -> list[Path]:
        """What a finished step must still have on disk to count as done."""
        return [self.adapter, self.log_history, self.margins, self.summary]


@dataclass
class TrainResult:
    """What :func:`train_seed` did for one seed; ``summary`` is ``summary.json``'s content."""

    seed: int
    skipped: bool
    paths: TrainPaths
    summary: dict[str, Any]

    @property
    def adapter_dir(self) -> Path:
        return self.paths.adapter


# --------------------------------------------------------------------------- pairs


def read_train_pairs(path: str | Path) -> list[dict[str, Any]]:
    """The training pairs (JSONL), checked: every row has id/prompt/chosen/rejected, ids are unique."""
    p = Path(path)
    if not p.exists():
        raise IdfuError(
            f"{p}: no training pairs. Run notebook 01 (01_data_audit) or `idfu-lab audit --config ...` "
            "first: training reads the pairs that passed the audit."
        )
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for lineno, row in iter_records(p):
        missing = [k for k in PAIR_FIELDS if not isinstance(row.get(k), str | int) or row.get(k) == ""]
        if missing:
            raise IdfuError(f"{p}:{lineno}: pair lacks '{missing[0]}' (required: {', '.join(PAIR_FIELDS)})")
        for k in ("prompt", "chosen", "rejected"):
            if not isinstance(row[k], str):
                raise IdfuError(f"{p}:{lineno}: '{k}' must be a string")
        row["id"] = str(row["id"])
        if row["id"] in seen:
            raise IdfuError(
                f"{p}:{lineno}: duplicate pair id '{row['id']}' (first on line {seen[row['id']]})"
            )
        seen[row["id"]] = lineno
        rows.append(row)
    if not rows:
        raise IdfuError(f"{p}: holds no pairs; the audit kept none, so there is nothing to train on")
    return rows


def to_trl_example(pair: dict[str, Any], *, chat: bool) -> dict[str, Any]:
    """A pair in TRL's format: conversational for chat models, plain strings otherwise.

    Conversational: the prompt is one user turn and each reply one assistant turn, so TRL renders
    them through the tokenizer's chat template exactly as generation does (``idfu_lab.generation.prompts``).
    """
    if chat:
        return {
            "prompt": [{"role": "user", "content": pair["prompt"]}],
            "chosen": [{"role": "assistant", "content": pair["chosen"]}],
            "rejected": [{"role": "assistant", "content": pair["rejected"]}],
        }
    return {"prompt": pair["prompt"], "chosen": pair["chosen"], "rejected": pair["rejected"]}


def _ids(
    tokenizer: Any, value: str | list[dict[str, str]], *, add_generation_prompt: bool = False
) -> list[int]:
    """Token ids as TRL 1.x computes them (``trl.data_utils._tokenize``)."""
    if isinstance(value, list):
        out = tokenizer.apply_chat_template(
            value, tokenize=True, return_dict=True, add_generation_prompt=add_generation_prompt
        )
        return list(out["input_ids"])
    return list(tokenizer(text=value)["input_ids"])


def token_lengths(pair: dict[str, Any], tokenizer: Any, *, chat: bool) -> dict[str, int]:
    """Prompt and full-sequence lengths of one pair, tokenised the way TRL's DPOTrainer will.

    TRL adds the EOS token to plain-text completions and renders conversational ones with the chat
    template; the prompt alone gets the generation prompt (``<|im_start|>assistant``).
    """
    ex = to_trl_example(pair, chat=chat)
    if chat:
        prompt = _ids(tokenizer, ex["prompt"], add_generation_prompt=True)
        full_c = _ids(tokenizer, ex["prompt"] + ex["chosen"])
        full_r = _ids(tokenizer, ex["prompt"] + ex["rejected"])
    else:
        eos = tokenizer.eos_token or ""
        c = ex["chosen"] if ex["chosen"].endswith(eos) else ex["chosen"] + eos
        r = ex["rejected"] if ex["rejected"].endswith(eos) else ex["rejected"] + eos
        prompt = _ids(tokenizer, ex["prompt"])
        full_c = _ids(tokenizer, ex["prompt"] + c)
        full_r = _ids(tokenizer, ex["prompt"] + r)
    return {
        "prompt_tokens": len(prompt),
        "chosen_tokens": len(full_c) - len(prompt),
        "rejected_tokens": len(full_r) - len(prompt),
        "chosen_sequence_tokens": len(full_c),
        "rejected_sequence_tokens": len(full_r),
    }


@dataclass
class PairFilter:
    """The result of enforcing ``max_prompt_length`` (and measuring ``max_length``) before training."""

    max_prompt_length: int
    max_length: int
    kept: list[dict[str, Any]]
    dropped: list[dict[str, Any]]
    n_over_max_length: int
    prompt_tokens_max: int
    prompt_tokens_mean: float

    @property
    def n_in(self) -> int:
        return len(self.kept) + len(self.dropped)

    @property
    def n_filtered(self) -> int:
        return len(self.dropped)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_pairs_in": self.n_in,
            "n_kept": len(self.kept),
            "n_filtered_prompt_too_long": self.n_filtered,
            "filtered_ids": [d["id"] for d in self.dropped],
            "n_over_max_length": self.n_over_max_length,
            "max_prompt_length": self.max_prompt_length,
            "max_length": self.max_length,
            "prompt_tokens_max": self.prompt_tokens_max,
            "prompt_tokens_mean": self.prompt_tokens_mean,
        }


def filter_pairs(
    pairs: Sequence[dict[str, Any]], tokenizer: Any, *, chat: bool, max_prompt_length: int, max_length: int
) -> PairFilter:
    """Drop pairs whose prompt is longer than ``max_prompt_length`` tokens; count those over ``max_length``.

    TRL 1.x has no ``max_prompt_length``; the study's 512 is enforced here. Each kept pair gains its
    token lengths (``prompt_tokens``, ``chosen_tokens``, ...), which ``margins.jsonl`` reports.
    """
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    over = 0
    lengths: list[int] = []
    for pair in pairs:
        n = token_lengths(pair, tokenizer, chat=chat)
        lengths.append(n["prompt_tokens"])
        row = {**pair, **n}
        if n["prompt_tokens"] > max_prompt_length:
            dropped.append(row)
            continue
        row["truncated"] = max(n["chosen_sequence_tokens"], n["rejected_sequence_tokens"]) > max_length
        over += int(row["truncated"])
        kept.append(row)
    result = PairFilter(
        max_prompt_length=max_prompt_length,
        max_length=max_length,
        kept=kept,
        dropped=dropped,
        n_over_max_length=over,
        prompt_tokens_max=max(lengths, default=0),
        prompt_tokens_mean=(sum(lengths) / len(lengths)) if lengths else 0.0,
    )
    if dropped:
        logger.warning(
            "%d of %d pairs dropped: prompt longer than max_prompt_length=%d tokens (%s)",
            len(dropped),
            len(pairs),
            max_prompt_length,
            ", ".join(d["id"] for d in dropped[:10]) + (" ..." if len(dropped) > 10 else ""),
        )
    if over:
        logger.warning(
            "%d kept pairs exceed max_length=%d tokens: TRL truncates their completions", over, max_length
        )
    logger.info("%d pairs kept for training (max prompt %d tokens)", len(kept), result.prompt_tokens_max)
    return result


# --------------------------------------------------------------------------- configs for PEFT and TRL


def training_precision(model_cfg: ModelConfig, *, cpu_quantised: bool = False) -> dict[str, Any]:
    """Device, quantisation and mixed precision for training, from the config and the machine.

    Extends :func:`idfu_lab.generation.models.device_and_precision` with the trainer's flags: bf16/fp16 mixed
    precision only on CUDA; on a CPU ``use_cpu`` and fp32 (TRL's DPOConfig defaults to bf16=True,
    which a CPU run must switch off). A GPU without bf16 (older than Ampere) gets a clear error rather
    than a silent switch to fp16: that would be another recipe. ``cpu_quantised`` is the CPU rehearsal
    of the GPU path (NF4 base, bf16 autocast on the CPU), for tests and ``gpu_check --dry-run``.
    """
    from idfu_lab.generation.models import device_and_precision

    choice = dict(device_and_precision(model_cfg, cpu_quantised=cpu_quantised))
    cuda = choice["device"] == "cuda"
    compute = choice["bnb_4bit_compute_dtype"] if choice["load_in_4bit"] else choice["torch_dtype"]
    if cuda and compute == "bfloat16":
        import torch

        if not torch.cuda.is_bf16_supported():
            key = "model.bnb_4bit_compute_dtype" if choice["load_in_4bit"] else "model.torch_dtype"
            raise IdfuError(
                f"{choice['device_name']} has no bfloat16 support (it needs an Ampere or newer GPU); the recipe "
                f"asks for bf16 compute. Set {key}: float16 (and record that the recipe differs from the study's)"
            )
    return _trainer_flags(choice)


def _trainer_flags(choice: dict[str, Any]) -> dict[str, Any]:
    """The mixed-precision flags of a device/precision choice (pure; shared with the plan)."""
    choice = dict(choice)
    cuda = choice["device"] == "cuda"
    rehearsal = not cuda and choice["load_in_4bit"]
    compute = choice["bnb_4bit_compute_dtype"] if choice["load_in_4bit"] else choice["torch_dtype"]
    mixed = cuda or rehearsal
    choice["bf16"] = bool(mixed and compute == "bfloat16")
    choice["fp16"] = bool(cuda and compute == "float16")
    choice["use_cpu"] = not cuda
    choice["compute_dtype"] = compute if mixed else "float32"
    return choice


# --------------------------------------------------------------------------- numerics


#: Where TRL 0.x put each kind of parameter of a 4-bit base before training (``peft_module_casting_to_bf16``
#: after ``prepare_model_for_kbit_training`` and ``get_peft_model``, TRL 0.9-0.19): norms fp32, the
#: embeddings and the (tied) LM head in the compute dtype, LoRA in fp32 (PEFT's default).
NORM_NAMES = ("norm",)
EMBEDDING_NAMES = ("lm_head", "embed_tokens", "wte", "wpe")


def hidden_state_dtypes(embedding_dtype: str, norm_dtype: str, *, quantised: bool) -> dict[str, str]:
    """The dtype flowing into decoder layer 0 and into the later ones (pure; a test checks it on the CPU path).

    The embedding's output enters layer 0. On a 4-bit base each RMSNorm returns ``weight * x``, so its
    output has the promoted dtype of its weight and its input; bitsandbytes' 4-bit layers compute in
    the compute dtype but hand back their *input's* dtype, so that dtype reaches the residual add and
    every later layer. With fp32 norms (the study's set-up) the residual stream is fp32 from layer 1 on.
    Without quantisation every linear layer returns the autocast dtype and the norms hold the weights' dtype.
    """
    import torch

    first = getattr(torch, embedding_dtype)
    rest = torch.promote_types(first, getattr(torch, norm_dtype)) if quantised else first
    return {"layer_0": str(first).removeprefix("torch."), "layers_1_on": str(rest).removeprefix("torch.")}


def set_training_dtypes(model: Any, model_cfg: ModelConfig, precision: dict[str, Any]) -> dict[str, Any]:
    """Put every parameter in the dtype the study's set-up had, after the trainer is built (before training).

    TRL 1.16 casts the trainable LoRA parameters of a 4-bit base to bf16 (``dpo_trainer.py``, "the PEFT
    adapter weights are converted to bf16"); with AdamW at the recipe's learning rate many bf16
    updates round to nothing (a LoRA value of 0.01 moves in steps of 2^-14, an update of 5e-5 does not
    reach half of it). TRL 0.x, which the study used, kept them fp32. Here:

    * trainable parameters -> fp32, always (autocast still runs their matmuls in bf16);
    * on a 4-bit base, what TRL 0.x's ``peft_module_casting_to_bf16`` did after PEFT's
      ``prepare_model_for_kbit_training`` had upcast everything unquantised to fp32: embeddings and the
      tied LM head back to the compute dtype, norms in ``model.norm_dtype`` (fp32 as TRL 0.x).

    Returns what was set and the dtypes of the hidden states (:func:`hidden_state_dtypes`).
    """
    import torch

    quantised = bool(precision.get("load_in_4bit"))
    compute = precision.get("compute_dtype") or "float32"
    norm_dtype = model_cfg.norm_dtype if quantised else None
    if quantised:
        for name, module in model.named_modules():
            leaf = name.rsplit(".", 1)[-1]
            if isinstance(module, torch.nn.LayerNorm) or any(k in leaf for k in NORM_NAMES):
                module.to(getattr(torch, norm_dtype))
            elif any(k in leaf for k in EMBEDDING_NAMES) and getattr(module, "weight", None) is not None:
                if module.weight.dtype == torch.float32:
                    module.to(getattr(torch, compute))
    upcast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.to(torch.float32)
            upcast += 1
    trainable = [p for p in model.parameters() if p.requires_grad]
    norms = [
        mod.weight.dtype
        for name, mod in model.named_modules()
        if any(k in name.rsplit(".", 1)[-1] for k in NORM_NAMES) and getattr(mod, "weight", None) is not None
    ]
    norm_dtype = str(norms[0]).removeprefix("torch.") if norms else norm_dtype
    embed = model.get_input_embeddings().weight.dtype
    embedding_dtype = str(embed).removeprefix("torch.")
    if not quantised and precision.get("bf16"):
        embedding_dtype = "bfloat16"  # autocast: the first linear layer already returns bf16
    if quantised:
        logger.info(
            "4-bit base: %d trainable tensors upcast to fp32 (TRL casts them to bf16); embeddings %s, norms %s",
            upcast,
            embedding_dtype,
            norm_dtype,
        )
    return {
        "trainable_parameters": sum(p.numel() for p in trainable),
        "trainable_dtypes": sorted({str(p.dtype).removeprefix("torch.") for p in trainable}),
        "upcast_to_fp32": upcast,
        "embedding_dtype": embedding_dtype,
        "norm_dtype": norm_dtype,
        "compute_dtype": compute,
        "hidden_states": hidden_state_dtypes(
            embedding_dtype, norm_dtype or embedding_dtype, quantised=quantised
        ),
    }


def dropout_in_effect(model: Any) -> dict[str, float]:
    """The ``p`` of every dropout module, grouped as LoRA's and the base model's (what the trainer will apply)."""
    import torch

    out: dict[str, float] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Dropout):
            key = "lora_dropout" if "lora_dropout" in name else "model_dropout"
            out[key] = max(out.get(key, 0.0), float(module.p))
    for attr in ("attention_dropout",):
        value = getattr(getattr(model, "config", None), attr, None)
        if value is not None:
            out[attr] = float(value)
    return out


def lora_config(lora: LoraSection) -> Any:
    """PEFT ``LoraConfig`` from the recipe's ``lora`` section."""
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=list(lora.target_modules),
        bias=lora.bias,
        task_type="CAUSAL_LM",
    )


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def dpo_config(
    dpo: DPOSection,
    *,
    output_dir: str | Path,
    seed: int,
    precision: dict[str, Any],
    progress: bool = True,
    report_to: Sequence[str] | None = None,
) -> Any:
    """TRL ``DPOConfig`` from the recipe's ``dpo`` section, the seed and the precision choice.

    ``report_to`` are the loggers :func:`idfu_lab.training.logs.resolve_report_to` found usable;
    TensorBoard is attached by :func:`build_trainer` itself (its folder is the seed's, not the
    checkpoints'), so only the others reach TRL. Publishing is done after training, by
    :mod:`idfu_lab.training.publish`, never by the trainer at each checkpoint.
    """
    from trl import DPOConfig

    names = _field_names(DPOConfig)
    kwargs: dict[str, Any] = {
        "output_dir": str(output_dir),
        "seed": seed,
        "data_seed": seed,
        "beta": dpo.beta,
        "loss_type": [t.strip() for t in dpo.loss_type.split(",") if t.strip()],
        "learning_rate": dpo.learning_rate,
        "lr_scheduler_type": dpo.lr_scheduler_type,
        "per_device_train_batch_size": dpo.per_device_train_batch_size,
        "gradient_accumulation_steps": dpo.gradient_accumulation_steps,
        "num_train_epochs": dpo.num_train_epochs,
        "max_steps": dpo.max_steps,
        "max_length": dpo.max_length,
        "precompute_ref_log_probs": dpo.precompute_ref_log_probs,
        "optim": dpo.optim,
        "weight_decay": dpo.weight_decay,
        "max_grad_norm": dpo.max_grad_norm,
        "logging_steps": dpo.logging_steps,
        "logging_first_step": True,
        "save_strategy": "steps",
        "save_steps": dpo.save_steps,
        "save_total_limit": SAVE_TOTAL_LIMIT,
        "bf16": precision["bf16"],
        "fp16": precision["fp16"],
        "use_cpu": precision["use_cpu"],
        # TRL zeroes every nn.Dropout after adding the adapter, LoRA's included, when this is True
        # (as every TRL 0.x release did by default): an explicit recipe key, see configs/paper.yaml
        "disable_dropout": dpo.disable_dropout,
        "report_to": [r for r in (report_to or []) if r != "tensorboard"] or "none",
        "disable_tqdm": not progress,
        "dataloader_num_workers": 0,
        # every LoRA parameter receives a gradient in every step: DDP need not search for unused ones
        "ddp_find_unused_parameters": False,
    }
    # transformers 5 renamed gradient_checkpointing -> activation_checkpointing and warmup_ratio -> warmup_steps
    if "activation_checkpointing" in names:
        kwargs["activation_checkpointing"] = dpo.gradient_checkpointing
    else:  # pragma: no cover - transformers 4.x
        kwargs["gradient_checkpointing"] = dpo.gradient_checkpointing
    if "warmup_ratio" in names:  # pragma: no cover - transformers 4.x
        kwargs["warmup_ratio"] = dpo.warmup_ratio
    else:
        kwargs["warmup_steps"] = dpo.warmup_ratio
    return DPOConfig(**kwargs)


# --------------------------------------------------------------------------- trainer


def build_trainer(
    cfg: Config,
    pairs: Sequence[dict[str, Any]] | None,
    *,
    output_dir: str | Path,
    seed: int,
    precision: dict[str, Any],
    model: Any = None,
    tokenizer: Any = None,
    callbacks: Sequence[Any] | None = None,
    progress: bool = True,
    logs_dir: str | Path | None = None,
    dataset: Any = None,
    trainer_cls: type | None = None,
) -> Any:
    """A TRL ``DPOTrainer`` for the (already filtered) pairs: LoRA on the base, the reference = adapter off.

    After TRL has built it, :func:`set_training_dtypes` puts the parameters in the study's dtypes
    (trainable LoRA in fp32, TRL 0.x's casting on a 4-bit base) before any optimizer exists; what was
    set is ``trainer.idfu_numerics`` and the dropout in effect ``trainer.idfu_dropout``. ``logs_dir``
    receives the TensorBoard log where the recipe's ``dpo.report_to`` asks for it. ``dataset`` (already
    tokenised, with ``trainer_cls`` that accepts it) replaces ``pairs`` in the benchmarks.
    """
    _quiet_bitsandbytes()
    from trl import DPOTrainer

    from idfu_lab.generation import models
    from idfu_lab.runs import seed_everything
    from idfu_lab.training.logs import resolve_report_to, tensorboard_callback

    if tokenizer is None:
        tokenizer = models.load_tokenizer(cfg.model)
    seed_everything(seed)
    if model is None:
        model = models.load_model(
            cfg.model,
            for_training=True,
            gradient_checkpointing=cfg.dpo.gradient_checkpointing,
            precision=precision,
        )
    check_architecture(cfg.model, model.config)
    if dataset is None:
        from datasets import Dataset

        examples = [{"id": p["id"], **to_trl_example(p, chat=cfg.model.chat)} for p in pairs or []]
        dataset = Dataset.from_list(examples)
    loggers = resolve_report_to(cfg.dpo.report_to, logs_dir)
    args = dpo_config(
        cfg.dpo, output_dir=output_dir, seed=seed, precision=precision, progress=progress, report_to=loggers
    )
    extra = list(callbacks or [])
    if "tensorboard" in loggers and logs_dir is not None:
        extra.append(tensorboard_callback(logs_dir))
    with _datasets_progress(progress):
        trainer = (trainer_cls or DPOTrainer)(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora_config(cfg.lora),
            callbacks=extra,
        )
    trainer.idfu_numerics = set_training_dtypes(trainer.model, cfg.model, precision)
    trainer.idfu_dropout = dropout_in_effect(trainer.model)
    trainer.idfu_report_to = loggers
    if not progress:  # with tqdm off, transformers prints every log dict instead; the log history keeps them
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return trainer


def check_architecture(model_cfg: ModelConfig, hf_config: Any) -> None:
    """Raise when the loaded model is not the one ``model.architecture`` describes (the plan's model)."""
    arch = model_cfg.architecture
    if arch is None:
        return
    text = hf_config.get_text_config() if hasattr(hf_config, "get_text_config") else hf_config
    for f in dataclasses.fields(arch):
        want = getattr(arch, f.name)
        have = getattr(text, f.name, None)
        if f.name == "rope_theta" and have is None:
            have = (getattr(text, "rope_parameters", None) or {}).get("rope_theta")
        if have is None:
            continue
        same = (
            abs(float(have) - float(want)) <= 1e-9 * max(1.0, abs(float(want)))
            if isinstance(want, float)
            else have == want
        )
        if not same:
            raise IdfuError(
                f"{model_cfg.name_or_path}: its config has {f.name}={have!r} but the recipe's model.architecture "
                f"says {want!r} ({model_cfg.name_or_path!r} is not the model the recipe was planned for)"
            )


def _quiet_bitsandbytes() -> None:
    """bitsandbytes logs a harmless kernel warning on CPUs; it says nothing about this run."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


class _datasets_progress:
    """Silence the datasets library's progress bars inside the block when ``progress`` is False."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self.was_enabled = True

    def __enter__(self) -> None:
        import datasets

        self.was_enabled = datasets.is_progress_bar_enabled()
        if not self.progress:
            datasets.disable_progress_bars()

    def __exit__(self, *exc: Any) -> None:
        import datasets

        if self.was_enabled:
            datasets.enable_progress_bars()


def _completion_logps(model: Any, batch: dict[str, Any]) -> Any:
    """Summed log-probability of each sequence's completion tokens, as TRL's loss computes it."""
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        labels=labels,
        fused_lm_head=True,
        use_cache=False,
    )
    return out.log_probs.float().sum(dim=1)


def compute_margins(trainer: Any, beta: float, *, batch_size: int = 4) -> list[dict[str, Any]]:
    """Implicit reward margin of every training pair after training.

    ``margin = beta * ((log πθ(c) − log πref(c)) − (log πθ(r) − log πref(r)))`` with πθ the trained
    adapter and πref the same model with the adapter disabled (exactly TRL's reference), on the
    sequences TRL trained on (same tokenisation, same truncation). Dropout is off (eval mode).
    """
    import torch

    model = trainer.accelerator.unwrap_model(trainer.model)
    dataset = trainer.train_dataset
    ids = dataset["id"] if "id" in dataset.column_names else [str(i) for i in range(len(dataset))]
    columns = dataset.select_columns(["prompt_ids", "chosen_ids", "rejected_ids"])
    device = trainer.accelerator.device
    was_training = model.training
    model.eval()
    rows: list[dict[str, Any]] = []
    try:
        with torch.no_grad(), trainer.accelerator.autocast():
            for start in range(0, len(columns), batch_size):
                examples = [columns[i] for i in range(start, min(start + batch_size, len(columns)))]
                batch = trainer.data_collator(examples)
                batch = {k: v.to(device) for k, v in batch.items() if hasattr(v, "to")}
                policy = _completion_logps(model, batch)
                with model.disable_adapter():
                    ref = _completion_logps(model, batch)
                pc, pr = policy.chunk(2)
                rc, rr = ref.chunk(2)
                for j in range(len(examples)):
                    reward_c = beta * (pc[j] - rc[j]).item()
                    reward_r = beta * (pr[j] - rr[j]).item()
                    rows.append(
                        {
                            "id": ids[start + j],
                            "policy_chosen_logp": pc[j].item(),
                            "policy_rejected_logp": pr[j].item(),
                            "ref_chosen_logp": rc[j].item(),
                            "ref_rejected_logp": rr[j].item(),
                            "reward_chosen": reward_c,
                            "reward_rejected": reward_r,
                            "margin": reward_c - reward_r,
                        }
                    )
    finally:
        model.train(was_training)
    return rows


def _join_margins(margins: list[dict[str, Any]], pairs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add what the audit knows about each pair (its rejected side's outcome and phase) to its margin."""
    by_id = {p["id"]: p for p in pairs}
    out = []
    for m in margins:
        p = by_id[m["id"]]
        out.append(
            {
                "id": m["id"],
                "problem_id": p.get("problem_id"),
                "chosen_outcome": p.get("chosen_outcome"),
                "rejected_outcome": p.get("rejected_outcome") or UNKNOWN_OUTCOME,
                "rejected_phase": p.get("rejected_phase"),
                **{k: v for k, v in m.items() if k != "id"},
                "prompt_tokens": p.get("prompt_tokens"),
                "chosen_tokens": p.get("chosen_tokens"),
                "rejected_tokens": p.get("rejected_tokens"),
                "truncated": p.get("truncated"),
            }
        )
    return out


# --------------------------------------------------------------------------- resumability


def _checkpoint_identity(run: Any, pairs_sha: str) -> dict[str, Any]:
    return {"config_hash": run.config_hash, "pairs_sha256": pairs_sha, "seed": run.seed}


def _resume_point(paths: TrainPaths, identity: dict[str, Any]) -> str | None:
    """The last checkpoint made by this recipe on these pairs; stale checkpoints are discarded."""
    from transformers.trainer_utils import get_last_checkpoint

    if not paths.checkpoints.is_dir():
        return None
    marker = paths.checkpoints / CHECKPOINT_MARKER
    try:
        same = json.loads(marker.read_text()) == identity
    except (FileNotFoundError, json.JSONDecodeError):
        same = False
    if not same:
        logger.warning(
            "discarding checkpoints in %s: made by another recipe or pairs file", paths.checkpoints
        )
        shutil.rmtree(paths.checkpoints, ignore_errors=True)
        return None
    last = get_last_checkpoint(str(paths.checkpoints))
    if last is not None and not (Path(last) / "trainer_state.json").exists():
        logger.warning("ignoring incomplete checkpoint %s", last)
        shutil.rmtree(last, ignore_errors=True)
        last = get_last_checkpoint(str(paths.checkpoints))
    return last


def _clear_outputs(paths: TrainPaths) -> None:
    for p in (paths.adapter, paths.checkpoints, paths.logs):
        shutil.rmtree(p, ignore_errors=True)
    for p in (paths.log_history, paths.margins, paths.summary, paths.curves, paths.margins_figure):
        p.unlink(missing_ok=True)


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


# --------------------------------------------------------------------------- the step


def _final_metrics(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    steps = [r for r in log_history if "loss" in r]
    last = steps[-1] if steps else {}
    first = steps[0] if steps else {}
    return {
        "first_loss": first.get("loss"),
        "final_loss": last.get("loss"),
        "final_reward_accuracy": last.get("rewards/accuracies"),
        "final_reward_margin": last.get("rewards/margins"),
        "final_rewards_chosen": last.get("rewards/chosen"),
        "final_rewards_rejected": last.get("rewards/rejected"),
    }


def train_seed(
    run: Any, *, force: bool = False, progress: bool = True, callbacks: Sequence[Any] | None = None
) -> TrainResult:
    """Train (or resume, or skip) the LoRA adapter of ``run.seed`` and write every per-seed artefact.

    ``run`` is an :class:`idfu_lab.runs.Run` opened with a seed. A seed already trained with the same
    config hash and the same pairs file is skipped unless ``force`` (which also discards checkpoints).
    ``callbacks`` are extra ``transformers.TrainerCallback`` objects (tests use one to interrupt).
    """
    _quiet_bitsandbytes()
    from transformers import set_seed

    from idfu_lab.generation import models
    from idfu_lab.runs import file_sha256

    if run.seed is None:
        raise IdfuError("training needs a seed: open the run with runs.open(config, seed=...)")
    cfg: Config = run.config
    paths = TrainPaths.for_run(run)
    pairs_path = run.layout.train_pairs
    if not pairs_path.exists():
        raise IdfuError(
            f"{pairs_path}: no training pairs. Run notebook 01 (01_data_audit) or `idfu-lab audit --config "
            f"{cfg.source or '...'}` first: training reads the pairs that passed the audit."
        )
    pairs_sha = file_sha256(pairs_path)
    main = _is_main_process()

    inputs = run.input_hashes([pairs_path])
    if not force and run.is_done(STEP, inputs):
        logger.info("seed %s already trained for this recipe and these pairs: skipped", run.seed)
        return TrainResult(run.seed, True, paths, json.loads(paths.summary.read_text()))
    if force and main:
        _clear_outputs(paths)
        run.forget(STEP)

    t0 = time.perf_counter()
    from idfu_lab.training.launch import check_launcher

    check_launcher(cfg.source or "configs/paper.yaml")  # several GPUs and one process: say how to run
    pairs = read_train_pairs(pairs_path)
    precision = training_precision(cfg.model)
    estimate = check_cuda_memory(cfg, precision)
    tokenizer = models.load_tokenizer(cfg.model)
    report = filter_pairs(
        pairs,
        tokenizer,
        chat=cfg.model.chat,
        max_prompt_length=cfg.dpo.max_prompt_length,
        max_length=cfg.dpo.max_length,
    )
    if not report.kept:
        raise IdfuError(
            f"{pairs_path}: every pair's prompt is longer than dpo.max_prompt_length={cfg.dpo.max_prompt_length} tokens"
        )
    if main:
        run.update_manifest(
            training={
                "precision": precision,
                "memory_estimate": estimate.as_dict() if estimate else None,
                "pairs_sha256": pairs_sha,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )

    identity = _checkpoint_identity(run, pairs_sha)
    resume = _resume_point(paths, identity) if main else None
    if main:
        paths.checkpoints.mkdir(parents=True, exist_ok=True)
        (paths.checkpoints / CHECKPOINT_MARKER).write_text(json.dumps(identity))
    if resume is not None:
        logger.info("resuming seed %s from %s", run.seed, resume)
    set_seed(run.seed)
    trainer = build_trainer(
        cfg,
        report.kept,
        output_dir=paths.checkpoints,
        seed=run.seed,
        precision=precision,
        tokenizer=tokenizer,
        callbacks=callbacks,
        progress=progress,
        logs_dir=paths.logs,
    )
    if not main:  # other ranks find the checkpoint the main rank chose
        resume = _resume_point_readonly(paths)
    with PeakMemory() as peak, _cpu_threads(cfg.model, precision):
        t_train = time.perf_counter()
        output = trainer.train(resume_from_checkpoint=resume)
        train_seconds = time.perf_counter() - t_train

    summary: dict[str, Any] = {}
    trainer.save_model(str(paths.adapter))  # every rank calls it (DeepSpeed); only the main one writes
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(paths.adapter))
        import pandas as pd

        history = trainer.state.log_history
        pd.DataFrame(history).to_csv(paths.log_history, index=False)
        with _cpu_threads(cfg.model, precision):
            raw_margins = compute_margins(
                trainer, cfg.dpo.beta, batch_size=4 if precision["device"] == "cuda" else 32
            )
        margins = _join_margins(raw_margins, report.kept)
        with paths.margins.open("w", encoding="utf-8") as fh:
            for row in margins:
                fh.write(json.dumps(row) + "\n")
        n_m = len(margins)
        summary = {
            "seed": run.seed,
            "config_hash": run.config_hash,
            "pairs_file": str(pairs_path),
            "pairs_sha256": pairs_sha,
            **report.as_dict(),
            "n_train": len(report.kept),
            "global_steps": trainer.state.global_step,
            "max_steps": trainer.state.max_steps,
            "epochs": trainer.state.epoch,
            "resumed_from": Path(resume).name if resume else None,
            "wall_time_s": time.perf_counter() - t0,
            "train_time_s": train_seconds,
            "train_runtime_s": output.metrics.get("train_runtime"),
            "train_loss": output.metrics.get("train_loss"),
            "peak_rss_bytes": peak.peak_rss,
            "peak_cuda_bytes": peak.peak_cuda,
            "memory_estimate": estimate.as_dict() if estimate else None,
            "precision": precision,
            "numerics": trainer.idfu_numerics,
            "dropout": trainer.idfu_dropout,
            "report_to": trainer.idfu_report_to,
            "logs_dir": str(paths.logs) if "tensorboard" in trainer.idfu_report_to else None,
            "beta": cfg.dpo.beta,
            **_final_metrics(history),
            "mean_margin": sum(m["margin"] for m in margins) / n_m,
            "share_margin_positive": sum(m["margin"] > 0 for m in margins) / n_m,
        }
        paths.summary.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        shutil.rmtree(paths.checkpoints, ignore_errors=True)
        run.update_manifest(
            training={
                "precision": precision,
                "memory_estimate": summary["memory_estimate"],
                "pairs_sha256": pairs_sha,
                "wall_time_s": summary["wall_time_s"],
                "peak_rss_bytes": peak.peak_rss,
                "peak_cuda_bytes": peak.peak_cuda,
                "global_steps": summary["global_steps"],
                "resumed_from": summary["resumed_from"],
            }
        )
        run.mark_done(STEP, paths.outputs(), inputs=inputs, pairs_sha256=pairs_sha)
        from idfu_lab.training.publish import publish_seed

        # the model card always; the Hub where the recipe asks and it is reachable
        published = publish_seed(run)
        # paths as the run names them, so the manifest (and the book) hold no machine's folders
        published = {
            k: run.layout.relative(v) if isinstance(v, str | Path) and Path(v).is_absolute() else v
            for k, v in published.items()
        }
        run.update_manifest(published=published)
        logger.info(
            "seed %s trained: %d steps in %.1f s, final loss %s, mean margin %.4f",
            run.seed,
            summary["global_steps"],
            summary["wall_time_s"],
            summary["final_loss"],
            summary["mean_margin"],
        )
    trainer.accelerator.wait_for_everyone()
    if not summary:
        summary = json.loads(paths.summary.read_text())
    return TrainResult(run.seed, False, paths, summary)


class _cpu_threads:
    """One intra-op thread while the tiny model trains on a CPU, restored afterwards.

    A 140k-parameter model gains nothing from splitting each matmul across threads, and spinning
    OpenMP threads slow it down by an order of magnitude on a machine whose cores are busy with
    something else (measured: 8 steps in 2.5 s with one thread, 9-50 s with two on a loaded 2-core
    machine). Real models, and every CUDA run, keep PyTorch's default.
    """

    def __init__(self, model_cfg: ModelConfig, precision: dict[str, Any]) -> None:
        self.active = model_cfg.name_or_path == "tiny" and precision["device"] == "cpu"
        self.previous = 0

    def __enter__(self) -> None:
        if self.active:
            import torch

            self.previous = torch.get_num_threads()
            torch.set_num_threads(1)

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            import torch

            torch.set_num_threads(self.previous)


def _resume_point_readonly(paths: TrainPaths) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not paths.checkpoints.is_dir():
        return None
    return get_last_checkpoint(str(paths.checkpoints))


# --------------------------------------------------------------------------- reading the artefacts


def load_summary(run: Any) -> dict[str, Any]:
    """``summary.json`` of the run's seed."""
    p = TrainPaths.for_run(run).summary
    if not p.exists():
        raise IdfuError(f"{p}: seed {run.seed} has not been trained (run notebook 02 or `idfu-lab train`)")
    return json.loads(p.read_text())


def load_log_history(run: Any):
    """The trainer's log history as a DataFrame: one row per logged optimizer step (the summary row dropped)."""
    import pandas as pd

    p = TrainPaths.for_run(run).log_history
    if not p.exists():
        raise IdfuError(f"{p}: seed {run.seed} has not been trained (run notebook 02 or `idfu-lab train`)")
    df = pd.read_csv(p)
    if "loss" in df.columns:
        df = df[df["loss"].notna()].reset_index(drop=True)
    return df


def load_margins(run: Any):
    """``margins.jsonl`` of the run's seed as a DataFrame (one row per training pair)."""
    import pandas as pd

    p = TrainPaths.for_run(run).margins
    if not p.exists():
        raise IdfuError(f"{p}: seed {run.seed} has not been trained (run notebook 02 or `idfu-lab train`)")
    return pd.read_json(p, lines=True, dtype={"id": str})


def margins_by_category(margins: Any):
    """Per failure category of the rejected side: pairs, mean / median margin, share of positive margins.

    Answers "which failure types did DPO push down most?": a larger margin means the trained model
    moved further from the rejected reply (relative to the chosen one) than the base did.
    """
    import pandas as pd

    df = margins.copy()
    df["rejected_outcome"] = df["rejected_outcome"].fillna(UNKNOWN_OUTCOME).astype(str)
    g = df.groupby("rejected_outcome")["margin"]
    table = pd.DataFrame(
        {
            "pairs": g.size(),
            "mean_margin": g.mean(),
            "median_margin": g.median(),
            "std_margin": g.std(ddof=1),
            "share_positive": g.apply(lambda s: float((s > 0).mean())),
        }
    )
    table = table.loc[category_order(table.index, only_present=True)]
    table.index.name = "rejected_outcome"
    return table


# --------------------------------------------------------------------------- entry point
