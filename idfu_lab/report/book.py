"""The report: a Jupyter Book made from one run directory.

:func:`prepare` copies the run's papermill-executed notebooks into ``book/results/`` and writes the
pages that depend on the run into ``book/_generated/`` (the recipe table from the run's resolved
``config.yaml``, provenance from its manifests, the pipeline figure, the run's banner and the results
overview). :func:`build` then runs ``jupyter-book build . -W -n --keep-going``: any warning fails it.

Why the copy: the book executes nothing (``execute_notebooks: "off"``), so what a reader sees is
exactly what the run produced, never a re-execution with hidden state. The copies differ from the
run's notebooks in two ways only: the title of a per-seed notebook names its seed (``Seed 42 ·
Training``), so the sidebar says which seed each page belongs to, and its figure labels are prefixed
with the seed (``seed-42-fig-train-curves``), since the same notebook appears once per seed and Sphinx
labels must be unique across the book.

Why the checks here rather than in Sphinx: a notebook with an error output, a seed with missing
notebooks, or prose quoting a glued number that the run's notebook does not glue would otherwise
surface as an obscure Sphinx warning, or as a page that quietly lacks a number. :func:`prepare` names
the file and the key instead.
"""

from __future__ import annotations

import ast
import datetime as _dt
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import yaml

from idfu_lab.config import CURATE, Config, describe, from_dict, load_config, repo_root
from idfu_lab.errors import IdfuError
from idfu_lab.pipeline import ONCE_AFTER, ONCE_BEFORE, PER_SEED

logger = logging.getLogger(__name__)

#: Where the book's run-dependent pages go, relative to the book's root (the repository).
RESULTS_DIR = Path("book") / "results"
GENERATED_DIR = Path("book") / "_generated"

#: The command that builds the book; ``--all`` so that a warning in an unchanged page is never
#: hidden by Sphinx's incremental build.
BUILD_FLAGS = ("-W", "-n", "--keep-going", "--all")

#: ``{glue:text}`/book/results/06_summary.ipynb::key:.1f``` and friends: a number pasted from a notebook.
GLUE_REF = re.compile(
    r"\{glue(?::[a-z]+)?\}`(?P<doc>[^`:]+?)::(?P<key>[A-Za-z0-9_.\-]+)(?::(?P<fmt>[^`]*))?`"
)

#: The per-seed numbers of the results overview: notebook stem -> [(glued key, column label, format)].
#: A column appears when every seed's notebook glued its key; a value that is not finite shows "n/a".
HEADLINE_KEYS: dict[str, list[tuple[str, str, str]]] = {
    "03_evaluation": [
        ("pass1_base", "base pass@1 (%)", ".2f"),
        ("pass1_tuned", "tuned pass@1 (%)", ".2f"),
        ("diff", "tuned − base (points)", "+.2f"),
        ("mcnemar_p", "McNemar p", ".3g"),
    ],
    "05_delta_tracing": [("logic_pp", "of which logic (points)", "+.2f")],
    "02_training": [("train_final_loss", "final DPO loss", ".4f")],
}


class BookError(IdfuError):
    """The run cannot become a book as it is (missing notebook, error output, missing glue key)."""


# --------------------------------------------------------------------------- the run


@dataclass
class RunContents:
    """What a run directory holds that the book shows."""

    dir: Path
    config: Config
    manifest: dict[str, Any]
    seeds: list[int]
    seed_manifests: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: book-relative destination (e.g. ``seed-42/02_training.ipynb``) -> executed notebook in the run
    notebooks: dict[str, Path] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.dir.name


def runs_root() -> Path:
    """``$IDFU_LAB_RUNS`` or ``runs/`` in the repository: where :func:`latest_run` looks."""
    return Path(os.environ.get("IDFU_LAB_RUNS") or repo_root() / "runs")


def latest_run(root: str | Path | None = None) -> Path:
    """The run directory under ``root`` whose executed notebooks are the most recent."""
    root = Path(root) if root else runs_root()
    candidates = []
    if root.is_dir():
        for d in root.iterdir():
            notebooks = list((d / "notebooks").rglob("*.ipynb")) if d.is_dir() else []
            if notebooks:
                candidates.append((max(p.stat().st_mtime for p in notebooks), d))
    if not candidates:
        raise BookError(
            f"no run with executed notebooks under {root}; run `make demo` "
            "(or `idfu-lab run --config configs/tiny.yaml`) first, or pass --run RUN_DIR"
        )
    return max(candidates)[1]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BookError(f"{path}: not valid JSON ({e})") from None


def _seed_order(found: Iterable[int], configured: Sequence[int]) -> list[int]:
    found = set(found)
    return [s for s in configured if s in found] + sorted(found - set(configured))


def inspect_run(run_dir: str | Path) -> RunContents:
    """Read a run directory and check it has everything the book shows; :class:`BookError` if not."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BookError(f"run directory not found: {run_dir}")
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.exists():
        raise BookError(f"{cfg_path} is missing: {run_dir} is not a run directory (idfu-lab run writes one)")
    config = from_dict(yaml.safe_load(cfg_path.read_text()) or {}, where=str(cfg_path))
    nb_dir = run_dir / "notebooks"
    notebooks: dict[str, Path] = {}
    missing: list[str] = []
    for stem in (*ONCE_BEFORE, *ONCE_AFTER):
        p = nb_dir / f"{stem}.ipynb"
        notebooks[p.name] = p
        if not p.exists():
            missing.append(str(p))
    seed_dirs = {}
    for d in sorted(nb_dir.glob("seed-*")):
        try:
            seed_dirs[int(d.name.removeprefix("seed-"))] = d
        except ValueError:
            continue
    if not seed_dirs:
        missing.append(str(nb_dir / "seed-<s>"))
    seeds = _seed_order(seed_dirs, config.seeds)
    for s in seeds:
        for stem in PER_SEED:
            p = seed_dirs[s] / f"{stem}.ipynb"
            notebooks[f"seed-{s}/{p.name}"] = p
            if not p.exists():
                missing.append(str(p))
    if missing:
        raise BookError(
            "the run has not executed every notebook the book shows; missing: "
            + ", ".join(missing)
            + f" (finish the run: idfu-lab run --config {cfg_path} --run-dir {run_dir})"
        )
    return RunContents(
        dir=run_dir,
        config=config,
        manifest=_read_json(run_dir / "manifest.json"),
        seeds=seeds,
        seed_manifests={s: _read_json(run_dir / f"seed-{s}" / "manifest.json") for s in seeds},
        notebooks=notebooks,
    )


# --------------------------------------------------------------------------- notebooks


def glue_values(nb: nbformat.NotebookNode) -> dict[str, str]:
    """Each glued name's ``text/plain`` value, as the book would paste it (before formatting)."""
    values: dict[str, str] = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook", {})
            if meta.get("name"):
                prefix = meta.get("mime_prefix", "")
                values[meta["name"]] = out.get("data", {}).get(prefix + "text/plain", "")
    return values


def _number(text: str | None) -> float | None:
    """A glued value as a finite float, or None (missing, not a number, NaN or infinite)."""
    try:
        value = float(str(text).strip().strip("'\""))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


#: How IPython shows a matplotlib Figure when no image formatter is active: a figure lost as text.
LOST_FIGURE = re.compile(r"^<Figure size \d+x\d+ with \d+ Axes>$")


def lost_figure(output: dict[str, Any]) -> str | None:
    """The text an output shows instead of its figure (``<Figure size 800x360 with 2 Axes>``), or None."""
    data = output.get("data", {})
    text = data.get("text/plain", "")
    if isinstance(text, list):
        text = "".join(text)
    if not any(k.startswith("image/") for k in data) and LOST_FIGURE.match(text.strip()):
        return text.strip()
    return None


def check_executed(nb: nbformat.NotebookNode, path: Path) -> None:
    """An executed notebook without error outputs or lost figures, or :class:`BookError` naming the cell."""
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    if code and all(c.get("execution_count") is None for c in code):
        raise BookError(
            f"{path} was never executed (no cell has run); the book shows executed notebooks only"
        )
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                raise BookError(
                    f"{path}: cell {i} has an error output ({out.get('ename')}: {out.get('evalue')}); "
                    "a failing cell fails the book"
                )
            text = lost_figure(out)
            if text:
                raise BookError(
                    f"{path}: cell {i} shows a figure as the text '{text}': the kernel had no inline image "
                    "formatter when it was displayed (a Figure built without pyplot needs `%matplotlib inline` "
                    "in an earlier cell)"
                )


def _title_with_seed(nb: nbformat.NotebookNode, seed: int) -> None:
    """Prefix the notebook's first ``# `` heading with its seed (the only change made to a copy)."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        for j, line in enumerate(lines):
            if line.startswith("# "):
                lines[j] = f"# Seed {seed} · {line[2:].strip()}"
                cell.source = "\n".join(lines)
                return
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"# Seed {seed}"))


def _labels_with_seed(nb: nbformat.NotebookNode, seed: int) -> None:
    """Prefix every named figure's label with its seed (one notebook appears once per seed)."""
    for cell in nb.cells:
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        if figure.get("name"):
            figure["name"] = f"seed-{seed}-{figure['name']}"


def copy_notebooks(contents: RunContents, dest: Path) -> dict[str, dict[str, str]]:
    """Copy the executed notebooks into ``dest``; return each copy's glued values (by book-relative path)."""
    keys: dict[str, dict[str, str]] = {}
    for rel, src in contents.notebooks.items():
        nb = nbformat.read(src, as_version=4)
        check_executed(nb, src)
        if rel.startswith("seed-"):
            seed = int(rel.split("/")[0].removeprefix("seed-"))
            _title_with_seed(nb, seed)
            _labels_with_seed(nb, seed)
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out)
        keys[rel] = glue_values(nb)
    return keys


def check_glue_references(root: Path, glued: dict[str, dict[str, str]]) -> list[tuple[Path, str, str]]:
    """Every ``{glue:...}`path::key:fmt``` in the book's pages must name a key its notebook glued, with a
    value the format can print.

    ``glued`` maps a notebook's path relative to ``root`` (``book/results/06_summary.ipynb``) to its
    glued values (``text/plain``). Returns the references found as (page, notebook, key); raises
    :class:`BookError` listing every reference the run cannot satisfy.
    """
    refs: list[tuple[Path, str, str]] = []
    problems: list[str] = []
    for page in sorted((root / "book").rglob("*.md")):
        for m in GLUE_REF.finditer(page.read_text()):
            doc, key, fmt = m.group("doc"), m.group("key"), m.group("fmt") or ""
            target = (root / doc.lstrip("/")) if doc.startswith("/") else (page.parent / doc)
            rel = os.path.relpath(target, root).replace(os.sep, "/")
            refs.append((page, rel, key))
            where = f"{page.relative_to(root)} quotes '{key}' from {rel}"
            if rel not in glued:
                problems.append(f"{where}, which is not in the book")
            elif key not in glued[rel]:
                have = ", ".join(glued[rel]) or "nothing"
                problems.append(f"{where}, which the run's notebook does not glue (it glues: {have})")
            elif fmt and fmt[-1] in "eEfFgGn%bcdoxX" and not _is_number_literal(glued[rel][key]):
                problems.append(
                    f"{where} as a number, but the notebook glued {glued[rel][key]!r}; glue a plain Python "
                    "number (float(x) / int(x)) so the book can format it"
                )
    if problems:
        raise BookError("; ".join(problems))
    return refs


def _is_number_literal(text: str) -> bool:
    """What myst-nb can format as a number: a Python literal int/float, or nan/inf."""
    try:
        value = ast.literal_eval(text.strip())
    except (SyntaxError, ValueError):
        return text.strip() in ("nan", "inf", "-inf")
    return isinstance(value, int | float) and not isinstance(value, bool)


# --------------------------------------------------------------------------- generated pages


def _md_cell(value: Any) -> str:
    """A value as a Markdown table cell: code-formatted, pipes escaped."""
    if value is None:
        text = "none"
    elif isinstance(value, list):
        text = ", ".join(str(v) for v in value) if value else "(empty)"
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    if text == "":
        return "(empty)"
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _paper_recipe() -> dict[str, Any] | None:
    try:
        return _flatten(load_config("paper").to_dict())
    except IdfuError:
        return None


def recipe_markdown(config: Config) -> str:
    """The recipe as tables, one per section: this run's value, the study's where it differs, and
    what the key sets (the help text of :mod:`idfu_lab.config`)."""
    values = _flatten(config.to_dict())
    study = _paper_recipe()
    helps = {key: help_text for key, _default, help_text in describe()}
    sections: dict[str, list[str]] = {}
    for key in helps:
        if key.startswith("model.tiny.") and config.model.name_or_path != "tiny":
            continue  # the tiny model's shape means nothing for a Hub model
        section = key.split(".")[0] if "." in key else ""
        sections.setdefault(section, []).append(key)
    intro = (
        f"The recipe of this run (profile **{config.profile}**), read from its `config.yaml`: every key, "
        "every default written out."
    )
    if study is not None and config.profile != "paper":
        intro += (
            " A value in bold differs from the study's recipe (`configs/paper.yaml`), whose value follows it."
        )
    elif study is not None:
        intro += " A value in bold differs from `configs/paper.yaml` as shipped, whose value follows it."
    lines = [intro, ""]
    titles = {
        "": "Run",
        "model": "Model and quantisation",
        "data": "Preference pairs",
        "lora": "LoRA adapter (PEFT)",
        "dpo": "DPO (TRL)",
        "generation": "Generation",
        "evaluation": "Evaluation",
        "audit": "Pair audit",
    }
    for section, keys in sections.items():
        title = titles.get(section, section)
        lines += [f"### {title}" + (f" (`{section}`)" if section else ""), ""]
        lines += ["| key | this run | what it sets |", "|---|---|---|"]
        for key in keys:
            shown = key.removeprefix(f"{section}.") if section else key
            cell = _md_cell(values.get(key))
            if study is not None and key != "description" and study.get(key) != values.get(key):
                cell = f"**{cell}** (study: {_md_cell(study.get(key))})"
            lines.append(f"| `{shown}` | {cell} | " + helps[key].replace("|", "\\|") + " |")
        lines.append("")
    return "\n".join(lines)


def _relative_to_repo(path: str | None) -> str | None:
    if not path:
        return path
    try:
        return str(Path(path).resolve().relative_to(repo_root()))
    except ValueError:
        return path


def _when(stamp: Any) -> str:
    if isinstance(stamp, int | float):
        return _dt.datetime.fromtimestamp(stamp, _dt.UTC).isoformat(timespec="seconds")
    return str(stamp) if stamp else "not recorded"


def _step_seconds(manifest: dict[str, Any]) -> float:
    return sum(float(s.get("seconds", 0) or 0) for s in manifest.get("steps", {}).values())


def provenance_markdown(contents: RunContents) -> str:
    """Where the run came from: commit, packages, data hashes, device, times, per seed."""
    m = contents.manifest
    git = m.get("git") or {}
    sha = git.get("sha")
    if sha is None:
        commit = "not recorded (the run was not made from a git checkout with a commit)"
    else:
        commit = f"`{sha}`"
        if git.get("dirty"):
            commit += (
                " — **dirty**: the working tree had uncommitted changes, so the code that produced these "
                "results is not exactly that commit"
            )
        else:
            commit += " (clean working tree)"
    device = m.get("device") or {}
    dev = ", ".join(f"{k} {v}" for k, v in device.items()) or "not recorded"
    lines = [
        f"| | run `{contents.name}` |",
        "|---|---|",
        f"| profile | `{m.get('profile', contents.config.profile)}` |",
        f"| recipe | `{_relative_to_repo(m.get('config_source')) or 'not recorded'}` |",
        f"| config hash | `{m.get('config_hash', 'not recorded')}` |",
        f"| commit | {commit} |",
        f"| device | {dev} |",
        f"| seeds in this book | {', '.join(str(s) for s in contents.seeds)} |",
        f"| started | {_when(m.get('started'))} |",
        f"| last updated | {_when(m.get('updated'))} |",
        "",
        "### Package versions",
        "",
        "| package | version |",
        "|---|---|",
    ]
    for name, version in (m.get("packages") or {}).items():
        lines.append(f"| `{name}` | {_md_cell(version) if version else 'not installed'} |")
    lines += ["", "### Data hashes (SHA-256)", "", "| data | hash |", "|---|---|"]
    for name, digest in (m.get("data_hashes") or {}).items():
        lines.append(f"| `{name}` | `{digest}` |")
    lines += [
        "",
        "### Seeds",
        "",
        "Each seed is an independent training run with its own manifest (`seed-<s>/manifest.json`).",
        "",
        "| seed | config hash matches the run | started | last updated | notebook time (s) |",
        "|---|---|---|---|---|",
    ]
    for s in contents.seeds:
        sm = contents.seed_manifests.get(s, {})
        match = "yes" if sm.get("config_hash") == m.get("config_hash") else "**no**"
        lines.append(
            f"| {s} | {match} | {_when(sm.get('started'))} | {_when(sm.get('updated'))} | {_step_seconds(sm):.1f} |"
        )
    common = set(m) | {"steps", "seed", "started", "updated", "finished"}
    extras = {
        s: {k: v for k, v in contents.seed_manifests.get(s, {}).items() if k not in common}
        for s in contents.seeds
    }
    for s, extra in extras.items():
        if extra:
            lines += ["", f"Seed {s} also records:", ""]
            for key, value in _flatten(extra).items():
                lines.append(f"- `{key}`: {_md_cell(value)}")
    lines += [
        "",
        "### Steps",
        "",
        "Each finished step is recorded with the config hash it ran for; a re-run skips it only when "
        "the hash matches and its outputs still exist.",
        "",
        "| where | step | finished | seconds |",
        "|---|---|---|---|",
    ]
    scoped = [("run", m)] + [(f"seed {s}", contents.seed_manifests.get(s, {})) for s in contents.seeds]
    for where, manifest in scoped:
        for step, rec in (manifest.get("steps") or {}).items():
            seconds = rec.get("seconds")
            lines.append(
                f"| {where} | `{step}` | {_when(rec.get('finished'))} | "
                f"{'' if seconds is None else f'{float(seconds):.1f}'} |"
            )
    return "\n".join(lines) + "\n"


def _count_lines(path: Path) -> int | None:
    if not path.exists():
        return None
    with path.open() as fh:
        return sum(1 for line in fh if line.strip())


def run_note_markdown(contents: RunContents) -> str:
    """The intro's banner: what produced this book, and how much its numbers can mean."""
    cfg = contents.config
    device = contents.manifest.get("device") or {}
    where = device.get("gpu") or ("a CUDA GPU" if device.get("cuda") else "a CPU")
    seeds = ", ".join(str(s) for s in contents.seeds)
    n_pairs = _count_lines(contents.dir / "audit" / "train_pairs.jsonl")
    pairs = f"{n_pairs} preference pairs" if n_pairs is not None else "the configured preference pairs"
    if cfg.profile == "tiny" and cfg.evaluation.benchmark == "mini":
        t = cfg.model.tiny
        return (
            ":::{admonition} Produced by the miniature on a CPU\n:class: warning\n\n"
            f"This book was built from the run `{contents.name}` of the **tiny** profile, the miniature: a small "
            f"Qwen2-architecture model ({t.num_hidden_layers} layers, hidden size {t.hidden_size}, a "
            f"{t.vocab_size}-token vocabulary), warmed up on a CPU on the train split of the project's own `mini` "
            f"benchmark, with answers in the mixed styles of a real instruct model; then trained with DPO on "
            f"{pairs} curated from its own samples, and evaluated on mini's 164 eval problems, all on {where} "
            f"(seeds: {seeds}).\n\n"
            "**Its effects are real, measured by the same code as a `paper` run; its habits are not a real "
            "model's.** Its warm-up put them there (a standard-library name used without its import, a "
            "self-test appended after the function, a subtly wrong body, in proportions that differ by task "
            "family). So the miniature shows *how* the method detects and removes such habits, not that DPO "
            "fixes Qwen2.5-Coder: the study's numbers come from the `paper` profile on a GPU "
            "(see {doc}`/book/reproducibility`).\n"
            ":::\n"
        )
    if cfg.profile == "tiny":
        t = cfg.model.tiny
        return (
            ":::{admonition} Produced by a tiny model on a CPU\n:class: warning\n\n"
            f"This book was built from the run `{contents.name}` of a **tiny** recipe: a small "
            f"Qwen2-architecture model ({t.num_hidden_layers} layers, hidden size {t.hidden_size}, a "
            f"{t.vocab_size}-token vocabulary), built offline and trained with DPO on {pairs} from a "
            f"hand-written fixture, then evaluated on `{cfg.evaluation.benchmark}`, all on {where} "
            f"(seeds: {seeds}).\n\n"
            "**Its numbers exercise the machinery only.** They say nothing about DPO, about curated "
            "pairs or about Qwen2.5-Coder: the pipeline, the checks and the pages are real, the model is "
            "not. The study's numbers come from the `paper` profile on a GPU "
            "(see {doc}`/book/reproducibility`).\n"
            ":::\n"
        )
    kind = "the study's recipe" if cfg.profile == "paper" else "a custom recipe"
    text = (
        f":::{{admonition}} Run `{contents.name}`\n:class: note\n\n"
        f"This book reports the run `{contents.name}` of {kind} (profile **{cfg.profile}**): model "
        f"`{cfg.model.name_or_path}`, {pairs}, seeds {seeds}, on {where}."
    )
    if cfg.description:
        text += f" {cfg.description}"
    return text + "\n:::\n"


def outcomes_markdown() -> str:
    """The verdict categories, from :mod:`idfu_lab.outcomes` (the executor's own list and wording)."""
    from idfu_lab.outcomes import DESCRIPTIONS, STUDY_CATEGORIES, Outcome

    order = list(STUDY_CATEGORIES) + [o for o in Outcome if o not in STUDY_CATEGORIES]
    lines = ["| category | what happened | reported by the study |", "|---|---|---|"]
    for outcome in order:
        study = "yes" if outcome in STUDY_CATEGORIES else ""
        lines.append(f"| `{outcome.value}` | {DESCRIPTIONS[outcome].replace('|', chr(92) + '|')} | {study} |")
    return "\n".join(lines) + "\n"


def _paste(notebook: str, key: str, fmt: str) -> str:
    return f"{{glue:text}}`/{RESULTS_DIR.as_posix()}/{notebook}::{key}:{fmt}`"


class _Quote:
    """Glue references to one notebook's values, or None where the value is missing or not finite.

    The walkthrough's *See it in this run* sections are built from these: a sentence appears only when
    every number it quotes exists in the run, and each number is pasted by glue, never written here.
    """

    def __init__(self, notebook: str, values: dict[str, str]) -> None:
        self.notebook, self.values = notebook, values

    def __call__(self, key: str, fmt: str = "") -> str | None:
        if key not in self.values:
            return None
        if fmt and fmt[-1] in "eEfFgGn%bcdoxX" and _number(self.values[key]) is None:
            return None
        return _paste(self.notebook, key, fmt)

    def all(self, *items: tuple[str, str]) -> list[str] | None:
        quoted = [self(key, fmt) for key, fmt in items]
        return None if any(q is None for q in quoted) else quoted  # type: ignore[return-value]


def _doc(rel: str, label: str) -> str:
    return f"{{doc}}`{label} </{RESULTS_DIR.as_posix()}/{rel.removesuffix('.ipynb')}>`"


def walkthrough_markdown(contents: RunContents, glued: dict[str, dict[str, str]]) -> dict[str, str]:
    """The *See it in this run* section of each walkthrough page, from the run's glued values.

    Per-seed numbers come from the run's first seed; the results overview links the others.
    """
    seed = contents.seeds[0]
    others = (
        " The other seeds' pages are listed in the {doc}`results overview </book/_generated/results>`."
        if len(contents.seeds) > 1
        else ""
    )

    def nb(stem: str) -> tuple[str, _Quote]:
        rel = f"{stem}.ipynb" if stem in (*ONCE_BEFORE, *ONCE_AFTER) else f"seed-{seed}/{stem}.ipynb"
        return rel, _Quote(rel, glued.get(rel, {}))

    pages: dict[str, list[str]] = {}

    rel, q = nb("01_data_audit")
    text = [f"The {_doc(rel, 'data audit')} checks this run's pair set."]
    counts = q.all(("n_pairs", "d"), ("chosen_pass", "d"), ("rejected_fail", "d"), ("parity_violations", "d"))
    if counts:
        text.append(
            f"Of its {counts[0]} pairs, the chosen side passed its tests {counts[1]} times and the rejected side "
            f"failed {counts[2]} times: {counts[3]} parity violation(s)."
        )
    flags = q.all(("near_duplicates", "d"), ("contaminated", "d"), ("suspected_synthetic", "d"))
    if flags:
        text.append(
            f"It found {flags[0]} near-duplicate(s), {flags[1]} pair(s) overlapping HumanEval and {flags[2]} "
            "rejected side(s) that look injected."
        )
    kept = q.all(("n_train_pairs", "d"))
    mix = q.all(("train_rejected_name_error", "d"), ("train_rejected_assertion_fail", "d"))
    if kept and mix:
        text.append(
            f"Training used {kept[0]} pairs, whose rejected sides fail with NAME_ERROR {mix[0]} times and with "
            f"ASSERTION_FAIL {mix[1]} times: the failures training can push away from."
        )
    if contents.config.data.pairs == CURATE:
        text.append(
            "These pairs were curated in the same notebook from the model's own samples, by the gates the "
            "audit re-runs, so every pair should keep its parity. None was injected: a rejected side that "
            "looks injected here is an honest one-line slip, such as a forgotten import."
        )
    elif contents.config.profile == "tiny":
        text.append(
            "The tiny recipe's pairs are a small hand-written fixture, so the audit runs on known answers."
        )
    pages["pairs"] = text

    rel, q = nb("02_training")
    text = [f"Seed {seed}'s {_doc(rel, 'training notebook')} plots these quantities at every step."]
    steps = q.all(("train_steps", "d"), ("train_n_pairs", "d"))
    if steps:
        text.append(f"It ran {steps[0]} optimizer steps on {steps[1]} pairs.")
    end = q.all(("train_final_loss", ".4f"), ("train_reward_accuracy", ".2f"))
    if end:
        text.append(
            f"At the last step the loss was {end[0]} (it starts at log 2, about 0.6931) and the reward accuracy "
            f"{end[1]}."
        )
    margin = q.all(("train_mean_margin", ".3f"), ("train_share_margin_positive", ".0%"))
    if margin:
        text.append(
            f"After training, the mean margin over the training pairs is {margin[0]}, and {margin[1]} of the "
            "pairs have a positive one."
        )
    pages["dpo"] = [*text, others.strip()] if others else text

    rel, q = nb("03_evaluation")
    text = [
        f"Seed {seed}'s {_doc(rel, 'evaluation')} shows a reply, the program built from it and its verdict."
    ]
    rates = q.all(("n_problems", "d"), ("pass1_base", ".2f"), ("pass1_tuned", ".2f"))
    if rates:
        text.append(
            f"On {rates[0]} problems, pass@1 was {rates[1]} % for the base model and {rates[2]} % for the tuned one."
        )
    spread = q.all(
        ("policy_spread_base", ".2f"), ("policy_spread_tuned", ".2f"), ("changed_verdicts_max", "d")
    )
    if spread:
        text.append(
            f"Re-judging the same replies under every post-processing and import policy moved pass@1 by up to "
            f"{spread[0]} points (base) and {spread[1]} points (tuned), and changed up to {spread[2]} verdicts: "
            "the harness is part of the measurement."
        )
    pages["verdicts"] = text

    rel, q = nb("04_failure_taxonomy")
    text = [f"Seed {seed}'s {_doc(rel, 'taxonomy')} counts every verdict by category and phase."]
    moved = q.all(
        ("name_error_base", "d"),
        ("name_error_tuned", "d"),
        ("assertion_fail_base", "d"),
        ("assertion_fail_tuned", "d"),
        ("type_error_base", "d"),
        ("type_error_tuned", "d"),
    )
    if moved:
        text.append(
            f"Base → tuned: NAME_ERROR {moved[0]} → {moved[1]}, ASSERTION_FAIL {moved[2]} → {moved[3]}, "
            f"TYPE_ERROR {moved[4]} → {moved[5]}."
        )
    failures = q.all(("failures_base", "d"), ("failures_tuned", "d"))
    if failures:
        text.append(f"All failures: {failures[0]} → {failures[1]}.")
    collapse = q.all(("collapse_flags", "d"))
    if collapse:
        text.append(f"Categories flagged as a possible sign of collapse: {collapse[0]}.")
    pages["taxonomy"] = [*text, others.strip()] if others else text

    rel, q = nb("05_delta_tracing")
    text = [f"Seed {seed}'s {_doc(rel, 'delta tracing')} lists the changed problems with their labels."]
    trans = q.all(("fail_to_pass", "d"), ("pass_to_fail", "d"), ("fail_to_fail_changed", "d"))
    if trans:
        text.append(f"Fixed: {trans[0]}; broken: {trans[1]}; still failing, in another category: {trans[2]}.")
    people = q.all(("human_judged", "d"), ("human_agree", "d"))
    if people:
        text.append(
            f"A person has judged {people[0]} of them so far, agreeing with the rules' labels on {people[1]}; "
            f"their labels are in `annotations/{contents.name}/seed-{seed}.csv`."
        )
    pages["delta_tracing"] = text

    text = [f"Seed {seed}'s {_doc(rel, 'delta tracing')} states the split for this run:"]
    sentence = q("split_sentence")
    if sentence:
        text.append(f"“{sentence}”")
    text.append(f"The {_doc('06_summary.ipynb', 'summary')} brings the seeds together.")
    pages["gains"] = text

    return {name: "\n\n".join(t for t in lines if t) + "\n" for name, lines in pages.items()}


def significance_markdown(summary: dict[str, str]) -> str:
    """The significance page's *In this run* section: the run's own numbers, pasted from notebook 06.

    Which sentences appear depends on the values (a standard error of zero, or a detectable effect
    that is undefined because the base model solves nothing, is said in words, never printed as
    ``nan``); the numbers themselves are always pasted by glue.
    """
    nb = "06_summary.ipynb"
    num = {k: _number(v) for k, v in summary.items()}
    lines: list[str] = []

    def have(*keys: str) -> bool:
        return all(num.get(k) is not None for k in keys)

    if have("pass1_base_mean", "pass1_tuned_mean"):
        seeds = f" over {_paste(nb, 'n_seeds_used', 'd')} seed(s)" if have("n_seeds_used") else ""
        lines.append(
            f"Mean pass@1{seeds}: base **{_paste(nb, 'pass1_base_mean', '.2f')} %**, tuned "
            f"**{_paste(nb, 'pass1_tuned_mean', '.2f')} %**."
        )
    base = num.get("pass1_base_mean")
    if have("se_one_run_pp") and num["se_one_run_pp"] > 0:
        lines.append(
            f"At this base rate one run's standard error is **{_paste(nb, 'se_one_run_pp', '.2f')} points**."
        )
    elif base is not None and base in (0.0, 100.0):
        lines.append(
            "The base model's pass@1 is at the edge of the scale, where the standard-error formula gives zero "
            "and no detectable effect is defined: a model that solves nothing (or everything) gives the "
            "statistics nothing to work with."
        )
    mde = []
    if have("mde_pp"):
        mde.append(f"**{_paste(nb, 'mde_pp', '.2f')} points** for two independent runs")
    if have("mde_paired_pp"):
        at = (
            f" (at the observed {_paste(nb, 'discordance_pct', '.1f')} % discordant problems)"
            if have("discordance_pct")
            else ""
        )
        mde.append(f"**{_paste(nb, 'mde_paired_pp', '.2f')} points** paired{at}")
    if mde:
        lines.append("The minimum detectable effect is " + " and ".join(mde) + ".")
    if have("pooled_diff_pp", "pooled_ci_low_pp", "pooled_ci_high_pp"):
        text = (
            f"Pooled over seeds, tuned minus base is **{_paste(nb, 'pooled_diff_pp', '+.2f')} points**, "
            f"interval [{_paste(nb, 'pooled_ci_low_pp', '+.2f')}, {_paste(nb, 'pooled_ci_high_pp', '+.2f')}]"
        )
        if have("pooled_p_value"):
            text += f", p = {_paste(nb, 'pooled_p_value', '.3g')}"
        lines.append(text + ".")
    if not lines:
        lines.append("The run's summary notebook glued none of the numbers this section quotes.")
    lines.append(
        f"\nThe {{doc}}`summary </{RESULTS_DIR.as_posix()}/06_summary>` gives the paired test and the interval "
        "for every seed, and how each number was computed."
    )
    return "\n\n".join(lines) + "\n"


def results_markdown(contents: RunContents, glued: dict[str, dict[str, str]]) -> str:
    """The Results overview: one row per seed with links to its notebooks, and its headline numbers."""
    seeds = contents.seeds
    lines = [
        f"# Results of run `{contents.name}`",
        "",
        "```{include} run_note.md",
        "```",
        "",
        "The pages in this part are the notebooks exactly as papermill executed them in the run "
        "(only their titles gained the seed). The audit runs once, the next four notebooks once per "
        "seed, the summary once over all seeds:",
        "",
        f"- {{doc}}`Data audit </{RESULTS_DIR.as_posix()}/01_data_audit>`: the pair set the training used",
    ]
    headers = {"02_training": "training", "03_evaluation": "evaluation"}
    headers |= {"04_failure_taxonomy": "failure taxonomy", "05_delta_tracing": "delta tracing"}
    lines += [f"- Seed {s}: " + ", ".join(_seed_links(s, headers)) for s in seeds]
    lines += [
        f"- {{doc}}`Summary over seeds </{RESULTS_DIR.as_posix()}/06_summary>`: "
        "means, intervals and the paired test",
        "",
    ]
    columns: list[tuple[str, str, str, str]] = []
    for stem, keys in HEADLINE_KEYS.items():
        for key, label, fmt in keys:
            if all(key in glued.get(f"seed-{s}/{stem}.ipynb", []) for s in seeds):
                columns.append((stem, key, label, fmt))
    if columns:
        lines += [
            "Per seed, as each seed's notebooks computed them (n/a: not defined for this run):",
            "",
            "| seed | " + " | ".join(c[2] for c in columns) + " |",
            "|---|" + "---|" * len(columns),
        ]
        for s in seeds:
            cells = [
                _paste(f"seed-{s}/{stem}.ipynb", key, fmt)
                if _number(glued[f"seed-{s}/{stem}.ipynb"][key]) is not None
                else "n/a"
                for stem, key, _, fmt in columns
            ]
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _seed_links(seed: int, headers: dict[str, str]) -> list[str]:
    return [
        f"{{doc}}`{label} </{RESULTS_DIR.as_posix()}/seed-{seed}/{stem}>`" for stem, label in headers.items()
    ]


# --------------------------------------------------------------------------- prepare and build


@dataclass
class Prepared:
    """What :func:`prepare` wrote."""

    run: RunContents
    root: Path
    notebooks: list[Path]
    generated: list[Path]
    glued: dict[str, list[str]]
    references: list[tuple[Path, str, str]]


def prepare(run_dir: str | Path, root: str | Path | None = None) -> Prepared:
    """Copy the run's executed notebooks and write the run-dependent pages; runs nothing.

    ``root`` is the book's root (the folder with ``_config.yml``), the repository by default.
    ``book/results/`` and ``book/_generated/`` are emptied first, so no page of an earlier run survives.
    """
    from idfu_lab.report.plots.method import save_pipeline

    root = Path(root) if root else repo_root()
    if not (root / "_config.yml").exists():
        raise BookError(f"{root / '_config.yml'} is missing: {root} is not the book's root")
    contents = inspect_run(run_dir)
    results, generated = root / RESULTS_DIR, root / GENERATED_DIR
    for d in (results, generated):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)

    keys = copy_notebooks(contents, results)
    glued = {f"{RESULTS_DIR.as_posix()}/{rel}": values for rel, values in keys.items()}

    pages = {
        "run_note.md": run_note_markdown(contents),
        "recipe.md": recipe_markdown(contents.config),
        "provenance.md": provenance_markdown(contents),
        "results.md": results_markdown(contents, keys),
        "outcomes.md": outcomes_markdown(),
        "significance_run.md": significance_markdown(keys.get("06_summary.ipynb", {})),
    }
    pages |= {f"walkthrough/{name}.md": text for name, text in walkthrough_markdown(contents, keys).items()}
    written = []
    for name, text in pages.items():
        (generated / name).parent.mkdir(parents=True, exist_ok=True)
        (generated / name).write_text(text)
        written.append(generated / name)
    written.append(save_pipeline(generated / "pipeline.png", contents.seeds))
    refs = check_glue_references(root, glued)
    logger.info(
        "book prepared from %s: %d notebooks, %d generated files, %d glued references",
        contents.dir,
        len(keys),
        len(written),
        len(refs),
    )
    return Prepared(contents, root, [results / r for r in keys], written, glued, refs)


@dataclass
class BuildResult:
    """A finished build."""

    html_dir: Path
    seconds: float
    warnings: list[str]
    log: str

    @property
    def index(self) -> Path:
        return self.html_dir / "index.html"


def jupyter_book_executable() -> str:
    """The venv's ``jupyter-book`` (next to this interpreter), else the one on PATH."""
    beside = Path(sys.executable).parent / "jupyter-book"
    if beside.exists():
        return str(beside)
    found = shutil.which("jupyter-book")
    if not found:
        raise BookError(
            "jupyter-book is not installed in this environment (pip install 'jupyter-book>=1.0.4,<2')"
        )
    return found


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _warnings(log: str) -> list[str]:
    """The build's warning and error lines, without terminal colours."""
    lines = (_ANSI.sub("", line).strip() for line in log.splitlines())
    return [line for line in lines if "WARNING:" in line or "ERROR:" in line]


def build(
    run_dir: str | Path | None = None,
    *,
    root: str | Path | None = None,
    prepare_first: bool = True,
    timeout: float = 900.0,
) -> BuildResult:
    """Prepare the book from ``run_dir`` (default: the latest run) and build its HTML.

    Runs ``jupyter-book build ROOT -W -n --keep-going --all``: a warning, a broken reference or a
    missing glue key fails the build with :class:`BookError`, which quotes the warnings and keeps the
    full log next to the output (``_build/book-build.log``).
    """
    root = Path(root) if root else repo_root()
    if prepare_first:
        prepare(run_dir or latest_run(), root)
    elif not (root / RESULTS_DIR).is_dir():
        raise BookError(f"{root / RESULTS_DIR} is missing: prepare the book from a run first")
    cmd = [jupyter_book_executable(), "build", str(root), *BUILD_FLAGS]
    logger.info("building the book: %s", " ".join(cmd))
    env = dict(os.environ, PYTHONWARNINGS="ignore::DeprecationWarning")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise BookError(f"the book build took longer than {timeout:.0f} s and was stopped") from None
    seconds = time.perf_counter() - t0
    log = _ANSI.sub("", proc.stdout + proc.stderr)
    out = root / "_build"
    out.mkdir(exist_ok=True)
    (out / "book-build.log").write_text(log)
    warnings = _warnings(log)
    html = out / "html"
    if proc.returncode != 0 or not (html / "index.html").exists():
        shown = "\n  ".join(warnings[:15] or log.strip().splitlines()[-5:])
        more = f"\n  ... and {len(warnings) - 15} more" if len(warnings) > 15 else ""
        raise BookError(
            f"the book build failed (exit {proc.returncode}, {len(warnings)} warning(s)); full log: "
            f"{out / 'book-build.log'}\n  {shown}{more}"
        )
    logger.info("book built in %.1f s with %d warnings: %s", seconds, len(warnings), html / "index.html")
    return BuildResult(html_dir=html, seconds=seconds, warnings=warnings, log=log)
