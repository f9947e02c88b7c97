"""The pre-training audit of a pair set: every check the study's claim depends on, answered by code.

Before hours of GPU time go into DPO, the pairs must be what the method assumes: *honest failure vs
honest success*, judged by the same gates. This module checks that of any pair set and writes the
evidence (``audit.json``, ``pairs_annotated.jsonl``, ``quarantine.jsonl``, ``train_pairs.jsonl``).

1. **Gate parity.** Both sides are re-run through the same executor against the pair's tests. Chosen
   must pass and rejected must fail; anything else is a parity violation (``pass_vs_pass``,
   ``fail_vs_fail``, ``fail_vs_pass``). Only pairs with parity go to ``train_pairs.jsonl``. The
   rejected side's outcome x phase mix is the failure distribution training pushes the model away from.
2. **Near-duplicates.** Code is normalised to its Python tokens (comments and layout dropped) and
   compared by token-set Jaccard. A pair whose chosen *and* rejected code are near-duplicates
   (Jaccard >= ``audit.near_duplicate_jaccard``) of an earlier pair's is a near-duplicate of it
   (``near_duplicates``). Within a pair, chosen and rejected code at that Jaccard are counted in
   ``within_pair_near_duplicates``, and code that normalises to the very same tokens in
   ``identical_code`` (such a pair cannot have gate parity).
3. **Contamination with HumanEval.** Word n-grams (``audit.contamination_ngram``, 13 as in the GPT-3
   decontamination) of the prompt and of both sides' code are looked up among the n-grams of the 164
   HumanEval prompts and reference programs; every hit is listed with the task and the shared text.
4. **Synthetic-injection suspicion.** An injected bug is a tiny edit of a passing answer, so the
   line diff, token edit distance and AST edit distance between chosen and rejected code are measured.
   A pair is flagged when the codes differ by one token or one AST node, or by at most
   ``audit.synthetic_max_changed_lines`` lines while staying at least ``SYNTHETIC_MIN_SIMILARITY``
   token-similar (a one-line function rewritten whole is not an injection; a one-line edit of a
   ten-line function looks like one). It is a suspicion with evidence, not a verdict: a model's honest
   sample can differ from its passing one by a single missing import.
5. **Lengths** in the configured tokenizer's tokens, as the trainer will see them (the chat template
   applied): prompts over ``dpo.max_prompt_length`` and pairs over ``dpo.max_length`` are counted,
   because training drops them and the report must say how many.
6. **Length bias.** If chosen replies are systematically longer (or shorter) than rejected ones, DPO
   can learn length instead of correctness; the paired difference is tested (Wilcoxon signed-rank).
7. **The checklist**: each item pass/fail with its evidence, as a table.
"""

from __future__ import annotations

import ast
import datetime as _dt
import difflib
import functools
import io
import json
import logging
import math
import re
import tokenize
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from idfu_lab.data.pairs import TRAIN_FIELDS, Pair, PairSet, gate_pairs
from idfu_lab.errors import IdfuError
from idfu_lab.jsonl import read_records, write_json, write_records

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from idfu_lab.config import AuditConfig, Config
    from idfu_lab.runs import Run

logger = logging.getLogger(__name__)

#: Token similarity (1 - edit distance / length) at or above which a few-line edit looks injected.
SYNTHETIC_MIN_SIMILARITY = 0.8

#: A length bias is reported when the paired test rejects equality at this level *and* ...
LENGTH_BIAS_ALPHA = 0.05
#: ... at least this share of the untied pairs has the chosen side longer (or, symmetrically, shorter).
LENGTH_BIAS_SHARE = 0.75

#: The files an audit writes, relative to its output folder.
AUDIT_FILES = ("audit.json", "pairs_annotated.jsonl", "quarantine.jsonl", "train_pairs.jsonl")

_WORD = re.compile(r"\w+")
_SKIP_TOKENS = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENCODING,
    tokenize.ENDMARKER,
}


# --------------------------------------------------------------------------- code normalisation


@functools.lru_cache(maxsize=65536)
def _code_tokens_cached(code: str) -> tuple[str, ...]:
    try:
        toks = [
            t.string
            for t in tokenize.generate_tokens(io.StringIO(code).readline)
            if t.type not in _SKIP_TOKENS and t.string.strip()
        ]
        return tuple(toks)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        # Code that does not tokenise (a reply cut mid-string): words and symbols, comments removed.
        stripped = re.sub(r"#[^\n]*", "", code)
        return tuple(re.findall(r"\w+|[^\w\s]", stripped))


def code_tokens(code: str) -> list[str]:
    """Python tokens of ``code`` without comments, indentation or line breaks: what "the same code" means."""
    return list(_code_tokens_cached(code))


def normalized_lines(code: str) -> list[str]:
    """Non-blank lines with comments removed and whitespace collapsed (for the line diff)."""
    out = []
    for line in code.splitlines():
        toks = code_tokens(line) if line.strip() and not line.lstrip().startswith("#") else []
        if toks:
            out.append(" ".join(toks))
    return out


def jaccard(a: set[str] | frozenset[str], b: set[str] | frozenset[str]) -> float:
    """|a & b| / |a | b| (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _ast_labels(code: str) -> list[str] | None:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    labels = []
    for node in ast.walk(tree):
        label = type(node).__name__
        for attr in ("id", "attr", "arg", "name", "module"):
            value = getattr(node, attr, None)
            if isinstance(value, str):
                label += f":{value}"
        if isinstance(node, ast.Constant):
            label += f":{node.value!r}"
        labels.append(label)
    return labels


def edit_stats(chosen_code: str, rejected_code: str, *, max_changed_lines: int = 1) -> dict[str, Any]:
    """How far the rejected code is from the chosen code, and whether that looks like an injected bug.

    ``changed_lines``: lines replaced, added or removed in a diff of :func:`normalized_lines`;
    ``token_edit_distance``: Levenshtein distance between the token sequences;
    ``token_similarity``: 1 - that distance / the longer sequence's length;
    ``ast_edit_distance``: Levenshtein distance between the AST node sequences (None if either side
    does not parse); ``jaccard``: token-set Jaccard of the two codes (the within-pair near-duplicate
    measure). ``suspected`` follows the rule in the module docstring.
    """
    from rapidfuzz.distance import Levenshtein

    tc, tr = code_tokens(chosen_code), code_tokens(rejected_code)
    lc, lr = normalized_lines(chosen_code), normalized_lines(rejected_code)
    changed = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=lc, b=lr, autojunk=False).get_opcodes():
        if tag != "equal":
            changed += max(i2 - i1, j2 - j1)
    tok_dist = Levenshtein.distance(tc, tr)
    longest = max(len(tc), len(tr), 1)
    similarity = 1.0 - tok_dist / longest
    ac, ar = _ast_labels(chosen_code), _ast_labels(rejected_code)
    ast_dist = Levenshtein.distance(ac, ar) if ac is not None and ar is not None else None
    differ = tc != tr
    suspected = differ and (
        tok_dist <= 1
        or (ast_dist is not None and ast_dist <= 1)
        or (changed <= max_changed_lines and similarity >= SYNTHETIC_MIN_SIMILARITY)
    )
    return {
        "changed_lines": changed,
        "token_edit_distance": tok_dist,
        "token_similarity": round(similarity, 4),
        "ast_edit_distance": ast_dist,
        "jaccard": round(jaccard(set(tc), set(tr)), 4),
        "identical_code": not differ,
        "suspected": bool(suspected),
    }


# --------------------------------------------------------------------------- near-duplicates


def near_duplicates(
    chosen_codes: Sequence[str], rejected_codes: Sequence[str], threshold: float
) -> list[int | None]:
    """For each pair, the index of the earliest earlier pair it near-duplicates (else None).

    Near-duplicate: chosen codes *and* rejected codes both at token-set Jaccard >= ``threshold``.
    Sets are compared only where their sizes allow it (Jaccard >= t needs min/max size >= t).
    """
    sets_c = [frozenset(code_tokens(c)) for c in chosen_codes]
    sets_r = [frozenset(code_tokens(r)) for r in rejected_codes]
    out: list[int | None] = [None] * len(sets_c)
    for j in range(len(sets_c)):
        for i in range(j):
            a, b = sets_c[i], sets_c[j]
            if min(len(a), len(b)) < threshold * max(len(a), len(b)):
                continue
            if jaccard(a, b) >= threshold and jaccard(sets_r[i], sets_r[j]) >= threshold:
                out[j] = i if out[i] is None else out[i]
                break
    return out


# --------------------------------------------------------------------------- contamination


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Lower-cased word n-grams (punctuation and layout ignored, so formatting cannot hide a copy)."""
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@functools.lru_cache(maxsize=4)
def humaneval_index(n: int) -> dict[tuple[str, ...], tuple[str, ...]]:
    """n-gram -> HumanEval task ids whose prompt or reference program (prompt + canonical) contains it."""
    from idfu_lab.problems import load_humaneval

    index: dict[tuple[str, ...], set[str]] = {}
    for task_id, problem in load_humaneval().items():
        for text in (problem.prompt, problem.reference or ""):
            for g in ngrams(text, n):
                index.setdefault(g, set()).add(task_id)
    return {g: tuple(sorted(ids)) for g, ids in index.items()}


def contamination_hits(fields: Mapping[str, str], n: int) -> list[dict[str, Any]]:
    """Every (field, HumanEval task) with a shared n-gram: how many, and the first one as text."""
    index = humaneval_index(n)
    hits: list[dict[str, Any]] = []
    for name, text in fields.items():
        per_task: dict[str, list[tuple[str, ...]]] = {}
        for g in ngrams(text, n):
            for task_id in index.get(g, ()):
                per_task.setdefault(task_id, []).append(g)
        for task_id in sorted(per_task):
            grams = sorted(per_task[task_id])
            hits.append(
                {"field": name, "task_id": task_id, "n_shared": len(grams), "example": " ".join(grams[0])}
            )
    return hits


# --------------------------------------------------------------------------- lengths


def _chat_text(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _n_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def pair_lengths(pair: Pair, tokenizer: Any | None, *, chat: bool = True) -> dict[str, int]:
    """Prompt and reply lengths as the trainer sees them (tokens), or characters without a tokenizer.

    With a chat model the prompt is the chat template with the generation prompt, and a reply's
    length is what the template adds for the assistant turn (its end-of-turn token included).
    """
    if tokenizer is None:
        return {"prompt": len(pair.prompt), "chosen": len(pair.chosen), "rejected": len(pair.rejected)}
    messages = [{"role": "system", "content": pair.system}] if pair.system else []
    messages.append({"role": "user", "content": pair.prompt})
    if chat and getattr(tokenizer, "chat_template", None):
        prompt_text = _chat_text(tokenizer, messages, True)
        n_prompt = _n_tokens(tokenizer, prompt_text)
        out = {"prompt": n_prompt}
        for side in ("chosen", "rejected"):
            full = _chat_text(
                tokenizer, [*messages, {"role": "assistant", "content": getattr(pair, side)}], False
            )
            out[side] = max(_n_tokens(tokenizer, full) - n_prompt, 0)
        return out
    eos = 1 if getattr(tokenizer, "eos_token", None) else 0
    return {
        "prompt": _n_tokens(tokenizer, pair.prompt),
        "chosen": _n_tokens(tokenizer, pair.chosen) + eos,
        "rejected": _n_tokens(tokenizer, pair.rejected) + eos,
    }


def length_bias(
    chosen: Sequence[float], rejected: Sequence[float], *, alpha: float = LENGTH_BIAS_ALPHA
) -> dict[str, Any]:
    """Paired comparison of chosen and rejected lengths.

    ``biased`` when the Wilcoxon signed-rank test rejects equal lengths at ``alpha`` and at least
    ``LENGTH_BIAS_SHARE`` of the untied pairs lean the same way.
    """
    n = len(chosen)
    if n == 0:
        return {"n": 0, "biased": False, "p_value": None}
    diffs = [c - r for c, r in zip(chosen, rejected, strict=True)]
    longer = sum(d > 0 for d in diffs)
    shorter = sum(d < 0 for d in diffs)
    untied = longer + shorter
    share = longer / untied if untied else 0.5
    p_value = None
    if untied >= 2:
        from scipy.stats import wilcoxon

        p_value = float(wilcoxon([d for d in diffs if d != 0]).pvalue)
    ratios = sorted(c / r for c, r in zip(chosen, rejected, strict=True) if r > 0)
    median_ratio = (
        ratios[len(ratios) // 2]
        if len(ratios) % 2
        else (sum(ratios[len(ratios) // 2 - 1 : len(ratios) // 2 + 1]) / 2 if ratios else None)
    )
    biased = p_value is not None and p_value < alpha and max(share, 1 - share) >= LENGTH_BIAS_SHARE
    return {
        "n": n,
        "mean_chosen": sum(chosen) / n,
        "mean_rejected": sum(rejected) / n,
        "mean_difference": sum(diffs) / n,
        "median_ratio": median_ratio,
        "share_chosen_longer": round(share, 4),
        "n_ties": n - untied,
        "p_value": p_value,
        "biased": bool(biased),
    }


# --------------------------------------------------------------------------- the audit


@dataclass
class AuditReport:
    """What an audit found: the summary (``audit.json``), one annotated row per pair, the quarantine,
    the checklist, and the pairs fit for training (gate parity)."""

    summary: dict[str, Any]
    annotated: list[dict[str, Any]]
    quarantine: list[dict[str, Any]]
    train_pairs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def checklist(self) -> list[dict[str, Any]]:
        return self.summary["checklist"]

    def frame(self) -> pd.DataFrame:
        """Annotated pairs as a table (one row per pair; nested fields flattened with dots)."""
        import pandas as pd

        return pd.json_normalize(self.annotated, sep=".") if self.annotated else pd.DataFrame()

    def checklist_frame(self) -> pd.DataFrame:
        import pandas as pd

        frame = pd.DataFrame(self.checklist, columns=["item", "status", "evidence"])
        return frame

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write the four files into ``out_dir``; returns their paths by name."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {name: out / name for name in AUDIT_FILES}
        write_json(self.summary, paths["audit.json"])
        write_records(self.annotated, paths["pairs_annotated.jsonl"])
        write_records(self.quarantine, paths["quarantine.jsonl"])
        write_records(self.train_pairs, paths["train_pairs.jsonl"])
        return paths


def read_report(out_dir: str | Path) -> AuditReport:
    """An audit written by :meth:`AuditReport.write`."""
    out = Path(out_dir)
    path = out / "audit.json"
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise IdfuError(f"{path}: no audit here (run `idfu-lab audit` or notebook 01)") from None
    except json.JSONDecodeError as e:
        raise IdfuError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    return AuditReport(
        summary=summary,
        annotated=read_records(out / "pairs_annotated.jsonl"),
        quarantine=read_records(out / "quarantine.jsonl"),
        train_pairs=read_records(out / "train_pairs.jsonl"),
    )


def _parity(chosen_passed: bool, rejected_passed: bool) -> str:
    if chosen_passed and not rejected_passed:
        return "ok"
    if chosen_passed and rejected_passed:
        return "pass_vs_pass"
    if not chosen_passed and not rejected_passed:
        return "fail_vs_fail"
    return "fail_vs_pass"


def _item(item: str, passed: bool | None, evidence: str) -> dict[str, Any]:
    status = "n/a" if passed is None else ("pass" if passed else "FAIL")
    return {"item": item, "status": status, "passed": passed, "evidence": evidence}


def _ids(rows: Sequence[Mapping[str, Any]], pred: Callable[[Mapping[str, Any]], bool], limit: int = 8) -> str:
    ids = [str(r["id"]) for r in rows if pred(r)]
    more = f" (+{len(ids) - limit} more)" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def checklist(summary: Mapping[str, Any], annotated: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The pre-training validation checklist: each item pass/FAIL (or n/a) with the evidence."""
    from idfu_lab.outcomes import STUDY_CATEGORIES

    s = summary
    n = s["n_pairs"]
    items = [
        _item(
            "every row is a usable pair",
            s["n_quarantined"] == 0,
            f"{s['n_rows']} rows, {n} pairs, {s['n_quarantined']} quarantined"
            + (
                f" ({', '.join(f'{k}: {v}' for k, v in s['quarantine_reasons'].items())})"
                if s["n_quarantined"]
                else ""
            ),
        ),
        _item(
            "chosen side passes its tests",
            s["chosen_fail"] == 0 and n > 0,
            f"{s['chosen_pass']}/{n} pass"
            + (f"; failing: {_ids(annotated, lambda r: not r['chosen_passed'])}" if s["chosen_fail"] else ""),
        ),
        _item(
            "rejected side fails its tests",
            s["rejected_pass"] == 0 and n > 0,
            f"{s['rejected_fail']}/{n} fail"
            + (f"; passing: {_ids(annotated, lambda r: r['rejected_passed'])}" if s["rejected_pass"] else ""),
        ),
        _item(
            "gate parity (chosen passes and rejected fails)",
            s["parity_violations"] == 0 and n > 0,
            f"{_n(s['parity_violations'], 'violation')} "
            f"({', '.join(f'{k} {v}' for k, v in s['parity_breakdown'].items())}); {s['n_train_pairs']} pairs kept for training",
        ),
        _item(
            "rejected failures include the study's categories",
            all(s["train_rejected_outcomes"].get(str(c), 0) > 0 for c in STUDY_CATEGORIES) if n else False,
            ", ".join(f"{c}: {s['train_rejected_outcomes'].get(str(c), 0)}" for c in STUDY_CATEGORIES)
            + f"; {len(s['train_rejected_outcomes'])} outcome kinds in all",
        ),
        _item(
            "no near-duplicate pairs",
            s["near_duplicates"] == 0,
            f"{_n(s['near_duplicates'], 'pair')} near-duplicating an earlier one (Jaccard >= {s['thresholds']['near_duplicate_jaccard']})"
            + (
                f": {_ids(annotated, lambda r: r['near_duplicate_of'] is not None)}"
                if s["near_duplicates"]
                else ""
            ),
        ),
        _item(
            "chosen and rejected code differ",
            s["identical_code"] == 0,
            f"{_n(s['identical_code'], 'pair')} with the same code on both sides"
            + (
                f": {_ids(annotated, lambda r: r['synthetic']['identical_code'])}"
                if s["identical_code"]
                else ""
            ),
        ),
        _item(
            "no overlap with HumanEval",
            s["contaminated"] == 0,
            f"{_n(s['contaminated'], 'pair')} sharing a {s['thresholds']['contamination_ngram']}-gram with HumanEval"
            + (f": {_ids(annotated, lambda r: bool(r['contamination']))}" if s["contaminated"] else ""),
        ),
        _item(
            "no suspected synthetic injection",
            s["suspected_synthetic"] == 0,
            f"{_n(s['suspected_synthetic'], 'rejected side')} within a one-token/one-line edit of the chosen side"
            + (f": {', '.join(s['suspected_synthetic_ids'][:8])}" if s["suspected_synthetic"] else ""),
        ),
    ]
    unit = s["length_unit"]
    if unit == "tokens":
        items += [
            _item(
                f"prompts fit max_prompt_length ({s['max_prompt_length']})",
                s["over_max_prompt_length"] == 0,
                f"{s['over_max_prompt_length']} over; longest prompt {s['longest_prompt']} tokens",
            ),
            _item(
                f"pairs fit max_length ({s['max_length']})",
                s["over_max_length"] == 0,
                f"{s['over_max_length']} over; longest pair {s['longest_pair']} tokens",
            ),
        ]
    else:
        items += [
            _item(
                "prompts fit max_prompt_length",
                None,
                "no tokenizer (give a config): lengths counted in characters",
            ),
            _item(
                "pairs fit max_length", None, "no tokenizer (give a config): lengths counted in characters"
            ),
        ]
    lb = s["length_bias"]
    items.append(
        _item(
            "no length bias between chosen and rejected",
            not lb["biased"] if lb["n"] else None,
            (
                f"mean {lb['mean_chosen']:.1f} vs {lb['mean_rejected']:.1f} {unit}; chosen longer in "
                f"{lb['share_chosen_longer']:.0%} of untied pairs; Wilcoxon p = "
                + ("n/a" if lb["p_value"] is None else f"{lb['p_value']:.3g}")
            )
            if lb["n"]
            else "no pairs",
        )
    )
    items.append(_item("pairs left for training", s["n_train_pairs"] > 0, f"{s['n_train_pairs']} of {n}"))
    return items


def audit_pairs(
    pair_set: PairSet,
    *,
    audit_cfg: AuditConfig | None = None,
    tokenizer: Any | None = None,
    chat: bool = True,
    max_prompt_length: int | None = None,
    max_length: int | None = None,
    memory_mb: int = 4096,
    workers: int | None = None,
    progress: bool = False,
    problems_source: str | None = None,
    tokenizer_name: str | None = None,
) -> AuditReport:
    """Audit a loaded pair set (see the module docstring). Runs the gates; writes nothing."""
    from idfu_lab import __version__
    from idfu_lab.config import AuditConfig

    cfg = audit_cfg or AuditConfig()
    pairs = pair_set.pairs
    logger.info("auditing %d pairs from %s (gates: %d programs)", len(pairs), pair_set.source, 2 * len(pairs))
    verdicts = gate_pairs(pairs, timeout=cfg.timeout, memory_mb=memory_mb, workers=workers, progress=progress)
    chosen_codes = [p.chosen_code for p in pairs]
    rejected_codes = [p.rejected_code for p in pairs]
    dup_of = near_duplicates(chosen_codes, rejected_codes, cfg.near_duplicate_jaccard)

    annotated: list[dict[str, Any]] = []
    for i, (pair, (vc, vr)) in enumerate(zip(pairs, verdicts, strict=True)):
        lengths = pair_lengths(pair, tokenizer, chat=chat)
        total = lengths["prompt"] + max(lengths["chosen"], lengths["rejected"])
        over_prompt = (
            tokenizer is not None and max_prompt_length is not None and lengths["prompt"] > max_prompt_length
        )
        over_total = tokenizer is not None and max_length is not None and total > max_length
        contamination = contamination_hits(
            {"prompt": pair.prompt, "chosen": chosen_codes[i], "rejected": rejected_codes[i]},
            cfg.contamination_ngram,
        )
        synthetic = edit_stats(
            chosen_codes[i], rejected_codes[i], max_changed_lines=cfg.synthetic_max_changed_lines
        )
        parity = _parity(vc.passed, vr.passed)
        annotated.append(
            {
                "id": pair.id,
                "line": pair.line,
                "problem_id": pair.problem_id,
                "tests_from": pair.tests_from,
                "prompt": pair.prompt,
                "chosen": pair.chosen,
                "rejected": pair.rejected,
                "chosen_code": chosen_codes[i],
                "rejected_code": rejected_codes[i],
                "chosen_passed": vc.passed,
                "chosen_outcome": str(vc.outcome),
                "chosen_phase": None if vc.phase is None else str(vc.phase),
                "rejected_passed": vr.passed,
                "rejected_outcome": str(vr.outcome),
                "rejected_phase": None if vr.phase is None else str(vr.phase),
                "chosen_verdict": vc.as_dict(),
                "rejected_verdict": vr.as_dict(),
                "parity": parity,
                "near_duplicate_of": None if dup_of[i] is None else pairs[dup_of[i]].id,
                "contamination": contamination,
                "synthetic": synthetic,
                "prompt_length": lengths["prompt"],
                "chosen_length": lengths["chosen"],
                "rejected_length": lengths["rejected"],
                "pair_length": total,
                "over_max_prompt_length": bool(over_prompt),
                "over_max_length": bool(over_total),
                "in_train": parity == "ok",
                "system": pair.system,
                "extra": pair.extra,
            }
        )

    train = [{k: a[k] for k in TRAIN_FIELDS} for a in annotated if a["in_train"]]
    n = len(annotated)
    rejected_outcomes = Counter(a["rejected_outcome"] for a in annotated)
    unit = "tokens" if tokenizer is not None else "characters"
    summary: dict[str, Any] = {
        "source": pair_set.source,
        "problems": problems_source,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "idfu_lab_version": __version__,
        "n_rows": pair_set.n_rows,
        "n_pairs": n,
        "n_quarantined": pair_set.n_quarantined,
        "n_beyond_limit": pair_set.n_beyond_limit,
        "quarantine_reasons": pair_set.quarantine_reasons(),
        "tests_from": dict(Counter(a["tests_from"] for a in annotated)),
        "chosen_pass": sum(a["chosen_passed"] for a in annotated),
        "chosen_fail": sum(not a["chosen_passed"] for a in annotated),
        "rejected_pass": sum(a["rejected_passed"] for a in annotated),
        "rejected_fail": sum(not a["rejected_passed"] for a in annotated),
        "parity_violations": sum(a["parity"] != "ok" for a in annotated),
        "parity_breakdown": {
            k: sum(a["parity"] == k for a in annotated)
            for k in ("pass_vs_pass", "fail_vs_fail", "fail_vs_pass")
        },
        "parity_violation_ids": [a["id"] for a in annotated if a["parity"] != "ok"],
        "chosen_outcomes": _ordered_counts(Counter(a["chosen_outcome"] for a in annotated)),
        "rejected_outcomes": _ordered_counts(rejected_outcomes),
        "rejected_outcome_phase": dict(
            sorted(
                Counter(
                    f"{a['rejected_outcome']}/{a['rejected_phase']}"
                    for a in annotated
                    if not a["rejected_passed"]
                ).items()
            )
        ),
        "train_rejected_outcomes": _ordered_counts(
            Counter(a["rejected_outcome"] for a in annotated if a["in_train"])
        ),
        "near_duplicates": sum(a["near_duplicate_of"] is not None for a in annotated),
        "near_duplicate_pairs": [
            [a["id"], a["near_duplicate_of"]] for a in annotated if a["near_duplicate_of"]
        ],
        "identical_code": sum(a["synthetic"]["identical_code"] for a in annotated),
        "within_pair_near_duplicates": sum(
            a["synthetic"]["jaccard"] >= cfg.near_duplicate_jaccard for a in annotated
        ),
        "contaminated": sum(bool(a["contamination"]) for a in annotated),
        "contamination_hits": [{"id": a["id"], **h} for a in annotated for h in a["contamination"]],
        "suspected_synthetic": sum(a["synthetic"]["suspected"] for a in annotated),
        "suspected_synthetic_ids": [a["id"] for a in annotated if a["synthetic"]["suspected"]],
        "length_unit": unit,
        "tokenizer": tokenizer_name if tokenizer is not None else None,
        "max_prompt_length": max_prompt_length,
        "max_length": max_length,
        "over_max_prompt_length": sum(a["over_max_prompt_length"] for a in annotated)
        if tokenizer is not None
        else None,
        "over_max_length": sum(a["over_max_length"] for a in annotated) if tokenizer is not None else None,
        "longest_prompt": max((a["prompt_length"] for a in annotated), default=0),
        "longest_pair": max((a["pair_length"] for a in annotated), default=0),
        "length_bias": length_bias(
            [a["chosen_length"] for a in annotated], [a["rejected_length"] for a in annotated]
        ),
        "n_train_pairs": len(train),
        "thresholds": {
            "near_duplicate_jaccard": cfg.near_duplicate_jaccard,
            "contamination_ngram": cfg.contamination_ngram,
            "synthetic_max_changed_lines": cfg.synthetic_max_changed_lines,
            "synthetic_min_similarity": SYNTHETIC_MIN_SIMILARITY,
            "length_bias_alpha": LENGTH_BIAS_ALPHA,
            "length_bias_share": LENGTH_BIAS_SHARE,
        },
        "gates": {
            "executor": "idfu_lab.sandbox.executor",
            "version": __version__,
            "timeout": cfg.timeout,
            "memory_mb": memory_mb,
        },
    }
    summary["checklist"] = checklist(summary, annotated)
    summary["checklist_passed"] = sum(item["passed"] is True for item in summary["checklist"])
    summary["checklist_failed"] = sum(item["passed"] is False for item in summary["checklist"])
    logger.info(
        "audit: %d pairs, %d quarantined, %d parity violations, %d kept for training",
        n,
        pair_set.n_quarantined,
        summary["parity_violations"],
        len(train),
    )
    return AuditReport(
        summary=summary,
        annotated=annotated,
        quarantine=[q.as_dict() for q in pair_set.quarantine],
        train_pairs=train,
    )


def _ordered_counts(counts: Counter) -> dict[str, int]:
    """Outcome counts in the outcome enumeration's order (PASS first), zero counts left out."""
    from idfu_lab.outcomes import Outcome

    order = {str(o): i for i, o in enumerate(Outcome)}
    return {k: v for k, v in sorted(counts.items(), key=lambda kv: (order.get(kv[0], math.inf), kv[0])) if v}


def audit_config(
    cfg: Config,
    *,
    pairs: str | Path | None = None,
    problems: str | Path | None = None,
    with_tokenizer: bool = True,
    workers: int | None = None,
    progress: bool = False,
) -> AuditReport:
    """Load a config's pair set (or ``pairs``/``problems`` given here) and audit it with the config's
    thresholds, tokenizer and length limits."""
    from idfu_lab.config import CURATE
    from idfu_lab.data.pairs import Columns, load, load_problem_set

    if pairs is None and cfg.data.pairs == CURATE:
        raise IdfuError(
            "data.pairs is 'curate': the pairs are built from the model's samples first (notebook 01, or "
            "`idfu-lab curate`); give that pairs file to audit"
        )
    problems_source = str(problems) if problems is not None else cfg.data.problems
    problem_set = load_problem_set(problems_source) if problems_source else None
    pair_set = load(
        pairs if pairs is not None else cfg.data.pairs,
        problems=problem_set,
        columns=Columns.from_config(cfg.data),
        split=cfg.data.split,
        limit=cfg.data.limit,
    )
    tokenizer = None
    if with_tokenizer:
        from idfu_lab.generation.models import load_tokenizer

        tokenizer = load_tokenizer(cfg.model)
    return audit_pairs(
        pair_set,
        audit_cfg=cfg.audit,
        tokenizer=tokenizer,
        chat=cfg.model.chat,
        max_prompt_length=cfg.dpo.max_prompt_length,
        max_length=cfg.dpo.max_length,
        memory_mb=cfg.evaluation.memory_mb,
        workers=workers if workers is not None else cfg.evaluation.workers,
        progress=progress,
        problems_source=problems_source,
        tokenizer_name=cfg.model.name_or_path,
    )


def audit_run(run: Run, *, force: bool = False, progress: bool = False) -> AuditReport:
    """The run's audit (notebook 01): computed and written under ``audit/`` once, read back afterwards.

    Resumable: when the ``audit`` step finished for this config hash and the same pairs and problems
    files (by content) and its files exist, the files are read instead of re-running the gates.
    """
    from idfu_lab.config import CURATE
    from idfu_lab.runs import local_data_files

    out_dir = run.layout.audit_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = None
    if run.config.data.pairs == CURATE:  # the pairs notebook 01 curated from the model's own samples
        pairs = run.layout.curated_pairs
        if not pairs.exists():
            raise IdfuError(f"{pairs}: no curated pairs yet; run idfu_lab.data.curate.curate_run(run) first")
    inputs = run.input_hashes([*local_data_files(run.config), *([pairs] if pairs is not None else [])])
    if not force and run.is_done("audit", inputs):
        logger.info("audit already done for this config (%s): reading %s", run.config_hash[:12], out_dir)
        return read_report(out_dir)
    report = audit_config(run.config, pairs=pairs, progress=progress)
    paths = report.write(out_dir)
    run.mark_done(
        "audit",
        outputs=[out_dir / name for name in paths],
        inputs=inputs,
        n_pairs=report.summary["n_pairs"],
        n_train_pairs=report.summary["n_train_pairs"],
    )
    return report
