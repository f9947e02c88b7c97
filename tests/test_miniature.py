"""The miniature model: habits learnt from its warm-up data only, checked against the real sandbox."""

from __future__ import annotations

import ast
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from idfu_lab.benchmarks import mini
from idfu_lab.config import TinyModelConfig, load_config, repo_root
from idfu_lab.generation import miniature, models
from idfu_lab.problems import load_problems
from idfu_lab.sandbox import job_for, run_jobs


def test_every_family_has_a_habit_and_mixes_are_distributions() -> None:
    assert set(miniature.HABITS) == set(mini.FAMILY_BY_KEY)
    for key, habit in miniature.HABITS.items():
        assert set(habit.mix) == set(miniature.STYLES) and sum(habit.mix.values()) == pytest.approx(1.0)
        if not mini.FAMILY_BY_KEY[key].imports:
            assert habit.mix["no_import"] == 0, key  # nothing to forget
    majority = Counter(max(h.mix, key=h.mix.get) for h in miniature.HABITS.values())
    # the mix differs across families: each bad habit is the majority somewhere, good code elsewhere
    assert set(majority) == set(miniature.STYLES)


def test_warmup_corpus_follows_each_family_s_mix_and_reads_the_train_split_only() -> None:
    corpus = miniature.warmup_corpus(seed=0, replies_per_problem=4)
    train = {t.prompt: t for t in mini.tasks("train")}
    eval_prompts = {t.prompt for t in mini.tasks("eval")}
    assert len(corpus) == 4 * len(train)
    assert not [p for p, _, _ in corpus if p in eval_prompts]
    by_family: dict[str, Counter] = {}
    for prompt, reply, style in corpus:
        assert reply.startswith("```python\n") and reply.endswith("```")
        by_family.setdefault(train[prompt].family, Counter())[style] += 1
    for key, counts in by_family.items():
        n = sum(counts.values())
        for style, share in miniature.HABITS[key].mix.items():
            assert abs(counts[style] - share * n) <= 1, (key, style)
    assert miniature.warmup_corpus(seed=0, replies_per_problem=4) == corpus  # deterministic


def test_each_style_fails_the_way_it_should_in_the_sandbox() -> None:
    """Judged by the real executor: clean code passes, a missing import is a NameError, a wrong self-test
    fails while the program loads, a wrong body fails the benchmark's check."""
    problems = load_problems("mini-train")
    rng = random.Random(0)
    jobs, expected = [], []
    for task in mini.tasks("train")[:120]:
        family = mini.FAMILY_BY_KEY[task.family]
        styles = ["clean", "wrong_logic"] + (["no_import"] if family.imports else [])
        for style in styles:
            code = miniature.reply(task, style, rng).removeprefix("```python\n").removesuffix("```")
            jobs.append(job_for(problems[task.task_id], solution=code))
            expected.append(style)
    verdicts = run_jobs(jobs)
    seen = Counter(
        (style, str(v.outcome), None if v.phase is None else str(v.phase))
        for style, v in zip(expected, verdicts, strict=True)
    )
    assert {k for k in seen if k[0] == "clean"} == {("clean", "PASS", None)}
    assert {k for k in seen if k[0] == "no_import"} == {("no_import", "NAME_ERROR", "test")}
    wrong = Counter(k[1] for k in seen.elements() if k[0] == "wrong_logic")
    assert wrong["PASS"] <= 0.1 * sum(wrong.values())  # a bug the tests catch (rarely invisible on them)
    # a self-test with a wrong expected value fails while the module loads: ASSERTION_FAIL at definition
    task = mini.tasks("train")[0]
    wrong_test = miniature.reply(task, "clean", rng).removesuffix("```")
    args, value = task.examples[0]
    wrong_test += f"\nassert {task.name}({', '.join(map(repr, args))}) == {miniature._wrong(value)!r}\n"
    (v,) = run_jobs([job_for(problems[task.task_id], solution=wrong_test.removeprefix("```python\n"))])
    assert (str(v.outcome), str(v.phase)) == ("ASSERTION_FAIL", "definition")


def test_nothing_but_the_builder_knows_the_habits() -> None:
    """Generation, post-processing, the executor and the analysis never import the habits."""
    importers = []
    for path in (repo_root() / "idfu_lab").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n.endswith("miniature") for n in names):
                importers.append(path.relative_to(repo_root()).as_posix())
    assert set(importers) == {"idfu_lab/generation/models.py"}


def test_a_short_build_is_deterministic(tmp_path: Path) -> None:
    tiny = TinyModelConfig(
        hidden_size=32, intermediate_size=64, warmup_data="mini", warmup_steps=3, warmup_batch_size=4
    )
    a = models.build_tiny(tiny, tmp_path / "a")
    b = models.build_tiny(tiny, tmp_path / "b")
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert models.tiny_fingerprint(tiny) != models.tiny_fingerprint(TinyModelConfig(warmup_steps=3))


@pytest.mark.slow
def test_greedy_miniature_on_eval_has_the_study_s_failure_mix() -> None:
    """The cached miniature of configs/tiny.yaml, greedy on mini's eval split, judged by the real executor."""
    from idfu_lab.analysis.evaluation import judge
    from idfu_lab.generation.generate import generate

    cfg = load_config("tiny")
    problems = load_problems("mini")
    rows = generate(cfg.model, cfg.generation, list(problems.values()), progress=False)
    results = judge(rows, problems, postprocess="extract", imports="none")
    pass1 = sum(r["passed"] for r in results) / len(results)
    outcomes = Counter((r["outcome"], r["phase"]) for r in results)
    assert 0.3 <= pass1 <= 0.8, outcomes
    assert outcomes[("NAME_ERROR", "test")] >= 10 and outcomes[("ASSERTION_FAIL", "definition")] >= 5
