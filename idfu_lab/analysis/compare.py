"""Comparison runs: the book for two (or more) sets of generations someone already has.

``idfu-lab compare BASE TUNED [TUNED ...] --run-dir runs/NAME`` makes a run directory in which nothing
is trained or generated. :func:`prepare` imports the files (one generation per task each; see
:func:`idfu_lab.generation.importers.check_coverage`) and lays them out as a training run would:
every TUNED file takes a seed's place (``seed-1``, ``seed-2``, ...: replicates, such as seeds or
checkpoints) with the BASE file beside it, so that notebooks 03-06 run on them unchanged apart from
notebook 03, which judges the imported replies (:func:`evaluate_replicate`) instead of generating. What
was compared — labels, files with their SHA-256, format, benchmark, post-processing policy, tasks
counted as NO_CODE because a file lacked them — is kept in ``compare.json`` and in the run's manifest,
and :func:`describe` gives the pages their words.

Resuming: the imported generations are rewritten on every ``compare`` call (cheap), and notebook 03
of a replicate records the hashes of the input files and of their imported copies, so an edited
input file re-runs its replicate's notebooks and the summary, and nothing else.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from idfu_lab.errors import IdfuError
from idfu_lab.generation.importers import FORMATS
from idfu_lab.jsonl import write_json

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from idfu_lab.analysis.evaluation import SeedEvaluation
    from idfu_lab.runs import Run

logger = logging.getLogger(__name__)

STEP = "evaluate"
KIND = "compare"


def is_compare(run: Run | str | Path) -> bool:
    """Whether a run (or run directory) compares imported generations rather than training a model."""
    from idfu_lab.runs import RunLayout

    root = run.dir if hasattr(run, "dir") else Path(run)
    return RunLayout(root).compare_json.is_file()


def spec(run: Run | str | Path) -> dict[str, Any]:
    """The run's ``compare.json``: what was compared (IdfuError when the run is not a comparison)."""
    from idfu_lab.runs import RunLayout

    root = run.dir if hasattr(run, "dir") else Path(run)
    path = RunLayout(root).compare_json
    if not path.is_file():
        raise IdfuError(f"{root} is not a comparison run (no {path.name}; `idfu-lab compare` writes one)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise IdfuError(f"{path}: not valid JSON ({e})") from None


def labels(run: Run | str | Path) -> dict[str, str]:
    """``{"base": label, "tuned": label}`` for the run's replicate (a seed's place), or the first one."""
    s = spec(run)
    seed = getattr(run, "seed", None)
    tuned = next((t for t in s["tuned"] if t["seed"] == seed), s["tuned"][0])
    return {"base": s["base"]["label"], "tuned": tuned["label"]}


def input_files(run: Run | str | Path, seed: int) -> list[Path]:
    """The user's files a replicate was imported from (BASE and its TUNED file), for resuming."""
    s = spec(run)
    tuned = [t for t in s["tuned"] if t["seed"] == seed]
    return [Path(s["base"]["file"]), *(Path(t["file"]) for t in tuned)]


# --------------------------------------------------------------------------- preparing the run


@dataclass
class Side:
    """One input file, imported."""

    label: str
    file: Path
    rows: list[dict[str, Any]]
    missing: list[str]
    sha256: str


def _default_labels(base: Path, tuned: Sequence[Path]) -> list[str]:
    """Names from the files: their stems, or their folders' names where the stems are all the same."""
    paths = [base, *tuned]
    names = [p.stem for p in paths]
    if len(set(names)) < len(names):
        names = [p.parent.name or p.stem for p in paths]
    if len(set(names)) < len(names):
        names = ["base", *(f"tuned-{i}" for i in range(1, len(tuned) + 1))]
    return names


def _import_side(
    path: Path,
    label: str,
    problems: dict[str, Any],
    *,
    fmt: str,
    field: str,
    benchmark: str,
    allow_missing: bool,
) -> Side:
    from idfu_lab.generation.importers import check_coverage, import_file
    from idfu_lab.runs import file_sha256

    if not path.is_file():
        raise IdfuError(f"{path}: no such generations file")
    rows = import_file(path, fmt, model=label, field=field, task_ids=list(problems))
    rows, missing = check_coverage(rows, problems, path, benchmark=benchmark, allow_missing=allow_missing)
    for row in rows:
        row["model"] = label
    return Side(label, path.resolve(), rows, missing, file_sha256(path))


def prepare(
    base: str | Path,
    tuned: Sequence[str | Path],
    run_dir: str | Path,
    *,
    fmt: str = "idfu",
    field: str = "completion",
    benchmark: str = "humaneval",
    problems: str | Path | None = None,
    labels: Sequence[str] | None = None,
    postprocess: str = "extract",
    imports: str = "none",
    allow_missing: bool = False,
    sensitivity: bool = True,
    timeout: float | str = 3.0,
    memory_mb: int = 4096,
    workers: int | None = None,
) -> Run:
    """Import the files into ``run_dir`` and write its recipe and ``compare.json``; return the opened run.

    Every file must hold one generation per task of the benchmark (``allow_missing``: missing tasks
    are NO_CODE, and the pages say how many). Each TUNED file becomes seed ``i`` (1, 2, ...) with
    the BASE file's generations beside it.
    """
    from idfu_lab import runs
    from idfu_lab.config import from_dict, to_yaml
    from idfu_lab.jsonl import write_records
    from idfu_lab.problems import benchmark_name, dataset_hash, load_benchmark

    if fmt not in FORMATS:
        raise IdfuError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")
    if not tuned:
        raise IdfuError("give at least one TUNED file to compare with BASE")
    name = benchmark_name(benchmark)
    if name is None:
        raise IdfuError(f"unknown benchmark {benchmark!r} (humaneval, humaneval+, mbpp, mbpp+)")
    problems_path = str(Path(problems).resolve()) if problems and Path(problems).exists() else problems
    task_problems = load_benchmark(name, problems_path)
    paths = [Path(base), *(Path(t) for t in tuned)]
    names = list(labels) if labels else _default_labels(paths[0], paths[1:])
    if len(names) != len(paths):
        raise IdfuError(
            f"--labels gives {len(names)} label(s) for {len(paths)} files (one for BASE, then one per TUNED file)"
        )
    if len(set(names)) != len(names):
        raise IdfuError(f"--labels must differ from one another, got {', '.join(names)}")
    sides = [
        _import_side(
            p, label, task_problems, fmt=fmt, field=field, benchmark=name, allow_missing=allow_missing
        )
        for p, label in zip(paths, names, strict=True)
    ]
    seeds = list(range(1, len(sides)))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe = {
        "profile": "compare",
        "description": f"comparison of imported generations: {names[0]} vs {', '.join(names[1:])} on {name}",
        "seeds": seeds,
        "evaluation": {
            "benchmark": name,
            "problems": problems_path,
            "postprocess": postprocess,
            "imports": imports,
            "timeout": timeout,
            "memory_mb": memory_mb,
            "workers": workers,
        },
    }
    cfg = from_dict(recipe, where="idfu-lab compare")
    layout = runs.RunLayout(run_dir)
    config_path = layout.config
    text = to_yaml(cfg)
    if not config_path.exists() or config_path.read_text() != text:
        config_path.write_text(text)

    def describe_side(side: Side, seed: int | None = None) -> dict[str, Any]:
        out = {
            "label": side.label,
            "file": str(side.file),
            "sha256": side.sha256,
            "rows": len(side.rows) - len(side.missing),
            "missing": side.missing,
        }
        return out if seed is None else {**out, "seed": seed}

    record = {
        "kind": KIND,
        "benchmark": name,
        "problems": problems_path,
        "n_problems": len(task_problems),
        "dataset_hash": dataset_hash(task_problems),
        "format": fmt,
        "field": field,
        "policy": {"postprocess": postprocess, "imports": imports},
        "allow_missing": allow_missing,
        "sensitivity": sensitivity,
        "base": describe_side(sides[0]),
        "tuned": [describe_side(side, seed) for seed, side in zip(seeds, sides[1:], strict=True)],
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    # written before the run is opened, which then knows that no model runs here (Run.write_provenance)
    previous = spec(run_dir) if is_compare(run_dir) else {}
    if {k: v for k, v in previous.items() if k != "created"} != {
        k: v for k, v in record.items() if k != "created"
    }:
        layout.compare_json.write_text(json.dumps(record, indent=2) + "\n")
    run = runs.open(config_path, run_dir=run_dir)
    for seed, side in zip(seeds, sides[1:], strict=True):
        for model, rows in (("base", sides[0].rows), ("tuned", side.rows)):
            path = layout.generations(seed, model)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_records(rows, path)

    run.update_manifest(compare={k: v for k, v in record.items() if k != "created"})
    return run


# --------------------------------------------------------------------------- notebook 03 on imported replies


def evaluate_replicate(run: Run, *, progress: bool = False, force: bool = False) -> SeedEvaluation:
    """Notebook 03 for a comparison: judge the imported replies of ``run.seed`` (no model is loaded).

    Writes the same files as :func:`idfu_lab.analysis.evaluation.evaluate_seed` (results with their
    ``.meta.json``, the sensitivity tables when the comparison asked for them, ``evaluation.json``
    with the paired comparison), so notebooks 04-06 and the book read a comparison like a training run.
    Skipped when done for the same recipe and the same input files.
    """
    from idfu_lab.analysis import evaluation as ev
    from idfu_lab.jsonl import read_records

    if run.seed is None:
        raise IdfuError("evaluate_replicate needs a run opened with a seed (a replicate's place)")
    s = spec(run)
    cfg = run.config
    out = ev._paths(run)
    inputs = run.input_hashes([*out.generations.values(), *input_files(run, run.seed)])
    if not force and run.is_done(STEP, inputs):
        logger.info("evaluation of replicate %s: done for these files and this recipe, skipped", run.seed)
        out.summary = json.loads(out.summary_path.read_text())
        out.skipped = True
        return out
    for path in out.generations.values():
        if not path.is_file():
            raise IdfuError(f"{path} is missing: run `idfu-lab compare` again to import the files")
    problems_list = ev.benchmark_problems(run)
    problems = {p.task_id: p for p in problems_list}
    gens = {m: read_records(out.generations[m]) for m in ev.MODELS}  # completion or solution rows
    time_limits = ev.timeout_policy(cfg.evaluation)
    judged, judge_wall = ev.judge_models(
        gens, problems, cfg.evaluation, time_limits, sensitivity=s.get("sensitivity", True)
    )
    names = labels(run)
    meta = {m: {"label": names[m], "compare": True} for m in ev.MODELS}
    frames, summary = ev.write_results(run, out, judged, gens, problems, time_limits, meta=meta)
    summary.update(
        generation_wall_seconds=0.0,
        judge_wall_seconds=round(judge_wall, 3),
        suites_pass1=suite_pass1(frames),
        adapter_hash=None,
        labels=names,
        precision_baseline={
            "status": "not applicable",
            "reason": "a comparison of imported generations: no model was loaded",
        },
    )
    write_json(summary, out.summary_path)
    out.summary = json.loads(out.summary_path.read_text())
    outputs = [*out.results.values(), out.sensitivity, out.transitions, out.summary_path]
    run.mark_done(STEP, outputs, inputs=inputs)
    logger.info(
        "replicate %s: pass@1 %s %.4f, %s %.4f (judging %.1f s)",
        run.seed,
        names["base"],
        summary["pass1"]["base"],
        names["tuned"],
        summary["pass1"]["tuned"],
        judge_wall,
    )
    return out


def suite_pass1(frames: dict[str, pd.DataFrame]) -> dict[str, dict[str, float]]:
    """pass@1 on each test suite alone (EvalPlus: ``base``, ``plus``) per model; empty without suites."""
    out: dict[str, dict[str, float]] = {}
    for model, df in frames.items():
        for suite in ("base", "plus"):
            column = f"{suite}_passed"
            if column in df:
                per_task = df.assign(_p=df[column].astype(bool)).groupby("task_id", sort=False)["_p"].mean()
                out.setdefault(model, {})[suite] = float(per_task.mean())
    return out


# --------------------------------------------------------------------------- what the pages say


def describe(run: Run | str | Path) -> pd.DataFrame:
    """One row per compared file: its role, label, replicate, file, SHA-256, rows and missing tasks."""
    import pandas as pd

    s = spec(run)
    rows = [{"role": "base", "replicate": "all", **_file_row(s["base"])}]
    rows += [{"role": "tuned", "replicate": str(t["seed"]), **_file_row(t)} for t in s["tuned"]]
    return pd.DataFrame(rows)


def _file_row(side: dict[str, Any]) -> dict[str, Any]:
    return {
        "label": side["label"],
        "file": side["file"],
        "sha256": side["sha256"][:16],
        "generations": side["rows"],
        "missing (NO_CODE)": len(side["missing"]),
    }


def sentence(run: Run | str | Path) -> str:
    """What was compared, in one paragraph of Markdown (labels, benchmark, policy, missing tasks)."""
    s = spec(run)
    tuned = s["tuned"]
    others = ", ".join(f"**{t['label']}**" for t in tuned)
    replicates = (
        f" The {len(tuned)} files on the tuned side are replicates (seeds or checkpoints): each takes a "
        "training seed's place in the pages below (replicate 1 is `seed-1`, and so on)."
        if len(tuned) > 1
        else ""
    )
    pol = s["policy"]
    text = (
        f"This run compares imported generations, not a model trained here: **{s['base']['label']}** "
        f"(base) against {others} on `{s['benchmark']}` ({s['n_problems']} problems), from `{s['format']}` "
        f"files, judged with `--postprocess {pol['postprocess']} --imports {pol['imports']}`.{replicates}"
    )
    missing = [(side["label"], len(side["missing"])) for side in [s["base"], *tuned] if side["missing"]]
    if missing:
        text += (
            " Tasks a file did not answer count as NO_CODE: "
            + ", ".join(f"{n} for {label}" for label, n in missing)
            + "."
        )
    return text
