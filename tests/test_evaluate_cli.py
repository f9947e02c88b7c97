"""``idfu-lab evaluate`` and ``idfu-lab taxonomy``: the command-line contract, real files, real sandbox."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from idfu_lab.commands import evaluate as evaluate_command
from idfu_lab.problems import dataset_hash, load_humaneval

STRLEN = "    return len(string)\n"
WRONG = "    return 0\n"


def _cli(argv: list[str]) -> int:
    """Dispatch like ``idfu-lab`` does: the package's parser when present, else our own harness."""
    try:
        from idfu_lab.cli import main
    except ImportError:  # the dispatcher is not there: register the command on a bare parser
        parser = argparse.ArgumentParser(prog="idfu-lab")
        evaluate_command.register(parser.add_subparsers())
        args = parser.parse_args(argv)
        return args.func(args)
    return main(argv)


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    canonical = load_humaneval()["HumanEval/2"]
    return _write(
        tmp_path / "samples.jsonl",
        [
            {"task_id": "HumanEval/23", "completion": STRLEN, "sample_index": 0, "model": "m"},
            {"task_id": "HumanEval/23", "completion": WRONG, "sample_index": 1, "model": "m"},
            {"task_id": "HumanEval/2", "solution": canonical.reference, "sample_index": 0, "model": "m"},
            {"task_id": "HumanEval/2", "completion": "", "sample_index": 1, "model": "m"},
        ],
    )


def test_evaluate_writes_results_and_metadata(
    samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "results" / "base.jsonl"
    assert _cli(["evaluate", str(samples), "--out", str(out), "--workers", "2", "--timeout", "2"]) == 0
    printed = capsys.readouterr().out
    assert "judged 4 samples of 2 tasks" in printed and "2 passed" in printed
    assert "pass@1 50.00 %  pass@2 100.00 %" in printed  # n = 2 per task: the unbiased pass@2 too
    assert "ASSERTION_FAIL" in printed and "NO_CODE" in printed and "definition" in printed

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["task_id"], r["sample_index"], r["model"]) for r in rows] == [
        ("HumanEval/23", 0, "m"),
        ("HumanEval/23", 1, "m"),
        ("HumanEval/2", 0, "m"),
        ("HumanEval/2", 1, "m"),
    ]
    assert [(r["passed"], r["outcome"], r["phase"]) for r in rows] == [
        (True, "PASS", None),
        (False, "ASSERTION_FAIL", "test"),
        (True, "PASS", None),
        (False, "NO_CODE", "definition"),
    ]
    assert rows[1]["exception_type"] == "AssertionError" and rows[1]["message"]
    assert all(isinstance(r["duration_s"], float) for r in rows)
    assert "postprocess" not in rows[0]  # raw/none: no policy fields added

    meta = json.loads((tmp_path / "results" / "base.jsonl.meta.json").read_text())
    assert meta["benchmark"] == "humaneval" and meta["dataset_hash"] == dataset_hash(load_humaneval())
    assert (meta["timeout_s"], meta["memory_mb"], meta["workers"]) == (2.0, 4096, 2)
    assert meta["policy"] == {"postprocess": "raw", "imports": "none", "applied": False}
    assert meta["protections"]["separate_process"] is True and "landlock_filesystem" in meta["protections"]
    assert meta["pass_at_k"] == {"pass@1": 0.5, "pass@2": 1.0}
    assert meta["package_version"] and meta["created"].endswith("+00:00")


def test_taxonomy_prints_the_counts(samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "r.jsonl"
    assert _cli(["evaluate", str(samples), "--out", str(out)]) == 0
    capsys.readouterr()
    assert _cli(["taxonomy", str(out)]) == 0
    table = capsys.readouterr().out
    assert "4 samples" in table and "PASS" in table and "all" in table
    assert _cli(["taxonomy", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n_samples"] == 4
    assert payload["counts"]["ASSERTION_FAIL"] == {"definition": 0, "test": 1, "none": 0, "total": 1}
    assert payload["counts"]["NO_CODE"]["definition"] == 1
    assert payload["counts"]["all"]["total"] == 4


BAD_INPUTS = [
    (
        [{"task_id": "HumanEval/23", "completion": STRLEN}, '{"task_id": "HumanEval/23", "completion": '],
        ":2: malformed JSON",
    ),
    (
        [{"task_id": "HumanEval/23", "completion": STRLEN}, "", {"completion": STRLEN}],
        ":3: the row has no task_id",
    ),
    ([{"task_id": "HumanEval/23", "sample_index": 3}], ":1: the row has neither 'completion' nor 'solution'"),
    (
        [
            {"task_id": "HumanEval/23", "completion": STRLEN},
            {"task_id": "HumanEval/164", "completion": STRLEN},
        ],
        ":2: unknown task_id 'HumanEval/164'",
    ),
    (["[1, 2]"], ":1: expected a JSON object, got list"),
    ([""], ": no samples"),
]


@pytest.mark.parametrize(
    ("rows", "fragment"), BAD_INPUTS, ids=["json", "task_id", "code", "unknown", "array", "empty"]
)
def test_bad_input_names_the_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, rows: list, fragment: str
) -> None:
    samples = _write(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "out" / "results.jsonl"
    assert _cli(["evaluate", str(samples), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("idfu-lab: error: ") and f"bad.jsonl{fragment}" in error
    assert "Traceback" not in error
    assert not out.exists() and not Path(str(out) + ".meta.json").exists()


def test_bad_input_leaves_existing_results_untouched(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "results.jsonl"
    out.write_text("previous\n")
    samples = _write(tmp_path / "bad.jsonl", [{"task_id": "nope", "completion": "x"}])
    assert _cli(["evaluate", str(samples), "--out", str(out)]) == 2
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "results.jsonl"]  # no stray temp file


def test_missing_files_and_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _cli(["evaluate", str(tmp_path / "absent.jsonl"), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "no such samples file" in capsys.readouterr().err
    assert _cli(["taxonomy", str(tmp_path / "absent.jsonl")]) == 2
    assert "no such results file" in capsys.readouterr().err
    not_results = _write(tmp_path / "samples.jsonl", [{"task_id": "HumanEval/1", "completion": "x"}])
    assert _cli(["taxonomy", str(not_results)]) == 2
    assert "samples.jsonl:1: not a results row" in capsys.readouterr().err
    for option in (["--timeout", "0"], ["--timeout", "soon"], ["--memory-mb", "-1"], ["--workers", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            _cli(["evaluate", str(not_results), "--out", str(tmp_path / "o.jsonl"), *option])
        assert exit_info.value.code == 2


def test_every_failure_still_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    samples = _write(tmp_path / "s.jsonl", [{"task_id": "HumanEval/23", "completion": "    return len(\n"}])
    assert _cli(["evaluate", str(samples), "--out", str(tmp_path / "r.jsonl")]) == 0
    assert "SYNTAX_ERROR" in capsys.readouterr().out


def test_a_policy_is_applied_and_recorded(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("idfu_lab.generation.postprocess")
    reply = (
        "Here is the function:\n\n```python\ndef strlen(string: str) -> int:\n    return len(string)\n```\n"
    )
    samples = _write(tmp_path / "chat.jsonl", [{"task_id": "HumanEval/23", "completion": reply}])
    out = tmp_path / "r.jsonl"
    assert _cli(["evaluate", str(samples), "--out", str(out), "--postprocess", "extract"]) == 0
    row = json.loads(out.read_text())
    assert row["passed"] is True and row["postprocess"] == "extract" and row["raw"] == reply
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["policy"] == {"postprocess": "extract", "imports": "none", "applied": True}


def test_the_module_runs_as_a_command(samples: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "idfu_lab.cli", "evaluate", str(samples), "--out", str(out), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "pass@1 50.00 %" in done.stdout
    assert len(out.read_text().splitlines()) == 4
