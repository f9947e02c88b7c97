"""Helpers shared by the tests: results rows written by hand or judged from designed samples, notebooks
executed by the pipeline: what they glued and showed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat


def load_script(path: Path) -> ModuleType:
    """A script of the repository's (``tools/``, ``benchmarks/``) imported as a module, to call in-process."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses and pickling look their module up by name
    spec.loader.exec_module(module)
    return module


def glued(nb: nbformat.NotebookNode) -> dict[str, dict[str, Any]]:
    """Every glued output of an executed notebook, by name: its mime bundle (myst-nb's prefix removed)."""
    found: dict[str, dict[str, Any]] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook", {})
            if meta.get("name"):
                prefix = len(meta.get("mime_prefix", ""))
                found[meta["name"]] = {k[prefix:]: v for k, v in out.get("data", {}).items()}
    return found


def text(bundle: dict[str, Any]) -> str:
    """The text/plain of a glued bundle (how a number was glued)."""
    return next(v for k, v in bundle.items() if k.endswith("text/plain"))


def result_row(
    task: str, outcome: str, phase: str | None = None, message: str = "", **code: Any
) -> dict[str, Any]:
    """A results row as the executor writes it (``code``: completion, solution, raw, ...)."""
    return {
        "task_id": task,
        "passed": outcome == "PASS",
        "outcome": outcome,
        "phase": phase,
        "message": message,
        **code,
    }


def executed(run_dir: Path, notebook: str, seed: int | None = None) -> nbformat.NotebookNode:
    """The copy of ``notebook`` (a stem, e.g. ``02_training``) the pipeline executed in ``run_dir``."""
    folder = run_dir / "notebooks" / (f"seed-{seed}" if seed is not None else "")
    return nbformat.read(folder / f"{notebook}.ipynb", as_version=4)


def shown(nb: nbformat.NotebookNode) -> str:
    """Everything an executed notebook's cells output, as one string (line-break hints removed)."""
    return json.dumps([c.get("outputs", []) for c in nb.cells]).replace("<wbr>", "")


def errors(nb: nbformat.NotebookNode) -> list[dict[str, Any]]:
    """The error outputs of an executed notebook (none, in a good run)."""
    return [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]


def judged_story(variant: str) -> list[dict]:
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


def write_story_run(run_dir: Path, seeds: dict[int, str]) -> None:
    """results/base.jsonl and results/tuned.jsonl of :func:`judged_story` for each seed (``{seed: tuned variant}``)."""
    base = judged_story("base")
    for seed, variant in seeds.items():
        folder = run_dir / f"seed-{seed}" / "results"
        folder.mkdir(parents=True, exist_ok=True)
        for name, rows in (("base", base), ("tuned", judged_story(variant))):
            (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
