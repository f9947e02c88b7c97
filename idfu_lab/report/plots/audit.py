"""Figures of the pair audit (notebook 01): what the rejected side fails with, how long the pairs are,
and how far each rejected side is from its chosen side.

Each function takes the annotated pairs as a table (:meth:`idfu_lab.data.audit.AuditReport.frame`) and
returns a matplotlib Figure (built without pyplot) with a title and labelled axes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure


def _figure(ncols: int = 1, width: float = 6.5, height: float = 3.6):
    """A Figure built without pyplot (no global state), so a notebook shows it exactly once."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)
    return fig, list(axes[0])


def outcome_mix(frame: pd.DataFrame) -> Figure:
    """Outcome x phase of the rejected side: the failure distribution training pushes away from.

    Bars are stacked by phase (definition: the program failed while loading, e.g. an appended
    self-test; test: the benchmark's asserts failed). A rejected side that passes is a parity
    violation and is drawn as PASS so it cannot hide.
    """
    from idfu_lab.outcomes import Outcome

    fig, (ax,) = _figure()
    if frame.empty:
        ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
    else:
        phase = frame["rejected_phase"].fillna("none (passed)")
        table = frame.assign(phase=phase).groupby(["rejected_outcome", "phase"]).size().unstack(fill_value=0)
        order = [str(o) for o in Outcome if str(o) in table.index]
        table = table.loc[order[::-1]]
        colors = {"definition": "#c44e52", "test": "#4c72b0", "none (passed)": "#999999"}
        left = None
        for col in [c for c in ("definition", "test", "none (passed)") if c in table.columns]:
            ax.barh(table.index, table[col], left=left, label=col, color=colors[col])
            left = table[col] if left is None else left + table[col]
        ax.legend(title="phase", loc="lower right", fontsize="small")
        ax.set_xlim(0, table.sum(axis=1).max() + 0.5)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Rejected side: outcome and phase")
    ax.set_xlabel("pairs")
    ax.set_ylabel("outcome of the rejected code")
    return fig


def length_distributions(
    frame: pd.DataFrame,
    *,
    max_prompt_length: int | None = None,
    max_length: int | None = None,
    unit: str = "tokens",
) -> Figure:
    """Left: prompt lengths against ``max_prompt_length``. Right: each pair's chosen vs rejected reply
    length; points off the diagonal on one side only would be a length bias."""
    from matplotlib.ticker import MaxNLocator

    fig, (ax1, ax2) = _figure(ncols=2, width=9.5)
    if not frame.empty:
        ax1.hist(frame["prompt_length"], bins=20, color="#55a868")
        if max_prompt_length is not None and unit == "tokens":
            ax1.axvline(
                max_prompt_length,
                color="black",
                linestyle="--",
                label=f"max_prompt_length {max_prompt_length}",
            )
            ax1.legend(fontsize="small")
        over = frame["over_max_length"].astype(bool)
        ax2.scatter(
            frame["chosen_length"][~over],
            frame["rejected_length"][~over],
            color="#4c72b0",
            alpha=0.8,
            label="pair",
        )
        if over.any():
            ax2.scatter(
                frame["chosen_length"][over],
                frame["rejected_length"][over],
                color="#c44e52",
                label="over max_length",
            )
        hi = max(frame["chosen_length"].max(), frame["rejected_length"].max()) * 1.05
        ax2.plot([0, hi], [0, hi], color="grey", linestyle=":", label="equal length")
        ax2.set_xlim(0, hi)
        ax2.set_ylim(0, hi)
        ax2.legend(fontsize="small")
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_title("Prompt lengths")
    ax1.set_xlabel(
        f"prompt length ({unit}, chat template applied)" if unit == "tokens" else f"prompt length ({unit})"
    )
    ax1.set_ylabel("pairs")
    ax2.set_title("Reply lengths, pair by pair")
    ax2.set_xlabel(f"chosen reply ({unit})")
    ax2.set_ylabel(f"rejected reply ({unit})")
    return fig


def edit_distances(frame: pd.DataFrame) -> Figure:
    """Token edit distance vs changed lines between chosen and rejected code; suspects in red.

    An injected bug sits in the bottom-left corner (one token, one line); honest pairs of two samples
    spread out to the right.
    """
    fig, (ax,) = _figure()
    if not frame.empty:
        suspected = frame["synthetic.suspected"].astype(bool)
        for mask, color, label in (
            (~suspected, "#4c72b0", "not suspected"),
            (suspected, "#c44e52", "suspected synthetic"),
        ):
            sub = frame[mask]
            if len(sub):
                ax.scatter(
                    sub["synthetic.token_edit_distance"],
                    sub["synthetic.changed_lines"],
                    color=color,
                    label=label,
                    alpha=0.8,
                )
        for _, row in frame[suspected].iterrows():
            ax.annotate(
                str(row["id"]),
                (row["synthetic.token_edit_distance"], row["synthetic.changed_lines"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize="small",
            )
        ax.set_xscale("symlog", linthresh=2)
        ax.legend(fontsize="small")
    ax.set_title("How far is each rejected side from its chosen side?")
    ax.set_xlabel("token edit distance (chosen -> rejected code)")
    ax.set_ylabel("changed lines")
    return fig
