"""The per-seed evaluation step on the tiny model: files, policies, the sensitivity table, resuming."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from idfu_lab import runs
from idfu_lab.analysis.evaluation import (
    ALL_POLICIES,
    evaluate_seed,
    humaneval_plus_status,
    judge_policies,
    load_humaneval_plus,
    outcome_phase_table,
    sensitivity_table,
)
from idfu_lab.errors import IdfuError
from idfu_lab.problems import load_humaneval

LIMIT = 16


def _make_adapter(run, seed_value: int) -> None:
    """A real LoRA adapter on the tiny model (random, non-zero weights) where training would put it."""
    import torch
    from peft import LoraConfig, get_peft_model

    from idfu_lab.generation import models

    torch.manual_seed(seed_value)
    base = models.load_model(run.config.model)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(run.layout.adapter(run.seed))


def _open(tmp_path, seed):
    return runs.open(
        "tiny-humaneval",
        seed=seed,
        run_dir=tmp_path / "run",
        overrides={"evaluation.limit": LIMIT, "evaluation.bootstrap_samples": 200},
    )


@pytest.mark.slow
def test_evaluate_seed_writes_everything_and_resumes(tmp_path):
    run = _open(tmp_path, 42)
    with pytest.raises(IdfuError, match="no trained adapter"):
        evaluate_seed(run, progress=False)
    _make_adapter(run, 1)
    ev = evaluate_seed(run, progress=False)
    assert not ev.skipped
    for m in ("base", "tuned"):
        gens = [json.loads(x) for x in ev.generations[m].read_text().splitlines()]
        res = [json.loads(x) for x in ev.results[m].read_text().splitlines()]
        assert len(gens) == len(res) == LIMIT
        assert all(r["postprocess"] == "extract" and r["imports"] == "none" for r in res)
        assert {"passed", "outcome", "phase", "raw"} <= set(res[0])
        meta = json.loads((ev.results[m].parent / f"{m}.jsonl.meta.json").read_text())
        assert meta["policy"] == {"postprocess": "extract", "imports": "none"} and meta["n_problems"] == LIMIT
        assert meta["timeout_policy"] == {**meta["timeout_policy"], "kind": "fixed", "seconds": 3.0}
        assert all(r["timeout_s"] == 3.0 and "cpu_s" in r for r in res)
    assert {
        r["adapter"] for r in (json.loads(x) for x in ev.generations["tuned"].read_text().splitlines())
    } != {None}
    sens = pd.read_csv(ev.sensitivity)
    # every post-processing policy under the recipe's fixed 3 s, and the configured one under auto
    assert len(sens) == 2 * (len(ALL_POLICIES) + 1) and sens["reference"].sum() == 2
    assert (sens.loc[sens["reference"], "changed"] == 0).all()
    auto = sens[sens["timeout"] == "auto"]
    assert len(auto) == 2 and set(zip(auto["postprocess"], auto["imports"], strict=True)) == {
        ("extract", "none")
    }
    assert (sens.loc[sens["timeout"] != "auto", "timeout"] == "fixed 3 s").all()
    s = ev.summary
    assert s["comparison"]["n_problems"] == LIMIT and 0.0 <= s["pass1"]["tuned"] <= 1.0
    assert s["generation"]["base"]["replies"] == LIMIT

    cache = run.layout.generation_cache
    assert len(cache.read_text().splitlines()) == 2 * LIMIT
    again = evaluate_seed(_open(tmp_path, 42), progress=False)
    assert again.skipped and again.summary == s

    # a second seed: the base model's greedy replies come from the cache, only the tuned ones are new
    run2 = _open(tmp_path, 123)
    _make_adapter(run2, 2)
    ev2 = evaluate_seed(run2, progress=False)
    assert len(cache.read_text().splitlines()) == 3 * LIMIT
    assert ev2.generations["base"].read_text() == ev.generations["base"].read_text()

    # a retrained adapter (new files) is evaluated again; its replies are new cache entries
    _make_adapter(run, 3)
    assert not evaluate_seed(_open(tmp_path, 42), progress=False).skipped
    assert len(cache.read_text().splitlines()) == 4 * LIMIT


def test_sensitivity_counts_changes_and_transitions():
    problems = load_humaneval()
    p0, p2 = problems["HumanEval/0"], problems["HumanEval/2"]
    body0 = p0.reference[len(p0.prompt) :]
    rows = [
        # a full function in a fence: fails raw (markdown is not Python), passes once extracted
        {"task_id": p0.task_id, "completion": f"Sure:\n```python\n{p0.reference}```\n"},
        # uses math without importing it: NAME_ERROR unless the header imports math
        {
            "task_id": p2.task_id,
            "completion": "```python\ndef truncate_number(number: float) -> float:\n    return number - math.floor(number)\n```",
        },
        # a correct body followed by a failing self-test: sanitize drops it
        {"task_id": p0.task_id, "completion": body0 + "\nassert has_close_elements([1.0], 0.5) is True\n"},
    ]
    judged = judge_policies(rows, problems, ALL_POLICIES)
    summary, transitions = sensitivity_table(judged, ("extract", "none"), label="m")
    by = summary.set_index(["postprocess", "imports"])
    assert by.loc[("extract", "none"), "passed"] == 1 and by.loc[("extract", "none"), "NAME_ERROR"] == 1
    assert by.loc[("extract", "header"), "passed"] == 2 and by.loc[("extract", "header"), "gained"] == 1
    assert by.loc[("sanitize", "header"), "passed"] == 3
    assert by.loc[("raw", "none"), "SYNTAX_ERROR"] == 2 and by.loc[("raw", "none"), "lost"] == 1
    t = transitions.set_index(["postprocess", "imports", "from", "to"])["count"]
    assert t[("extract", "header", "NAME_ERROR", "PASS")] == 1
    assert t[("sanitize", "none", "ASSERTION_FAIL", "PASS")] == 1

    table = outcome_phase_table({"m": pd.DataFrame(judged[("extract", "none")])})
    assert table.loc[("NAME_ERROR", "test"), "m"] == 1  # math.floor is looked up when check() calls it


def test_humaneval_plus_test_judges_like_evalplus(tmp_path):
    from idfu_lab.analysis.judge import evaluate_rows

    he = load_humaneval()
    recs = []
    for tid, inputs in (
        ("HumanEval/2", [[3.5], [1.33], [123.456]]),
        ("HumanEval/0", [[[1.0, 2.0, 3.0], 0.5], [[1.0, 2.8, 3.0], 0.3]]),
    ):
        p = he[tid]
        recs.append(
            {
                "task_id": tid,
                "prompt": p.prompt,
                "entry_point": p.entry_point,
                "canonical_solution": p.reference[len(p.prompt) :],
                "base_input": inputs[:1],
                "plus_input": inputs[1:],
                "atol": 0,
            }
        )
    path = tmp_path / "HumanEvalPlus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    plus = load_humaneval_plus(path)
    assert plus["HumanEval/2"].benchmark == "humaneval+" and [n for n, _ in plus["HumanEval/2"].suites] == [
        "base",
        "plus",
    ]
    rows = [
        {"task_id": "HumanEval/2", "completion": "    return number % 1.0\n"},
        {"task_id": "HumanEval/2", "completion": "    return round(number % 1.0, 1)\n"},  # right on 3.5 only
        {
            "task_id": "HumanEval/0",
            "completion": plus["HumanEval/0"].reference[len(plus["HumanEval/0"].prompt) :],
        },
    ]
    verdicts = [r["outcome"] for r in evaluate_rows(rows, plus)]
    assert verdicts == ["PASS", "ASSERTION_FAIL", "PASS"]
    ok, why = humaneval_plus_status()
    assert isinstance(ok, bool) and "HumanEval+" in why


def test_example_program_reads_rows_from_a_dataframe() -> None:
    """DataFrame records carry NaN for a field a row lacks; the example must still show the program."""
    import pandas as pd

    from idfu_lab.analysis.evaluation import example_program, pick_example
    from idfu_lab.problems import load_humaneval

    problem = load_humaneval()["HumanEval/0"]
    rows = pd.DataFrame(
        [
            {"task_id": "HumanEval/0", "raw": float("nan"), "completion": "    return False\n"},
            {"task_id": "HumanEval/0", "raw": "```python\nx = 1\n```", "completion": "    return True\n"},
            {
                "task_id": "HumanEval/0",
                "raw": "y",
                "solution": "def has_close_elements(a, b):\n    return 1\n",
            },
        ]
    ).to_dict("records")
    assert pick_example(rows) is rows[1]
    assert example_program(rows[0], problem)["program"] == problem.prompt + "    return False\n"
    assert example_program(rows[0], problem)["reply"] == ""
    assert example_program(rows[2], problem)["program"].startswith("def has_close_elements")


def test_precision_baseline_says_when_it_applies_and_compares_paired(tmp_path) -> None:
    """bf16 vs NF4 base: not applicable without quantisation, skipped without CUDA, paired where run.

    The 'done' path is exercised on the CPU by declaring CUDA present: the 'bf16' model then loads in
    fp32 like the base, so the comparison must find no discordant problem at all.
    """
    import pandas as pd

    from idfu_lab import runs
    from idfu_lab.analysis.evaluation import judge, precision_baseline
    from idfu_lab.generation.generate import generate
    from idfu_lab.problems import load_humaneval

    problems = list(load_humaneval().values())[:6]
    plain = runs.open(
        "tiny-humaneval", seed=1, run_dir=tmp_path / "a", overrides={"generation.max_new_tokens": 8}
    )
    assert precision_baseline(plain, pd.DataFrame(), problems)["status"] == "not applicable"

    run = runs.open(
        "tiny-humaneval",
        seed=1,
        run_dir=tmp_path / "b",
        overrides={
            "generation.max_new_tokens": 8,
            "model.load_in_4bit": True,
            "evaluation.bootstrap_samples": 200,
        },
    )
    skipped = precision_baseline(run, pd.DataFrame(), problems, cuda=False)
    assert skipped["status"] == "skipped" and "no CUDA" in skipped["reason"]

    cfg = run.config
    gens = generate(cfg.model, cfg.generation, problems, seed=1, progress=False)
    base = pd.DataFrame(
        judge(gens, {p.task_id: p for p in problems}, postprocess=cfg.evaluation.postprocess, imports="none")
    )
    done = precision_baseline(run, base, problems, cuda=True)
    assert done["status"] == "done"
    assert done["pass1_bf16"] == done["pass1_nf4"]
    assert done["comparison"]["discordant"] == 0
    assert run.layout.results(run.seed, "base_bf16").exists()
