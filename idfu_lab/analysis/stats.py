"""Honest statistics for a 164-problem benchmark: pass@k, seeds, paired tests, power.

Why this module exists: HumanEval has 164 problems. At pass@1 ≈ 0.8 one run's standard error is
``sqrt(0.8 * 0.2 / 164)`` ≈ 3.1 percentage points, so a +3.5 pp gain between two *independent*
runs is about one standard error: noise. What rescues the comparison is that base and tuned models
answer the *same* problems. Most verdicts agree; only the discordant problems (solved by one model
and not the other) carry information about the difference, and a paired analysis uses exactly
those. This module provides

- the unbiased pass@k estimator (Chen et al., 2021) and pass@1 per results file;
- the study's table: mean ± sd over training seeds of pass@1 and of each failure category's count;
- a paired comparison per seed: McNemar's exact test on the discordant problems, a paired
  bootstrap interval (problems resampled) and Wald / Newcombe intervals of the difference;
- a pooled difference over seeds with a cluster-by-problem standard error (the problems are the
  sampling units; seeds are repeated measures on them);
- the minimum detectable effect (MDE) at a given power, unpaired and paired, and one run's
  standard error.

Every distribution, test and power computation comes from scipy or statsmodels; the only formulas
written here are estimators (pass@k, the paired Wald and Newcombe intervals) and each is checked
against an independent computation in ``tests/test_stats.py``.

Inputs are results frames as written by the executor (one row per sample: ``task_id``, ``passed``,
``outcome``, ...; ``sample_index`` when several samples per problem were drawn).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.stats
from statsmodels.regression.linear_model import OLS  # not statsmodels.api, which imports every model
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.weightstats import DescrStatsW

from idfu_lab.errors import IdfuError
from idfu_lab.outcomes import Outcome, category_order

logger = logging.getLogger(__name__)

#: Label of the pass@1 column in the study's table (values in percent).
PASS1_COLUMN = "pass@1 (%)"

#: How many missing task ids an error message lists before summarising the rest.
_MAX_IDS_SHOWN = 10


# --------------------------------------------------------------------------- pass@k


def _pass_at_k_one(n: int, c: int, k: int) -> float:
    if n < k:
        raise IdfuError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if not 0 <= c <= n:
        raise IdfuError(f"number of correct samples must be between 0 and n={n}, got {c}")
    from idfu_lab.results import pass_at_k as _formula  # the one implementation of the estimator

    return _formula(n, c, k)


def pass_at_k(n: int | Sequence[int] | np.ndarray, c: int | Sequence[int] | np.ndarray, k: int) -> Any:
    """Unbiased pass@k of a problem with ``n`` samples of which ``c`` pass: ``1 - C(n-c, k) / C(n, k)``.

    Why not ``c / n`` raised to something: the naive estimator ``1 - (1 - c/n)^k`` is biased when
    ``n`` is small; this one (Chen et al., 2021) is unbiased for any ``n >= k``. It is computed in the
    numerically stable product form ``1 - prod_{i=n-c+1}^{n} (1 - k/i)``. Scalars give a float;
    arrays (broadcast together) give an array of the same shape.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise IdfuError(f"k must be a positive integer, got {k!r}")
    if np.ndim(n) == 0 and np.ndim(c) == 0:
        return _pass_at_k_one(int(n), int(c), int(k))
    n_arr, c_arr = np.broadcast_arrays(np.asarray(n, dtype=int), np.asarray(c, dtype=int))
    out = np.fromiter(
        (_pass_at_k_one(int(a), int(b), int(k)) for a, b in zip(n_arr.ravel(), c_arr.ravel(), strict=True)),
        dtype=float,
        count=n_arr.size,
    )
    return out.reshape(n_arr.shape)


def _check_results(results: pd.DataFrame, what: str = "results") -> None:
    missing = [col for col in ("task_id", "passed") if col not in results.columns]
    if missing:
        raise IdfuError(
            f"{what}: missing column(s) {', '.join(missing)} (a results file has task_id, passed, outcome)"
        )
    if results.empty:
        raise IdfuError(f"{what}: no rows")


def problem_counts(results: pd.DataFrame) -> pd.DataFrame:
    """Per problem: ``n`` samples and ``c`` passing ones (index ``task_id``, in first-seen order)."""
    _check_results(results)
    grouped = results.groupby("task_id", sort=False)["passed"]
    return pd.DataFrame({"n": grouped.size(), "c": grouped.sum().astype(int)})


def problem_pass_rates(results: pd.DataFrame) -> pd.Series:
    """Per problem, the share of its samples that pass (0 or 1 with one greedy sample per problem)."""
    counts = problem_counts(results)
    return (counts["c"] / counts["n"]).rename("pass_rate")


def pass_at_k_frame(results: pd.DataFrame, k: int = 1) -> float:
    """pass@k of a results file: the unbiased estimator per problem, averaged over problems."""
    counts = problem_counts(results)
    return float(np.mean(pass_at_k(counts["n"].to_numpy(), counts["c"].to_numpy(), k)))


def pass_at_1(results: pd.DataFrame) -> float:
    """pass@1: the mean over samples within each problem, then the mean over problems.

    With one greedy sample per problem this is the share of problems solved, the study's number.
    """
    return float(problem_pass_rates(results).mean())


def _is_binary(results: pd.DataFrame) -> bool:
    return bool((problem_counts(results)["n"] == 1).all())


def pass1_interval(results: pd.DataFrame, alpha: float = 0.05) -> dict[str, Any]:
    """pass@1 with a ``1 - alpha`` interval over problems.

    One sample per problem: the Wilson score interval (statsmodels), which behaves near 0 and 1
    where the Wald interval does not. Several samples per problem: a t interval of the mean of the
    per-problem pass rates (the problems are the independent units, not the samples).
    """
    rates = problem_pass_rates(results)
    n = int(rates.size)
    p = float(rates.mean())
    if _is_binary(results):
        low, high = proportion_confint(int(rates.sum()), n, alpha=alpha, method="wilson")
        method = "wilson"
    elif n >= 2:
        low, high = DescrStatsW(rates.to_numpy()).tconfint_mean(alpha=alpha)
        method = "t over problems"
    else:
        low, high, method = math.nan, math.nan, "none (one problem)"
    return {"pass1": p, "low": float(low), "high": float(high), "method": method, "n_problems": n}


def se_one_run(p: float, n: int) -> float:
    """Standard error of one run's pass@1, ``sqrt(p (1 - p) / n)``: the noise floor of an unpaired comparison."""
    if not 0.0 <= p <= 1.0 or n < 1:
        raise IdfuError(f"se_one_run needs 0 <= p <= 1 and n >= 1, got p={p}, n={n}")
    return math.sqrt(p * (1.0 - p) / n)


# --------------------------------------------------------------------------- failure categories


def outcome_counts(results: pd.DataFrame) -> pd.Series:
    """Failures per outcome category, per draw of one sample per problem.

    With one greedy sample per problem these are plain counts of problems, the study's numbers. With
    several samples per problem the counts are divided by the mean number of samples per problem so
    that they stay on the same scale (expected failing problems in one draw).
    """
    _check_results(results)
    if "outcome" not in results.columns:
        raise IdfuError("results: missing column outcome (a results file has task_id, passed, outcome)")
    per_draw = len(results) / results["task_id"].nunique()
    failures = results.loc[results["outcome"].astype(str) != str(Outcome.PASS), "outcome"].astype(str)
    return (failures.value_counts() / per_draw).astype(float).rename("count")


def mean_sd(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) over seeds; sd is NaN with fewer than two values."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    sd = float(np.std(arr, ddof=1)) if arr.size >= 2 else math.nan
    return float(np.mean(arr)), sd


def seed_metrics(per_seed: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """One row per seed: pass@1, problems, samples and the count of each failure category (0 when absent)."""
    rows = []
    for seed, results in per_seed.items():
        counts = outcome_counts(results)
        rows.append(
            {
                "seed": seed,
                "pass1": pass_at_1(results),
                "n_problems": int(results["task_id"].nunique()),
                "n_samples": len(results),
                **counts.to_dict(),
            }
        )
    frame = pd.DataFrame(rows)
    cats = category_order(c for c in frame.columns if c not in {"seed", "pass1", "n_problems", "n_samples"})
    for cat in cats:
        if cat not in frame.columns:
            frame[cat] = 0.0
    frame[cats] = frame[cats].fillna(0.0)
    return frame[["seed", "pass1", "n_problems", "n_samples", *cats]]


def headline_numbers(approaches: Mapping[str, Mapping[int, pd.DataFrame]]) -> pd.DataFrame:
    """The study's table as numbers: one row per (approach, metric) with mean, sd (ddof=1) and seeds.

    ``approaches`` maps a label (``"base"``, ``"tuned"``) to ``{seed: results}``. Metrics are
    ``pass@1 (%)`` then every failure category present in any approach (study's three first).
    """
    metrics = {label: seed_metrics(per_seed) for label, per_seed in approaches.items() if per_seed}
    if not metrics:
        raise IdfuError("no results to summarise")
    cats = category_order({c for m in metrics.values() for c in m.columns[4:]})
    rows = []
    for label, frame in metrics.items():
        m, s = mean_sd(100.0 * frame["pass1"])
        rows.append({"approach": label, "metric": PASS1_COLUMN, "mean": m, "sd": s, "n_seeds": len(frame)})
        for cat in cats:
            values = frame[cat] if cat in frame.columns else np.zeros(len(frame))
            m, s = mean_sd(values)
            rows.append({"approach": label, "metric": cat, "mean": m, "sd": s, "n_seeds": len(frame)})
    return pd.DataFrame(rows)


def format_headline(numbers: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """The study's table for display: approach | pass@1 (%) | NAME_ERROR | ... each as ``mean ± sd``.

    A single seed shows the mean alone (no spread can be estimated from one run).
    """

    def fmt(row: pd.Series) -> str:
        if np.isnan(row["sd"]):
            return f"{row['mean']:.{decimals}f}"
        return f"{row['mean']:.{decimals}f} ± {row['sd']:.{decimals}f}"

    table = numbers.assign(cell=numbers.apply(fmt, axis=1)).pivot(
        index="approach", columns="metric", values="cell"
    )
    columns = list(dict.fromkeys(numbers["metric"]))  # first-seen order: pass@1, then the categories
    approaches = list(dict.fromkeys(numbers["approach"]))
    table = table.loc[approaches, columns]
    table.columns.name = None
    return table


# --------------------------------------------------------------------------- paired comparison


def _id_list(ids: Iterable[str]) -> str:
    ids = sorted(ids)
    shown = ", ".join(ids[:_MAX_IDS_SHOWN])
    return shown + (f" and {len(ids) - _MAX_IDS_SHOWN} more" if len(ids) > _MAX_IDS_SHOWN else "")


def aligned_rates(base: pd.DataFrame, tuned: pd.DataFrame) -> pd.DataFrame:
    """Per-problem pass rates of both models on the same problems (columns ``base``, ``tuned``).

    A paired comparison is only valid on the same problem set: different sets are an error that
    names the task ids missing on each side.
    """
    _check_results(base, "base results")
    _check_results(tuned, "tuned results")
    rb, rt = problem_pass_rates(base), problem_pass_rates(tuned)
    only_base, only_tuned = set(rb.index) - set(rt.index), set(rt.index) - set(rb.index)
    if only_base or only_tuned:
        parts = []
        if only_base:
            parts.append(f"missing from tuned: {_id_list(only_base)}")
        if only_tuned:
            parts.append(f"missing from base: {_id_list(only_tuned)}")
        raise IdfuError("base and tuned results cover different problems (" + "; ".join(parts) + ")")
    return pd.DataFrame({"base": rb, "tuned": rt.loc[rb.index]})


def newcombe_paired_interval(table: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    """Newcombe's (1998, method 10) hybrid score interval for a paired difference ``p_tuned - p_base``.

    ``table`` is ``[[both pass, base only], [tuned only, both fail]]``. It combines the Wilson
    intervals of the two marginal proportions (statsmodels) with a correction for their correlation;
    unlike the Wald interval it stays inside [-1, 1] and keeps its coverage with few discordant pairs.
    """
    t = np.asarray(table, dtype=float)
    n = t.sum()
    row, col = t.sum(axis=1), t.sum(axis=0)
    p_base, p_tuned = row[0] / n, col[0] / n
    l_base, u_base = proportion_confint(row[0], n, alpha=alpha, method="wilson")
    l_tuned, u_tuned = proportion_confint(col[0], n, alpha=alpha, method="wilson")
    if (row == 0).any() or (col == 0).any():
        phi = 0.0
    else:
        a = t[0, 0] * t[1, 1] - t[0, 1] * t[1, 0]
        denom = math.sqrt(row.prod() * col.prod())
        phi = (a - n / 2) / denom if a > n / 2 else (0.0 if a >= 0 else a / denom)
    diff = p_tuned - p_base
    dl_t, du_t = p_tuned - l_tuned, u_tuned - p_tuned
    dl_b, du_b = p_base - l_base, u_base - p_base
    low = diff - math.sqrt(max(dl_t**2 - 2 * phi * dl_t * du_b + du_b**2, 0.0))
    high = diff + math.sqrt(max(du_t**2 - 2 * phi * du_t * dl_b + dl_b**2, 0.0))
    return max(-1.0, low), min(1.0, high)


def bootstrap_difference(
    base_rates: np.ndarray, tuned_rates: np.ndarray, alpha: float = 0.05, n_boot: int = 10000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(tuned - base)``, resampling problems with their pair kept.

    Resampling problems (not verdicts) is what makes it paired: a problem both models solve moves
    both means together. Deterministic for a given ``seed`` (scipy.stats.bootstrap, vectorised).
    """
    b, t = np.asarray(base_rates, dtype=float), np.asarray(tuned_rates, dtype=float)
    if b.size < 2:
        return math.nan, math.nan

    def mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(y - x, axis=axis)

    res = scipy.stats.bootstrap(
        (b, t),
        mean_diff,
        paired=True,
        vectorized=True,
        n_resamples=n_boot,
        confidence_level=1.0 - alpha,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_comparison(
    base_df: pd.DataFrame, tuned_df: pd.DataFrame, alpha: float = 0.05, n_boot: int = 10000, seed: int = 0
) -> dict[str, Any]:
    """Base vs tuned on the same problems: the 2x2 table, McNemar's exact test and intervals of the difference.

    Returns a JSON-ready dict: ``n_problems``, ``base_pass1`` / ``tuned_pass1`` (with Wilson or t
    intervals), ``diff`` (tuned - base), ``table`` = ``[[both pass, base only], [tuned only, both
    fail]]`` (rows: base pass/fail; columns: tuned pass/fail), ``discordant`` and ``discordance``
    (share of problems), ``gained`` / ``lost`` task ids, ``mcnemar_statistic`` / ``mcnemar_p`` (exact
    binomial test on the discordant problems; None with several samples per problem, where verdicts
    are not binary), ``boot_low`` / ``boot_high`` (paired percentile bootstrap over problems),
    ``wald_low`` / ``wald_high`` and ``newcombe_low`` / ``newcombe_high``.
    """
    rates = aligned_rates(base_df, tuned_df)
    n = len(rates)
    b, t = rates["base"].to_numpy(), rates["tuned"].to_numpy()
    d = t - b
    diff = float(d.mean())
    z = scipy.stats.norm.ppf(1.0 - alpha / 2.0)
    wald_se = float(np.std(d, ddof=0) / math.sqrt(n))
    boot_low, boot_high = bootstrap_difference(b, t, alpha=alpha, n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {
        "n_problems": n,
        "alpha": alpha,
        "n_boot": n_boot,
        "boot_seed": seed,
        "base": pass1_interval(base_df, alpha),
        "tuned": pass1_interval(tuned_df, alpha),
        "base_pass1": float(b.mean()),
        "tuned_pass1": float(t.mean()),
        "diff": diff,
        "boot_low": boot_low,
        "boot_high": boot_high,
        "wald_se": wald_se,
        "wald_low": diff - z * wald_se,
        "wald_high": diff + z * wald_se,
        "gained": sorted(rates.index[d > 0].tolist()),
        "lost": sorted(rates.index[d < 0].tolist()),
    }
    if _is_binary(base_df) and _is_binary(tuned_df):
        bp, tp = b.astype(bool), t.astype(bool)
        table = np.array(
            [[np.sum(bp & tp), np.sum(bp & ~tp)], [np.sum(~bp & tp), np.sum(~bp & ~tp)]], dtype=int
        )
        test = mcnemar(table, exact=True)
        low, high = newcombe_paired_interval(table, alpha)
        discordant = int(table[0, 1] + table[1, 0])
        out.update(
            table=table.tolist(),
            discordant=discordant,
            discordance=discordant / n,
            mcnemar_statistic=float(test.statistic),
            mcnemar_p=float(test.pvalue),
            newcombe_low=low,
            newcombe_high=high,
        )
    else:
        logger.info(
            "several samples per problem: McNemar's test needs one binary verdict per problem; skipped"
        )
        out.update(
            table=None,
            discordant=int(np.sum(d != 0)),
            discordance=float(np.mean(d != 0)),
            mcnemar_statistic=None,
            mcnemar_p=None,
            newcombe_low=None,
            newcombe_high=None,
        )
    return out


# --------------------------------------------------------------------------- pooled over seeds


def seed_problem_differences(pairs: Mapping[int, tuple[pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """Long frame of per-(seed, problem) pass rates and differences: columns seed, task_id, base, tuned, diff."""
    frames = []
    for seed, (base, tuned) in pairs.items():
        rates = aligned_rates(base, tuned)
        frames.append(
            pd.DataFrame(
                {
                    "seed": seed,
                    "task_id": rates.index.to_numpy(),
                    "base": rates["base"].to_numpy(),
                    "tuned": rates["tuned"].to_numpy(),
                }
            )
        )
    if not frames:
        raise IdfuError("no seeds to pool")
    long = pd.concat(frames, ignore_index=True)
    long["diff"] = long["tuned"] - long["base"]
    return long


def pooled_difference(
    pairs: Mapping[int, tuple[pd.DataFrame, pd.DataFrame]], alpha: float = 0.05
) -> dict[str, Any]:
    """Mean difference over seeds and problems, with a standard error clustered by problem.

    Why clustered: the three seeds are evaluated on the same 164 problems (and the greedy base is
    often the very same run), so the ``seeds x problems`` differences are not independent. Treating
    them as ``3 x 164`` independent observations would understate the standard error; a problem is
    the unit that was sampled. The estimate is an intercept-only OLS on the per-(seed, problem)
    differences with statsmodels' cluster-robust covariance (groups = problems, CR1 small-sample
    correction) and a normal interval. With the same seeds on every problem it equals the standard
    error of the per-problem mean differences, ``sd(d̄_problem) / sqrt(n_problems)``.

    Returns ``diff``, ``se``, ``low``, ``high``, ``z``, ``p_value``, ``se_naive`` (the i.i.d. standard
    error, shown for contrast), ``n_seeds``, ``n_problems``, ``n_obs`` and per-seed differences.
    """
    long = seed_problem_differences(pairs)
    groups = pd.factorize(long["task_id"])[0]
    exog = np.ones((len(long), 1))
    model = OLS(long["diff"].to_numpy(dtype=float), exog)
    fit = model.fit(cov_type="cluster", cov_kwds={"groups": groups})
    naive = model.fit()
    low, high = fit.conf_int(alpha=alpha)[0]
    per_seed = long.groupby("seed", sort=False)["diff"].mean()
    return {
        "diff": float(fit.params[0]),
        "se": float(fit.bse[0]),
        "low": float(low),
        "high": float(high),
        "z": float(fit.tvalues[0]),
        "p_value": float(fit.pvalues[0]),
        "se_naive": float(naive.bse[0]),
        "alpha": alpha,
        "n_seeds": int(long["seed"].nunique()),
        "n_problems": int(long["task_id"].nunique()),
        "n_obs": len(long),
        "per_seed_diff": {str(k): float(v) for k, v in per_seed.items()},
    }


# --------------------------------------------------------------------------- power


def mde_unpaired(p_base: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest improvement over ``p_base`` that two independent runs of ``n`` problems detect with ``power``.

    Two-sided two-proportion z-test on the arcsine scale (statsmodels ``NormalIndPower`` with
    Cohen's h from ``proportion_effectsize``): solve for h, then map h back to a proportion. Returns
    a difference of proportions (multiply by 100 for percentage points); NaN when even p = 1 is not
    far enough from ``p_base``.
    """
    if not 0.0 < p_base < 1.0 or n < 2:
        raise IdfuError(f"mde_unpaired needs 0 < p_base < 1 and n >= 2, got p_base={p_base}, n={n}")
    h = float(NormalIndPower().solve_power(effect_size=None, nobs1=n, alpha=alpha, power=power, ratio=1.0))
    angle = math.asin(math.sqrt(p_base)) + h / 2.0
    if angle > math.pi / 2:
        return math.nan
    return math.sin(angle) ** 2 - p_base


def mcnemar_power(n: int, discordance: float, diff: float, alpha: float = 0.05) -> float:
    """Exact power of the two-sided exact McNemar test at level ``alpha``.

    The model of a paired experiment: each of ``n`` problems is discordant with probability
    ``discordance`` (ψ); a discordant problem is a gain for the tuned model with probability
    ``(ψ + diff) / (2ψ)``. The number of discordant problems D is Binomial(n, ψ); given D the gains are
    Binomial(D, q) and the test (statsmodels' ``mcnemar(exact=True)``: p = 2·P(X ≤ min(b, c)),
    X ~ Binomial(D, 1/2)) rejects when p ≤ alpha. Power is summed over D and the rejection region.
    """
    if not 0.0 < discordance <= 1.0 or abs(diff) > discordance or n < 1:
        raise IdfuError(
            f"mcnemar_power needs 0 < discordance <= 1, |diff| <= discordance, n >= 1; got {discordance}, {diff}, {n}"
        )
    q = (discordance + diff) / (2.0 * discordance)
    dd = np.arange(n + 1)[:, None]  # discordant count D
    kk = np.arange(n + 1)[None, :]  # min(b, c) threshold candidate
    valid = kk <= dd
    pvals = np.where(valid, np.minimum(1.0, 2.0 * scipy.stats.binom.cdf(kk, dd, 0.5)), np.inf)
    reject_k = np.where(pvals <= alpha, kk, -1).max(axis=1)  # largest min(b,c) that still rejects, per D
    d1 = dd[:, 0]
    lower = np.where(reject_k >= 0, scipy.stats.binom.cdf(reject_k, d1, q), 0.0)
    upper = np.where(reject_k >= 0, scipy.stats.binom.sf(d1 - reject_k - 1, d1, q), 0.0)
    p_reject = lower + upper
    return float(np.sum(scipy.stats.binom.pmf(d1, n, discordance) * p_reject))


def mde_paired(
    n: int, discordance: float, alpha: float = 0.05, power: float = 0.8, method: str = "exact"
) -> float:
    """Smallest improvement a paired comparison on ``n`` problems detects with ``power``, given the discordance rate.

    The discordance rate ψ (share of problems on which the two models disagree) is what sets the
    paired test's noise: the difference is ``(gains - losses) / n`` and only the ψ·n discordant
    problems vary. ``method="exact"`` inverts :func:`mcnemar_power` (the test this project runs);
    ``method="normal"`` treats the per-problem differences as one sample (statsmodels
    ``NormalIndPower`` with ``ratio=0``) with variance ``ψ - δ²``. Returns a difference of
    proportions; NaN when even ``diff = ψ`` (every discordant problem a gain) is underpowered.
    """
    if not 0.0 < discordance <= 1.0 or n < 2:
        raise IdfuError(f"mde_paired needs 0 < discordance <= 1 and n >= 2, got {discordance}, {n}")
    if method == "normal":
        es = float(
            NormalIndPower().solve_power(effect_size=None, nobs1=n, alpha=alpha, power=power, ratio=0.0)
        )
        delta = es * math.sqrt(discordance / (1.0 + es**2))
        return delta if delta <= discordance else math.nan
    if method != "exact":
        raise IdfuError(f"mde_paired: method must be 'exact' or 'normal', got {method!r}")
    if mcnemar_power(n, discordance, discordance, alpha) < power:
        return math.nan
    return float(
        scipy.optimize.brentq(
            lambda x: mcnemar_power(n, discordance, x, alpha) - power, 0.0, discordance, xtol=1e-7
        )
    )
