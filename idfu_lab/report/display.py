"""How the notebooks show tables and statistics on a page: integers as integers, no meaningless
index, and an undefined statistic said in words instead of ``nan``.

A pandas frame printed as it is carries the machinery with it: a ``RangeIndex`` column, a second
header row for the index's name, counts that became floats on the way (``164.0``) and ``NaN`` where a
statistic does not exist (a standard deviation of one seed, McNemar's p with no discordant problem).
:func:`table` turns a frame into what a reader needs; :func:`number` and :func:`p_value` format one
statistic or say why it has no value. The words for an undefined statistic live here, once, so every
page says it the same way.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

#: What a table cell shows where a statistic is not defined (each table says why, under it).
UNDEFINED = "—"
#: How a p-value is written, in a sentence or a table: three significant digits (0.031, 1.46e-11).
P_FORMAT = ".3g"

#: Why a statistic has no value, in words a reader can act on.
NO_DISCORDANT = "no discordant problems: the paired test has nothing to test"
ONE_SEED = "one seed: no spread over seeds"
EDGE_OF_SCALE = "not defined at a pass rate of 0 or 100 %"
NO_GPU = "no GPU used"


def is_missing(value: Any) -> bool:
    """None, NaN, pandas' NA or an infinite number: a value a page must not print."""
    if value is None or value is pd.NA:
        return True
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def number(value: Any, fmt: str = ".2f", *, why: str = "not defined") -> str:
    """``value`` formatted with ``fmt``, or ``why`` where it has no value (``None``, NaN, infinite)."""
    if is_missing(value):
        return why
    return format(value, fmt)


def p_value(p: Any, discordant: int | None = None, *, fmt: str = P_FORMAT) -> str:
    """``p = 0.031``, or why there is no p-value (no discordant problems, or one that is not defined)."""
    if discordant == 0:  # an exact test on nothing returns 1: true, and meaningless
        return NO_DISCORDANT
    if not is_missing(p):
        return f"p = {format(float(p), fmt)}"
    return "p not defined"


#: Column names of rates and differences: they keep their decimals even when every value is whole.
_RATE = re.compile(r"%|\(pp\)|pass@|rate|share|mean|diff", flags=re.I)
#: Column names of p-values (``McNemar exact p``, ``p-value``): written with :data:`P_FORMAT`. A fixed
#: number of decimals shows an exact test's 1.5e-11 as 0, which no p-value is.
_P_VALUE = re.compile(r"(^|\s)p$|p[- ]value", flags=re.I)


def _integral(series: pd.Series) -> bool:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return len(values) > 0 and bool((values == values.round()).all())


def table(
    frame: pd.DataFrame,
    *,
    index: bool | None = None,
    decimals: int = 2,
    integers: Iterable[str] | None = None,
    na: str | Mapping[str, str] = UNDEFINED,
) -> Any:
    """A frame as a page shows it (a pandas ``Styler``, rendered as HTML by the notebook).

    - ``index``: keep the index as the first column (under its name, in the one header row). The
      default keeps a meaningful index (named, or labels such as outcome names) and drops row numbers.
    - ``integers``: columns shown without decimals; by default every numeric column whose values are
      all whole numbers (counts that became floats through a join), except rates, shares, means and
      differences (``pass@1 (%)``, ``tuned − base (pp)``), which keep their decimals.
    - ``na``: what a missing value shows, for every column or per column (``{"tuned_std": ONE_SEED}``).
    - p-values (a column named ``... p`` or ``p-value``) get three significant digits (``1.46e-11``).
    - other numbers get ``decimals`` decimals.
    """
    shown = frame.copy()
    keep_index = (
        index
        if index is not None
        else not isinstance(shown.index, pd.RangeIndex) or any(name is not None for name in shown.index.names)
    )
    if keep_index:
        shown = shown.reset_index()
    shown.columns = [" · ".join(map(str, c)) if isinstance(c, tuple) else str(c) for c in shown.columns]
    numeric = [c for c in shown.columns if pd.api.types.is_numeric_dtype(shown[c]) and shown[c].dtype != bool]
    p_values = [c for c in numeric if _P_VALUE.search(c)]
    whole = (
        [c for c in numeric if _integral(shown[c]) and not _RATE.search(c) and c not in p_values]
        if integers is None
        else [str(c) for c in integers if str(c) in shown.columns]
    )
    styler = shown.style.hide(axis="index").format_index(_breakable, axis="columns")
    for column in shown.columns:
        missing = na.get(column, UNDEFINED) if isinstance(na, Mapping) else na
        if column in p_values:
            styler = styler.format(f"{{:{P_FORMAT}}}", subset=[column], na_rep=missing)
        elif column in whole:
            styler = styler.format("{:,.0f}", subset=[column], na_rep=missing)
        elif column in numeric:
            styler = styler.format(f"{{:,.{decimals}f}}", subset=[column], na_rep=missing)
        else:
            styler = styler.format(
                lambda v, m=missing: m if is_missing(v) else _breakable(v), subset=[column]
            )
    return styler.set_table_attributes('class="dataframe idfu-table"')


def _breakable(value: Any) -> str:
    """Text that may wrap after an underscore (``ASSERTION_FAIL``, ``base_definition``): an HTML
    ``<wbr>``, invisible and left out when the text is copied; everything else is escaped."""
    return html.escape(str(value)).replace("_", "_<wbr>")


def series_table(values: Mapping[str, Any], *, name: str = "value", na: str = UNDEFINED) -> Any:
    """A list of named values (``{"final loss": 0.69, "peak GPU memory (GiB)": None}``) as a two-column
    table; each value keeps its own type (a count stays an integer) and a missing one shows ``na``."""

    def cell(v: Any) -> str:
        if is_missing(v):
            return na
        if isinstance(v, bool) or not isinstance(v, int | float):
            return str(v)
        return f"{int(v):,}" if float(v).is_integer() else f"{v:,.4g}"

    frame = pd.DataFrame({"": list(values), name: [cell(v) for v in values.values()]})
    return frame.style.hide(axis="index").set_table_attributes('class="dataframe idfu-table"')


def shown_path(path: str | Path, *roots: str | Path) -> str:
    """A path as a page shows it: relative to the first of ``roots`` (default: the repository) that
    holds it, else its file name; never the layout of the machine that made the page."""
    from idfu_lab.config import repo_root

    p = Path(path)
    for root in roots or (repo_root(),):
        try:
            return p.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            continue
    return p.name if p.is_absolute() else p.as_posix()
