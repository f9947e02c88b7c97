"""The calibrated time-limit policy (``--timeout auto``): calibration in the real sandbox on real benchmark
problems, its cache, the budgets, what results files record, and the verdicts it changes."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from idfu_lab.analysis.evaluation import judge_policies, judge_time_policy, sensitivity_table
from idfu_lab.benchmarks import calibrate as cal
from idfu_lab.cli import main
from idfu_lab.problems import load_humaneval, load_mini

# runs every canonical solution several times, no tiny model: see tests/conftest.py
pytestmark = pytest.mark.busy


def test_mini_is_calibrated_in_seconds_with_every_budget_at_or_above_the_floor(tmp_path: Path) -> None:
    problems = load_mini()
    c = cal.calibrate(problems, benchmark="mini", cache=tmp_path)
    assert not c.reused and c.path is not None and c.path.parent == tmp_path and c.path.is_file()
    assert c.path.name == f"mini-{c.id}.json"
    assert set(c.times) == set(problems) and not c.failed  # every canonical solution of mini passes
    assert all(len(c.every_run[t]) == cal.CALIBRATION_RUNS for t in c.times)
    assert all(0 < t < cal.AUTO_FLOOR_S for t in c.times.values())
    policy = cal.TimeoutPolicy("auto", calibration=c)
    for task_id, budget in policy.budgets(problems).items():
        assert budget >= cal.AUTO_FLOOR_S
        assert budget == pytest.approx(max(cal.AUTO_FLOOR_S, cal.AUTO_MULTIPLE * c.times[task_id]))
    meta = policy.metadata()
    assert (
        meta["kind"] == "auto"
        and meta["floor_s"] == cal.AUTO_FLOOR_S
        and meta["multiple"] == cal.AUTO_MULTIPLE
    )
    assert meta["calibration"]["id"] == c.id and meta["calibration"]["file"] == str(c.path)
    assert json.loads(c.path.read_text())["times"] == c.times


def test_the_cache_is_reused_and_recalibrated_when_the_benchmark_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    he = load_humaneval()
    subset = {t: he[t] for t in list(he)[:12]}
    first = cal.calibrate(subset, benchmark="he12", cache=tmp_path)
    assert first.path is not None
    written = first.path.stat().st_mtime_ns
    again = cal.calibrate(subset, benchmark="he12", cache=tmp_path)
    assert again.reused and again.id == first.id and again.times == first.times
    assert first.path.stat().st_mtime_ns == written  # read, not measured and written again
    # one problem's test edited: different content, a different calibration in another file
    t0 = next(iter(subset))
    edited = {**subset, t0: dataclasses.replace(subset[t0], test=subset[t0].test + "\n# edited\n")}
    changed = cal.calibrate(edited, benchmark="he12", cache=tmp_path)
    assert not changed.reused and changed.id != first.id and changed.path != first.path
    assert cal.calibrate(edited, benchmark="he12", cache=tmp_path).reused
    # another machine, or another calibration version, is another key
    assert cal.calibration_key(subset, {**cal.machine_identity(), "hostname": "elsewhere"}) != first.id
    assert cal.calibration_key(subset, {**cal.machine_identity(), "cpu_model": "another CPU"}) != first.id
    monkeypatch.setattr(cal, "CALIBRATION_VERSION", cal.CALIBRATION_VERSION + 1)
    assert cal.calibration_key(subset) != first.id
    monkeypatch.undo()
    # force measures again; an unreadable file is measured again (and rewritten)
    assert not cal.calibrate(subset, benchmark="he12", cache=tmp_path, force=True).reused
    first.path.write_text("{not json")
    remeasured = cal.calibrate(subset, benchmark="he12", cache=tmp_path)
    assert not remeasured.reused and json.loads(first.path.read_text())["id"] == first.id


def test_a_failing_canonical_solution_is_reported_and_gets_the_fixed_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    he = load_humaneval()
    good = he["HumanEval/0"]
    broken = dataclasses.replace(he["HumanEval/2"], reference=he["HumanEval/2"].prompt + "    return -1.0\n")
    missing = dataclasses.replace(he["HumanEval/4"], reference=None)
    problems = {p.task_id: p for p in (good, broken, missing)}
    with caplog.at_level(logging.WARNING, logger="idfu_lab.benchmarks.calibrate"):
        policy = cal.time_policy("auto", problems, benchmark="broken", cache=tmp_path)
    c = policy.calibration
    assert c is not None and set(c.times) == {"HumanEval/0"}
    assert (
        "ASSERTION_FAIL" in c.failed["HumanEval/2"] and "canonical solution failed" in c.failed["HumanEval/2"]
    )
    assert "no canonical solution" in c.failed["HumanEval/4"]
    assert (
        "could not be calibrated" in caplog.text
        and "HumanEval/2" in caplog.text
        and "HumanEval/4" in caplog.text
    )
    assert policy.budget(broken) == policy.budget(missing) == cal.DEFAULT_TIMEOUT_S
    assert policy.metadata()["calibration"]["failed"] == c.failed
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="idfu_lab.benchmarks.calibrate"):
        reread = cal.time_policy("auto", problems, benchmark="broken", cache=tmp_path)
    assert reread.calibration is not None and reread.calibration.reused
    assert "HumanEval/2" in caplog.text  # reported again when read from the cache, never silently


def test_a_slow_but_correct_answer_passes_when_its_canonical_is_as_slow(tmp_path: Path) -> None:
    from idfu_lab.analysis.judge import evaluate_rows

    problem = load_humaneval()["HumanEval/75"]  # its canonical takes ~0.2 s of CPU, HumanEval's slowest
    problems = {problem.task_id: problem}
    policy = cal.time_policy("auto", problems, cache=tmp_path)
    assert policy.calibration is not None
    canonical = policy.calibration.times[problem.task_id]
    budget = policy.budget(problem)
    assert budget == pytest.approx(max(cal.AUTO_FLOOR_S, cal.AUTO_MULTIPLE * canonical))
    # correct, and six times the canonical's work: the reference's own loops, run six times over
    solution = problem.reference.replace("def is_multiply_prime(", "def _reference(") + (
        "\n\ndef is_multiply_prime(a):\n    for _ in range(6):\n        result = _reference(a)\n    return result\n"
    )
    (row,) = evaluate_rows([{"task_id": problem.task_id, "solution": solution}], problems, timeout=policy)
    assert row["passed"], row["message"]
    assert row["timeout_s"] == budget
    if row["cpu_s"] is not None:
        assert row["cpu_s"] > 3 * canonical  # it really was slower than the reference


def test_the_time_policy_row_of_the_sensitivity_table(tmp_path: Path) -> None:
    problem = load_humaneval()["HumanEval/2"]
    problems = {problem.task_id: problem}
    auto = cal.time_policy("auto", problems, cache=tmp_path)
    assert auto.budget(problem) == cal.AUTO_FLOOR_S  # a fast canonical: the floor
    head = "    import time\n\n    start = time.process_time()\n"
    rows = [
        # correct, but burns 0.5 s of CPU per call (check() calls it 3 times): PASS under fixed 3 s,
        # TIMEOUT under auto's 1 s
        {
            "task_id": problem.task_id,
            "completion": head
            + "    while time.process_time() - start < 0.5:\n        pass\n    return number % 1.0\n",
        },
        # correct and fast: the same verdict under both, not run again
        {"task_id": problem.task_id, "completion": "    return number % 1.0\n"},
        # an infinite loop: TIMEOUT under both
        {"task_id": problem.task_id, "completion": "    while True:\n        pass\n"},
    ]
    fixed = cal.TimeoutPolicy("fixed", 3.0)
    judged = judge_policies(rows, problems, [("raw", "none")], timeout=fixed)
    reference = judged[("raw", "none")]
    assert [r["outcome"] for r in reference] == ["PASS", "PASS", "TIMEOUT"]
    assert all(r["timeout_s"] == 3.0 for r in reference)
    under_auto = judge_time_policy(reference, problems, auto)
    assert [r["outcome"] for r in under_auto] == ["TIMEOUT", "PASS", "TIMEOUT"]
    assert all(r["timeout_s"] == cal.AUTO_FLOOR_S for r in under_auto)
    assert under_auto[1]["duration_s"] == reference[1]["duration_s"]  # kept, not run again
    if under_auto[2]["cpu_s"] is not None:
        assert cal.AUTO_FLOOR_S <= under_auto[2]["cpu_s"] < 3.0  # the loop stopped at auto's budget
    summary, transitions = sensitivity_table(
        {("raw", "none"): reference, ("raw", "none", auto.label): under_auto}, ("raw", "none"), label="m"
    )
    row = summary.set_index("timeout").loc["auto"]
    assert (row["changed"], row["lost"], row["gained"], row["TIMEOUT"]) == (1, 1, 0, 2)
    assert summary.set_index("timeout").loc["fixed 3 s", "reference"]
    (change,) = transitions.to_dict("records")
    assert (change["timeout"], change["from"], change["to"], change["count"]) == (
        "auto",
        "PASS",
        "TIMEOUT",
        1,
    )


def test_evaluate_timeout_auto_on_real_samples(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real Qwen3-0.6B samples of two tasks (one of them loops forever): the policy in the metadata,
    each row's budget, the loop stopped at auto's budget, every verdict as the data's own run."""
    source = (
        shared_data
        / "humaneval-generations/qwen3-0.6b-n10/chat"
        / "humaneval_completions_multi_chat_postprocessed_fenceaware.jsonl_results.jsonl"
    )
    rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["task_id"] in ("HumanEval/0", "HumanEval/20")]
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        "".join(json.dumps({k: r[k] for k in ("task_id", "completion", "passed")}) + "\n" for r in rows)
    )
    monkeypatch.setenv("IDFU_LAB_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results.jsonl"
    assert main(["evaluate", str(samples), "--out", str(out), "--timeout", "auto", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "time budgets: auto, max(1 s, 10 x" in printed
    meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
    policy = meta["timeout_policy"]
    assert meta["timeout_s"] == "auto" and policy["kind"] == "auto"
    assert policy["floor_s"] == cal.AUTO_FLOOR_S and policy["multiple"] == cal.AUTO_MULTIPLE
    calibration = policy["calibration"]
    assert (
        calibration["benchmark"] == "humaneval"
        and calibration["n_calibrated"] == 164
        and not calibration["failed"]
    )
    assert (
        Path(calibration["file"]).is_file()
        and Path(calibration["cache_dir"]) == tmp_path / "cache" / "calibration"
    )
    assert meta["run"]["timeout_s"] == {
        "policy": "auto",
        "floor_s": cal.AUTO_FLOOR_S,
        "multiple": cal.AUTO_MULTIPLE,
        "calibration": calibration["id"],
    }
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(results) == len(rows) == 20
    assert all(r["timeout_s"] == cal.AUTO_FLOOR_S for r in results)  # both canonicals are fast
    assert [r["passed"] for r in results] == [r["passed"] for r in rows]  # the data's own (10 s) verdicts
    loops = [r for r in results if r["outcome"] == "TIMEOUT"]
    assert loops and all(r["task_id"] == "HumanEval/20" for r in loops)
    assert all(r["cpu_s"] is None or cal.AUTO_FLOOR_S <= r["cpu_s"] < 3.0 for r in loops)
    # the same command again reads the calibration from the cache
    again = tmp_path / "again.jsonl"
    assert main(["evaluate", str(samples), "--out", str(again), "--timeout", "auto", "--no-progress"]) == 0
    meta2 = json.loads(again.with_name(again.name + ".meta.json").read_text())
    assert meta2["timeout_policy"]["calibration"]["created"] == calibration["created"]


def test_shards_on_several_nodes_share_one_calibration_file_and_merge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from idfu_lab.errors import IdfuError

    monkeypatch.setenv("IDFU_LAB_CACHE", str(tmp_path / "cache"))
    mini = load_mini()
    measured = cal.calibrate(mini, benchmark="mini")
    assert measured.path is not None
    # the file as another node sees it: measured elsewhere, used as given, with a warning
    shared = tmp_path / "shared-calibration.json"
    data = json.loads(measured.path.read_text())
    data["machine"]["hostname"] = "node-01"
    shared.write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="idfu_lab.benchmarks.calibrate"):
        assert cal.load_calibration(shared, mini).times == measured.times
    assert "node-01" in caplog.text
    with pytest.raises(IdfuError, match="other problems"):
        cal.load_calibration(shared, load_humaneval())
    with pytest.raises(IdfuError, match="goes with --timeout auto"):
        cal.time_policy(3.0, mini, calibration_file=shared)

    samples = tmp_path / "samples.jsonl"
    rows = [
        {"task_id": p.task_id, "completion": p.reference[len(p.prompt) :]} for p in list(mini.values())[:6]
    ]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    shards = []
    for k in (1, 2):
        out = tmp_path / f"shard-{k}.jsonl"
        args = ["evaluate", str(samples), "--out", str(out), "--benchmark", "mini", "--timeout", "auto"]
        args += ["--calibration", str(shared), "--shard", f"{k}/2", "--no-progress"]
        assert main(args) == 0
        shards.append(str(out))
    merged = tmp_path / "merged.jsonl"
    assert main(["evaluate-merge", *shards, "--out", str(merged)]) == 0
    meta = json.loads(merged.with_name(merged.name + ".meta.json").read_text())
    assert meta["timeout_policy"]["calibration"]["file"] == str(shared)
    assert meta["timeout_policy"]["calibration"]["id"] == measured.id
    results = [json.loads(line) for line in merged.read_text().splitlines()]
    assert [r["task_id"] for r in results] == [r["task_id"] for r in rows] and all(
        r["passed"] for r in results
    )
    assert all(r["timeout_s"] == cal.AUTO_FLOOR_S for r in results)
