"""The miniature model: a small Qwen2-architecture model with a real instruct model's habits, learnt.

What it is for: the default (CPU) run must show the study's effect with the study's code, and no
model that fits two CPU cores can solve HumanEval. So the default run uses the ``mini`` benchmark
(:mod:`idfu_lab.benchmarks.mini`) and this model, which is warmed up — supervised, next-token
training on a CPU — on the mini **train** split only, with answers written in the styles a real
instruct model mixes:

- ``clean``: the correct function, with the imports it needs;
- ``no_import``: the correct function, using a standard-library name without importing it
  (a NameError when the function runs: the study's NAME_ERROR);
- ``self_test``: the correct function followed by an ``assert`` at module level on an input the
  docstring does not show; its expected value is sometimes wrong, and the model has to guess it
  (an ASSERTION_FAIL while the program loads: the study's behavioural artefact);
- ``wrong_logic``: a subtly wrong body (``>=`` for ``>``, a floor for a ceiling...).

The mix differs across task families (:data:`HABITS`). Greedy decoding follows each family's
majority style; sampling at a temperature shows the minority styles too, which is what lets
``curate`` find a passing and a failing reply to the same problem, and what DPO can shift.

The habits live here, in the warm-up data, and nowhere else: generation, post-processing, the
executor and the analysis treat this model's replies exactly as any model's. The model never sees
an eval problem; its tokenizer is trained on the warm-up text (train split) too. So the miniature
shows *how* the method finds and fixes such habits; that DPO fixes a real model is the study's
claim, not something this model can show.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from idfu_lab.benchmarks import mini

if TYPE_CHECKING:  # pragma: no cover
    from idfu_lab.config import TinyModelConfig

logger = logging.getLogger(__name__)

#: Bumped whenever the warm-up data or loop changes, so a stale cached model is never reused.
MINIATURE_VERSION = 1

STYLES = ("clean", "no_import", "self_test", "wrong_logic")


@dataclass(frozen=True)
class Habit:
    """How the warm-up answers one family: the share of each style, and the family's typical bug.

    ``bug`` is a body template over the family's constants (and ``{arg}``); ``wrong_value`` is the
    share of self-tests whose expected value is wrong.
    """

    mix: dict[str, float]
    bug: str
    wrong_value: float = 0.5


def _mix(clean: float, no_import: float = 0.0, self_test: float = 0.0, wrong_logic: float = 0.0) -> dict:
    return {"clean": clean, "no_import": no_import, "self_test": self_test, "wrong_logic": wrong_logic}


#: Per family: which styles the warm-up writes, in which proportions. Five families are answered
#: without their import more often than with it, three mostly carry a self-test, two mostly have
#: the bug; the others are mostly right, with every bad habit as a minority.
HABITS: dict[str, Habit] = {
    "ceil_div": Habit(_mix(0.30, 0.60, 0.0, 0.10), "return {arg} // {k}"),
    "gcd_with": Habit(_mix(0.35, 0.55, 0.05, 0.05), "return {arg} % {k}"),
    "strip_chars": Habit(_mix(0.30, 0.55, 0.05, 0.10), "return {arg}.replace('{chars}', '')"),
    "pair_sums": Habit(
        _mix(0.35, 0.55, 0.0, 0.10),
        "return sum(1 for a, b in itertools.permutations({arg}, 2) if a + b == {k})",
    ),
    "mode_char": Habit(
        _mix(0.35, 0.55, 0.05, 0.05), "return Counter({arg}).most_common()[-1][0] if {arg} else '{d}'"
    ),
    "lcm_with": Habit(_mix(0.60, 0.30, 0.05, 0.05), "return {arg} * {k}"),
    "isqrt_shift": Habit(_mix(0.65, 0.25, 0.05, 0.05), "return math.isqrt({arg}) + {k}"),
    "factorial_mod": Habit(_mix(0.60, 0.30, 0.05, 0.05), "return math.factorial({arg}) // {m}"),
    "collapse_runs": Habit(_mix(0.60, 0.30, 0.05, 0.05), "return {arg}.replace('{c}{c}', '{c}')"),
    "count_frequent": Habit(
        _mix(0.55, 0.35, 0.05, 0.05), "return sum(1 for c in Counter({arg}).values() if c > {k})"
    ),
    "running_totals": Habit(
        _mix(0.60, 0.30, 0.05, 0.05), "return [t + {k} for t in itertools.accumulate({arg})]"
    ),
    "scale_shift": Habit(_mix(0.35, 0.0, 0.60, 0.05), "return ({arg} + {b}) * {a}"),
    "repeat_join": Habit(_mix(0.35, 0.0, 0.60, 0.05), "return '{sep}'.join({arg} * {k})"),
    "truncate": Habit(_mix(0.35, 0.0, 0.60, 0.05), "return {arg}[:{k} - 1] + '{suffix}'"),
    "keep_greater": Habit(_mix(0.40, 0.0, 0.05, 0.55), "return [x for x in {arg} if x >= {k}]"),
    "sum_multiples": Habit(_mix(0.40, 0.0, 0.05, 0.55), "return sum(x for x in {arg} if x % {k})"),
    "count_char": Habit(_mix(0.75, 0.0, 0.15, 0.10), "return {arg}.find('{c}')"),
    "clamp": Habit(_mix(0.75, 0.0, 0.10, 0.15), "return min({lo}, max({arg}, {hi}))"),
}


def _wrong(value: Any) -> Any:
    """A plausible but wrong expected value (what a model that guesses writes)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value[:-1] if value else "x"
    if isinstance(value, list):
        return value[:-1] if value else [0]
    return None


def reply(task: mini.MiniTask, style: str, rng: random.Random) -> str:
    """One warm-up answer to ``task`` in ``style``: a fenced Python block, as instruct models answer."""
    family = mini.FAMILY_BY_KEY[task.family]
    params = {**task.params, "arg": task.arg, "name": task.name}
    sig = family.fill(family.signature, params)
    body = family.fill(HABITS[task.family].bug if style == "wrong_logic" else family.body, params)
    head = f"{family.imports}\n\n\n" if family.imports and style != "no_import" else ""
    code = f"{head}def {task.name}{sig}:\n    {body}\n"
    if style == "self_test":
        args, value = rng.choice(task.examples)  # one of the hidden tests' inputs: the model must guess
        if rng.random() < HABITS[task.family].wrong_value:
            value = _wrong(value)
        code += f"\n\nassert {task.name}({', '.join(repr(a) for a in args)}) == {value!r}\n"
    return f"```python\n{code}```"


def _styles_for(family: str, n: int, rng: random.Random) -> list[str]:
    """``n`` styles in the family's proportions (largest remainders), shuffled."""
    mix = HABITS[family].mix
    exact = {s: mix[s] * n for s in STYLES}
    counts = {s: math.floor(v) for s, v in exact.items()}
    for s in sorted(STYLES, key=lambda s: exact[s] - counts[s], reverse=True)[: n - sum(counts.values())]:
        counts[s] += 1
    styles = [s for s in STYLES for _ in range(counts[s])]
    rng.shuffle(styles)
    return styles


def warmup_corpus(seed: int, replies_per_problem: int) -> list[tuple[str, str, str]]:
    """``(prompt, reply, style)`` for every train problem, ``replies_per_problem`` replies each.

    Per family the styles follow :data:`HABITS` exactly (over all of the family's replies); which
    problem gets which style is random (seeded), so the model learns a family's mix, not a problem's.
    """
    rng = random.Random(seed)
    by_family: dict[str, list[mini.MiniTask]] = {}
    for task in mini.tasks("train"):
        by_family.setdefault(task.family, []).append(task)
    corpus: list[tuple[str, str, str]] = []
    for family in sorted(by_family):
        tasks = by_family[family]
        styles = _styles_for(family, len(tasks) * replies_per_problem, rng)
        for i, style in enumerate(styles):
            task = tasks[i % len(tasks)]
            corpus.append((task.prompt, reply(task, style, rng), style))
    rng.shuffle(corpus)
    return corpus


@functools.cache
def data_fingerprint() -> str:
    """What the warm-up data depends on besides the config: this module's version and the train split."""
    blob = json.dumps(
        {
            "miniature": MINIATURE_VERSION,
            "mini": mini.VERSION,
            "habits": {k: [h.mix, h.bug, h.wrong_value] for k, h in sorted(HABITS.items())},
            "train": [t.record() for t in mini.tasks("train")],
        },
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def tokenizer_corpus(tiny: TinyModelConfig) -> list[str]:
    """The text the tokenizer is trained on: the warm-up's prompts (in the chat form) and replies."""
    from idfu_lab.generation.prompts import user_message

    texts = ["<|im_start|>user\n", "<|im_start|>assistant\n"]
    for prompt, answer, _ in warmup_corpus(tiny.init_seed, tiny.warmup_replies):
        texts.append(user_message(prompt, "instruct"))
        texts.append(answer)
    return texts


def warm_up(model: Any, tokenizer: Any, tiny: TinyModelConfig, *, progress: bool = True) -> list[float]:
    """Supervised next-token training on :func:`warmup_corpus` (the loss on the replies only).

    AdamW with a linear warm-up over the first 5 % of the steps and a cosine decay; batches of
    similar lengths (less padding); one intra-op thread: for a model this small, two threads on two
    busy cores were several times slower (measured), and one thread makes the result independent of
    the machine's core count.
    """
    import torch
    from tqdm.auto import tqdm

    from idfu_lab.generation.prompts import render

    torch.manual_seed(tiny.init_seed)
    rng = random.Random(tiny.init_seed)
    examples = []
    for prompt, answer, _ in warmup_corpus(tiny.init_seed, tiny.warmup_replies):
        context = tokenizer(render(tokenizer, prompt, "instruct"), add_special_tokens=False)["input_ids"]
        target = tokenizer(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
        if len(context) + len(target) <= tiny.warmup_max_tokens:
            examples.append((context + target, [-100] * len(context) + target))
    if not examples:
        raise ValueError(f"every warm-up example is longer than warmup_max_tokens={tiny.warmup_max_tokens}")
    logger.info(
        "miniature warm-up: %d examples (longest %d tokens), %d steps of %d",
        len(examples),
        max(len(ids) for ids, _ in examples),
        tiny.warmup_steps,
        tiny.warmup_batch_size,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=tiny.warmup_learning_rate, weight_decay=0.01)
    warm = max(1, tiny.warmup_steps // 20)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, tiny.warmup_steps - warm)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    pad = tokenizer.pad_token_id
    batches = _length_batches(examples, tiny.warmup_batch_size, tiny.warmup_steps, rng)
    model.train()
    losses: list[float] = []
    threads = torch.get_num_threads()
    # One thread: also what makes the build the same bit for bit whatever the machine's core count.
    # Not across CPUs: another processor's float kernels round differently (see the README).
    torch.set_num_threads(1)
    try:
        for batch in tqdm(batches, desc="miniature warm-up", unit="step", disable=not progress):
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch])
            labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
            attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
            loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    model.eval()
    logger.info("miniature warm-up: loss %.3f -> %.3f", losses[0], sum(losses[-50:]) / len(losses[-50:]))
    return losses


def _length_batches(
    examples: Sequence[tuple[list[int], list[int]]], batch_size: int, steps: int, rng: random.Random
) -> list[list[tuple[list[int], list[int]]]]:
    """``steps`` batches: each epoch shuffled, cut into runs of similar length, the runs shuffled."""
    batches: list[list[tuple[list[int], list[int]]]] = []
    while len(batches) < steps:
        order = list(examples)
        rng.shuffle(order)
        chunk = batch_size * 16  # sort within windows: similar lengths, still a random mix of problems
        for start in range(0, len(order), chunk):
            window = sorted(order[start : start + chunk], key=lambda e: len(e[0]))
            epoch = [window[i : i + batch_size] for i in range(0, len(window), batch_size)]
            rng.shuffle(epoch)
            batches.extend(b for b in epoch if len(b) == batch_size)
    return batches[:steps]
