"""Notebook 04 executed by papermill on the tiny profile, on results our executor produced from real
HumanEval programs: it shows and glues the taxonomy the book quotes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import execute, glued

from idfu_lab.analysis import taxonomy
from idfu_lab.config import repo_root

NOTEBOOK = repo_root() / "notebooks" / "04_failure_taxonomy.ipynb"


def results_rows(variant: str) -> list[dict]:
    """Samples for six HumanEval problems whose verdicts tell the study's story, judged by the executor.

    ``base``: a missing import, an appended self-test that fails on load, an undefined helper, a wrong
    answer, two passes. ``tuned``: those fixed, one pass broken. ``tuned-b`` (a second seed): as
    ``tuned``, but the helper is still missing.
    """
    from idfu_lab.analysis.judge import evaluate_rows
    from idfu_lab.problems import load_humaneval

    problems = load_humaneval()

    def canonical(task: str) -> str:
        return problems[task].reference[len(problems[task].prompt) :]

    gcd_math = "    return math.gcd(a, b)\n"
    prime_call = "    return is_prime(len(string))\n"
    helper = "\n\ndef is_prime(n):\n    return n > 1 and all(n % i for i in range(2, n))\n"
    samples = {
        "base": {
            "HumanEval/13": gcd_math,
            "HumanEval/23": canonical("HumanEval/23") + "\n\nassert strlen('abc') == 4\n",
            "HumanEval/82": prime_call,
            "HumanEval/4": "    return 0.0\n",
            "HumanEval/0": canonical("HumanEval/0"),
            "HumanEval/2": canonical("HumanEval/2"),
        },
        "tuned": {
            "HumanEval/13": gcd_math + "\n\nimport math\n",
            "HumanEval/23": canonical("HumanEval/23"),
            "HumanEval/82": prime_call + helper,
            "HumanEval/4": "    return 0.0\n",
            "HumanEval/0": canonical("HumanEval/0"),
            "HumanEval/2": "    return number % '1'\n",
        },
    }
    samples["tuned-b"] = {**samples["tuned"], "HumanEval/82": prime_call}
    rows = [{"task_id": t, "sample_index": 0, "completion": c} for t, c in samples[variant].items()]
    return evaluate_rows(rows, problems, timeout=5.0)


def write_run(run_dir: Path, seeds: dict[int, str]) -> None:
    """results/base.jsonl and results/tuned.jsonl for each seed (``{seed: tuned variant}``)."""
    base = results_rows("base")
    for seed, variant in seeds.items():
        folder = run_dir / f"seed-{seed}" / "results"
        folder.mkdir(parents=True, exist_ok=True)
        for name, rows in (("base", base), ("tuned", results_rows(variant))):
            (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.slow
def test_notebook_shows_and_glues_the_taxonomy(tmp_path: Path) -> None:
    run_dir = tmp_path / "tiny"
    write_run(run_dir, {42: "tuned", 123: "tuned-b"})
    nb = execute(NOTEBOOK, tmp_path / "04.ipynb", seed=42, run_dir=str(run_dir))
    values = glued(nb)
    base = taxonomy.read_results(run_dir / "seed-42" / "results" / "base.jsonl")
    tuned = taxonomy.read_results(run_dir / "seed-42" / "results" / "tuned.jsonl")
    table = taxonomy.compare(base, tuned)

    def number(name: str) -> float:
        return float(values[name]["text/plain"])

    assert number("name_error_base") == table.loc["NAME_ERROR", "base"] == 2
    assert number("name_error_tuned") == table.loc["NAME_ERROR", "tuned"] == 0
    assert (
        number("assertion_fail_base") == 2
        and number("self_test_base") == 1
        and number("wrong_answer_base") == 1
    )
    assert number("missing_import_base") == 1 and number("undefined_helper_base") == 1
    assert (
        number("type_error_tuned") == 1 and number("collapse_flags") == 1
    )  # TYPE_ERROR is new after training
    assert "image/png" in values["fig_taxonomy_outcomes"]
    text = json.dumps([c.get("outputs", []) for c in nb.cells]).replace("<wbr>", "")
    assert "new_category" in text
    # views across seeds live on the summary page (06), so this page reads the same whatever order seeds ran
    assert "taxonomy_seeds" not in values and "tuned@123" not in text
