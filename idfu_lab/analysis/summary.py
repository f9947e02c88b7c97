"""The run's summary over seeds: the study's table, paired intervals, a pooled estimate and the power.

Notebook 06 and the book read what :func:`summarise` returns and writes under
``runs/<name>/summary/``. It reads each seed's ``seed-<s>/results/base.jsonl`` and ``tuned.jsonl``;
a seed whose results are missing is reported (which seed, which file) and the others are used, so a
study with one seed still crashed can be summarised honestly; no seed at all is an error.

What it computes, and why each number is there:

- per seed, base and tuned pass@1 with an interval over problems (how precise *one* run is);
- the study's headline table: mean ± sd over seeds of pass@1 and of each failure category's count
  (the sd measures training-seed variation only, not the finite benchmark);
- per seed, a paired comparison (McNemar's exact test, paired bootstrap, Wald and Newcombe
  intervals): what a paired analysis can resolve on 164 problems;
- pooled over seeds, the mean difference with a cluster-by-problem standard error;
- the minimum detectable effect at 80 % power, unpaired and paired, and one run's standard error.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from idfu_lab.analysis import stats
from idfu_lab.errors import IdfuError
from idfu_lab.jsonl import write_json
from idfu_lab.runs import Run, timestamp

logger = logging.getLogger(__name__)

#: The two result files compared in every seed, as (approach, file name under ``seed-<s>/results``).
APPROACHES = (("base", "base.jsonl"), ("tuned", "tuned.jsonl"))

#: Discordance rates at which the paired MDE is tabulated besides the observed one.
DISCORDANCE_GRID = (0.05, 0.10, 0.15, 0.20)

#: Files written under ``summary/`` in the run directory.
SUMMARY_FILES = (
    "summary.json",
    "headline.csv",
    "headline_numbers.csv",
    "per_seed.csv",
    "paired.csv",
    "counts.csv",
)


def load_results(path: str | Path) -> pd.DataFrame:
    """A results JSONL as a frame; a malformed line is an error naming the file and line."""
    from idfu_lab.results import read_result_rows

    frame = pd.DataFrame(read_result_rows(path))
    frame["passed"] = frame["passed"].astype(bool)
    return frame


def results_path(run: Run, seed: int, name: str) -> Path:
    """Where a seed's results file lives (no folder is created: reading must not leave traces)."""
    return run.layout.results_dir(seed) / name


def seed_results(run: Run, seed: int) -> dict[str, pd.DataFrame | None]:
    """``{"base": frame | None, "tuned": frame | None}`` for one seed; None where the file is absent."""
    out: dict[str, pd.DataFrame | None] = {}
    for approach, name in APPROACHES:
        path = results_path(run, seed, name)
        out[approach] = load_results(path) if path.exists() else None
    return out


@dataclass
class Summary:
    """Everything notebook 06 shows; proportions are in [0, 1] except where a name says ``_pp`` or ``%``."""

    run_name: str
    profile: str
    alpha: float
    seeds: list[int]
    missing: dict[int, str]
    labels: dict[str, str]
    per_seed: pd.DataFrame
    counts: pd.DataFrame
    headline_numbers: pd.DataFrame
    headline: pd.DataFrame
    paired: pd.DataFrame
    pooled: dict[str, Any]
    mde: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)

    def stat(self, approach: str, metric: str = stats.PASS1_COLUMN) -> tuple[float, float]:
        """``(mean, sd)`` of one cell of the headline table (pass@1 in percent)."""
        row = self.headline_numbers[
            (self.headline_numbers["approach"] == approach) & (self.headline_numbers["metric"] == metric)
        ]
        if row.empty:
            raise KeyError(f"no {metric!r} for {approach!r}")
        return float(row["mean"].iloc[0]), float(row["sd"].iloc[0])

    def book_numbers(self) -> dict[str, float | int]:
        """The scalars the book quotes (glued by notebook 06): percentages and percentage points."""
        base_mean, base_sd = self.stat(self.labels["base"])
        tuned_mean, tuned_sd = self.stat(self.labels["tuned"])
        return {
            "pass1_base_mean": base_mean,
            "pass1_base_sd": base_sd,
            "pass1_tuned_mean": tuned_mean,
            "pass1_tuned_sd": tuned_sd,
            "n_seeds_used": len(self.seeds),
            "n_problems": int(self.mde["n"]),
            "pooled_diff_pp": 100.0 * self.pooled["diff"],
            "pooled_ci_low_pp": 100.0 * self.pooled["low"],
            "pooled_ci_high_pp": 100.0 * self.pooled["high"],
            "pooled_se_pp": 100.0 * self.pooled["se"],
            "pooled_se_naive_pp": 100.0 * self.pooled["se_naive"],
            "pooled_p_value": self.pooled["p_value"],
            "se_one_run_pp": self.mde["se_one_run_pp"],
            "mde_pp": self.mde["mde_unpaired_pp"],
            "mde_paired_pp": self.mde["mde_paired_pp"],
            "discordance_pct": 100.0 * self.mde["observed_discordance"]
            if self.mde["observed_discordance"]
            else 0.0,
        }

    def paired_table(self, decimals: int = 2) -> pd.DataFrame:
        """The per-seed paired comparison for display: counts, difference and intervals in points, McNemar's p."""
        level = f"{100 * (1 - self.alpha):.0f} %"

        def interval(low: Any, high: Any) -> str:
            if low is None or high is None or pd.isna(low) or pd.isna(high):
                return "n/a"
            return f"[{100 * low:+.{decimals}f}, {100 * high:+.{decimals}f}]"

        p = self.paired
        return pd.DataFrame(
            {
                "seed": p["seed"],
                "both pass": p["both_pass"],
                "base only (lost)": p["base_only"],
                "tuned only (gained)": p["tuned_only"],
                "both fail": p["both_fail"],
                "tuned − base (pp)": (100 * p["diff"]).round(decimals),
                f"bootstrap {level} CI": [
                    interval(lo, hi) for lo, hi in zip(p["boot_low"], p["boot_high"], strict=True)
                ],
                f"Newcombe {level} CI": [
                    interval(lo, hi) for lo, hi in zip(p["newcombe_low"], p["newcombe_high"], strict=True)
                ],
                # no discordant problem: the test has nothing to test (missing, said in words by the page)
                "McNemar exact p": p["mcnemar_p"].astype(float).where(p["base_only"] + p["tuned_only"] > 0),
            }
        ).set_index("seed")

    def mde_table(self, decimals: int = 1) -> pd.DataFrame:
        """Minimum detectable effects at the summary's power: unpaired, then paired by discordance rate."""
        m = self.mde
        rows = [
            {
                "design": "two independent runs (unpaired)",
                "discordance (%)": None,
                "MDE (pp)": m["mde_unpaired_pp"],
            }
        ]
        observed = m["observed_discordance"]
        for psi, value in m["mde_paired_grid_pp"].items():
            is_observed = observed is not None and abs(float(psi) - round(observed, 4)) < 1e-9
            rows.append(
                {
                    "design": "paired, same problems" + (" (observed discordance)" if is_observed else ""),
                    "discordance (%)": round(100 * float(psi), 1),
                    "MDE (pp)": value,
                }
            )
        table = pd.DataFrame(rows)
        table["MDE (pp)"] = table["MDE (pp)"].astype(float).round(decimals)
        return table

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes null)."""

        # pandas writes 10 decimals by default: an exact test's p of 1.5e-11 would become 0.0
        def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return json.loads(frame.to_json(orient="records", double_precision=15))

        return {
            "run": self.run_name,
            "profile": self.profile,
            "alpha": self.alpha,
            "seeds": self.seeds,
            "missing": {str(k): v for k, v in self.missing.items()},
            "labels": self.labels,
            "per_seed": records(self.per_seed),
            "counts": records(self.counts),
            "headline_numbers": records(self.headline_numbers),
            "headline": json.loads(self.headline.to_json(orient="index", double_precision=15)),
            "paired": records(self.paired),
            "pooled": _json_safe(self.pooled),
            "mde": _json_safe(self.mde),
        }


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _paired_row(seed: int, result: dict[str, Any]) -> dict[str, Any]:
    table = result["table"]
    return {
        "seed": seed,
        "n_problems": result["n_problems"],
        "both_pass": table[0][0] if table else None,
        "base_only": table[0][1] if table else None,
        "tuned_only": table[1][0] if table else None,
        "both_fail": table[1][1] if table else None,
        "base_pass1": result["base_pass1"],
        "tuned_pass1": result["tuned_pass1"],
        "diff": result["diff"],
        "boot_low": result["boot_low"],
        "boot_high": result["boot_high"],
        "wald_low": result["wald_low"],
        "wald_high": result["wald_high"],
        "newcombe_low": result["newcombe_low"],
        "newcombe_high": result["newcombe_high"],
        "mcnemar_p": result["mcnemar_p"],
        "discordance": result["discordance"],
    }


def power_summary(
    base_rate: float, n: int, observed_discordance: float | None, alpha: float = 0.05, power: float = 0.8
) -> dict[str, Any]:
    """The MDE (percentage points) unpaired and paired at the observed and a grid of discordance rates.

    A base rate of exactly 0 or 1 (the tiny profile's toy model solves nothing) has no unpaired MDE:
    NaN, not an error, so the summary of a demo run still renders.
    """
    grid = sorted({*DISCORDANCE_GRID, *([round(observed_discordance, 4)] if observed_discordance else [])})
    paired = {f"{psi:.4f}": 100.0 * stats.mde_paired(n, psi, alpha=alpha, power=power) for psi in grid}
    return {
        "base_rate": base_rate,
        "n": n,
        "alpha": alpha,
        "power": power,
        "se_one_run_pp": 100.0 * stats.se_one_run(base_rate, n),
        "mde_unpaired_pp": (
            100.0 * stats.mde_unpaired(base_rate, n, alpha=alpha, power=power)
            if 0.0 < base_rate < 1.0
            else math.nan
        ),
        "observed_discordance": observed_discordance,
        "mde_paired_pp": (
            100.0 * stats.mde_paired(n, observed_discordance, alpha=alpha, power=power)
            if observed_discordance
            else math.nan
        ),
        "mde_paired_grid_pp": paired,
    }


def summarise(
    run: Run,
    *,
    alpha: float | None = None,
    n_boot: int | None = None,
    boot_seed: int = 0,
    power: float = 0.8,
    labels: dict[str, str] | None = None,
    write: bool = True,
) -> Summary:
    """Summarise every seed of ``run`` that has both results files; write ``summary/`` unless ``write=False``.

    ``alpha`` and ``n_boot`` default to the recipe's ``evaluation.alpha`` and
    ``evaluation.bootstrap_samples``. ``labels`` name the approaches in the headline table.
    """
    cfg = run.config
    alpha = cfg.evaluation.alpha if alpha is None else alpha
    n_boot = cfg.evaluation.bootstrap_samples if n_boot is None else n_boot
    labels = labels or {"base": f"base ({cfg.model.name_or_path})", "tuned": "DPO (tuned adapter)"}

    per_approach: dict[str, dict[int, pd.DataFrame]] = {"base": {}, "tuned": {}}
    missing: dict[int, str] = {}
    for seed in run.seeds:
        found = seed_results(run, seed)
        absent = [name for approach, name in APPROACHES if found[approach] is None]
        if absent:
            missing[seed] = "missing " + ", ".join(f"seed-{seed}/results/{name}" for name in absent)
            logger.warning("seed %s left out of the summary: %s", seed, missing[seed])
            continue
        for approach, _ in APPROACHES:
            per_approach[approach][seed] = found[approach]
    used = list(per_approach["base"])
    if not used:
        raise IdfuError(f"{run.dir}: no seed has both results files ({'; '.join(missing.values())})")

    per_seed_rows, count_rows, paired_rows = [], [], []
    pairs = {}
    for seed in used:
        base, tuned = per_approach["base"][seed], per_approach["tuned"][seed]
        pairs[seed] = (base, tuned)
        result = stats.paired_comparison(base, tuned, alpha=alpha, n_boot=n_boot, seed=boot_seed)
        paired_rows.append(_paired_row(seed, result))
        for approach in ("base", "tuned"):
            ci = result[approach]
            per_seed_rows.append(
                {
                    "seed": seed,
                    "approach": approach,
                    "label": labels[approach],
                    "pass1": ci["pass1"],
                    "low": ci["low"],
                    "high": ci["high"],
                    "method": ci["method"],
                    "n_problems": ci["n_problems"],
                }
            )
            for outcome, count in stats.outcome_counts(per_approach[approach][seed]).items():
                count_rows.append({"seed": seed, "approach": approach, "outcome": outcome, "count": count})

    numbers = stats.headline_numbers({labels[a]: per_approach[a] for a in ("base", "tuned")})
    categories = [m for m in dict.fromkeys(numbers["metric"]) if m != stats.PASS1_COLUMN]
    counts = _complete_counts(
        pd.DataFrame(count_rows, columns=["seed", "approach", "outcome", "count"]), used, categories
    )
    paired = pd.DataFrame(paired_rows)
    pooled = stats.pooled_difference(pairs, alpha=alpha)

    base_rate = float(np.mean([r["base_pass1"] for r in paired_rows]))
    n_problems = int(paired["n_problems"].max())
    discordance = float(paired["discordance"].mean())
    mde = power_summary(
        base_rate, n_problems, discordance if discordance > 0 else None, alpha=alpha, power=power
    )
    mde["observed_diff_pp"] = 100.0 * pooled["diff"]

    summary = Summary(
        run_name=run.name,
        profile=cfg.profile,
        alpha=alpha,
        seeds=used,
        missing=missing,
        labels=labels,
        per_seed=pd.DataFrame(per_seed_rows),
        counts=counts,
        headline_numbers=numbers,
        headline=stats.format_headline(numbers),
        paired=paired,
        pooled=pooled,
        mde=mde,
    )
    if write:
        write_summary(run, summary)
    return summary


def _complete_counts(counts: pd.DataFrame, seeds: list[int], categories: list[str]) -> pd.DataFrame:
    """Every (seed, approach, category) with an explicit 0 where nothing failed that way (zeros are data)."""
    full = pd.MultiIndex.from_product(
        [seeds, ["base", "tuned"], categories], names=["seed", "approach", "outcome"]
    )
    series = counts.set_index(["seed", "approach", "outcome"])["count"]
    return series.reindex(full, fill_value=0.0).astype(float).reset_index()


def write_summary(run: Run, summary: Summary) -> dict[str, str]:
    """Write ``summary/summary.json`` and the CSV tables through the run object; returns their paths."""
    folder = run.layout.summary_dir
    folder.mkdir(parents=True, exist_ok=True)
    names = (
        "summary.json",
        "headline.csv",
        "headline_numbers.csv",
        "per_seed.csv",
        "paired.csv",
        "counts.csv",
    )
    files = {name: folder / name for name in names}
    record = summary.to_dict()
    # The same provenance conventions as the manifests: an ISO 8601 time, paths relative to the run.
    record["written"] = timestamp()
    record["files"] = {name: run.layout.relative(path) for name, path in files.items()}
    write_json(record, files["summary.json"])
    summary.headline.to_csv(files["headline.csv"], index_label="approach")
    summary.headline_numbers.to_csv(files["headline_numbers.csv"], index=False)
    summary.per_seed.to_csv(files["per_seed.csv"], index=False)
    summary.paired.to_csv(files["paired.csv"], index=False)
    summary.counts.to_csv(files["counts.csv"], index=False)
    summary.files = {k: str(v) for k, v in files.items()}
    logger.info(
        "summary of %s (%d seed(s)) written to %s", run.name, len(summary.seeds), files["summary.json"].parent
    )
    return summary.files
