"""Figures of the failure taxonomy (notebook 04) and of the delta tracing (notebook 05).

Each function takes a table from :mod:`idfu_lab.analysis.taxonomy` or :mod:`idfu_lab.analysis.delta` and returns a
matplotlib ``Figure`` built without pyplot, so a notebook shows it exactly once (when it is displayed
or glued).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

#: Colours of the two sides, as in the evaluation and summary figures.
PALETTE = {"base": "#4c72b0", "tuned": "#dd8452"}


def _legend_below(fig: Figure, ax, *, title: str | None = None) -> None:
    """The legend under the axes, outside them: it never covers a bar or its count."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=min(len(labels), 4) or 1,
        fontsize="small",
        title=title,
        title_fontsize="small",
        frameon=False,
    )


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def outcome_bars(table: pd.DataFrame, *, title: str = "Failures by outcome: base vs tuned") -> Figure:
    """Horizontal grouped bars of failure counts per outcome, the study's three categories on top.

    ``table`` is :func:`idfu_lab.analysis.taxonomy.compare` (PASS is left out: it would dwarf the failures).
    The hatched part of each bar is the DEFINITION phase (the program failed while loading).
    """
    failures = table.drop(index="PASS", errors="ignore")
    fig = Figure(figsize=(7.0, 0.45 * max(len(failures), 3) + 1.4), layout="constrained")
    ax = fig.subplots()
    if failures.empty or failures[["base", "tuned"]].to_numpy().sum() == 0:
        _empty(ax, "no failures")
    else:
        y = np.arange(len(failures))[::-1]
        h = 0.38
        for offset, side in ((h / 2, "base"), (-h / 2, "tuned")):
            ax.barh(y + offset, failures[side], height=h, color=PALETTE[side], label=side)
            ax.barh(
                y + offset,
                failures[f"{side}_definition"],
                height=h,
                color="none",
                edgecolor="black",
                hatch="//",
                linewidth=0,
            )
            for yy, v in zip(y + offset, failures[side], strict=True):
                if v:
                    ax.annotate(
                        str(int(v)),
                        (v, yy),
                        xytext=(3, 0),
                        textcoords="offset points",
                        va="center",
                        fontsize="small",
                    )
        ax.set_yticks(y, failures.index)
        ax.set_xlim(0, 1.1 * failures[["base", "tuned"]].to_numpy().max())  # room for the counts
        _legend_below(fig, ax, title="hatched: failed in the definition phase")
    ax.set_title(title)
    ax.set_xlabel("failed samples")
    ax.set_ylabel("outcome")
    return fig


def subcategory_bars(subs: pd.DataFrame, *, title: str = "Sub-categories: base vs tuned") -> Figure:
    """Grouped bars per (outcome, sub-category) from :func:`idfu_lab.analysis.taxonomy.subcategory_table`."""
    fig = Figure(figsize=(7.0, 0.4 * max(len(subs), 3) + 1.4), layout="constrained")
    ax = fig.subplots()
    if subs.empty or subs[["base", "tuned"]].to_numpy().sum() == 0:
        _empty(ax, "no failures with sub-categories")
    else:
        names = [f"{o}: {s}" for o, s in subs.index]
        y = np.arange(len(subs))[::-1]
        h = 0.38
        ax.barh(y + h / 2, subs["base"], height=h, color=PALETTE["base"], label="base")
        ax.barh(y - h / 2, subs["tuned"], height=h, color=PALETTE["tuned"], label="tuned")
        ax.set_yticks(y, names)
        _legend_below(fig, ax)
    ax.set_title(title)
    ax.set_xlabel("failed samples")
    ax.set_ylabel("outcome: sub-category")
    return fig


def seed_counts(seed_tab: pd.DataFrame, *, title: str = "Failure counts across seeds") -> Figure:
    """Tuned counts per seed (dots) against the base count (bar) for each failure outcome.

    ``seed_tab`` is :func:`idfu_lab.analysis.taxonomy.seed_table`. Outcomes marked stable are starred: the
    same count in every seed is the study's evidence that the distribution did not collapse.
    """
    failures = seed_tab.drop(index="PASS", errors="ignore")
    seed_cols = [c for c in failures.columns if c.startswith("tuned@")]
    fig = Figure(figsize=(7.0, 3.8), layout="constrained")
    ax = fig.subplots()
    if failures.empty or not seed_cols:
        _empty(ax, "no seeds with results")
    else:
        x = np.arange(len(failures))
        ax.bar(x, failures["base"], color=PALETTE["base"], alpha=0.35, label="base")
        for i, col in enumerate(seed_cols):
            jitter = (i - (len(seed_cols) - 1) / 2) * 0.12
            ax.scatter(x + jitter, failures[col], s=28, zorder=3, label=col.replace("tuned@", "tuned, seed "))
        labels = [
            f"{o} *" if s is True else o for o, s in zip(failures.index, failures["stable"], strict=True)
        ]
        ax.set_xticks(x, labels, rotation=30, ha="right")
        _legend_below(fig, ax)
    ax.set_title(title + " (* stable)")
    ax.set_xlabel("outcome")
    ax.set_ylabel("failed samples")
    return fig


def label_bars(labels: pd.DataFrame, *, title: str = "Proposed causes of the changes") -> Figure:
    """Stacked bars: how often each automatic label was proposed, per transition.

    ``labels`` is :func:`idfu_lab.analysis.delta.label_table`. A problem can carry several labels, so the bars
    add up to more than the number of changed problems.
    """
    fig = Figure(figsize=(7.0, 0.4 * max(len(labels), 3) + 1.4), layout="constrained")
    ax = fig.subplots()
    kinds = [c for c in ("fail_to_pass", "pass_to_fail", "fail_to_fail_changed") if c in labels.columns]
    colors = {"fail_to_pass": "#55a868", "pass_to_fail": "#c44e52", "fail_to_fail_changed": "#8c8c8c"}
    if labels.empty:
        _empty(ax, "no changed problems")
    else:
        y = np.arange(len(labels))[::-1]
        left = np.zeros(len(labels))
        for kind in kinds:
            ax.barh(y, labels[kind], left=left, color=colors[kind], label=kind)
            left = left + labels[kind].to_numpy()
        ax.set_yticks(y, labels.index)
        _legend_below(fig, ax)
    ax.set_title(title)
    ax.set_xlabel("changed problems carrying the label")
    ax.set_ylabel("label")
    return fig
