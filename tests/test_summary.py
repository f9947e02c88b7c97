"""The run summary: reads every seed's results, tolerates missing seeds, writes summary/ for the book."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from idfu_lab import runs
from idfu_lab.analysis import stats
from idfu_lab.analysis.summary import SUMMARY_FILES, load_results, summarise
from idfu_lab.errors import IdfuError
from idfu_lab.problems import load_humaneval
from idfu_lab.report import display

#: Failure mix drawn for failing problems (roughly the study's: mostly wrong answers, then missing names).
FAILURES = {
    "ASSERTION_FAIL": 0.65,
    "NAME_ERROR": 0.18,
    "TYPE_ERROR": 0.05,
    "SYNTAX_ERROR": 0.06,
    "INDEX_ERROR": 0.06,
}
EXCEPTIONS = {
    "ASSERTION_FAIL": ("AssertionError", "test"),
    "NAME_ERROR": ("NameError", "definition"),
    "TYPE_ERROR": ("TypeError", "test"),
    "SYNTAX_ERROR": ("SyntaxError", "definition"),
    "INDEX_ERROR": ("IndexError", "test"),
}


def _rows(passed: np.ndarray, failures: np.ndarray, task_ids: list[str]) -> list[dict]:
    rows = []
    for task_id, ok, outcome in zip(task_ids, passed, failures, strict=True):
        exc, phase = EXCEPTIONS[outcome]
        rows.append(
            {
                "task_id": task_id,
                "sample_index": 0,
                "completion": "    return None\n",
                "passed": bool(ok),
                "outcome": "PASS" if ok else outcome,
                "phase": None if ok else phase,
                "exception_type": None if ok else exc,
                "message": "" if ok else f"{exc}: constructed",
                "duration_s": 0.01,
            }
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def build_run(run_dir: Path, seeds: tuple[int, ...] = (42, 123, 7), rng_seed: int = 0) -> runs.Run:
    """A tiny-profile run whose seeds hold results files on the 164 real HumanEval task ids.

    The base model is greedy and generated once, so its results are the same in every seed (as in a
    real run); each seed's tuned model keeps most verdicts and flips a few (about 8 % discordant).
    """
    run = runs.open("tiny-humaneval", run_dir=run_dir)
    task_ids = list(load_humaneval())
    rng = np.random.default_rng(rng_seed)
    labels, probs = list(FAILURES), list(FAILURES.values())
    base_pass = rng.random(len(task_ids)) < 0.8
    base_fail = rng.choice(labels, size=len(task_ids), p=probs)
    for seed in seeds:
        gain = ~base_pass & (rng.random(len(task_ids)) < 0.30)
        loss = base_pass & (rng.random(len(task_ids)) < 0.025)
        tuned_pass = (base_pass | gain) & ~loss
        tuned_fail = np.where(
            rng.random(len(task_ids)) < 0.2, rng.choice(labels, size=len(task_ids), p=probs), base_fail
        )
        write_jsonl(run.layout.results(seed, "base"), _rows(base_pass, base_fail, task_ids))
        write_jsonl(run.layout.results(seed, "tuned"), _rows(tuned_pass, tuned_fail, task_ids))
    return run


def test_summarise_writes_the_tables_and_agrees_with_stats(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run")
    s = summarise(run, n_boot=500)
    assert s.seeds == [42, 123, 7] and s.missing == {}
    for name in SUMMARY_FILES:
        assert (run.dir / "summary" / name).is_file(), name
    data = json.loads((run.dir / "summary" / "summary.json").read_text())
    assert data["seeds"] == [42, 123, 7] and data["profile"] == "tiny"
    assert list(s.headline.columns[:4]) == [stats.PASS1_COLUMN, "NAME_ERROR", "ASSERTION_FAIL", "TYPE_ERROR"]
    assert len(s.per_seed) == 6 and set(s.per_seed["method"]) == {"wilson"}

    base = load_results(run.layout.results(123, "base"))
    tuned = load_results(run.layout.results(123, "tuned"))
    direct = stats.paired_comparison(base, tuned, alpha=0.05, n_boot=500, seed=0)
    row = s.paired.set_index("seed").loc[123]
    assert row["mcnemar_p"] == pytest.approx(direct["mcnemar_p"])
    assert (row["boot_low"], row["boot_high"]) == (direct["boot_low"], direct["boot_high"])
    assert [[row["both_pass"], row["base_only"]], [row["tuned_only"], row["both_fail"]]] == direct["table"]

    tuned_mean, tuned_sd = s.stat("DPO (tuned adapter)")
    per_seed = [100 * stats.pass_at_1(load_results(run.layout.results(x, "tuned"))) for x in (42, 123, 7)]
    assert (tuned_mean, tuned_sd) == (
        pytest.approx(np.mean(per_seed)),
        pytest.approx(np.std(per_seed, ddof=1)),
    )
    assert s.stat("base (tiny)")[1] == 0.0  # one greedy base, the same in every seed
    assert s.pooled["n_seeds"] == 3 and s.pooled["n_problems"] == 164
    assert s.pooled["diff"] == pytest.approx((tuned_mean - s.stat("base (tiny)")[0]) / 100)
    assert data["mde"]["se_one_run_pp"] == pytest.approx(100 * stats.se_one_run(s.mde["base_rate"], 164))
    assert 8 < s.mde["mde_unpaired_pp"] < 13
    assert s.mde["mde_paired_pp"] < s.mde["mde_unpaired_pp"]

    counts = pd.read_csv(run.dir / "summary" / "counts.csv")
    assert len(counts) == 3 * 2 * counts["outcome"].nunique()  # zeros written, not left out


def test_missing_seeds_are_reported_and_the_rest_used(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run", seeds=(42, 7))
    run.layout.results(7, "tuned").unlink()
    s = summarise(run, n_boot=200)
    assert s.seeds == [42]
    assert s.missing == {123: "missing seed-123/results/base.jsonl, seed-123/results/tuned.jsonl",
                         7: "missing seed-7/results/tuned.jsonl"}  # fmt: skip
    assert not (run.dir / "seed-123").exists()  # reading leaves no empty folders behind
    assert math.isnan(s.stat("DPO (tuned adapter)")[1])  # one seed: no spread
    assert json.loads((run.dir / "summary" / "summary.json").read_text())["missing"]["7"].endswith(
        "tuned.jsonl"
    )


def test_no_seed_with_results_is_an_error(tmp_path: Path) -> None:
    run = runs.open("tiny-humaneval", run_dir=tmp_path / "empty")
    with pytest.raises(IdfuError, match="no seed has both results files"):
        summarise(run)


def test_a_malformed_results_line_names_file_and_line(tmp_path: Path) -> None:
    run = build_run(tmp_path / "run", seeds=(42,))
    path = run.layout.results(42, "tuned")
    path.write_text(path.read_text() + "{not json\n")
    with pytest.raises(IdfuError, match=rf"{path}:165: malformed JSON"):
        summarise(run)


def test_a_run_where_nothing_passes_still_summarises(tmp_path: Path) -> None:
    # The tiny profile's toy model solves nothing: the summary must render, with NaN where a number is undefined.
    run = runs.open("tiny-humaneval", run_dir=tmp_path / "run")
    task_ids = list(load_humaneval())[:20]
    fails = np.array(["SYNTAX_ERROR"] * 20)
    for name in ("base.jsonl", "tuned.jsonl"):
        write_jsonl(run.seed_path(f"results/{name}", seed=42), _rows(np.zeros(20, bool), fails, task_ids))
    s = summarise(run, n_boot=200)
    assert s.paired.loc[0, "mcnemar_p"] == 1.0 and s.pooled["diff"] == 0.0
    assert math.isnan(s.mde["mde_unpaired_pp"]) and math.isnan(s.mde["mde_paired_pp"])
    data = json.loads((run.dir / "summary" / "summary.json").read_text())
    assert data["mde"]["mde_unpaired_pp"] is None
    assert s.headline.loc["base (tiny)", "SYNTAX_ERROR"] == "20.00"


def test_a_tiny_p_value_is_kept_in_the_file_and_shown_on_the_page(tmp_path: Path) -> None:
    """40 problems gained, none lost: the exact McNemar p is 2 * 0.5**40 = 1.82e-12. Neither
    summary.json (pandas writes 10 decimals by default) nor the page's table (a fixed number of
    decimals) may turn it into 0."""
    run = runs.open("tiny-humaneval", run_dir=tmp_path / "run")
    task_ids = list(load_humaneval())
    base_pass = np.arange(len(task_ids)) < 60
    tuned_pass = np.arange(len(task_ids)) < 100
    fails = np.array(["NAME_ERROR"] * len(task_ids))
    write_jsonl(run.layout.results(42, "base"), _rows(base_pass, fails, task_ids))
    write_jsonl(run.layout.results(42, "tuned"), _rows(tuned_pass, fails, task_ids))
    s = summarise(run, n_boot=200)
    expected = 2 * 0.5**40
    assert s.paired.loc[0, "mcnemar_p"] == pytest.approx(expected)
    data = json.loads((run.dir / "summary" / "summary.json").read_text())
    assert data["paired"][0]["mcnemar_p"] == pytest.approx(expected)
    html = display.table(s.paired_table()).to_html()
    assert ">1.82e-12<" in html
    assert display.p_value(expected) == "p = 1.82e-12"
