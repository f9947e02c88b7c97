"""Building honest pairs from the model's own samples: ``idfu-lab curate``.

The study's pairs contrast *the model's own* success with *the model's own* failure on the same
problem, both judged by the same gates — never a synthetic bug, never an external "ideal" answer. So
curation is:

1. **Check the problems.** A problem whose reference solution fails its own tests cannot judge
   anything: it is reported and not used.
2. **Sample** K replies per problem from the configured model, through the evaluation's generation
   path (:func:`idfu_lab.generation.generate.generate`, the same prompt template and chat rendering). Greedy
   decoding would give K copies of one reply, so curation always samples (temperature and top-p
   from the config when it samples, else :data:`CURATION_TEMPERATURE`).
3. **Gate** every sample exactly as the audit gates a pair (:func:`idfu_lab.data.pairs.job_for_code` on the
   reply's first fenced code block), so a curated pair re-audits to the same verdicts.
4. **Pair** passing with failing samples of the same problem: each failing sample is used at most
   once, at most M pairs per problem, chosen sides taken in turn. With ``balance`` the failing
   samples are taken round-robin over outcome categories, rarest-so-far first, so one category
   (typically ASSERTION_FAIL) does not crowd out the others.
5. **Drop** replies without code (a reply with nothing to run is not a code failure), near-duplicate
   samples within a side, samples and problems that overlap HumanEval (the benchmark the result is
   measured on), and pairs that near-duplicate an earlier pair.
6. **Write** the pairs with provenance (model, decoding, template, seed, gate, both sides' outcomes),
   and a report beside them. When there are no pairs — the tiny model passes nothing — the report
   says so and why, and no empty pairs file is written.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from idfu_lab.data.audit import code_tokens, contamination_hits, jaccard, near_duplicates
from idfu_lab.data.pairs import job_for_code
from idfu_lab.errors import IdfuError
from idfu_lab.jsonl import write_records

if TYPE_CHECKING:  # pragma: no cover
    from idfu_lab.config import Config
    from idfu_lab.problems import Problem
    from idfu_lab.runs import Run

logger = logging.getLogger(__name__)

#: Sampling temperature when the config's generation is greedy (curation needs diverse samples).
CURATION_TEMPERATURE = 0.8

#: Outcomes never used as a rejected side: a reply with no code is not a failure of code.
EXCLUDED_REJECTED = ("NO_CODE",)

#: Version of the gate construction recorded on every curated pair.
GATE = "pairs.job_for_code(problem, extract_code(reply))"


@dataclass
class Candidate:
    """One gated sample: the reply, the code that ran, and its verdict."""

    task_id: str
    sample_index: int
    reply: str
    code: str
    passed: bool
    outcome: str
    phase: str | None
    message: str = ""
    row: dict[str, Any] = field(default_factory=dict)


@dataclass
class CurationResult:
    """Pairs (rows ready to write) and the report that accounts for every problem and sample."""

    pairs: list[dict[str, Any]]
    report: dict[str, Any]

    @property
    def reason(self) -> str | None:
        """Why there are no pairs (None when there are some)."""
        return self.report.get("reason")

    def write(self, out: str | Path) -> Path | None:
        """Write the pairs (when there are any) and ``<out>.report.json`` (always)."""
        out = Path(out)
        report_path = out.with_name(out.name + ".report.json")
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(self.report, indent=2, ensure_ascii=False, default=str) + "\n")
        if not self.pairs:
            logger.info("no pairs written to %s: %s", out, self.reason)
            return None
        return write_records(self.pairs, out)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def gate_info(timeout: float, memory_mb: int) -> dict[str, Any]:
    from idfu_lab import __version__

    return {"construction": GATE, "idfu_lab_version": __version__, "timeout": timeout, "memory_mb": memory_mb}


def check_references(
    problems: Mapping[str, Problem],
    *,
    timeout: float = 3.0,
    memory_mb: int = 4096,
    workers: int | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Problems whose reference solution fails its own tests, with the verdict (problems without a
    reference are not checked)."""
    from idfu_lab.sandbox import run_jobs

    checked = [p for p in problems.values() if p.reference]
    verdicts = run_jobs(
        [job_for_code(p, p.reference or "") for p in checked],
        workers=workers,
        timeout=timeout,
        memory_mb=memory_mb,
        progress=progress,
    )
    failures = [
        {
            "task_id": p.task_id,
            "outcome": str(v.outcome),
            "phase": None if v.phase is None else str(v.phase),
            "exception_type": v.exception_type,
            "message": v.message[:300],
        }
        for p, v in zip(checked, verdicts, strict=True)
        if not v.passed
    ]
    logger.info("reference check: %d of %d references fail their own tests", len(failures), len(checked))
    return failures


def gate_replies(
    rows: Sequence[Mapping[str, Any]],
    problems: Mapping[str, Problem],
    *,
    timeout: float = 3.0,
    memory_mb: int = 4096,
    workers: int | None = None,
    progress: bool = False,
) -> list[Candidate]:
    """Gate generation rows (``task_id``, ``sample_index``, ``completion`` = the raw reply) as the audit
    gates a pair's side."""
    from idfu_lab.generation.postprocess import extract_code
    from idfu_lab.sandbox import run_jobs

    codes = [extract_code(r["completion"]) for r in rows]
    jobs = [job_for_code(problems[str(r["task_id"])], code) for r, code in zip(rows, codes, strict=True)]
    verdicts = run_jobs(jobs, workers=workers, timeout=timeout, memory_mb=memory_mb, progress=progress)
    return [
        Candidate(
            task_id=str(r["task_id"]),
            sample_index=int(r.get("sample_index", i)),
            reply=r["completion"],
            code=code,
            passed=v.passed,
            outcome=str(v.outcome),
            phase=None if v.phase is None else str(v.phase),
            message=v.message,
            row=dict(r),
        )
        for i, (r, code, v) in enumerate(zip(rows, codes, verdicts, strict=True))
    ]


def _dedupe(cands: list[Candidate], threshold: float) -> tuple[list[Candidate], int]:
    """Keep the first of each group of near-duplicate codes (token-set Jaccard >= threshold)."""
    kept: list[Candidate] = []
    sets: list[frozenset[str]] = []
    dropped = 0
    for c in cands:
        s = frozenset(code_tokens(c.code))
        if any(jaccard(s, t) >= threshold for t in sets):
            dropped += 1
            continue
        kept.append(c)
        sets.append(s)
    return kept, dropped


def _balanced_order(failing: list[Candidate], global_counts: Counter) -> list[Candidate]:
    """Round-robin over outcome categories, the rarest (globally, so far) first."""
    by_cat: dict[str, list[Candidate]] = defaultdict(list)
    for c in failing:
        by_cat[c.outcome].append(c)
    cats = sorted(by_cat, key=lambda k: (global_counts[k], k))
    order: list[Candidate] = []
    while any(by_cat[k] for k in cats):
        for k in cats:
            if by_cat[k]:
                order.append(by_cat[k].pop(0))
    return order


def pair_candidates(
    candidates: Sequence[Candidate],
    problems: Mapping[str, Problem],
    *,
    max_pairs_per_problem: int = 2,
    balance: bool = False,
    near_duplicate_jaccard: float = 0.9,
    contamination_ngram: int = 13,
    prompt_for: Any = None,
    provenance: Mapping[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Pair passing with failing candidates of the same problem (see the module docstring).

    ``prompt_for(problem) -> str`` gives the user text recorded as the pair's prompt (default: the
    problem's prompt). Returns ``(pairs, stats)``; ``stats`` accounts for every candidate dropped.
    """
    if max_pairs_per_problem < 1:
        raise IdfuError(f"max pairs per problem must be positive, got {max_pairs_per_problem}")
    prompt_for = prompt_for or (lambda p: p.prompt)
    by_task: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_task[c.task_id].append(c)
    stats: Counter = Counter()
    per_problem: dict[str, dict[str, Any]] = {}
    global_rejected: Counter = Counter()
    pairs: list[dict[str, Any]] = []
    for task_id in sorted(by_task, key=lambda t: (len(t), t)):
        cands = by_task[task_id]
        problem = problems[task_id]
        prompt = prompt_for(problem)
        info: dict[str, Any] = {"samples": len(cands), "pass": sum(c.passed for c in cands)}
        info["fail"] = len(cands) - info["pass"]
        per_problem[task_id] = info
        if contamination_hits({"prompt": problem.prompt}, contamination_ngram):
            stats["contaminated_problems"] += 1
            info["skipped"] = "prompt overlaps HumanEval"
            continue
        clean = []
        for c in cands:
            if c.outcome in EXCLUDED_REJECTED:
                stats["no_code_samples"] += 1
            elif contamination_hits({"code": c.code}, contamination_ngram):
                stats["contaminated_samples"] += 1
            else:
                clean.append(c)
        passing, d1 = _dedupe([c for c in clean if c.passed], near_duplicate_jaccard)
        failing, d2 = _dedupe([c for c in clean if not c.passed], near_duplicate_jaccard)
        stats["near_duplicate_samples"] += d1 + d2
        if not passing or not failing:
            info["skipped"] = "no passing sample" if not passing else "no failing sample"
            continue
        order = _balanced_order(failing, global_rejected) if balance else failing
        made = 0
        for k, rejected in enumerate(order[:max_pairs_per_problem]):
            chosen = passing[k % len(passing)]
            if code_tokens(chosen.code) == code_tokens(rejected.code):
                stats["identical_code_pairs"] += 1
                continue
            global_rejected[rejected.outcome] += 1
            made += 1
            pairs.append(
                {
                    "id": f"{task_id}-{chosen.sample_index}-{rejected.sample_index}",
                    "prompt": prompt,
                    "chosen": chosen.reply,
                    "rejected": rejected.reply,
                    "problem_id": task_id,
                    "chosen_outcome": chosen.outcome,
                    "rejected_outcome": rejected.outcome,
                    "rejected_phase": rejected.phase,
                    "chosen_sample": chosen.sample_index,
                    "rejected_sample": rejected.sample_index,
                    **dict(provenance or {}),
                }
            )
        info["pairs"] = made
    # a pair whose both sides near-duplicate an earlier pair's teaches nothing new
    dup_of = near_duplicates(
        [_code(p["chosen"]) for p in pairs], [_code(p["rejected"]) for p in pairs], near_duplicate_jaccard
    )
    kept = [p for p, d in zip(pairs, dup_of, strict=True) if d is None]
    stats["near_duplicate_pairs"] = len(pairs) - len(kept)
    for p, d in zip(pairs, dup_of, strict=True):
        if d is not None:
            per_problem[p["problem_id"]]["pairs"] -= 1
    summary = {
        "n_candidates": len(candidates),
        "n_pass": sum(c.passed for c in candidates),
        "n_fail": sum(not c.passed for c in candidates),
        "candidate_outcomes": dict(Counter(c.outcome for c in candidates).most_common()),
        "problems_with_pass": sum(1 for i in per_problem.values() if i["pass"]),
        "problems_with_fail": sum(1 for i in per_problem.values() if i["fail"]),
        "problems_with_both": sum(1 for i in per_problem.values() if i["pass"] and i["fail"]),
        "problems_paired": sum(1 for i in per_problem.values() if i.get("pairs", 0) > 0),
        "n_pairs": len(kept),
        "rejected_outcomes": dict(Counter(p["rejected_outcome"] for p in kept).most_common()),
        "dropped": {
            k: stats[k]
            for k in (
                "no_code_samples",
                "contaminated_samples",
                "contaminated_problems",
                "near_duplicate_samples",
                "identical_code_pairs",
                "near_duplicate_pairs",
            )
        },
        "per_problem": per_problem,
    }
    return kept, summary


def _code(reply: str) -> str:
    from idfu_lab.generation.postprocess import extract_code

    return extract_code(reply)


def zero_pairs_reason(report: Mapping[str, Any]) -> str | None:
    """A plain sentence saying why no pair could be made (None when pairs were made)."""
    if report.get("n_pairs", 0) > 0:
        return None
    n_problems = report.get("n_problems", 0)
    refs = len(report.get("reference_failures", []))
    if report.get("n_usable_problems", n_problems) == 0:
        return f"no usable problems: {n_problems} given, {refs} excluded because their reference solution fails its own tests"
    n = report.get("n_candidates", 0)
    if n == 0:
        return "no samples were generated"
    model = report.get("settings", {}).get("model", "the model")
    if report.get("n_pass", 0) == 0:
        return (
            f"none of the {n} samples passed its tests ({model} solved none of the "
            f"{report['n_usable_problems']} problems), so there is no chosen side for any pair"
        )
    if report.get("n_fail", 0) == 0:
        return f"all {n} samples passed their tests, so there is no rejected side for any pair"
    if report.get("problems_with_both", 0) == 0:
        return (
            f"no problem had both a passing and a failing sample ({report['problems_with_pass']} problems with a "
            f"pass, {report['problems_with_fail']} with a failure, none with both)"
        )
    dropped = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in report.get("dropped", {}).items() if v)
    return f"every candidate pair was dropped ({dropped})"


def sampling_config(
    cfg: Config, *, samples: int, temperature: float | None = None, top_p: float | None = None
):
    """The generation settings curation uses: the config's, always sampling, K samples per problem."""
    gen = cfg.generation
    if temperature is None:
        temperature = gen.temperature if gen.do_sample else CURATION_TEMPERATURE
    if temperature <= 0:
        raise IdfuError(f"curation samples: temperature must be positive, got {temperature}")
    return dataclasses.replace(
        gen,
        do_sample=True,
        num_samples=samples,
        temperature=temperature,
        top_p=gen.top_p if top_p is None else top_p,
    )


def curate(
    cfg: Config,
    problems: Mapping[str, Problem],
    *,
    samples: int = 4,
    max_pairs_per_problem: int = 2,
    balance: bool = False,
    seed: int = 0,
    temperature: float | None = None,
    top_p: float | None = None,
    cache_path: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    model: Any = None,
    tokenizer: Any = None,
) -> CurationResult:
    """Sample, gate and pair (see the module docstring). ``model``/``tokenizer`` reuse a loaded model."""
    from idfu_lab.generation.generate import generate
    from idfu_lab.generation.prompts import user_message

    if samples < 2:
        raise IdfuError(f"--samples must be at least 2 (a pair needs a pass and a fail), got {samples}")
    template = cfg.generation.template if cfg.model.chat else "completion"
    if template == "completion":
        raise IdfuError(
            "curation needs an instruct model with a chat template (model.chat: true, generation.template: "
            "instruct or qwen_eval): a pair's sides are complete replies to one user prompt"
        )
    if not problems:
        raise IdfuError("curation: the problem set is empty")
    timeout, memory_mb = cfg.audit.timeout, cfg.evaluation.memory_mb
    workers = workers if workers is not None else cfg.evaluation.workers
    ref_failures = check_references(
        problems, timeout=timeout, memory_mb=memory_mb, workers=workers, progress=progress
    )
    bad = {f["task_id"] for f in ref_failures}
    usable = [p for p in problems.values() if p.task_id not in bad]
    gen_cfg = sampling_config(cfg, samples=samples, temperature=temperature, top_p=top_p)
    rows = (
        generate(
            cfg.model,
            gen_cfg,
            usable,
            cache_path=cache_path,
            seed=seed,
            num_samples=samples,
            progress=progress,
            model=model,
            tokenizer=tokenizer,
        )
        if usable
        else []
    )
    candidates = gate_replies(
        rows, problems, timeout=timeout, memory_mb=memory_mb, workers=workers, progress=progress
    )
    gate = gate_info(timeout, memory_mb)
    first = rows[0] if rows else {}
    provenance = {
        "model": first.get("model", cfg.model.name_or_path),
        "adapter": first.get("adapter"),
        "decoding": first.get("decoding"),
        "template": template,
        "seed": seed,
        "gate": gate,
        "source": "idfu-lab curate",
    }
    pairs, summary = pair_candidates(
        candidates,
        problems,
        max_pairs_per_problem=max_pairs_per_problem,
        balance=balance,
        near_duplicate_jaccard=cfg.audit.near_duplicate_jaccard,
        contamination_ngram=cfg.audit.contamination_ngram,
        prompt_for=lambda p: user_message(p.prompt, template),
        provenance=provenance,
    )
    report: dict[str, Any] = {
        "created": _now(),
        "n_problems": len(problems),
        "n_usable_problems": len(usable),
        "reference_failures": ref_failures,
        **summary,
        "settings": {
            "model": provenance["model"],
            "samples": samples,
            "max_pairs_per_problem": max_pairs_per_problem,
            "balance": balance,
            "seed": seed,
            "decoding": provenance["decoding"],
            "template": template,
        },
        "gate": gate,
    }
    report["reason"] = zero_pairs_reason(report)
    if report["reason"]:
        logger.warning("curation made no pairs: %s", report["reason"])
    else:
        logger.info(
            "curation: %d pairs from %d problems (%d samples, %d passing)",
            len(pairs),
            report["problems_paired"],
            report["n_candidates"],
            report["n_pass"],
        )
    return CurationResult(pairs=pairs, report=report)


def select_problems(
    problems: Mapping[str, Problem], *, task_ids: str | None = None, limit: int | None = None
) -> dict[str, Problem]:
    """A subset of a problem set: ``task_ids`` like ``"511-974"`` or ``"511-600,700"`` (numeric ids), then
    the first ``limit``."""
    selected = dict(problems)
    if task_ids:
        wanted: set[str] = set()
        for part in task_ids.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part and all(x.strip().isdigit() for x in part.split("-", 1)):
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise IdfuError(f"--task-ids: empty range '{part}'")
                wanted.update(str(i) for i in range(lo, hi + 1))
            else:
                wanted.add(part)
        selected = {k: v for k, v in selected.items() if k in wanted}
        if not selected:
            raise IdfuError(f"--task-ids {task_ids}: no problem of the set has one of these ids")
    if limit is not None:
        if limit < 1:
            raise IdfuError(f"--limit must be positive, got {limit}")
        selected = dict(list(selected.items())[:limit])
    return selected


# --------------------------------------------------------------------------- the run's curation step

#: The resumable step of notebook 01 that builds the run's pairs when ``data.pairs`` is ``curate``.
STEP = "curate"


def read_result(out: str | Path) -> CurationResult:
    """A written curation (pairs file and its ``.report.json``) read back."""
    from idfu_lab.jsonl import iter_records

    out = Path(out)
    report = json.loads(out.with_name(out.name + ".report.json").read_text(encoding="utf-8"))
    pairs = [row for _, row in iter_records(out)] if out.exists() else []
    return CurationResult(pairs=pairs, report=report)


def curate_run(run: Run, *, force: bool = False, progress: bool = False) -> CurationResult:
    """Notebook 01's first step when the recipe says ``data.pairs: curate``: sample, gate and pair.

    The model named by the recipe samples ``data.curate.samples`` replies per problem of
    ``data.problems`` (at ``data.curate.temperature``), through the evaluation's generation path and
    the audit's gates; the pairs go to ``curate/pairs.jsonl``, the report beside them, the samples to
    ``curate/generations.jsonl`` (a cache: an interrupted run resumes). Done once per recipe: a re-run
    with the same config hash reads the files back. No pair at all is an error that says why.
    """
    from idfu_lab.config import CURATE
    from idfu_lab.data.pairs import load_problem_set

    cfg = run.config
    if cfg.data.pairs != CURATE:
        raise IdfuError(f"the recipe's data.pairs is {cfg.data.pairs!r}, not 'curate': nothing to curate")
    from idfu_lab.runs import local_data_files

    out = run.layout.curated_pairs
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs = run.input_hashes(local_data_files(cfg))
    if not force and run.is_done(STEP, inputs):
        logger.info("curation already done for this config (%s): reading %s", run.config_hash[:12], out)
        return read_result(out)
    c = cfg.data.curate
    problems = select_problems(load_problem_set(cfg.data.problems) or {}, limit=c.limit)
    result = curate(
        cfg,
        problems,
        samples=c.samples,
        max_pairs_per_problem=c.max_pairs_per_problem,
        balance=c.balance,
        seed=c.seed,
        temperature=c.temperature,
        top_p=c.top_p,
        cache_path=run.layout.curate_samples,
        progress=progress,
    )
    result.report["problems"] = cfg.data.problems
    written = result.write(out)
    if written is None:
        raise IdfuError(f"curation on {cfg.data.problems} made no pairs: {result.reason}")
    run.mark_done(
        STEP,
        outputs=[out, out.with_name(out.name + ".report.json")],
        inputs=inputs,
        n_pairs=len(result.pairs),
        n_samples=result.report["n_candidates"],
    )
    return result


def outcome_table(report: Mapping[str, Any]):
    """Outcomes of the sampled replies and of the rejected sides of the pairs (a DataFrame by outcome)."""
    import pandas as pd

    from idfu_lab.outcomes import category_order

    samples = Counter(report.get("candidate_outcomes", {}))
    rejected = Counter(report.get("rejected_outcomes", {}))
    order = ["PASS", *category_order(set(samples) | set(rejected))]
    frame = pd.DataFrame(
        {"samples": [samples[o] for o in order], "rejected side of a pair": [rejected[o] for o in order]},
        index=pd.Index(order, name="outcome"),
    )
    return frame
