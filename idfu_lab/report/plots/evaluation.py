"""Figures of the per-seed evaluation (notebook 03): base vs tuned, outcomes, and the harness's own effect.

Each function takes data from :mod:`idfu_lab.analysis.evaluation` (the summary's paired comparison, results
frames, the sensitivity table) and returns a matplotlib ``Figure`` built without pyplot, so a notebook
shows it exactly once (when it is displayed or glued).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

#: Colours of the two approaches, as in the summary figures.
PALETTE = {"base": "#4c72b0", "tuned": "#dd8452"}


def pass1_comparison(comparison: Mapping[str, Any], *, seed: int | None = None) -> Figure:
    """Left: pass@1 of base and tuned with their intervals. Right: the paired difference with its bootstrap CI.

    The two panels answer different questions: each left bar is one run's uncertainty over 164
    problems (about ±6 points at 0.8), while the right interval is for the *difference* on the same
    problems, which is much narrower because both models share most verdicts.
    """
    fig = Figure(figsize=(8.0, 3.6), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[2, 1])
    names = ["base", "tuned"]
    y = [100 * comparison[m]["pass1"] for m in names]
    err = np.array(
        [
            [100 * (comparison[m]["pass1"] - comparison[m]["low"]) for m in names],
            [100 * (comparison[m]["high"] - comparison[m]["pass1"]) for m in names],
        ]
    )
    left.bar(names, y, color=[PALETTE[m] for m in names], yerr=err, capsize=6)
    for i, v in enumerate(y):
        left.annotate(f"{v:.1f}", (i, v), xytext=(8, 3), textcoords="offset points", fontsize="small")
    left.set_ylabel("pass@1 (%)")
    left.set_xlabel("model")
    left.set_ylim(0, 100)
    level = 100 * (1 - float(comparison.get("alpha", 0.05)))
    left.set_title(f"pass@1 with {level:.0f} % intervals")
    diff = 100 * comparison["diff"]
    lo, hi = 100 * comparison["boot_low"], 100 * comparison["boot_high"]
    right.errorbar([0], [diff], yerr=[[diff - lo], [hi - diff]], fmt="o", color="black", capsize=8)
    right.axhline(0, color="grey", lw=0.8, ls="--")
    right.set_xticks([0], ["tuned − base"])
    right.set_xlim(-1, 1)
    right.set_ylabel("difference (points)")
    right.set_xlabel("paired, bootstrap CI")
    p = comparison.get("mcnemar_p")
    right.set_title(f"McNemar p = {p:.3g}" if p is not None else "difference")
    fig.suptitle("Base vs adapter" + (f" (seed {seed})" if seed is not None else ""))
    return fig


def outcome_counts(results: Mapping[str, pd.DataFrame]) -> Figure:
    """Samples per outcome, base vs tuned, in the study's category order (PASS left out)."""
    from idfu_lab.analysis.stats import category_order

    counts = {m: df["outcome"].astype(str).value_counts() for m, df in results.items()}
    present = set().union(*(c.index for c in counts.values()))
    cats = category_order(present)
    fig = Figure(figsize=(8.0, 3.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(cats))
    width = 0.8 / max(1, len(counts))
    for i, (m, c) in enumerate(counts.items()):
        ax.bar(
            x + (i - (len(counts) - 1) / 2) * width,
            [int(c.get(k, 0)) for k in cats],
            width,
            label=m,
            color=PALETTE.get(m),
        )
    ax.set_xticks(x, cats, rotation=35, ha="right", fontsize="small")
    ax.set_xlabel("outcome")
    ax.set_ylabel("samples")
    ax.set_title("Failures by category, base vs tuned")
    ax.legend(fontsize="small")
    return fig


def sensitivity_heatmap(summary: pd.DataFrame) -> Figure:
    """pass@1 under each post-processing x import policy, one panel per model.

    A column that moves more than the base-vs-tuned difference says the harness, not the training,
    decides the comparison. Only the policies judged under the run's own time-limit policy are drawn
    (the row of the other time-limit policy is in the table beside the figure).
    """
    from idfu_lab.analysis.evaluation import policy_rows

    summary = policy_rows(summary)
    models = list(dict.fromkeys(summary["model"]))
    fig = Figure(figsize=(4.0 * len(models) + 0.6, 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(models), sharey=True))
    vmax = max(1.0, 100 * float(summary["pass1"].max()))
    image = None
    for ax, m in zip(axes, models, strict=True):
        table = (
            summary[summary["model"] == m].pivot(index="postprocess", columns="imports", values="pass1") * 100
        )
        order_rows = [r for r in ("raw", "extract", "sanitize") if r in table.index]
        order_cols = [c for c in ("none", "prompt", "header") if c in table.columns]
        table = table.loc[order_rows, order_cols]
        image = ax.imshow(table.to_numpy(), cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
        for (i, j), v in np.ndenumerate(table.to_numpy()):
            ax.text(
                j,
                i,
                f"{v:.1f}",
                ha="center",
                va="center",
                color="white" if v < vmax * 0.6 else "black",
                fontsize="small",
            )
        ax.set_xticks(range(len(order_cols)), order_cols)
        ax.set_yticks(range(len(order_rows)), order_rows)
        ax.set_xlabel("imports")
        ax.set_title(m)
    axes[0].set_ylabel("post-processing")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="pass@1 (%)")
    fig.suptitle("The same replies, judged under each policy")
    return fig
