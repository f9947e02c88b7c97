"""HumanEval+ and MBPP+ with EvalPlus's semantics, and MBPP's test split.

**EvalPlus** (``humaneval+``, ``mbpp+``) judges a program by running the problem file's inputs
through it and through the task's canonical solution and comparing the outputs. Each task has two
input sets, ``base_input`` (the original benchmark's) and ``plus_input`` (EvalPlus's extra ones), and
two verdicts: *base* (the original benchmark's score) and *plus*; the "+" score a paper cites counts a
program as correct when both pass. Here each set is a test **suite** of the problem
(:attr:`~idfu_lab.problems.Problem.suites`): the executor runs one job per suite and the results row
carries both verdicts, each with our outcome and phase (:mod:`idfu_lab.benchmarks.suites`), plus the
combined one (passed when both pass; otherwise the first failing suite's outcome).

The test program of a suite (:func:`suite_test`) runs inside the sandbox, after the candidate's code
was loaded, as EvalPlus's ``untrusted_check`` does in its process. Its judge runs in a namespace of
its own, so a candidate that defines ``sum`` or ``max`` at module level does not change the judging:

1. the inputs are decoded from the problem file's JSON (MBPP+ turns some lists back into tuples, sets
   or complex numbers, task by task, as EvalPlus's loader does: :data:`MBPP_INPUT_KINDS`);
2. the canonical solution is executed in a namespace of its own and run on a deep copy of every input,
   timed: the expected outputs and the reference times;
3. each input's time limit is ``max(1 s, 4 x the reference's time)`` (EvalPlus's defaults,
   :data:`MIN_TIME_LIMIT_S`, :data:`TIME_LIMIT_FACTOR`), enforced with an interval timer as EvalPlus
   does, and the whole suite gets ``min(60 s, sum of the limits) + 1 s`` (EvalPlus's bound), where
   the 60 s is raised to twice the reference's own total when the reference alone took longer;
4. the candidate's entry point is called on each input; its output must equal the expected one, or,
   when the task has an ``atol`` (1e-6 for float outputs when it has none), have the same type and
   length and be ``numpy.allclose`` with ``rtol=1e-7``; EvalPlus's special oracles are kept
   (``find_zero`` judged by the polynomial's value at the answer; the MBPP+ tasks compared as sets,
   only for not-None, or accepting an alternative reading of the task).

The first failing input ends the suite (EvalPlus's default ``fast_check``). A wrong output is an
AssertionError in the TEST phase (ASSERTION_FAIL at ``test``, as a HumanEval check), an exception of
the candidate keeps its own type (TYPE_ERROR, INDEX_ERROR...), an input past its limit is
:class:`TimeLimitExceeded` (TIMEOUT at ``test``), a missing entry point is a NameError. A canonical
solution that itself fails is :class:`ReferenceFailed` (OTHER_ERROR, the message says so): the test
data, not the candidate, is then at fault.

Deliberate differences from EvalPlus: expected outputs are computed in the sandbox for every job
instead of once and cached in the user's home (a problem file is never trusted more than a candidate,
and the reference's time is measured under the same load as the candidate's, which is also why the
suite's 60 s cap yields to twice the reference's total: on a loaded machine the slowest MBPP+ reference
alone takes longer than 60 s); the candidate's module is loaded once per suite, as EvalPlus loads it
once per input set. As in any in-process harness, a
candidate that deliberately patches shared modules (``builtins``, ``math``) could change what the
reference computes after it; model output does not do that by accident.

**MBPP** (``mbpp``): the test split (task ids 11-510) of an MBPP-format file (``text, code, task_id,
test_list, test_setup_code``) or of a Hub dataset; programs are the candidate's code, then the setup
code, then the asserts, in MBPP's own harness order (:func:`idfu_lab.sandbox.job_for`).

Nothing is downloaded: the EvalPlus files come from ``--problems FILE`` (``.jsonl`` or ``.jsonl.gz``),
from ``$HUMANEVAL_OVERRIDE_PATH`` / ``$MBPP_OVERRIDE_PATH`` (EvalPlus's own variables), or from
EvalPlus's cache (``~/.cache/evalplus``), and a missing file is an error that says where to get it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from idfu_lab.errors import IdfuError

logger = logging.getLogger(__name__)

#: EvalPlus's per-input time limit: ``max(MIN_TIME_LIMIT_S, TIME_LIMIT_FACTOR * reference time)``.
MIN_TIME_LIMIT_S = 1.0
TIME_LIMIT_FACTOR = 4.0
#: EvalPlus's cap on one input set's time (its ``EVALPLUS_TIMEOUT_PER_TASK``, read here too); the suite
#: gets ``+ 1`` s, and never less than twice the reference's own total time (see the module docstring).
SUITE_TIME_CAP_S = float(os.environ.get("EVALPLUS_TIMEOUT_PER_TASK", 60))
#: The executor's wall clock for one suite job: a backstop behind the limits the test program sets
#: itself (the reference's run, then the capped suite: the slowest MBPP+ reference, Mbpp/599, takes
#: 13-67 s on our 2 cores depending on their load), for a candidate that swallows the time-limit
#: exception or hangs while it is loaded.
JOB_TIMEOUT_S = 180.0
#: Tolerance EvalPlus enforces for float outputs when the task gives ``atol`` 0.
FLOAT_ATOL = 1e-6
#: The two input sets, in the order they are judged and reported.
SUITES = ("base", "plus")

#: Where each flavour's file is looked for, and what it is called.
_FLAVOURS: dict[str, dict[str, Any]] = {
    "humaneval+": {
        "env": "HUMANEVAL_OVERRIDE_PATH",
        "stem": "HumanEvalPlus",
        "display": "HumanEval+",
        "versions": ("v0.1.10", "v0.1.9"),
        "prefix": "HumanEval/",
        "release": "https://github.com/evalplus/humanevalplus_release/releases",
    },
    "mbpp+": {
        "env": "MBPP_OVERRIDE_PATH",
        "stem": "MbppPlus",
        "display": "MBPP+",
        "versions": ("v0.2.0", "v0.1.0"),
        "prefix": "Mbpp/",
        "release": "https://github.com/evalplus/mbppplus_release/releases",
    },
}

#: MBPP's evaluation split (Austin et al., 2021): task ids 11-510.
MBPP_TEST_IDS = range(11, 511)
#: The Hub dataset ``mbpp`` is read from when no file is given (from the local cache only when offline).
MBPP_HUB_ID = "google-research-datasets/mbpp"


class TimeLimitExceeded(Exception):
    """An input ran past its EvalPlus time limit (mapped to TIMEOUT by :mod:`idfu_lab.outcomes`).

    The test program defines a class of the same qualified name inside the sandbox (it cannot import
    the package there); the outcome mapping matches on that name.
    """


class ReferenceFailed(RuntimeError):
    """The task's canonical solution raised on one of its own inputs: the problem file is at fault."""


# --------------------------------------------------------------------------- finding the data


def evalplus_cache_dir() -> Path:
    """EvalPlus's cache folder (``$XDG_CACHE_HOME/evalplus`` or ``~/.cache/evalplus``), where it keeps its files."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "evalplus"


def _shown(path: Path | str) -> str:
    """A path as a message shows it: the home folder as ``~`` (messages reach pages and logs)."""
    text, home = str(path), str(Path.home())
    return "~" + text[len(home) :] if home != "/" and text.startswith(home + "/") else text


def _missing_message(flavour: str, looked: list[str]) -> str:
    info = _FLAVOURS[flavour]
    name = f"{info['stem']}-{info['versions'][0]}.jsonl.gz"
    return (
        f"{info['display']}: no problem file on this machine (looked in {'; '.join(looked)}). Nothing is downloaded "
        f"during a run: get {name} from {info['release']} (or run EvalPlus once where the network is "
        f"reachable, which fills {_shown(evalplus_cache_dir())}), then pass --problems FILE, set "
        f"evaluation.problems in the recipe, or set {info['env']}=FILE"
    )


def data_file(flavour: str, problems: str | Path | None = None) -> Path:
    """The problem file of ``humaneval+`` or ``mbpp+``: ``problems``, else EvalPlus's variable, else its cache.

    IdfuError saying where to get the file when none is found.
    """
    if flavour not in _FLAVOURS:
        raise IdfuError(f"not an EvalPlus benchmark: {flavour!r} (choose humaneval+ or mbpp+)")
    info = _FLAVOURS[flavour]
    if problems:
        path = Path(problems)
        if not path.is_file():
            raise IdfuError(f"{path}: no such problems file for {flavour}")
        return path
    looked: list[str] = []
    override = os.environ.get(info["env"])
    if override:
        path = Path(override)
        if path.is_file():
            return path
        looked.append(f"${info['env']}={override} (no such file)")
    else:
        looked.append(f"${info['env']} (not set)")
    cache = evalplus_cache_dir()
    for version in info["versions"]:
        for suffix in (".jsonl", ".jsonl.gz"):
            path = cache / f"{info['stem']}-{version}{suffix}"
            if path.is_file():
                return path
    looked.append(f"{_shown(cache)}/{info['stem']}-*.jsonl")
    raise IdfuError(_missing_message(flavour, looked))


def status(flavour: str, problems: str | Path | None = None) -> tuple[bool, str]:
    """Whether ``flavour``'s data is on this machine, and a sentence saying where it is or how to get it."""
    try:
        return True, f"{_FLAVOURS[flavour]['display']} data: {data_file(flavour, problems)}"
    except IdfuError as e:
        return False, str(e)


# --------------------------------------------------------------------------- MBPP+ inputs

#: How EvalPlus's MBPP+ loader turns a task's JSON inputs back into Python values (JSON has no tuples,
#: sets or complex numbers): task number -> kind; :data:`_CONVERTERS` says what each kind does to one
#: input (the list of arguments). Tasks not listed take the JSON values as they are.
MBPP_INPUT_KINDS: dict[int, str] = {
    **dict.fromkeys(
        (
            2,
            116,
            132,
            143,
            222,
            261,
            273,
            394,
            399,
            421,
            424,
            429,
            470,
            560,
            579,
            596,
            616,
            630,
            726,
            740,
            744,
            809,
        ),
        "args_tuples",
    ),
    **dict.fromkeys(
        (63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780), "args_lists_of_tuples"
    ),
    **dict.fromkeys((75, 413, 444, 753), "first_list_of_tuples"),
    **dict.fromkeys((106, 750), "second_tuple"),
    115: "list_of_sets",
    124: "float_complex",
    **dict.fromkeys((250, 405, 446, 617, 720, 763, 808), "first_tuple"),
    **dict.fromkeys((259, 401, 445), "args_tuples_of_tuples"),
    278: "first_tuple_mixed",
    307: "first_tuple",
    722: "dict_of_tuples",
    252: "complex",
    **dict.fromkeys((580, 615, 791), "all_tuples"),
}

#: One function per kind, ``_convert(inp) -> args``, as source: it runs inside the sandbox.
_CONVERTERS: dict[str, str] = {
    "args_tuples": "return [tuple(a) for a in inp]",
    "args_lists_of_tuples": "return [[tuple(x) for x in a] for a in inp]",
    "first_list_of_tuples": "return [[tuple(x) for x in inp[0]], inp[1]]",
    "second_tuple": "return [inp[0], tuple(inp[1])]",
    # EvalPlus's loader makes an empty inner list an empty *dict* ({}), not a set: kept as it is.
    "list_of_sets": "return [[set(x) if isinstance(x, list) and x else {} for x in inp[0]]]",
    "float_complex": "return [float(inp[0]), complex(inp[1])]",
    "first_tuple": "return [tuple(inp[0]), *inp[1:]]",
    "args_tuples_of_tuples": "return [tuple(tuple(x) for x in a) for a in inp]",
    "first_tuple_mixed": "return [tuple(tuple(x) if isinstance(x, list) else x for x in inp[0])]",
    "dict_of_tuples": "return [{k: tuple(v) for k, v in inp[0].items()}, *inp[1:]]",
    "complex": "return [complex(inp[0])]",
    "all_tuples": (
        "def deep(x):\n"
        "        return tuple(deep(i) for i in x) if isinstance(x, list) else x\n"
        "    return deep(inp)"
    ),
}

# MBPP+'s special oracles (EvalPlus), by entry point.
#: Outputs compared as sets.
MBPP_SET_EQUAL = frozenset(
    (
        "similar_elements",
        "find_char_long",
        "common_in_nested_lists",
        "extract_singly",
        "larg_nnum",
        "intersection_array",
        "find_dissimilar",
        "Diff",
    )
)
#: Outputs that are not comparable (match objects): only "is it None" is judged.
MBPP_NOT_NONE = frozenset(("check_str", "text_match_three", "text_starta_endb"))


def _task_number(task_id: str) -> int | None:
    tail = str(task_id).rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


# --------------------------------------------------------------------------- the test program

# The judge runs in a namespace of its own (builtins only), not in the candidate's: a candidate that
# defines ``sum`` or ``max`` (MBPP+ has such tasks) must not change how its outputs are judged.
_JUDGE = """\
import copy, json, signal, time


class TimeLimitExceeded(Exception):
    pass


class ReferenceFailed(RuntimeError):
    pass


# Named as in idfu_lab.benchmarks.evalplus, which the outcome mapping knows (TIMEOUT, OTHER_ERROR).
for cls in (TimeLimitExceeded, ReferenceFailed):
    cls.__module__, cls.__qualname__ = "idfu_lab.benchmarks.evalplus", cls.__name__


def convert(inp):
    {convert}


def short(value):
    try:
        text = repr(value)
    except BaseException:
        text = "<unprintable>"
    return text if len(text) <= 160 else text[:150] + " ..."


def is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return type(x).__module__ == "numpy" and str(getattr(x, "dtype", "")) in ("float64", "float32")


def judge(candidate):
    split, entry = {split!r}, {entry!r}
    inputs = [convert(inp) for inp in json.loads({inputs!r})]
    # The canonical solution, in a namespace of its own: expected outputs and the time each took.
    reference = {{"__name__": "__reference__"}}
    seconds = []
    try:
        exec(compile({reference!r}, "<reference>", "exec"), reference)
        solve = reference[entry]
        expected = []
        for inp in inputs:
            args = copy.deepcopy(inp)
            start = time.perf_counter()
            out = solve(*args)
            seconds.append(time.perf_counter() - start)
            expected.append((out is not None) if {not_none!r} else out)
    except BaseException as exc:
        raise ReferenceFailed(
            f"the canonical solution failed on its own {{split}} input {{len(seconds)}}: "
            f"{{type(exc).__name__}}: {{exc}}"
        ) from None
    limits = [max({min_limit!r}, {factor!r} * s) for s in seconds]
    # EvalPlus: min(60 s, sum of the limits) + 1 s; here never less than twice the reference's own total,
    # which ran just now under the same load (EvalPlus times it once, on whatever machine filled its cache).
    budget = min(max({cap!r}, 2 * sum(seconds)), sum(limits)) + 1.0
    if entry not in candidate:
        raise NameError(f"name {{entry!r}} is not defined")
    fn = candidate[entry]
    current, limit = 0, 0.0

    def on_alarm(signum, frame):
        raise TimeLimitExceeded(f"{{split}} input {{current}}: {{entry}} ran past its time limit of {{limit:.3g}} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    atol = {atol!r}
    started = time.perf_counter()
    try:
        for current, inp in enumerate(inputs):
            limit = min(limits[current], budget - (time.perf_counter() - started))
            if limit <= 0:
                raise TimeLimitExceeded(f"{{split}} inputs: past the suite's time budget of {{budget:.3g}} s")
            signal.setitimer(signal.ITIMER_REAL, limit)
            try:
                out = fn(*copy.deepcopy(inp))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            exp = expected[current]

            def wrong():
                return f"{{split}} input {{current}}: {{entry}}({{short(inp)[1:-1]}}) returned {{short(out)}}, expected {{short(exp)}}"

            exact = out == exp
{oracle}
            # EvalPlus sets atol to 1e-6 at the first float output and keeps it for the later inputs.
            if atol == 0 and is_floats(exp):
                atol = {float_atol!r}
            if not exact and atol != 0:
                assert type(out) == type(exp), wrong()
                if isinstance(exp, (list, tuple)):
                    assert len(out) == len(exp), wrong()
                import numpy

                assert numpy.allclose(out, exp, rtol=1e-07, atol=atol), wrong()
            else:
                assert exact, wrong()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
"""

#: The TEST-phase code: load the judge in its own namespace and hand it the candidate's.
_TEST = """\
import builtins as _idfu_builtins

_idfu_evalplus = {{"__builtins__": _idfu_builtins, "__name__": "__evalplus__"}}
exec(compile({judge!r}, "<evalplus {split}>", "exec"), _idfu_evalplus)
del _idfu_builtins
_idfu_evalplus["judge"](globals())
del _idfu_evalplus
"""

_INDENT = " " * 12


def _oracle(flavour: str, entry: str) -> str:
    """The special-oracle lines for one entry point (EvalPlus's), indented into the input loop."""
    lines: list[str] = []
    if flavour == "humaneval+" and entry == "find_zero":
        # judged by the polynomial's value at the answer, not by equality with the reference's root
        lines = [
            "import math",
            "poly = sum(c * math.pow(out, k) for k, c in enumerate(inp[0]))",
            "assert abs(poly) <= atol, wrong()",
            "continue",
        ]
    elif flavour == "mbpp+":
        if entry == "are_equivalent":  # Mbpp/164: the task is ambiguous; any returned value is accepted
            lines = ["exact = True"]
        elif entry == "sum_div":  # Mbpp/295: a reading that returns 0 is accepted
            lines = ["exact = exact or out == 0"]
        elif entry == "surface_Area":  # Mbpp/581: height read as the pyramid's perpendicular height
            lines = [
                "import math",
                "edge, height = inp",
                "alt = round(edge**2 + 2 * edge * math.sqrt((edge / 2) ** 2 + height**2))",
                "exact = exact or abs(out - alt) <= atol",
            ]
        elif entry == "digit_distance_nums":  # Mbpp/558: numbers of different lengths padded with zeros
            lines = [
                "a, b = (str(x) for x in inp)",
                "a, b = a.zfill(max(len(a), len(b))), b.zfill(max(len(a), len(b)))",
                "exact = exact or out == sum(abs(int(x) - int(y)) for x, y in zip(a, b))",
            ]
        elif entry in MBPP_SET_EQUAL:
            lines = ["exact = set(out) == set(exp)"]
        elif entry in MBPP_NOT_NONE:
            lines = ["exact = out == exp if isinstance(out, bool) else exp == (out is not None)"]
    return "\n".join(_INDENT + line for line in lines)


def suite_test(record: Mapping[str, Any], split: str, flavour: str) -> str:
    """The TEST-phase program that judges one input set (``base`` or ``plus``) of an EvalPlus record."""
    entry = str(record["entry_point"])
    kind = None
    if flavour == "mbpp+":
        number = _task_number(record["task_id"])
        kind = MBPP_INPUT_KINDS.get(number) if number is not None else None
    convert = _CONVERTERS[kind] if kind else "return inp"
    inputs = json.dumps(list(record.get(f"{split}_input") or []))
    judge = _JUDGE.format(
        split=split,
        entry=entry,
        convert=convert,
        inputs=inputs,
        reference=str(record["prompt"]) + str(record["canonical_solution"]),
        not_none=flavour == "mbpp+" and entry in MBPP_NOT_NONE,
        min_limit=MIN_TIME_LIMIT_S,
        factor=TIME_LIMIT_FACTOR,
        cap=SUITE_TIME_CAP_S,
        atol=float(record.get("atol") or 0),
        float_atol=FLOAT_ATOL,
        oracle=_oracle(flavour, entry),
    )
    return _TEST.format(judge=judge, split=split)


# --------------------------------------------------------------------------- loading


_REQUIRED = ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input")


def is_evalplus_record(record: Mapping[str, Any]) -> bool:
    """Whether a problem record has EvalPlus's schema (inputs instead of a test)."""
    return "base_input" in record and "canonical_solution" in record


def flavour_of(task_id: str) -> str:
    """``humaneval+`` or ``mbpp+`` from a task id (``HumanEval/0``, ``Mbpp/2``); humaneval+ otherwise."""
    return "mbpp+" if str(task_id).startswith(_FLAVOURS["mbpp+"]["prefix"]) else "humaneval+"


def problem_from_record(record: Mapping[str, Any], flavour: str | None = None, where: str = "") -> Any:
    """One EvalPlus record as a :class:`~idfu_lab.problems.Problem` with ``base`` and ``plus`` suites."""
    from idfu_lab.problems import Problem

    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise IdfuError(f"{where}: missing key(s) {', '.join(missing)} (not an EvalPlus record)")
    for key in ("base_input", "plus_input"):
        # MBPP+ v0.1.0 writes one task's empty plus_input as {}: no inputs, as EvalPlus reads it
        if not (isinstance(record[key], list) or record[key] == {}):
            raise IdfuError(f"{where}: {key} must be a list of argument lists")
    flavour = flavour or flavour_of(record["task_id"])
    suites = tuple((split, suite_test(record, split, flavour)) for split in SUITES)
    return Problem(
        task_id=str(record["task_id"]),
        prompt=str(record["prompt"]),
        # one program judging both sets in order, for callers that run a single job per sample (the
        # pair audit): it passes exactly when both suites pass
        test="\n".join(test for _, test in suites),
        entry_point=str(record["entry_point"]),
        reference=str(record["prompt"]) + str(record["canonical_solution"]),
        benchmark=flavour,
        suites=suites,
        timeout_s=JOB_TIMEOUT_S,
    )


def load_evalplus(flavour: str, problems: str | Path | None = None) -> dict[str, Any]:
    """``humaneval+`` or ``mbpp+`` problems from ``problems`` or the places :func:`data_file` looks."""
    from idfu_lab.problems import _iter_json_records

    path = data_file(flavour, problems)
    found: dict[str, Any] = {}
    for lineno, record in _iter_json_records(path):
        where = f"{path}:{lineno}"
        if not isinstance(record, dict):
            raise IdfuError(f"{where}: a problem must be a JSON object")
        if not is_evalplus_record(record):
            raise IdfuError(
                f"{where}: not an EvalPlus record (no base_input/canonical_solution); {flavour} needs "
                f"EvalPlus's {_FLAVOURS[flavour]['stem']} file"
            )
        problem = problem_from_record(record, flavour, where)
        if not problem.task_id.startswith(_FLAVOURS[flavour]["prefix"]):
            raise IdfuError(
                f"{where}: task {problem.task_id!r} is not a {flavour} task "
                f"(ids start with {_FLAVOURS[flavour]['prefix']!r})"
            )
        if problem.task_id in found:
            raise IdfuError(f"{where}: duplicate task_id {problem.task_id!r}")
        found[problem.task_id] = problem
    if not found:
        raise IdfuError(f"{path}: no problems found")
    logger.debug("loaded %d %s problems from %s", len(found), flavour, path)
    return found


def load_mbpp_test_split(problems: str | Path | None = None) -> dict[str, Any]:
    """MBPP's test split (task ids 11-510) from an MBPP-format file or a Hub dataset id.

    Without ``problems``, the Hub dataset :data:`MBPP_HUB_ID` is read (from the local cache when the
    Hub is off). Task ids are kept as the file writes them (``"11"``).
    """
    from idfu_lab.problems import load_problems

    source = str(problems) if problems else MBPP_HUB_ID
    path = Path(source)
    if path.exists():
        everything = load_problems(path)
    else:
        from idfu_lab.data.pairs import load_problem_set

        try:
            everything = load_problem_set(source, split="test") or {}
        except IdfuError as e:
            raise IdfuError(
                f"mbpp: {e}. Give the MBPP file (mbpp.jsonl from google-research's mbpp folder) with "
                "--problems FILE, or a Hub id that is in the local cache"
            ) from None
    not_mbpp = [p.task_id for p in everything.values() if p.benchmark != "mbpp"]
    if not_mbpp:
        raise IdfuError(f"{source}: not an MBPP file (task {not_mbpp[0]!r} has no text/test_list)")
    split = {tid: p for tid, p in everything.items() if _task_number(tid) in MBPP_TEST_IDS}
    if not split:
        raise IdfuError(f"{source}: none of MBPP's test tasks (ids 11-510) is in it")
    return split
