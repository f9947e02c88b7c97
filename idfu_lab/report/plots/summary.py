"""Figures of the run summary (notebook 06): pass@1 per seed, paired differences, failure categories.

Each function takes a frame from :class:`idfu_lab.analysis.summary.Summary` and returns a matplotlib
``Figure`` built without pyplot, so a notebook shows it exactly once (when it is displayed or glued).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

#: Colours of the two approaches, the same in every figure.
PALETTE = {"base": "#4c72b0", "tuned": "#dd8452"}


def pass1_per_seed(per_seed: pd.DataFrame, level: float = 0.95) -> Figure:
    """pass@1 of base and tuned in each seed, with each run's interval over problems.

    Overlapping intervals here do *not* mean "no difference": each bar is one run's uncertainty,
    while the paired comparison (next figure) removes what both runs share.
    """
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    seeds = list(dict.fromkeys(per_seed["seed"]))
    x = np.arange(len(seeds))
    offsets = {"base": -0.12, "tuned": 0.12}
    for approach, group in per_seed.groupby("approach", sort=False):
        group = group.set_index("seed").loc[seeds]
        y = 100.0 * group["pass1"].to_numpy()
        err = 100.0 * np.vstack([group["pass1"] - group["low"], group["high"] - group["pass1"]])
        ax.errorbar(
            x + offsets.get(str(approach), 0.0),
            y,
            yerr=err,
            fmt="o",
            capsize=4,
            color=PALETTE.get(str(approach)),
            label=str(group["label"].iloc[0]) if "label" in group else str(approach),
        )
    ax.set_xticks(x, [str(s) for s in seeds])
    ax.set_xlabel("training seed")
    ax.set_ylabel("pass@1 (%)")
    ax.set_title(f"pass@1 per seed with {100 * level:.0f} % intervals over problems")
    fig.legend(loc="outside lower center", ncols=2, fontsize="small")
    return fig


def paired_differences(paired: pd.DataFrame, pooled: dict, level: float = 0.95) -> Figure:
    """tuned - base per seed with its paired bootstrap interval, and the pooled estimate (cluster SE)."""
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.subplots()
    labels = [f"seed {s}" for s in paired["seed"]] + ["pooled"]
    y = np.arange(len(labels))[::-1]
    diffs = 100.0 * np.append(paired["diff"].to_numpy(), pooled["diff"])
    lows = 100.0 * np.append(paired["boot_low"].to_numpy(), pooled["low"])
    highs = 100.0 * np.append(paired["boot_high"].to_numpy(), pooled["high"])
    colors = ["#4c4c4c"] * len(paired) + ["#c44e52"]
    for yi, d, lo, hi, c in zip(y, diffs, lows, highs, colors, strict=True):
        ax.errorbar(d, yi, xerr=[[d - lo], [hi - d]], fmt="o", capsize=4, color=c)
    ax.axvline(0.0, color="grey", linestyle="--", linewidth=1)
    span = np.nanmax(np.abs(np.concatenate([lows, highs, [1.0]])))
    ax.set_xlim(
        min(-0.1 * span, np.nanmin(lows) - 0.1 * span), max(0.1 * span, np.nanmax(highs) + 0.1 * span)
    )
    ax.set_yticks(y, labels)
    ax.set_xlabel("tuned − base pass@1 (percentage points)")
    ax.set_ylabel("")
    ax.set_title(
        f"Paired difference, {100 * level:.0f} % intervals\n(per seed: bootstrap over problems; pooled: cluster SE)"
    )
    return fig


def category_counts(counts: pd.DataFrame, labels: dict[str, str] | None = None) -> Figure:
    """Failures per category, base vs tuned: bars are the mean over seeds (± 1 sd), dots the seeds."""
    fig = Figure(figsize=(max(6.4, 0.9 * counts["outcome"].nunique() + 2), 4.2), layout="constrained")
    ax = fig.subplots()
    order = list(dict.fromkeys(counts["outcome"]))
    hue_order = [a for a in ("base", "tuned") if a in set(counts["approach"])]
    common = dict(
        data=counts, x="outcome", y="count", hue="approach", order=order, hue_order=hue_order, palette=PALETTE
    )
    sns.barplot(
        **common,
        errorbar="sd",
        capsize=0.15,
        alpha=0.8,
        ax=ax,
    )
    sns.stripplot(
        **common,
        dodge=True,
        edgecolor="black",
        linewidth=0.6,
        size=5,
        legend=False,
        ax=ax,
    )
    handles, names = ax.get_legend_handles_labels()
    if labels:
        names = [labels.get(n, n) for n in names]
    if ax.get_legend() is not None:
        ax.get_legend().remove()  # seaborn's own, inside the axes: the figure's legend below replaces it
    fig.legend(handles, names, loc="outside lower center", ncols=2, fontsize="small", frameon=False)
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_xlabel("failure category")
    ax.set_ylabel("failing problems (per draw)")
    ax.set_title("Failures by category: mean over seeds ± 1 sd, one dot per seed")
    return fig


#: The formats each summary figure is written in: PNG to view, SVG to reuse at any size.
FIGURE_FORMATS = ("png", "svg")


def save_figures(figures: Mapping[str, Figure], layout) -> list[Path]:
    """Write each named figure of the summary page to ``summary/<name>.png`` and ``.svg`` (a
    :class:`idfu_lab.runs.RunLayout` names the files), so a reader can reuse them; the paths written."""
    written = []
    for name, fig in figures.items():
        for suffix in FIGURE_FORMATS:
            path = layout.summary_figure(name, suffix)
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(
                path, dpi=110, bbox_inches="tight", metadata={"Date": None} if suffix == "svg" else None
            )
            written.append(path)
    return written
