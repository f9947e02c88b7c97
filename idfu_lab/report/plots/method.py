"""The pipeline as a figure: which step runs once, which runs per seed, and what each one leaves behind.

The book's Method page shows it. It is drawn from :data:`PIPELINE` (the same steps and artefact paths
that ``idfu_lab.pipeline`` and ``idfu_lab.runs`` use), so the figure cannot drift from the code into a
picture of a pipeline that no longer exists.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One box of the pipeline figure."""

    title: str
    notebook: str  # the notebook that runs it ("" for the input data)
    artefact: str  # what it leaves in the run directory
    per_seed: bool  # True: runs once per training seed
    human: bool = False  # True: a person's judgement is part of the step


#: The steps in the order they run (the order of the numbered notebooks).
PIPELINE: tuple[Step, ...] = (
    Step("Preference pairs", "", "the recipe's\ndata.pairs", per_seed=False),
    Step("Audit", "01_data_audit", "audit/\ntrain_pairs.jsonl", per_seed=False),
    Step("DPO training", "02_training", "seed-<s>/train/\nadapter/", per_seed=True),
    Step("Generation", "03_evaluation", "seed-<s>/\ngenerations/", per_seed=True),
    Step("Execution", "03_evaluation", "seed-<s>/results/\n(verdicts)", per_seed=True),
    Step("Taxonomy", "04_failure_taxonomy", "outcome × phase\ncounts", per_seed=True),
    Step("Delta tracing", "05_delta_tracing", "seed-<s>/delta/ +\nannotations/", per_seed=True, human=True),
    Step("Summary", "06_summary", "summary/\nsummary.json", per_seed=False),
)

RUN_COLOUR = "#dbe7f3"  # run-level steps
SEED_COLOUR = "#fbe3c8"  # per-seed steps
EDGE = "#3b4a5a"


def _box(ax, x: float, y: float, w: float, h: float, step: Step, stacked: int) -> None:
    colour = SEED_COLOUR if step.per_seed else RUN_COLOUR
    # Per-seed steps are drawn as a stack of cards, one behind the other, one card per seed.
    for k in range(stacked - 1, 0, -1):
        ax.add_patch(
            FancyBboxPatch(
                (x + 0.06 * k, y + 0.06 * k),
                w,
                h,
                boxstyle="round,pad=0.02,rounding_size=0.08",
                facecolor=colour,
                edgecolor=EDGE,
                linewidth=0.8,
                alpha=0.85,
            )
        )
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=colour,
            edgecolor=EDGE,
            linewidth=1.4 if step.human else 1.0,
            linestyle="--" if step.human else "-",
        )
    )
    ax.text(x + w / 2, y + h * 0.70, step.title, ha="center", va="center", fontsize=11, weight="bold")
    if step.notebook:
        ax.text(
            x + w / 2, y + h * 0.44, step.notebook, ha="center", va="center", fontsize=8.5, family="monospace"
        )
    ax.text(x + w / 2, y + h * 0.20, step.artefact, ha="center", va="center", fontsize=7.5, color="#4a4a4a")


def pipeline_figure(seeds: Sequence[int] = (42, 123, 7), steps: Sequence[Step] = PIPELINE) -> Figure:
    """Draw the pipeline in two rows read like a U: left to right, then right to left.

    ``seeds`` only sets how many cards a per-seed step stacks and the legend's wording.
    """
    seeds = list(seeds)
    n = len(steps)
    per_row = (n + 1) // 2
    w, h, gap_x, gap_y = 2.4, 1.55, 0.5, 0.75
    width = per_row * w + (per_row - 1) * gap_x
    fig = Figure(figsize=(9.2, 5.4))  # no pyplot: nothing global changes, in a kernel or in a build
    ax = fig.subplots()
    ax.set_xlim(-0.3, width + 0.5)
    ax.set_ylim(-0.55, 2 * h + gap_y + 0.3)
    ax.set_axis_off()

    stacked = max(1, min(len(seeds), 3))
    centres: list[tuple[float, float]] = []
    for i, step in enumerate(steps):
        row, col = divmod(i, per_row)
        if row == 1:  # the second row runs right to left, so the flow turns instead of jumping back
            col = per_row - 1 - col
        x = col * (w + gap_x)
        y = (h + gap_y) if row == 0 else 0.0
        _box(ax, x, y, w, h, step, stacked if step.per_seed else 1)
        centres.append((x, y))

    for i in range(n - 1):
        (x0, y0), (x1, y1) = centres[i], centres[i + 1]
        if y0 == y1:
            right = x1 > x0
            start = (x0 + (w if right else 0) + 0.04, y0 + h / 2)
            end = (x1 + (0 if right else w) - 0.04, y1 + h / 2)
        else:  # the turn from the first row to the second
            start = (x0 + w / 2, y0 - 0.04)
            end = (x1 + w / 2, y1 + h + 0.22)
        ax.add_patch(
            FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=16, color=EDGE, linewidth=1.3)
        )

    seed_words = ", ".join(str(s) for s in seeds)
    legend = [
        FancyBboxPatch((0, 0), 1, 1, facecolor=RUN_COLOUR, edgecolor=EDGE, label="once per run"),
        FancyBboxPatch(
            (0, 0),
            1,
            1,
            facecolor=SEED_COLOUR,
            edgecolor=EDGE,
            label=f"once per training seed ({seed_words})",
        ),
        FancyBboxPatch(
            (0, 0),
            1,
            1,
            facecolor="white",
            edgecolor=EDGE,
            linestyle="--",
            label="a person records a judgement",
        ),
    ]
    ax.legend(
        handles=legend, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=3, frameon=False, fontsize=10.5
    )
    ax.set_title("The pipeline: one notebook per step, executed into the run directory", fontsize=13)
    fig.tight_layout()
    return fig


def save_pipeline(path: str | Path, seeds: Sequence[int] = (42, 123, 7), dpi: int = 150) -> Path:
    """Draw the pipeline and write it to ``path`` (the format follows the suffix: .png or .svg)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipeline_figure(seeds).savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    logger.info("pipeline figure written to %s", path)
    return path
