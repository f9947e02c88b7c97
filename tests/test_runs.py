"""Run directories: provenance on every artefact, resumable steps keyed by the config hash."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from idfu_lab import runs
from idfu_lab.errors import IdfuError


def test_open_writes_config_and_manifest(tmp_path) -> None:
    run = runs.open("tiny-humaneval", seed=42, run_dir=tmp_path / "r")
    assert (run.dir / "config.yaml").exists()
    for m in (run.manifest(), run.for_seed(42).manifest(), runs.Run(run.config, run.dir).manifest()):
        assert m["config_hash"] == run.config_hash
        assert {"git", "packages", "data_hashes", "device", "started"} <= set(m)
    assert run.manifest()["seed"] == 42
    assert run.manifest()["packages"]["torch"]
    assert len(run.manifest()["data_hashes"]["data.pairs"]) == 64
    assert run.seed_path("results/base.jsonl") == tmp_path / "r" / "seed-42" / "results" / "base.jsonl"


def test_seeding_is_reproducible(tmp_path) -> None:
    runs.open("tiny-humaneval", seed=7, run_dir=tmp_path)
    a = random.random()
    runs.open("tiny-humaneval", seed=7, run_dir=tmp_path)
    assert random.random() == a


def test_steps_are_done_only_for_the_same_config_and_existing_outputs(tmp_path) -> None:
    run = runs.open("tiny-humaneval", seed=42, run_dir=tmp_path)
    out = run.seed_path("x/out.txt")
    out.write_text("1")
    run.mark_done("step", [out])
    assert run.is_done("step")
    other = runs.open("tiny-humaneval", seed=42, run_dir=tmp_path, overrides={"dpo.beta": 0.3})
    assert not other.is_done("step")  # another recipe never reuses the cached output
    out.unlink()
    assert not run.is_done("step")  # a deleted output is not done


def test_seed_must_be_an_integer(tmp_path) -> None:
    with pytest.raises(IdfuError, match="seed must be an integer"):
        runs.open("tiny-humaneval", seed="42", run_dir=tmp_path)  # type: ignore[arg-type]


def test_a_relative_run_directory_records_outputs_that_resolve(tmp_path, monkeypatch) -> None:
    """`make demo` passes --run-dir runs/tiny: a relative folder must not make finished steps look undone."""
    monkeypatch.chdir(tmp_path)
    run = runs.open("tiny-humaneval", seed=42, run_dir="runs/tiny")
    assert run.dir.is_absolute()
    out = run.path("notebooks/01.ipynb")
    out.write_text("{}")
    run.mark_done("a", [out])  # absolute, as the pipeline passes it
    run.mark_done("b", [Path("runs/tiny/notebooks/01.ipynb")])  # relative to the working directory
    run.mark_done("c", ["notebooks/01.ipynb"])  # relative to the run directory
    assert run.manifest()["steps"]["b"]["outputs"] == ["notebooks/01.ipynb"]
    assert all(run.is_done(s) for s in "abc")
    with pytest.raises(IdfuError, match="outside the run directory"):
        run.mark_done("d", [tmp_path / "elsewhere.txt"])


def test_layout_names_every_artefact_once(tmp_path) -> None:
    layout = runs.RunLayout(tmp_path)
    assert layout.results(7, "base") == tmp_path / "seed-7" / "results" / "base.jsonl"
    assert layout.adapter(7) == tmp_path / "seed-7" / "train" / "adapter"
    assert layout.delta_json(7).parent == layout.delta_dir(7) == tmp_path / "seed-7" / "delta"
    assert layout.train_pairs == tmp_path / "audit" / "train_pairs.jsonl"
    assert layout.executed_notebook("01_data_audit") == tmp_path / "notebooks" / "01_data_audit.ipynb"
    assert (
        layout.executed_notebook("03_evaluation", 7)
        == tmp_path / "notebooks" / "seed-7" / "03_evaluation.ipynb"
    )
    assert not any(tmp_path.iterdir())  # naming a path creates nothing
    for seed in (123, 7, 42):
        layout.seed_dir(seed).mkdir()
    (tmp_path / "seed-x").mkdir()
    assert layout.seeds_present() == [7, 42, 123]  # numeric order, not string order


def test_a_changed_input_makes_a_step_stale_and_says_why(tmp_path, caplog) -> None:
    run = runs.open("tiny", seed=42, run_dir=tmp_path / "r")
    source = tmp_path / "pairs.jsonl"
    source.write_text('{"a": 1}\n')
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"\0\1")
    out = run.seed_path("x/out.txt")
    out.write_text("1")
    run.mark_done("step", [out], inputs=[source, folder])
    assert run.is_done("step", [source, folder])
    assert run.why_not_done("step", [source, folder]) is None

    source.write_text('{"a": 2}\n')  # edited in place: same name, same size, other content
    assert run.why_not_done("step", [source, folder]) == f"input {source.as_posix()} changed since it ran"
    with caplog.at_level("INFO", logger="idfu_lab.runs"):
        assert not run.is_done("step", [source, folder])
    assert "changed since it ran" in caplog.text
    source.write_text('{"a": 1}\n')
    assert run.is_done("step", [source, folder])  # content, not timestamps, decides

    (folder / "w.bin").write_bytes(b"\0\2")  # a file inside a folder input
    assert "changed" in run.why_not_done("step", [source, folder])
    (folder / "w.bin").write_bytes(b"\0\1")
    other = tmp_path / "problems.jsonl"
    other.write_text("")
    assert "did not read" in run.why_not_done("step", [source, folder, other])
    source.unlink()
    assert "changed" in run.why_not_done("step", [source, folder])  # a vanished input is a change
    assert run.why_not_done("never", []) == "not run yet"


def test_a_recipe_data_file_given_relative_to_the_repository_is_hashed(tmp_path, monkeypatch) -> None:
    """The tiny recipe names its pairs relative to the repository; run from there, the pairs must be
    hashed as they are (not recorded as "missing"), or editing them would never re-run the audit."""
    from idfu_lab.config import repo_root

    monkeypatch.chdir(repo_root())
    run = runs.open("tiny-humaneval", run_dir=tmp_path / "run")  # its pairs are a file in the repository
    files = runs.local_data_files(run.config)
    assert files and all(p.is_absolute() for p in files)
    hashes = run.input_hashes(files)
    assert "missing" not in hashes.values(), hashes


def test_processes_writing_one_manifest_at_once_lose_nothing(tmp_path) -> None:
    """Seeds run in parallel (``run --jobs``, a job array) all write the run's manifest: every
    process's record must survive the others' (a read-change-write under the manifest's lock)."""
    import subprocess
    import sys

    runs.open("tiny-humaneval", run_dir=tmp_path / "r")
    script = (
        "import sys\nfrom idfu_lab import runs\n"
        "run = runs.open('tiny-humaneval', run_dir=sys.argv[1], seed_rngs=False)\n"
        "for i in range(40):\n    run.mark_done(f'step-{sys.argv[2]}-{i}')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "r"), str(n)]) for n in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    steps = runs.Run(runs.load_config("tiny-humaneval"), tmp_path / "r").manifest()["steps"]
    assert {f"step-{n}-{i}" for n in range(3) for i in range(40)} <= set(steps)


def test_seeding_leaves_torch_to_whoever_imports_it(tmp_path) -> None:
    """A step that never touches torch does not import it, neither to seed it nor to ask for the
    device once the run has one recorded; where torch is imported, it is seeded like NumPy."""
    import subprocess
    import sys

    first = runs.open("tiny-humaneval", seed=7, run_dir=tmp_path)  # records the device
    assert "cuda" in first.manifest()["device"]
    script = (
        "import sys\nfrom idfu_lab import runs\n"
        "runs.open('tiny-humaneval', seed=7, run_dir=sys.argv[1])\n"
        "assert 'torch' not in sys.modules, 'imported by runs.open'\n"
        "import torch\nruns.open('tiny-humaneval', seed=7, run_dir=sys.argv[1])\na = torch.rand(3)\n"
        "runs.open('tiny-humaneval', seed=7, run_dir=sys.argv[1])\nassert torch.equal(a, torch.rand(3))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
