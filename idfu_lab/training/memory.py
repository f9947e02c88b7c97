"""GPU memory: the estimate for one DPO step of a recipe, checked before loading; the measured peak."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from idfu_lab.config import Config, ModelConfig
from idfu_lab.errors import IdfuError

logger = logging.getLogger(__name__)

GIB = 1024**3


@dataclass(frozen=True)
class ModelShape:
    """The few numbers of a Qwen2-style decoder that decide its training memory."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_dim(self) -> int:
        return self.head_dim * self.num_key_value_heads

    def projections(self) -> dict[str, tuple[int, int]]:
        """``(in_features, out_features)`` of each linear layer in one decoder layer."""
        h, kv, m = self.hidden_size, self.kv_dim, self.intermediate_size
        return {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, m),
            "up_proj": (h, m),
            "down_proj": (m, h),
        }

    def linear_parameters(self) -> int:
        """Weights of all decoder-layer projections (what 4-bit quantisation compresses)."""
        return self.num_hidden_layers * sum(i * o for i, o in self.projections().values())

    def other_parameters(self) -> int:
        """Embeddings, LM head (when untied), q/k/v biases and RMSNorm weights: kept unquantised."""
        h, L = self.hidden_size, self.num_hidden_layers
        embed = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        biases = L * (h + 2 * self.kv_dim)
        norms = L * 2 * h + h
        return embed + biases + norms

    def num_parameters(self) -> int:
        return self.linear_parameters() + self.other_parameters()

    def lora_parameters(self, r: int, target_modules: Sequence[str]) -> int:
        proj = self.projections()
        unknown = sorted(set(target_modules) - set(proj))
        if unknown:
            raise IdfuError(f"lora.target_modules: '{unknown[0]}' is not a projection of this model")
        return self.num_hidden_layers * sum(r * (proj[t][0] + proj[t][1]) for t in target_modules)

    @classmethod
    def from_hf_config(cls, cfg: Any) -> ModelShape:
        return cls(
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.num_hidden_layers,
            num_attention_heads=cfg.num_attention_heads,
            num_key_value_heads=getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads,
            intermediate_size=cfg.intermediate_size,
            vocab_size=cfg.vocab_size,
            tie_word_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)),
        )


#: Hub ids whose shape is known without fetching their config.
#: Qwen2.5-Coder-3B(-Instruct): the values of its config.json, written out so nothing is downloaded.
QWEN25_CODER_3B = ModelShape(
    hidden_size=2048,
    num_hidden_layers=36,
    num_attention_heads=16,
    num_key_value_heads=2,
    intermediate_size=11008,
    vocab_size=151936,
    tie_word_embeddings=True,
)


KNOWN_SHAPES = {
    "Qwen/Qwen2.5-Coder-3B-Instruct": QWEN25_CODER_3B,
    "Qwen/Qwen2.5-Coder-3B": QWEN25_CODER_3B,
}


#: CUDA context, cuBLAS workspaces and the allocator's slack, added to every estimate for a card
#: (``torch.cuda.max_memory_allocated`` does not see them).
CUDA_OVERHEAD_BYTES = 768 * 1024**2


#: Fragmentation margin on the tensors' sum (the caching allocator reserves more than it hands out).
FRAGMENTATION = 1.10

#: TRL's fused LM head (``trl.kernels.chunked_logprob``): tokens and vocabulary rows per tile.
HEAD_TOKEN_TILE = 4096
HEAD_VOCAB_TILE = 32768


_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes each part of a LoRA DPO step needs on the GPU (an estimate, on the safe side).

    ``tensors`` is what PyTorch's allocator hands out at the peak (comparable with
    ``torch.cuda.max_memory_allocated``); ``total`` adds fragmentation and the CUDA context, for
    choosing a card.
    """

    weights: int
    lora: int
    gradients: int
    optimizer: int
    activations: int
    lm_head: int
    overhead: int

    @property
    def tensors(self) -> int:
        return self.weights + self.lora + self.gradients + self.optimizer + self.activations + self.lm_head

    @property
    def total(self) -> int:
        return int(self.tensors * FRAGMENTATION) + self.overhead

    def as_dict(self) -> dict[str, int]:
        return {**dataclasses.asdict(self), "tensors": self.tensors, "total": self.total}

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v / GIB:.2f}" for k, v in dataclasses.asdict(self).items())
        return f"{self.total / GIB:.2f} GiB ({parts} GiB; x{FRAGMENTATION} for fragmentation)"


#: What the estimate assumes, in words (printed by ``--estimate-memory`` and ``--plan``).
ASSUMPTIONS = (
    "worst case: chosen and rejected both at max_length (DPO pads the pair to its longer side), "
    "batch x 2 sequences in one forward",
    "4-bit projections: NF4, half a byte per weight plus an fp32 scale per 64 weights (8-bit scales "
    "and an fp32 scale per 256 of them with double quantisation)",
    "the tied embedding / LM head in the compute dtype and norms in model.norm_dtype, as TRL 0.x "
    "left them (idfu_lab.training.dpo.set_training_dtypes); q/k/v biases fp32",
    "LoRA parameters, their gradients and AdamW's two states in fp32",
    "gradient checkpointing keeps each decoder layer's input (layer 0 in the compute dtype, the "
    "others in the residual dtype) and recomputes one layer at a time; without it every layer's "
    "tensors are kept",
    "per token, a layer keeps what autograd saves: two RMSNorm tensors per norm, q and k before "
    "and after the rotary embedding (and rotate_half's copy), q/k/v/output of attention in the compute "
    "dtype (a memory-efficient kernel: no score matrix), LoRA A's inputs in the compute dtype, the "
    "MLP's gate, SiLU(gate) and up outputs and down's input; bitsandbytes keeps no input of a frozen "
    "4-bit layer; with dropout p > 0 a dropped copy and a mask per adapter",
    "the backward of the recomputed layer holds about four MLP-wide gradients per token at once",
    "TRL's fused LM head: one tile of min(tokens, 4096) x min(vocab, 32768) in the compute dtype, the "
    "scored hidden states gathered (residual dtype), their compute-dtype copy and an fp32 gradient",
    "the reference pass (adapter disabled, no gradient) needs less than the training pass and is not added",
)


def estimate_training_memory(
    shape: ModelShape,
    *,
    load_in_4bit: bool,
    torch_dtype: str = "bfloat16",
    compute_dtype: str = "bfloat16",
    double_quant: bool = False,
    norm_dtype: str = "float32",
    lora_r: int = 16,
    target_modules: Sequence[str] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ),
    lora_dropout: float = 0.0,
    max_length: int = 2048,
    per_device_train_batch_size: int = 1,
    gradient_checkpointing: bool = True,
    overhead: int = CUDA_OVERHEAD_BYTES,
) -> MemoryEstimate:
    """GPU memory for one DPO training step with LoRA, from first principles (numbers in, bytes out).

    :data:`ASSUMPTIONS` lists what is counted. ``lora_dropout`` is the dropout *in effect* (0 when
    ``dpo.disable_dropout`` zeroes it). The per-token terms follow the tensors autograd keeps in a
    Qwen2 decoder layer under bf16 autocast on a 4-bit base; ``benchmarks/gpu_check.py`` compares the
    result with the measured peak (and ``--dry-run`` does so on a CPU at small sizes).
    """
    from idfu_lab.training.dpo import hidden_state_dtypes

    c = _DTYPE_BYTES[compute_dtype]
    if load_in_4bit:
        scale_bytes = (1 / 64 + 4 / (64 * 256)) if double_quant else 4 / 64
        h, L = shape.hidden_size, shape.num_hidden_layers
        embed = shape.vocab_size * h * (1 if shape.tie_word_embeddings else 2)
        biases = L * (h + 2 * shape.kv_dim)
        norms = L * 2 * h + h
        weights = (
            shape.linear_parameters() * (0.5 + scale_bytes)
            + embed * c
            + biases * 4
            + norms * _DTYPE_BYTES[norm_dtype]
        )
        dtypes = hidden_state_dtypes(compute_dtype, norm_dtype, quantised=True)
    else:
        weights = shape.num_parameters() * _DTYPE_BYTES[torch_dtype]
        dtypes = hidden_state_dtypes(compute_dtype, compute_dtype, quantised=False)
    first_b, rest_b = _DTYPE_BYTES[dtypes["layer_0"]], _DTYPE_BYTES[dtypes["layers_1_on"]]
    n_lora = shape.lora_parameters(lora_r, target_modules)
    lora = n_lora * 4
    gradients = n_lora * 4
    optimizer = 2 * n_lora * 4

    h, kv, m = shape.hidden_size, shape.kv_dim, shape.intermediate_size
    tokens = 2 * per_device_train_batch_size * max_length
    proj = shape.projections()
    rb = rest_b
    per_token_layer = (
        rb * (4 * h)  # two RMSNorms x (normalised input, output)
        + rb * 3 * (h + kv)  # q, k before rotary, rotate_half's copy, after rotary
        + c * (h + 2 * kv)  # attention inputs in the compute dtype
        + c * 2 * h  # attention output and o_proj's (contiguous) input
        + rb * 3 * m  # gate, SiLU(gate), up
        + c * m  # down's input, cast for LoRA A
        + c * sum(proj[t][0] for t in target_modules if t not in ("o_proj", "down_proj"))  # LoRA A inputs
        + c * len(target_modules) * lora_r  # LoRA A outputs
    )
    if lora_dropout > 0:
        per_token_layer += sum(proj[t][0] for t in target_modules) * (rb + 1)
    backward_working = 4 * m * rb  # gradients of the MLP-wide tensors while one layer's backward runs
    one_layer = tokens * (per_token_layer + backward_working)
    if gradient_checkpointing:
        saved_inputs = tokens * h * (first_b + (shape.num_hidden_layers - 1) * rest_b)
        activations = saved_inputs + one_layer
    else:
        activations = shape.num_hidden_layers * tokens * per_token_layer + tokens * backward_working
    activations += 2 * tokens * h * rb  # the final norm's two tensors
    if load_in_4bit:  # one projection dequantised while it is used
        activations += max(i * o for i, o in proj.values()) * c
    head_tokens = min(tokens, HEAD_TOKEN_TILE)
    lm_head = head_tokens * min(shape.vocab_size, HEAD_VOCAB_TILE) * c + tokens * h * (rb + c + 4)
    return MemoryEstimate(
        weights=int(weights),
        lora=int(lora),
        gradients=int(gradients),
        optimizer=int(optimizer),
        activations=int(activations),
        lm_head=int(lm_head),
        overhead=int(overhead),
    )


def model_shape(model_cfg: ModelConfig) -> ModelShape:
    """The model's shape: the tiny config, a known Hub id, or the model's ``config.json``."""
    if model_cfg.name_or_path == "tiny":
        t = model_cfg.tiny
        return ModelShape(
            t.hidden_size,
            t.num_hidden_layers,
            t.num_attention_heads,
            t.num_key_value_heads,
            t.intermediate_size,
            t.vocab_size,
            True,
        )
    if model_cfg.name_or_path in KNOWN_SHAPES:
        return KNOWN_SHAPES[model_cfg.name_or_path]
    from transformers import AutoConfig

    try:
        hf = AutoConfig.from_pretrained(model_cfg.name_or_path, trust_remote_code=model_cfg.trust_remote_code)
    except OSError as e:
        raise IdfuError(
            f"cannot read the config of model '{model_cfg.name_or_path}' to estimate memory: {e}"
        ) from e
    return ModelShape.from_hf_config(hf.get_text_config())


def estimate_for_config(cfg: Config, *, load_in_4bit: bool | None = None) -> MemoryEstimate:
    """:func:`estimate_training_memory` for a recipe (4-bit as the config says unless overridden)."""
    m, d = cfg.model, cfg.dpo
    q = m.load_in_4bit if load_in_4bit is None else load_in_4bit
    dtype = "bfloat16" if m.torch_dtype == "auto" else m.torch_dtype
    return estimate_training_memory(
        model_shape(m),
        load_in_4bit=q,
        torch_dtype=dtype,
        compute_dtype=m.bnb_4bit_compute_dtype if q else dtype,
        double_quant=m.bnb_4bit_use_double_quant,
        norm_dtype=m.norm_dtype,
        lora_r=cfg.lora.r,
        target_modules=cfg.lora.target_modules,
        lora_dropout=0.0 if d.disable_dropout else cfg.lora.lora_dropout,
        max_length=d.max_length,
        per_device_train_batch_size=d.per_device_train_batch_size,
        gradient_checkpointing=d.gradient_checkpointing,
    )


def require_memory(
    cfg: Config, estimate: MemoryEstimate, *, free: int, total: int, device_name: str, load_in_4bit: bool
) -> None:
    """Raise :class:`IdfuError` when ``estimate`` exceeds ``free`` bytes, saying what to change (pure)."""
    if estimate.total <= free:
        return
    hints = []
    if not cfg.dpo.gradient_checkpointing:
        hints.append("dpo.gradient_checkpointing: true")
    if not load_in_4bit:
        hints.append("model.load_in_4bit: true")
    hints.append(f"a lower dpo.max_length (now {cfg.dpo.max_length})")
    raise IdfuError(
        f"not enough GPU memory to train {cfg.model.name_or_path}: needs about {estimate.total / GIB:.1f} GiB "
        f"({estimate.describe()}) but {device_name} has {free / GIB:.1f} GiB free of {total / GIB:.1f} GiB. "
        f"Try {', or '.join(hints)} in {cfg.source or 'the config'}."
    )


def check_cuda_memory(cfg: Config, precision: dict[str, Any]) -> MemoryEstimate | None:
    """On CUDA, before loading: raise :class:`IdfuError` when the card cannot hold the estimate."""
    if precision["device"] != "cuda":
        return None
    import torch

    est = estimate_for_config(cfg, load_in_4bit=precision["load_in_4bit"])
    device = torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(device)
    name = torch.cuda.get_device_name(device)
    logger.info(
        "GPU memory: estimate %s; %s has %.2f GiB free of %.2f GiB",
        est.describe(),
        name,
        free / GIB,
        total / GIB,
    )
    require_memory(cfg, est, free=free, total=total, device_name=name, load_in_4bit=precision["load_in_4bit"])
    return est


class PeakMemory:
    """Peak host RSS (sampled with psutil) and peak CUDA allocation over a block."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_rss = 0
        self.peak_cuda: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        import psutil

        proc = psutil.Process()
        while True:
            self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakMemory:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        import psutil
        import torch

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_rss = max(self.peak_rss, psutil.Process().memory_info().rss)
        if torch.cuda.is_available():
            self.peak_cuda = int(torch.cuda.max_memory_allocated())


def model_bytes(model: Any) -> int:
    """Bytes held by a model's parameters and buffers, 4-bit quantisation states included (shared ones once)."""
    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if t.device.type == "meta" or t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        total += t.numel() * t.element_size()
        state = getattr(t, "quant_state", None)
        if state is not None:
            parts = [state.absmax, state.code]
            if getattr(state, "nested", False):
                parts += [state.state2.absmax, state.state2.code]
            total += sum(p.numel() * p.element_size() for p in parts if p is not None)
    return total


class TensorPeak:
    """The peak of tensor memory allocated above the level at entry, over a block.

    On CUDA: ``torch.cuda.max_memory_allocated`` (reset at entry). On a CPU, where PyTorch keeps no
    such counter, every allocation and free is recorded by the profiler and the running sum's peak is
    taken: exact, but slow (use it at small sizes). ``peak`` is in bytes.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak = 0
        self._base = 0
        self._prof: Any = None

    def __enter__(self) -> TensorPeak:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            from torch.profiler import ProfilerActivity, profile

            self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            self._prof.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = int(torch.cuda.max_memory_allocated()) - self._base
            return
        self._prof.__exit__(*exc)
        from torch._C._profiler import _EventType

        allocations: list[tuple[int, int]] = []
        stack = list(self._prof.profiler.kineto_results.experimental_event_tree())
        while stack:
            event = stack.pop()
            if event.tag == _EventType.Allocation:
                allocations.append((event.start_time_ns, event.extra_fields.alloc_size))
            stack.extend(event.children)
        allocations.sort()
        current = peak = 0
        for _, size in allocations:
            current += size
            peak = max(peak, current)
        self.peak = peak


def step_timer(cuda: bool) -> Any:
    """A trainer callback that records the wall time of every optimizer step (the benchmarks' clock)."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time between the ends of consecutive optimizer steps (GPU work synchronised)."""

        def __init__(self) -> None:
            self.ends: list[float] = []
            self.start = 0.0

        def _now(self) -> float:
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self.start = self._now()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            self.ends.append(self._now())

        def step_times(self) -> list[float]:
            marks = [self.start, *self.ends]
            return [b - a for a, b in zip(marks, marks[1:], strict=False)]

    return StepTimer()
