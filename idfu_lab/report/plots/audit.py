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


#: Pairs sit on a few integer points (most honest pairs of one model differ by a line or two), so the
#: ids of more than this many suspects would be printed on top of one another: the legend counts them
#: instead, and the audit's table lists them.
LABELLED_SUSPECTS = 12


def edit_distances(frame: pd.DataFrame) -> Figure:
    """Token edit distance vs changed lines between chosen and rejected code; suspects in red.

    An injected bug sits in the bottom-left corner (one token, one line); honest pairs of two samples
    spread out to the right. Both measures are whole numbers, so many pairs share a point: each marker
    is one point, its area proportional to the pairs on it (drawn one by one, the pile would look like
    a single pair). Suspects are named when there are at most :data:`LABELLED_SUSPECTS` of them.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig, (ax,) = _figure(width=8.5)
    x, y = "synthetic.token_edit_distance", "synthetic.changed_lines"
    if frame.empty:
        ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
    else:
        suspected = frame["synthetic.suspected"].astype(bool)
        handles = []
        for flag, color, label in (
            (False, "#4c72b0", "not suspected"),
            (True, "#c44e52", "suspected synthetic"),
        ):
            sub = frame[suspected == flag]
            if not len(sub):
                continue
            points = sub.groupby([x, y]).size().reset_index(name="pairs")
            ax.scatter(
                points[x], points[y], s=16 * points["pairs"], color=color, alpha=0.6, edgecolor="white"
            )
            handles.append(
                Line2D([], [], marker="o", linestyle="", color=color, label=f"{label}: {len(sub)} pairs")
            )
        if 0 < suspected.sum() <= LABELLED_SUSPECTS:  # one label a point: ids sharing it, joined
            for (px, py), ids in frame[suspected].groupby([x, y])["id"]:
                ax.annotate(
                    ", ".join(map(str, ids)),
                    (px, py),
                    textcoords="offset points",
                    xytext=(6, 6),
                    fontsize="small",
                )
        ax.set_xscale("symlog", linthresh=2)
        ticks = [t for t in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if t <= frame[x].max() * 1.5]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        top = int(frame[y].max())
        ax.set_ylim(-0.5 if frame[y].min() == 0 else 0.5, top + 0.5)
        handles.append(Line2D([], [], linestyle="", label="marker area: pairs at that point"))
        ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("How far is each rejected side from its chosen side?")
    ax.set_xlabel("token edit distance (chosen -> rejected code)")
    ax.set_ylabel("changed lines")
    return fig
