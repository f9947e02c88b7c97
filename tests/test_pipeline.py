"""The pipeline end to end: papermill runs every notebook, records provenance, resumes, and fails loudly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import DEMO_SEEDS

from idfu_lab.pipeline import NOTEBOOKS, PER_SEED, NotebookFailed, run_pipeline

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _executed(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "notebooks").rglob("*.ipynb"))


def test_every_notebook_ran_with_injected_parameters(demo_run: Path) -> None:
    names = [p.relative_to(demo_run / "notebooks").as_posix() for p in _executed(demo_run)]
    expected = [f"{nb}.ipynb" for nb in NOTEBOOKS if nb not in PER_SEED]
    expected += [f"seed-{s}/{nb}.ipynb" for s in DEMO_SEEDS for nb in PER_SEED]
    assert sorted(names) == sorted(expected)
    for path in _executed(demo_run):
        nb = nbformat.read(path, as_version=4)
        tags = [c.metadata.get("tags", []) for c in nb.cells]
        assert any("injected-parameters" in t for t in tags), path
        assert Path(nb.metadata["papermill"]["parameters"]["run_dir"]).resolve() == demo_run.resolve()
        if path.stem in PER_SEED:
            assert nb.metadata["papermill"]["parameters"]["seed"] == int(
                path.parent.name.removeprefix("seed-")
            )
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, path


def test_manifests_carry_provenance(demo_run: Path) -> None:
    for manifest in (demo_run / "manifest.json", demo_run / "seed-42" / "manifest.json"):
        m = json.loads(manifest.read_text())
        assert {"config_hash", "git", "packages", "data_hashes", "device", "started", "steps"} <= set(m)
    seed_steps = json.loads((demo_run / "seed-42" / "manifest.json").read_text())["steps"]
    assert {f"notebook:{nb}" for nb in PER_SEED} <= set(seed_steps)


def test_rerun_skips_finished_notebooks(demo_run: Path, demo_config: Path) -> None:
    results = run_pipeline(demo_config, seeds=DEMO_SEEDS, run_dir=demo_run, progress=False)
    assert len(results) == 2 + len(PER_SEED) * len(DEMO_SEEDS)
    assert all(r.skipped for r in results)


def test_seeds_run_side_by_side_share_the_base_replies_and_the_manifest(demo_run: Path) -> None:
    """The session's run used ``jobs=2``: the two seeds' notebooks overlapped in time, 01 finished
    before either began and 06 began after both; the base model's greedy replies were generated once
    for both seeds (the cache holds each key once), and every step of every seed is in the manifests."""
    from datetime import datetime

    def span(rel: str) -> tuple[datetime, datetime]:
        meta = nbformat.read(demo_run / "notebooks" / rel, as_version=4).metadata.papermill
        return datetime.fromisoformat(meta.start_time), datetime.fromisoformat(meta.end_time)

    chains = {
        s: (span(f"seed-{s}/{PER_SEED[0]}.ipynb")[0], span(f"seed-{s}/{PER_SEED[-1]}.ipynb")[1])
        for s in DEMO_SEEDS
    }
    (a_start, a_end), (b_start, b_end) = chains.values()
    assert a_start < b_end and b_start < a_end  # the seeds overlapped
    assert span("01_data_audit.ipynb")[1] <= min(a_start, b_start)
    assert span("06_summary.ipynb")[0] >= max(a_end, b_end)

    rows = [json.loads(line) for line in (demo_run / "generations" / "cache.jsonl").read_text().splitlines()]
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys))
    base = [r for r in rows if r["adapter_hash"] is None]
    assert len(base) == len({r["task_id"] for r in base})  # once, for both seeds
    for seed in DEMO_SEEDS:
        steps = json.loads((demo_run / f"seed-{seed}" / "manifest.json").read_text())["steps"]
        assert {f"notebook:{nb}" for nb in PER_SEED} | {"train", "evaluate"} <= set(steps)


def test_failing_notebook_names_path_and_cell(tmp_path: Path) -> None:
    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    cfg["data"]["pairs"] = str(tmp_path / "missing_pairs.jsonl")
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump(cfg))
    with pytest.raises(NotebookFailed, match=r"01_data_audit\.ipynb failed at cell \d+ with \w+") as info:
        run_pipeline(config, seeds=[42], run_dir=tmp_path / "run", only=["01_data_audit"], progress=False)
    assert "missing_pairs.jsonl" in str(info.value)
    assert (tmp_path / "run" / "notebooks" / "01_data_audit.ipynb").exists()  # the executed copy is kept


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--config", "no/such.yaml"], "config file not found: no/such.yaml"),
        (["run", "--config", "huge"], "unknown profile 'huge'"),
        (["run", "--seeds", "x"], "invalid int value: 'x'"),
        (["run", "--jobs", "0"], "argument --jobs: must be >= 1"),
        (["config", "configs/tiny.yaml", "--nope"], "unrecognized arguments: --nope"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "idfu_lab.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_input_edited_in_place_reruns_its_step_and_makes_downstream_stale(tmp_path: Path, caplog) -> None:
    """The stale-result defect: a pairs file edited in place must not leave yesterday's numbers in the book."""
    from idfu_lab import runs
    from idfu_lab.pipeline import notebook_inputs

    pairs = tmp_path / "pairs.jsonl"
    fixture = (REPO / "idfu_lab" / "data" / "fixture_pairs.jsonl").read_text().splitlines(keepends=True)
    pairs.write_text("".join(fixture[:10]))  # ten pairs: what is tested is which steps re-run
    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    cfg.setdefault("data", {})["pairs"] = str(pairs)
    cfg["dpo"]["max_steps"] = 2  # what is tested is which steps re-run, not what training learns
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"

    first = run_pipeline(
        config, seeds=[42], run_dir=run_dir, only=["01_data_audit", "02_training"], progress=False
    )
    assert [r.skipped for r in first] == [False, False]
    n_before = json.loads((run_dir / "audit" / "audit.json").read_text())["n_pairs"]
    again = run_pipeline(
        config, seeds=[42], run_dir=run_dir, only=["01_data_audit", "02_training"], progress=False
    )
    assert all(r.skipped for r in again)

    lines = pairs.read_text().splitlines(keepends=True)
    pairs.write_text("".join(lines[:-3]))  # the same file name, three pairs fewer
    with caplog.at_level("INFO", logger="idfu_lab.pipeline"):
        rerun = run_pipeline(config, seeds=[42], run_dir=run_dir, only=["01_data_audit"], progress=False)
    assert [r.skipped for r in rerun] == [False]
    assert f"input {pairs.as_posix()} changed since it ran" in caplog.text
    assert json.loads((run_dir / "audit" / "audit.json").read_text())["n_pairs"] == n_before - 3

    run = runs.open(config, run_dir=run_dir).for_seed(42)
    reason = run.why_not_done("notebook:02_training", notebook_inputs(run, "02_training", 42, [42]))
    assert reason == "input audit/train_pairs.jsonl changed since it ran"  # downstream is stale too


def test_kernels_started_together_never_share_sockets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two notebooks run at the same moment (two seeds as jobs on one node, parallel test workers):
    each kernel must answer its own client, over sockets outside the working directory."""
    import asyncio

    from idfu_lab.pipeline import _kernel_manager_class

    monkeypatch.chdir(tmp_path)

    async def start_ask_stop() -> tuple[list[str], list[int]]:
        managers = [_kernel_manager_class()(kernel_name="python3") for _ in range(3)]
        await asyncio.gather(*(km.start_kernel() for km in managers))
        clients = [km.client() for km in managers]
        try:
            answers = []
            for kc in clients:
                kc.start_channels()
                await kc.wait_for_ready(timeout=60)
                seen: list[str] = []

                def keep(msg: dict, seen: list[str] = seen) -> None:
                    if msg["msg_type"] == "stream":
                        seen.append(msg["content"]["text"])

                await kc.execute_interactive("import os; print(os.getpid())", output_hook=keep, timeout=60)
                answers.append(int("".join(seen)))
            return [km.ip for km in managers], answers
        finally:
            for kc in clients:
                kc.stop_channels()
            await asyncio.gather(*(km.shutdown_kernel(now=True) for km in managers))

    prefixes, pids = asyncio.run(start_ask_stop())
    assert len(set(prefixes)) == 3 and all(Path(p).is_absolute() for p in prefixes)
    assert len(set(pids)) == 3  # each client reached its own kernel
    assert list(tmp_path.iterdir()) == []  # no socket left in the working directory


def test_a_kernel_for_a_recipe_without_bitsandbytes_starts_without_it() -> None:
    """The tiny recipe's kernels: peft and transformers find no bitsandbytes (as on a machine without
    it), and nothing else is marked absent; every kernel collects its young garbage less often (see
    ``KERNEL_GC_THRESHOLDS``); any other kernel starts as its spec says."""
    from jupyter_client.kernelspec import KernelSpecManager

    from idfu_lab.pipeline import kernel_command

    spec = KernelSpecManager().get_kernel_spec("python3").argv
    probe = (
        "import importlib.util, sys\n"
        "print(importlib.util.find_spec('bitsandbytes') is None, importlib.util.find_spec('peft') is None,"
        " gc.get_threshold()[0])"
    )
    answers = []
    for without in (True, False):
        cmd = kernel_command(spec, without_bitsandbytes=without)
        code = cmd[cmd.index("-c") + 1].replace("kernelapp.launch_new_instance()", probe)
        answers.append(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
            ).stdout.split()
        )
    assert answers == [["True", "False", "50000"], ["False", "False", "50000"]]  # KERNEL_GC_THRESHOLDS
    other = ["/usr/bin/other-kernel", "-f", "{connection_file}"]
    assert kernel_command(other, without_bitsandbytes=True) == other
