"""How pages show tables and statistics: integers as integers, no meaningless index, undefined
statistics in words, the delta fragment's styles kept to itself, legends off the bars."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from idfu_lab.report import delta_html, display


def _cells(styler) -> list[list[str]]:
    html = styler.to_html()
    rows = re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, flags=re.S)]
        for r in rows
    ]


def test_table_drops_row_numbers_keeps_named_index_and_shows_counts_as_integers() -> None:
    frame = pd.DataFrame(
        {"count": [164.0, 3.0], "share": [0.5, 0.25], "std": [1.5, np.nan], "note": ["a", None]},
        index=pd.Index(["base", "tuned"], name="model"),
    )
    rows = _cells(display.table(frame, na={"std": display.ONE_SEED}))
    assert rows[0] == ["model", "count", "share", "std", "note"]  # one header row, the index as a column
    assert rows[1] == ["base", "164", "0.50", "1.50", "a"]
    assert rows[2] == ["tuned", "3", "0.25", display.ONE_SEED, display.UNDEFINED]
    numbered = pd.DataFrame({"x": [1, 2, 3]}).iloc[[0, 2]]  # a filtered frame: its index is row numbers
    assert _cells(display.table(numbered)) == [["x"], ["1"], ["3"]]
    outcomes = pd.DataFrame(
        {"n": [1, 2]}, index=["NAME_ERROR", "PASS"]
    )  # unnamed labels still mean something
    assert _cells(display.table(outcomes))[1] == ["NAME_ERROR", "1"]
    rates = pd.DataFrame({"pass@1 (%)": [0.0, 2.0], "failures": [3.0, 4.0]})
    assert _cells(display.table(rates))[1] == ["0.00", "3"]  # a rate keeps its decimals, a count does not
    text = display.table(frame).to_html()
    assert "nan" not in text.lower() and "164.0" not in text


def test_undefined_statistics_are_said_in_words() -> None:
    assert display.number(float("nan")) == "not defined"
    assert display.number(None, why=display.NO_GPU) == "no GPU used"
    assert display.number(3.14159, ".1f") == "3.1"
    assert display.p_value(math.nan, discordant=0) == display.NO_DISCORDANT
    assert display.p_value(np.float64("nan"), discordant=4) == "p not defined"
    assert display.p_value(0.0312) == "p = 0.0312"
    assert (
        display.p_value(1.0, discordant=0) == display.NO_DISCORDANT
    )  # exact test on nothing: 1, meaningless
    assert "nothing to test" in display.NO_DISCORDANT


def test_p_values_keep_three_significant_digits_in_a_table() -> None:
    frame = pd.DataFrame(
        {"seed": [42, 123, 7], "McNemar exact p": [1.46e-11, 0.5, np.nan], "p-value": [0.0312, 1, 0]}
    )
    rows = _cells(display.table(frame, na={"McNemar exact p": display.NO_DISCORDANT}))
    assert [r[1:] for r in rows[1:]] == [["1.46e-11", "0.0312"], ["0.5", "1"], [display.NO_DISCORDANT, "0"]]
    assert display.p_value(1.46e-11) == "p = 1.46e-11"


def test_series_table_keeps_each_value_type() -> None:
    rows = _cells(
        display.series_table({"steps": 18, "loss": 0.21244, "GPU": None, "device": "cpu"}, name="seed 7")
    )
    assert rows[0] == ["", "seed 7"]
    assert rows[1:] == [["steps", "18"], ["loss", "0.2124"], ["GPU", display.UNDEFINED], ["device", "cpu"]]


def test_shown_path_is_never_absolute(tmp_path: Path) -> None:
    inside = tmp_path / "runs" / "tiny" / "seed-42" / "delta" / "delta.html"
    assert display.shown_path(inside, tmp_path / "runs" / "tiny") == "seed-42/delta/delta.html"
    assert display.shown_path(inside, tmp_path / "elsewhere") == "delta.html"
    assert display.shown_path("annotations/tiny/seed-42.csv") == "annotations/tiny/seed-42.csv"


def test_embedded_delta_styles_only_itself(tmp_path: Path) -> None:
    delta = {
        "n": 2,
        "tasks": {},
        "problems": [],
        "split": {"sentence": "nothing changed"},
        "sources": {
            "base": str(tmp_path / "run" / "seed-42" / "results" / "base.jsonl"),
            "tuned": "/x/y/tuned.jsonl",
        },
    }
    fragment = delta_html.render_html(delta, full=False, relative_to=tmp_path / "run")
    css = re.search(r"<style>(.*?)</style>", fragment, flags=re.S).group(1)
    selectors = [rule.split("{")[0] for rule in css.strip().splitlines()]
    for selector in selectors:
        for part in selector.split(","):
            assert part.strip().startswith(".idfu-delta "), part  # never body, h1, h2 or a bare class
    assert "<h1>" not in fragment  # the page has its own title
    assert "seed-42/results/base.jsonl" in fragment and str(tmp_path) not in fragment
    assert "<code>tuned.jsonl</code>" in fragment  # outside the run: its name only
    page = delta_html.render_html(delta, full=True)
    assert "body {" in page and "<h1>Delta tracing</h1>" in page


@pytest.mark.parametrize("kind", ["outcome_bars", "subcategory_bars", "label_bars", "category_counts"])
def test_taxonomy_legends_never_cover_the_bars(kind: str) -> None:
    from idfu_lab.report.plots import taxonomy as plots

    if kind == "outcome_bars":
        frame = pd.DataFrame(
            {"base": [6, 23], "tuned": [4, 19], "base_definition": [1, 10], "tuned_definition": [0, 5]},
            index=["NAME_ERROR", "ASSERTION_FAIL"],
        )
        fig = plots.outcome_bars(frame)
    elif kind == "subcategory_bars":
        frame = pd.DataFrame(
            {"base": [6, 23], "tuned": [4, 19]},
            index=pd.MultiIndex.from_tuples(
                [("NAME_ERROR", "missing_import"), ("ASSERTION_FAIL", "self_test")]
            ),
        )
        fig = plots.subcategory_bars(frame)
    elif kind == "category_counts":
        from idfu_lab.report.plots import summary

        counts = pd.DataFrame(
            [
                {"seed": s, "approach": a, "outcome": o, "count": float(n + s % 3)}
                for s in (42, 123, 7)
                for a in ("base", "tuned")
                for o, n in (("NAME_ERROR", 6), ("ASSERTION_FAIL", 23))
            ]
        )
        fig = summary.category_counts(counts, {"base": "base", "tuned": "DPO"})
        assert fig.axes[0].get_legend() is None  # one legend, the figure's
    else:
        fig = plots.label_bars(
            pd.DataFrame({"fail_to_pass": [3, 1], "pass_to_fail": [0, 2]}, index=["a", "b"])
        )
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # a Figure built without pyplot has no drawing canvas of its own
    canvas.draw()
    renderer = canvas.get_renderer()
    axes = fig.axes[0].get_window_extent(renderer)
    legend = fig.legends[0].get_window_extent(renderer)
    assert legend.y1 <= axes.y0 or legend.x0 >= axes.x1, "the legend overlaps the plotting area"
