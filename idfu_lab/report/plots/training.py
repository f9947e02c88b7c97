"""Figures of DPO training (notebook 02): the trainer's curves, and the margin each pair ended with.

Each function takes a DataFrame (the log history, or ``margins.jsonl``) and returns a matplotlib
``Figure`` built without pyplot, so a notebook shows it exactly once (when displayed or glued).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from idfu_lab.outcomes import UNKNOWN_OUTCOME

#: The curves TRL logs for DPO, with what each one means to a reader.
CURVES = (
    ("loss", "DPO loss", "−log σ(β·Δ): falls from log 2 ≈ 0.693 as the margin grows"),
    ("rewards/chosen", "reward of chosen", "β·(log πθ − log πref) on the passing reply"),
    ("rewards/rejected", "reward of rejected", "β·(log πθ − log πref) on the failing reply"),
    ("rewards/margins", "reward margin", "reward of chosen − reward of rejected"),
    ("rewards/accuracies", "reward accuracy", "share of pairs with chosen reward > rejected reward"),
)

#: Colours of the study's three categories; others are grey.
CATEGORY_COLOURS = {"NAME_ERROR": "#4c72b0", "ASSERTION_FAIL": "#dd8452", "TYPE_ERROR": "#55a868"}


def plot_training_curves(history: pd.DataFrame, *, seed: int | None = None) -> Figure:
    """Loss, rewards of chosen and rejected, their margin and the reward accuracy, per optimizer step.

    ``history`` is the trainer's log history (``log_history.csv``); rows without a loss (the final
    summary row) are ignored. Chosen and rejected rewards share a panel scale with a zero line: DPO
    can raise the margin by pushing the rejected reply down while the chosen one also falls.
    """
    df = history[history["loss"].notna()] if "loss" in history else history.iloc[0:0]
    fig = Figure(figsize=(11.0, 6.0), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for ax, (column, label, meaning) in zip(axes, CURVES, strict=False):
        if column in df and df[column].notna().any():
            ax.plot(df["step"], df[column], marker="o", markersize=3, linewidth=1.2)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        if column.startswith("rewards/") and column != "rewards/accuracies":
            ax.axhline(0.0, color="grey", linewidth=0.8, linestyle=":")
        if column == "loss":
            ax.axhline(np.log(2), color="grey", linewidth=0.8, linestyle=":", label="log 2")
            ax.legend(fontsize="small")
        if column == "rewards/accuracies":
            ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"{label}\n{meaning}", fontsize="small")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(label)
    ax = axes[-1]
    if "learning_rate" in df and df["learning_rate"].notna().any():
        ax.plot(df["step"], df["learning_rate"], color="#8172b3", linewidth=1.2)
    ax.set_title("learning rate\nthe schedule the optimizer followed", fontsize="small")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    fig.suptitle("DPO training curves" + (f" (seed {seed})" if seed is not None else ""))
    return fig


def plot_margins_by_category(margins: pd.DataFrame, *, seed: int | None = None) -> Figure:
    """The implicit reward margin after training of every pair, grouped by its rejected side's failure type.

    One row per category (the study's NAME_ERROR, ASSERTION_FAIL, TYPE_ERROR first), each pair a dot,
    the box its quartiles, the diamond its mean, the label its number of pairs. Right of zero: the
    trained model prefers the chosen reply more than the base did; the further right, the harder DPO
    pushed that kind of failure down.
    """
    from idfu_lab.outcomes import category_order

    df = margins.copy()
    df["rejected_outcome"] = df["rejected_outcome"].fillna(UNKNOWN_OUTCOME).astype(str)
    order = category_order(df["rejected_outcome"], only_present=True)
    fig = Figure(figsize=(7.5, 1.2 + 0.55 * max(len(order), 1)), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # jitter only: fixed, so the figure is reproducible
    data = [df.loc[df["rejected_outcome"] == c, "margin"].to_numpy() for c in order]
    ypos = np.arange(len(order))[::-1]
    if order:
        ax.boxplot(
            data,
            positions=ypos,
            orientation="horizontal",
            widths=0.5,
            showfliers=False,
            medianprops={"color": "black"},
            boxprops={"color": "#555555"},
            whiskerprops={"color": "#555555"},
            capprops={"color": "#555555"},
        )
    for y, c, values in zip(ypos, order, data, strict=True):
        colour = CATEGORY_COLOURS.get(c, "#8c8c8c")
        ax.scatter(values, y + rng.uniform(-0.15, 0.15, len(values)), s=14, alpha=0.7, color=colour, zorder=3)
        if len(values):
            ax.scatter([values.mean()], [y], marker="D", s=40, color="black", zorder=4)
    ax.axvline(0.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_yticks(ypos, [f"{c} (n={len(v)})" for c, v in zip(order, data, strict=True)])
    ax.set_xlabel("implicit reward margin after training  β·(Δ log-ratio chosen − rejected)")
    ax.set_ylabel("rejected side's failure")
    title = "Which failure types did DPO push down?"
    ax.set_title(title + (f" (seed {seed})" if seed is not None else ""))
    return fig


def save_figures(run) -> list:
    """Draw the seed's training curves and margins figure from its logs into ``train/`` (PNG); the paths.

    Training writes numbers only (:func:`idfu_lab.training.dpo.train_seed`); the entry points that
    finish a seed (``idfu-lab train``, notebook 02) call this afterwards.
    """
    from idfu_lab.training.dpo import TrainPaths, load_log_history, load_margins

    paths = TrainPaths.for_run(run)
    written = []
    for fig, path in (
        (plot_training_curves(load_log_history(run), seed=run.seed), paths.curves),
        (plot_margins_by_category(load_margins(run), seed=run.seed), paths.margins_figure),
    ):
        fig.savefig(path, dpi=110, bbox_inches="tight")
        written.append(path)
    return written
