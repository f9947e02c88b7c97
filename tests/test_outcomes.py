"""The outcome taxonomy: exception families by MRO, qualified-name matching, enumeration contract."""

from __future__ import annotations

import json

import pytest

from idfu_lab.outcomes import (
    DESCRIPTIONS,
    STUDY_CATEGORIES,
    Outcome,
    Phase,
    outcome_for_exception,
    outcome_for_mro,
    outcome_order,
    qualified_name,
)


def test_values_equal_names_and_serialise_as_plain_strings() -> None:
    assert [o.value for o in Outcome] == [o.name for o in Outcome]
    assert json.dumps({"outcome": Outcome.NAME_ERROR, "phase": Phase.TEST}) == (
        '{"outcome": "NAME_ERROR", "phase": "test"}'
    )
    assert Outcome("TIMEOUT") is Outcome.TIMEOUT
    assert [p.value for p in Phase] == ["definition", "test"]


def test_the_issue_lists_exactly_these_outcomes() -> None:
    assert [o.value for o in Outcome] == (
        "PASS SYNTAX_ERROR NAME_ERROR IMPORT_ERROR ASSERTION_FAIL TYPE_ERROR VALUE_ERROR INDEX_ERROR "
        "KEY_ERROR ATTRIBUTE_ERROR ZERO_DIVISION RECURSION_ERROR TIMEOUT MEMORY_ERROR OTHER_ERROR NO_CODE"
    ).split()
    assert outcome_order()[0] is Outcome.PASS and outcome_order()[-1] is Outcome.NO_CODE


def test_study_categories_in_the_study_table_order() -> None:
    assert STUDY_CATEGORIES == (Outcome.NAME_ERROR, Outcome.ASSERTION_FAIL, Outcome.TYPE_ERROR)


def test_every_outcome_is_described() -> None:
    assert set(DESCRIPTIONS) == set(Outcome)
    assert all(text and text[0].islower() for text in DESCRIPTIONS.values())


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (SyntaxError, Outcome.SYNTAX_ERROR),
        (IndentationError, Outcome.SYNTAX_ERROR),
        (TabError, Outcome.SYNTAX_ERROR),
        (NameError, Outcome.NAME_ERROR),
        (UnboundLocalError, Outcome.NAME_ERROR),
        (ImportError, Outcome.IMPORT_ERROR),
        (ModuleNotFoundError, Outcome.IMPORT_ERROR),
        (AssertionError, Outcome.ASSERTION_FAIL),
        (TypeError, Outcome.TYPE_ERROR),
        (ValueError, Outcome.VALUE_ERROR),
        (UnicodeDecodeError, Outcome.VALUE_ERROR),
        (IndexError, Outcome.INDEX_ERROR),
        (KeyError, Outcome.KEY_ERROR),
        (AttributeError, Outcome.ATTRIBUTE_ERROR),
        (ZeroDivisionError, Outcome.ZERO_DIVISION),
        (RecursionError, Outcome.RECURSION_ERROR),
        (MemoryError, Outcome.MEMORY_ERROR),
        (RuntimeError, Outcome.OTHER_ERROR),
        (NotImplementedError, Outcome.OTHER_ERROR),
        (StopIteration, Outcome.OTHER_ERROR),
        (OverflowError, Outcome.OTHER_ERROR),
        (OSError, Outcome.OTHER_ERROR),
        (TimeoutError, Outcome.OTHER_ERROR),  # raised by code, not the executor's limit
        (SystemExit, Outcome.OTHER_ERROR),
        (KeyboardInterrupt, Outcome.OTHER_ERROR),
        (LookupError, Outcome.OTHER_ERROR),  # the base of IndexError/KeyError is neither
    ],
)
def test_builtin_families(exc: type[BaseException], expected: Outcome) -> None:
    assert outcome_for_exception(exc) is expected


def test_instances_and_user_subclasses_map_by_their_mro() -> None:
    class ParseError(ValueError):
        pass

    class Both(KeyError, TypeError):
        pass

    assert outcome_for_exception(ParseError("bad")) is Outcome.VALUE_ERROR
    assert outcome_for_exception(Both()) is Outcome.KEY_ERROR  # the most specific listed family wins
    assert outcome_for_exception(SystemExit(0)) is Outcome.OTHER_ERROR


def test_a_lookalike_class_name_is_not_a_builtin_family() -> None:
    # A candidate defining its own ``AssertionError`` must not count as a failed assertion.
    AssertionError_ = type("AssertionError", (Exception,), {"__module__": "__candidate__"})
    assert qualified_name(AssertionError_) == "__candidate__.AssertionError"
    assert outcome_for_exception(AssertionError_) is Outcome.OTHER_ERROR
    assert outcome_for_mro(["__candidate__.AssertionError", "builtins.Exception"]) is Outcome.OTHER_ERROR
    assert outcome_for_mro(["builtins.ModuleNotFoundError", "builtins.ImportError"]) is Outcome.IMPORT_ERROR
    assert outcome_for_mro([]) is Outcome.OTHER_ERROR


def test_rejects_what_is_not_an_exception() -> None:
    with pytest.raises(TypeError):
        outcome_for_exception(int)
