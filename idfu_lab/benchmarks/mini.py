"""``mini``: a small benchmark in HumanEval's format, written by the project, deterministic.

Why it exists: the default (CPU) run needs a benchmark on which a model small enough to train on two
cores passes *some* problems and fails others in the ways the study counts (a standard-library name
used without its import, a self-test appended after the function, a wrong answer). HumanEval is far
beyond such a model. ``mini`` keeps HumanEval's format and semantics exactly — a prompt with the
signature and a docstring saying what to return, a canonical solution that continues the prompt,
``def check(candidate)`` with asserts, an entry point — so every later step (the executor, the
taxonomy, the delta tracing, the statistics) runs unchanged on it.

Problems come from parameterised **task families**: arithmetic, string and list functions, eleven of
which need a standard-library name (``math.ceil``, ``math.gcd``, ``math.lcm``, ``math.isqrt``,
``math.factorial``, ``re.sub``, ``collections.Counter``, ``itertools.combinations``,
``itertools.accumulate``). A problem is one family with one choice of function name, argument name
and constants (a divisor, a set of characters, a separator...). The canonical solution imports what
it uses *inside* the function body, as HumanEval's do, so the prompt itself imports nothing and a
reply that uses ``math`` without importing it fails with NameError, as it would on HumanEval.

Two splits, disjoint by construction:

- ``eval`` (``load_problems("mini")``, task ids ``Mini/0`` … ``Mini/163``): 164 problems, like HumanEval;
- ``train`` (``load_problems("mini-train")``, ``MiniTrain/0`` …): the problems a model samples from to
  build preference pairs, and the only problems the miniature model's warm-up reads.

Problems are grouped by their canonical solution before the split, so no eval prompt and no eval
canonical solution appears in ``train`` (the tests check both); the splits share the families, as
MBPP's training side shares HumanEval's kind of task without sharing a problem. Test inputs and
expected outputs are drawn from a seeded generator and computed by running the canonical solution
once, here, at construction; every canonical solution is checked against its tests in the sandbox
by the tests.

Nothing in this module knows how any model answers; the habits of the miniature model are its
warm-up data's business (:mod:`idfu_lab.generation.miniature`).
"""

from __future__ import annotations

import functools
import itertools
import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Benchmark names :func:`idfu_lab.problems.load_problems` accepts, by split.
EVAL_NAME = "mini"
TRAIN_NAME = "mini-train"
SPLITS = {EVAL_NAME: "eval", TRAIN_NAME: "train"}

#: Task-id prefixes of the two splits.
TASK_PREFIX = {"eval": "Mini", "train": "MiniTrain"}

#: Problems per split. Eval has HumanEval's size; train is what curation samples from.
N_EVAL = 164
N_TRAIN_PER_FAMILY = 26

#: Seed of every random choice in this module: the benchmark is a constant of the code.
SEED = 20240611

#: Test inputs per problem.
N_TESTS = 5

#: Bumped whenever the generated problems change (recorded by whatever depends on them).
VERSION = 1

_WORDS = (
    "apple banana cherry delta echo forest garden harbor island jungle kettle lemon mango nectar "
    "orbit pepper quartz river salad tiger umbra velvet walnut yellow zebra anchor bottle candle "
    "dinner eleven feather gallon hollow insect jacket kitten ladder marble needle oyster pillow"
).split()


@dataclass(frozen=True)
class Family:
    """A parameterised task: text templates over ``{name}``, ``{arg}`` and the family's constants.

    ``imports`` is the line the solution needs ('' for none); ``body`` is the solution's ``return``
    expression's line; ``grid`` lists every choice of constants; ``inputs(rng, params)`` draws one
    call's arguments (a tuple).
    """

    key: str
    names: tuple[str, ...]
    args: tuple[str, ...]
    signature: str
    doc: str
    body: str
    imports: str
    grid: tuple[dict[str, Any], ...]
    inputs: Callable[[random.Random, dict[str, Any]], tuple]

    def fill(self, template: str, params: dict[str, Any]) -> str:
        return template.format(**params)


def _ints(lo: int, hi: int) -> Callable[[random.Random, dict[str, Any]], tuple]:
    return lambda rng, p: (rng.randint(lo, hi),)


def _int_list(lo: int, hi: int, min_len: int = 3, max_len: int = 8):
    return lambda rng, p: ([rng.randint(lo, hi) for _ in range(rng.randint(min_len, max_len))],)


def _word(rng: random.Random, p: dict[str, Any]) -> tuple:
    return (rng.choice(_WORDS),)


def _text_with(chars: str, rng: random.Random, *, length: int = 9) -> str:
    """A lower-case string that contains some of ``chars`` (so removing or counting them matters)."""
    pool = string.ascii_lowercase[:16] + chars * 3
    return "".join(rng.choice(pool) for _ in range(length))


def _runs(rng: random.Random, p: dict[str, Any]) -> tuple:
    c = p["c"]
    parts = [rng.choice(string.ascii_lowercase[:6]) + c * rng.randint(1, 4) for _ in range(rng.randint(2, 4))]
    return ("".join(parts),)


def _unique_mode_text(rng: random.Random, p: dict[str, Any]) -> tuple:
    """A string whose most common character is unique (so the expected answer is unambiguous)."""
    while True:
        s = "".join(rng.choice("abcdefg") for _ in range(rng.randint(5, 10)))
        counts = sorted((s.count(ch) for ch in set(s)), reverse=True)
        if len(counts) == 1 or counts[0] > counts[1]:
            return (s,)


def _repeats(rng: random.Random, p: dict[str, Any]) -> tuple:
    """Small values, about as many as the threshold allows, so that some reach it and some do not."""
    k = p["k"]
    return ([rng.randint(1, 4) for _ in range(rng.randint(k, 3 * k))],)


FAMILIES: tuple[Family, ...] = (
    Family(
        key="ceil_div",
        names=("groups_needed", "boxes_needed", "trips_needed", "pages_needed"),
        args=("n", "items", "count"),
        signature="({arg}: int) -> int",
        doc="Return how many groups of {k} are needed to hold {arg} items.",
        body="return math.ceil({arg} / {k})",
        imports="import math",
        grid=tuple({"k": k} for k in range(2, 21)),
        inputs=_ints(0, 90),
    ),
    Family(
        key="gcd_with",
        names=("common_divisor", "gcd_with", "shared_factor"),
        args=("n", "a", "m"),
        signature="({arg}: int) -> int",
        doc="Return the greatest common divisor of {arg} and {k}.",
        body="return math.gcd({arg}, {k})",
        imports="import math",
        grid=tuple({"k": k} for k in range(4, 25)),
        inputs=_ints(1, 99),
    ),
    Family(
        key="lcm_with",
        names=("common_multiple", "lcm_with", "least_multiple"),
        args=("n", "a", "m"),
        signature="({arg}: int) -> int",
        doc="Return the least common multiple of {arg} and {k}.",
        body="return math.lcm({arg}, {k})",
        imports="import math",
        grid=tuple({"k": k} for k in range(2, 21)),
        inputs=_ints(1, 30),
    ),
    Family(
        key="isqrt_shift",
        names=("root_floor", "int_root", "floor_sqrt"),
        args=("n", "x", "value"),
        signature="({arg}: int) -> int",
        doc="Return the square root of {arg} plus {k}, rounded down.",
        body="return math.isqrt({arg} + {k})",
        imports="import math",
        grid=tuple({"k": k} for k in range(1, 21)),
        inputs=_ints(0, 200),
    ),
    Family(
        key="factorial_mod",
        names=("factorial_mod", "fact_mod", "factorial_rem"),
        args=("n", "x", "k"),
        signature="({arg}: int) -> int",
        doc="Return the factorial of {arg} modulo {m}.",
        body="return math.factorial({arg}) % {m}",
        imports="import math",
        grid=tuple({"m": m} for m in range(7, 30)),
        inputs=_ints(0, 12),
    ),
    Family(
        key="strip_chars",
        names=("strip_chars", "remove_chars", "drop_letters"),
        args=("s", "text", "word"),
        signature="({arg}: str) -> str",
        doc="Return {arg} with every character in '{chars}' removed.",
        body="return re.sub('[{chars}]', '', {arg})",
        imports="import re",
        grid=tuple({"chars": a + b} for a, b in itertools.combinations("abcdeilnorst", 2)),
        inputs=lambda rng, p: (_text_with(p["chars"], rng),),
    ),
    Family(
        key="collapse_runs",
        names=("collapse_runs", "squeeze", "single_runs"),
        args=("s", "text", "word"),
        signature="({arg}: str) -> str",
        doc="Return {arg} with every run of '{c}' replaced by one '{c}'.",
        body="return re.sub('{c}+', '{c}', {arg})",
        imports="import re",
        grid=tuple({"c": c} for c in "hijklmnopqrstuvwxyz"),
        inputs=_runs,
    ),
    Family(
        key="count_frequent",
        names=("count_frequent", "frequent_values", "repeated_count"),
        args=("xs", "values", "nums"),
        signature="({arg}: list[int]) -> int",
        doc="Return how many distinct values occur at least {k} times in {arg}.",
        body="return sum(1 for c in Counter({arg}).values() if c >= {k})",
        imports="from collections import Counter",
        grid=tuple({"k": k} for k in range(2, 14)),
        inputs=_repeats,
    ),
    Family(
        key="mode_char",
        names=("mode_char", "top_char", "common_letter"),
        args=("s", "text", "word"),
        signature="({arg}: str) -> str",
        doc="Return the most common character of {arg}, or '{d}' if {arg} is empty.",
        body="return Counter({arg}).most_common(1)[0][0] if {arg} else '{d}'",
        imports="from collections import Counter",
        grid=tuple({"d": d} for d in "xyz?!#*-_@%&+=~"),
        inputs=_unique_mode_text,
    ),
    Family(
        key="pair_sums",
        names=("pair_sums", "count_pairs", "pairs_to"),
        args=("xs", "values", "nums"),
        signature="({arg}: list[int]) -> int",
        doc="Return how many pairs of positions in {arg} hold values that sum to {k}.",
        body="return sum(1 for a, b in itertools.combinations({arg}, 2) if a + b == {k})",
        imports="import itertools",
        grid=tuple({"k": k} for k in range(4, 25)),
        inputs=_int_list(0, 12, 4, 9),
    ),
    Family(
        key="running_totals",
        names=("running_totals", "prefix_sums", "cumulative"),
        args=("xs", "values", "nums"),
        signature="({arg}: list[int]) -> list[int]",
        doc="Return the running totals of {arg}, starting from {k}.",
        body="return list(itertools.accumulate({arg}, initial={k}))",
        imports="import itertools",
        grid=tuple({"k": k} for k in range(0, 21)),
        inputs=_int_list(-5, 9, 2, 6),
    ),
    Family(
        key="scale_shift",
        names=("scale_shift", "linear", "affine"),
        args=("n", "x", "value"),
        signature="({arg}: int) -> int",
        doc="Return {arg} times {a} plus {b}.",
        body="return {arg} * {a} + {b}",
        imports="",
        grid=tuple({"a": a, "b": b} for a in range(2, 10) for b in range(1, 10)),
        inputs=_ints(-20, 40),
    ),
    Family(
        key="repeat_join",
        names=("repeat_join", "echo", "repeat_with"),
        args=("s", "word", "text"),
        signature="({arg}: str) -> str",
        doc="Return {arg} repeated {k} times, joined by '{sep}'.",
        body="return '{sep}'.join([{arg}] * {k})",
        imports="",
        grid=tuple({"k": k, "sep": sep} for k in range(2, 7) for sep in "-+,.:;/|"),
        inputs=_word,
    ),
    Family(
        key="keep_greater",
        names=("keep_greater", "above", "filter_above"),
        args=("xs", "values", "nums"),
        signature="({arg}: list[int]) -> list[int]",
        doc="Return the values in {arg} that are greater than {k}, in order.",
        body="return [x for x in {arg} if x > {k}]",
        imports="",
        grid=tuple({"k": k} for k in range(0, 31)),
        # include k itself often: the boundary tells '>' from '>='
        inputs=lambda rng, p: (
            [rng.choice([p["k"], p["k"] + rng.randint(-9, 9)]) for _ in range(rng.randint(4, 8))],
        ),
    ),
    Family(
        key="sum_multiples",
        names=("sum_multiples", "multiples_total", "sum_divisible"),
        args=("xs", "values", "nums"),
        signature="({arg}: list[int]) -> int",
        doc="Return the sum of the values in {arg} that are divisible by {k}.",
        body="return sum(x for x in {arg} if x % {k} == 0)",
        imports="",
        grid=tuple({"k": k} for k in range(2, 16)),
        inputs=_int_list(1, 60, 4, 9),
    ),
    Family(
        key="truncate",
        names=("truncate", "shorten", "clip_text"),
        args=("s", "text", "word"),
        signature="({arg}: str) -> str",
        doc="Return the first {k} characters of {arg} followed by '{suffix}'.",
        body="return {arg}[:{k}] + '{suffix}'",
        imports="",
        grid=tuple({"k": k, "suffix": s} for k in range(2, 9) for s in ("...", "!", "~", ">", "?")),
        inputs=_word,
    ),
    Family(
        key="count_char",
        names=("count_char", "occurrences", "char_count"),
        args=("s", "text", "word"),
        signature="({arg}: str) -> int",
        doc="Return how many times '{c}' occurs in {arg}.",
        body="return {arg}.count('{c}')",
        imports="",
        grid=tuple({"c": c} for c in string.ascii_lowercase),
        inputs=lambda rng, p: (_text_with(p["c"], rng),),
    ),
    Family(
        key="clamp",
        names=("clamp", "limit", "bound"),
        args=("n", "x", "value"),
        signature="({arg}: int) -> int",
        doc="Return {arg} limited to the range from {lo} to {hi}.",
        body="return max({lo}, min({arg}, {hi}))",
        imports="",
        grid=tuple({"lo": lo, "hi": lo + w} for lo in range(0, 10) for w in (5, 10, 20)),
        inputs=lambda rng, p: (rng.randint(p["lo"] - 10, p["hi"] + 10),),
    ),
)

FAMILY_BY_KEY = {f.key: f for f in FAMILIES}


@dataclass(frozen=True)
class MiniTask:
    """One problem with what it was made from (family, name, argument, constants).

    ``examples`` are the (arguments, expected value) pairs its ``check`` asserts.
    """

    task_id: str
    split: str
    family: str
    name: str
    arg: str
    params: dict[str, Any]
    prompt: str
    canonical_solution: str
    test: str
    examples: tuple[tuple[tuple, Any], ...] = field(default=())

    @property
    def entry_point(self) -> str:
        return self.name

    def record(self) -> dict[str, Any]:
        """The problem as a HumanEval record (task_id, prompt, canonical_solution, test, entry_point)."""
        return {
            "task_id": self.task_id,
            "prompt": self.prompt,
            "canonical_solution": self.canonical_solution,
            "test": self.test,
            "entry_point": self.entry_point,
        }


def _call(name: str, args: Sequence[Any]) -> str:
    return f"{name}({', '.join(repr(a) for a in args)})"


def _solve(family: Family, params: dict[str, Any], name: str, sig: str, inputs: Sequence[tuple]) -> list:
    """Expected outputs: the canonical solution run here, once (our own code, not a model's)."""
    body = family.fill(family.body, params)
    code = f"{family.imports}\n\ndef {name}{sig}:\n    {body}\n"
    namespace: dict[str, Any] = {}
    exec(compile(code, f"<mini {family.key}>", "exec"), namespace)  # noqa: S102 - our canonical solution
    fn = namespace[name]
    return [fn(*args) for args in inputs]


def _make(family: Family, name: str, arg: str, constants: dict[str, Any]) -> dict[str, Any]:
    params = {**constants, "arg": arg, "name": name}
    rng = random.Random(f"{SEED}:{family.key}:{name}:{arg}:{sorted(constants.items())}")
    sig = family.fill(family.signature, params)
    inputs: list[tuple] = []
    while len(inputs) < N_TESTS:  # distinct inputs
        drawn = family.inputs(rng, params)
        if drawn not in inputs:
            inputs.append(drawn)
    outputs = _solve(family, params, name, sig, inputs)
    tests = list(zip(inputs, outputs, strict=True))
    doc = family.fill(family.doc, params)
    prompt = f'def {name}{sig}:\n    """{doc}"""\n'
    body = family.fill(family.body, params)
    indented_import = f"    {family.imports}\n" if family.imports else ""
    canonical = f"{indented_import}    {body}\n"
    test = "\n\ndef check(candidate):\n" + "".join(
        f"    assert {_call('candidate', i)} == {o!r}\n" for i, o in tests
    )
    return {
        "family": family.key,
        "name": name,
        "arg": arg,
        "params": constants,
        "prompt": prompt,
        "canonical_solution": canonical,
        "test": test,
        "examples": tuple(tests),
    }


def _family_groups(family: Family) -> list[list[tuple[str, str, dict[str, Any]]]]:
    """Every (name, arg, constants) of a family, grouped by canonical solution (name does not enter it)."""
    groups: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for constants in family.grid:
        for arg in family.args:
            body = family.fill(family.body, {**constants, "arg": arg})
            groups.setdefault(body, []).extend((name, arg, constants) for name in family.names)
    return list(groups.values())


@functools.cache
def build() -> dict[str, tuple[MiniTask, ...]]:
    """Both splits, deterministically: ``{"eval": (...164 tasks...), "train": (...)}``.

    Per family, the canonical solutions are shuffled with a fixed seed; the first ones go to eval
    (164 problems spread over the families as evenly as possible), the next ones to train
    (:data:`N_TRAIN_PER_FAMILY` each). One problem is made per canonical solution, with a function
    name drawn from the family's names, so a solution never appears in both splits.
    """
    rng = random.Random(SEED)
    per_family_eval = [N_EVAL // len(FAMILIES) + (i < N_EVAL % len(FAMILIES)) for i in range(len(FAMILIES))]
    made: dict[str, list[dict[str, Any]]] = {"eval": [], "train": []}
    for family, n_eval in zip(FAMILIES, per_family_eval, strict=True):
        groups = _family_groups(family)
        rng.shuffle(groups)
        needed = n_eval + N_TRAIN_PER_FAMILY
        if len(groups) < needed:
            raise RuntimeError(f"family {family.key}: {len(groups)} solutions, {needed} needed")  # a bug here
        for i, group in enumerate(groups[:needed]):
            name, arg, constants = rng.choice(group)
            made["eval" if i < n_eval else "train"].append(_make(family, name, arg, constants))
    out: dict[str, tuple[MiniTask, ...]] = {}
    for split, rows in made.items():
        order = random.Random(f"{SEED}:{split}")
        order.shuffle(rows)  # families interleaved, as a benchmark's problems are
        out[split] = tuple(
            MiniTask(task_id=f"{TASK_PREFIX[split]}/{i}", split=split, **row) for i, row in enumerate(rows)
        )
    return out


def tasks(split: str) -> tuple[MiniTask, ...]:
    """The tasks of ``split`` (``"eval"`` or ``"train"``), in task-id order."""
    splits = build()
    if split not in splits:
        raise ValueError(f"mini has splits {', '.join(splits)}, not {split!r}")
    return splits[split]


def records(split: str) -> list[dict[str, Any]]:
    """HumanEval-format records of ``split``."""
    return [t.record() for t in tasks(split)]
