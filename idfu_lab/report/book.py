"""The report: a Jupyter Book made from one run directory.

:func:`prepare` copies the run's papermill-executed notebooks into ``book/results/`` and renders the
pages that depend on the run from the Markdown templates in ``book/templates/`` into
``book/_generated/`` (the run's banner, the results overview, the recipe and provenance tables, the
walkthrough's *see it in this run* sections), with the pipeline figure, a table of contents in the
run's seed order and the run's identity. :func:`build` then runs ``jupyter-book build`` with ``-W -n
--keep-going``: any warning fails it.

Why templates: the book's prose lives in Markdown (``book/*.md``, ``book/templates/*.md``) and in the
notebooks, where a reader and a reviewer find it; this module only supplies the run's facts (which
seeds, which numbers each notebook glued, whether a number is defined), and every number reaches a
page through myst-nb ``glue``.

Why the copy: the book executes nothing (``execute_notebooks: "off"``), so what a reader sees is
exactly what the run produced, never a re-execution with hidden state. A copy differs from the run's
notebook in presentation only (:func:`copy_notebooks`): its title names its seed, its figure labels
carry the seed (Sphinx labels are unique across the book), a toy run's note sits under its title, the
parameters are shown once and cells that only glue are hidden. Outputs are never changed.

Why the checks here rather than in Sphinx: a notebook with an error output, a seed with missing
notebooks, or prose quoting a glued number that the run's notebook does not glue would otherwise
surface as an obscure Sphinx warning, or as a page that quietly lacks a number. :func:`prepare` names
the file and the key instead.
"""

from __future__ import annotations

import ast
import datetime as _dt
import functools
import importlib.util
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

from idfu_lab.config import CURATE, Config, describe, from_dict, load_config, load_yaml, repo_root
from idfu_lab.errors import IdfuError
from idfu_lab.pipeline import PER_SEED, WITHOUT_IRI_CHECKS, plan_for
from idfu_lab.runs import RunLayout

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

#: The table of contents of a comparison run's book (``idfu-lab compare``): no pairs, no training.
COMPARE_TOC = Path("_toc_compare.yml")
#: The page templates (Markdown with Jinja), rendered into GENERATED_DIR for each run.
TEMPLATES_DIR = Path("book") / "templates"

#: The run identity written beside the HTML, which ``book-check`` compares with the run it is given.
STAMP_NAME = "idfu-lab-run.json"


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
    layout = RunLayout(run_dir)
    cfg_path = layout.config
    if not cfg_path.exists():
        raise BookError(f"{cfg_path} is missing: {run_dir} is not a run directory (idfu-lab run writes one)")
    config = from_dict(load_yaml(cfg_path) or {}, where=str(cfg_path))
    nb_dir = layout.notebooks_dir
    notebooks: dict[str, Path] = {}
    missing: list[str] = []
    once_before, per_seed, once_after = plan_for(run_dir)  # a comparison run has no 01 and no 02
    for stem in (*once_before, *once_after):
        p = layout.executed_notebook(stem)
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
        for stem in per_seed:
            p = layout.executed_notebook(stem, s)
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
        manifest=_read_json(layout.manifest),
        seeds=seeds,
        seed_manifests={s: _read_json(layout.seed_manifest(s)) for s in seeds},
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


def _title_cell(nb: nbformat.NotebookNode) -> int | None:
    """Index of the markdown cell holding the notebook's first ``# `` heading, split so that the heading
    is alone in its cell (what follows it moves to a new cell right after)."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        for j, line in enumerate(lines):
            if line.startswith("# "):
                before, rest = lines[:j], lines[j + 1 :]
                cell.source = "\n".join([*before, line]).strip("\n")
                if "\n".join(rest).strip():
                    nb.cells.insert(i + 1, nbformat.v4.new_markdown_cell("\n".join(rest).strip("\n")))
                return i
    return None


def _title_with_seed(nb: nbformat.NotebookNode, seed: int) -> None:
    """Prefix the notebook's first ``# `` heading with its seed: ``# Seed 42 · Training: ...``."""
    i = _title_cell(nb)
    if i is None:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"# Seed {seed}"))
        return
    cell = nb.cells[i]
    cell.source = re.sub(
        r"^# (.*)$", lambda m: f"# Seed {seed} · {m.group(1).strip()}", cell.source, flags=re.M
    )


def _labels_with_seed(nb: nbformat.NotebookNode, seed: int) -> None:
    """Prefix every named figure's label with its seed (one notebook appears once per seed)."""
    for cell in nb.cells:
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        if figure.get("name"):
            figure["name"] = f"seed-{seed}-{figure['name']}"


def _insert_note(nb: nbformat.NotebookNode, note: str) -> None:
    """Put ``note`` (Markdown) right under the title, so every results page carries it in one place."""
    if not note.strip():
        return
    i = _title_cell(nb)
    nb.cells.insert(0 if i is None else i + 1, nbformat.v4.new_markdown_cell(note.strip("\n")))


def _tags(cell: nbformat.NotebookNode) -> list[str]:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def _only_glue(source: str) -> bool:
    """The cell does nothing but ``glue(...)`` (directly or in a ``for`` loop): plumbing, not teaching."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False

    def is_glue(stmt: ast.stmt) -> bool:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            return isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == "glue"
        if isinstance(stmt, ast.For):
            return bool(stmt.body) and all(is_glue(s) for s in stmt.body) and not stmt.orelse
        return False

    return bool(body) and all(is_glue(s) for s in body)


#: A string literal holding an absolute POSIX path, in a papermill-injected parameters cell.
_ABSOLUTE_LITERAL = re.compile(r"""(?P<q>["'])(?P<path>/[^"'\n]*)(?P=q)""")


def _hide_plumbing(nb: nbformat.NotebookNode) -> None:
    """Show the parameters once and hide code that only pastes numbers into the book.

    Papermill adds a cell tagged ``injected-parameters`` after the notebook's ``parameters`` cell; the
    page shows the injected one (the values this run used) and drops the defaults. An absolute path in
    it (a run directory outside the repository) is shortened to its last part, so the page does not
    show the layout of the machine that ran it. A cell that only calls ``glue(...)`` shows its output
    (a figure) without its code, or nothing at all when it has no output.
    """
    injected = [c for c in nb.cells if c.cell_type == "code" and "injected-parameters" in _tags(c)]
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = _tags(cell)
        if "parameters" in tags and injected:
            tags.append("remove-cell")
        elif "injected-parameters" in tags:
            cell.source = _ABSOLUTE_LITERAL.sub(
                lambda m: f"{m['q']}…/{Path(m['path']).name}{m['q']}", cell.source
            )
        elif _only_glue(cell.source) and not {"remove-cell", "remove-input"} & set(tags):
            tags.append("remove-input" if cell.get("outputs") else "remove-cell")


def copy_notebooks(contents: RunContents, dest: Path, note: str = "") -> dict[str, dict[str, str]]:
    """Copy the executed notebooks into ``dest`` for the book; return each copy's glued values (by
    book-relative path).

    A copy differs from the run's notebook in presentation only: a per-seed title names its seed, its
    figure labels carry the seed (Sphinx labels are unique across the book), ``note`` (Markdown: the
    toy-model note of a toy run) sits under every title, and the plumbing is hidden
    (:func:`_hide_plumbing`). Outputs are never changed.
    """
    keys: dict[str, dict[str, str]] = {}
    for rel, src in contents.notebooks.items():
        nb = nbformat.read(src, as_version=4)
        check_executed(nb, src)
        if rel.startswith("seed-"):
            seed = int(rel.split("/")[0].removeprefix("seed-"))
            _title_with_seed(nb, seed)
            _labels_with_seed(nb, seed)
        _insert_note(nb, note)
        _hide_plumbing(nb)
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


def is_toy(config: Config) -> bool:
    """A run whose model is built offline at toy size: its numbers exercise the machinery only."""
    return config.model.name_or_path == "tiny" or config.profile == "tiny"


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


#: The recipe's sections, in the order ``describe()`` lists them, with a heading each.
SECTION_TITLES = {
    "": "Run",
    "model": "Model and quantisation",
    "data": "Preference pairs",
    "lora": "LoRA adapter (PEFT)",
    "dpo": "DPO (TRL)",
    "generation": "Generation",
    "evaluation": "Evaluation",
    "audit": "Pair audit",
}


def recipe_context(config: Config) -> dict[str, Any]:
    """The recipe as sections of rows: every key, this run's value, the study's where it differs, the
    help text of :mod:`idfu_lab.config`."""
    values = _flatten(config.to_dict())
    study = _paper_recipe()
    sections: dict[str, list[dict[str, Any]]] = {}
    for key, _default, help_text in describe():
        tiny_shape = key.startswith("model.tiny.")
        if tiny_shape and config.model.name_or_path != "tiny":
            continue  # the tiny model's shape means nothing for a Hub model
        # nor is the study's (Qwen from the Hub) a tiny shape to compare against
        comparable = not (tiny_shape and study is not None and study.get("model.name_or_path") != "tiny")
        section = key.split(".")[0] if "." in key else ""
        differs = (
            study is not None and comparable and key != "description" and study.get(key) != values.get(key)
        )
        sections.setdefault(section, []).append(
            {
                "key": key.removeprefix(f"{section}.") if section else key,
                "value": values.get(key),
                "study": study.get(key) if study is not None else None,
                "differs": differs,
                "help": help_text,
            }
        )
    return {
        "study_known": study is not None,
        "sections": [
            {"name": name, "title": SECTION_TITLES.get(name, name), "rows": rows}
            for name, rows in sections.items()
        ],
    }


def _when(stamp: Any) -> str:
    """A timestamp as ISO 8601 (seconds, UTC); epoch seconds from older manifests are converted."""
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        return _dt.datetime.fromtimestamp(stamp, _dt.UTC).isoformat(timespec="seconds")
    return str(stamp) if stamp else "not recorded"


def _step_seconds(manifest: dict[str, Any]) -> float:
    return sum(float(s.get("seconds", 0) or 0) for s in manifest.get("steps", {}).values())


def _relative_to_repo(path: str | None) -> str | None:
    if not path:
        return path
    try:
        return str(Path(path).resolve().relative_to(repo_root()))
    except ValueError:
        return path


def provenance_context(contents: RunContents) -> dict[str, Any]:
    """Where the run came from: commit, packages, data hashes, device, times, per seed and per step."""
    m = contents.manifest
    common = set(m) | {"steps", "seed", "started", "updated", "finished"}
    seeds = []
    for s in contents.seeds:
        sm = contents.seed_manifests.get(s, {})
        extra = _flatten({k: v for k, v in sm.items() if k not in common})
        seeds.append(
            {
                "seed": s,
                "matches": sm.get("config_hash") == m.get("config_hash"),
                "started": sm.get("started"),
                "updated": sm.get("updated"),
                "seconds": _step_seconds(sm),
                "extra": extra,
            }
        )
    steps = []
    scoped = [("run", m)] + [(f"seed {s}", contents.seed_manifests.get(s, {})) for s in contents.seeds]
    for where, manifest in scoped:
        for step, rec in (manifest.get("steps") or {}).items():
            seconds = rec.get("seconds")
            steps.append(
                {
                    "where": where,
                    "step": step,
                    "finished": rec.get("finished"),
                    "seconds": None if seconds is None else float(seconds),
                }
            )
    device = m.get("device") or {}
    return {
        "manifest": m,
        "recipe": _relative_to_repo(m.get("config_source")),
        "git": {"sha": None, "dirty": None} | (m.get("git") or {}),
        "device": ", ".join(f"{k} {v}" for k, v in device.items()),
        "packages": m.get("packages") or {},
        "data_hashes": m.get("data_hashes") or {},
        "seeds": seeds,
        "steps": steps,
    }


def outcomes_context() -> list[dict[str, Any]]:
    """The verdict categories, from :mod:`idfu_lab.outcomes` (the executor's own list and wording)."""
    from idfu_lab.outcomes import DESCRIPTIONS, STUDY_CATEGORIES, Outcome

    order = list(STUDY_CATEGORIES) + [o for o in Outcome if o not in STUDY_CATEGORIES]
    return [{"name": o.value, "description": DESCRIPTIONS[o], "study": o in STUDY_CATEGORIES} for o in order]


def _count_lines(path: Path) -> int | None:
    if not path.exists():
        return None
    with path.open() as fh:
        return sum(1 for line in fh if line.strip())


def _paste(notebook: str, key: str, fmt: str = "") -> str:
    # ``{glue:text}`` reads ``path::key:format``; the last colon is needed even with no format
    return f"{{glue:text}}`/{RESULTS_DIR.as_posix()}/{notebook}::{key}:{fmt}`"


def _doc(rel: str, label: str) -> str:
    return f"{{doc}}`{label} </{RESULTS_DIR.as_posix()}/{rel.removesuffix('.ipynb')}>`"


class NotebookQuote:
    """One executed notebook of the run as the page templates see it.

    A template writes a sentence only when :meth:`has` says every number it quotes exists and is finite,
    and pastes each number with :meth:`paste` (a ``{glue:text}`` reference): the number itself is never
    written by Python, and an undefined one is never printed as ``nan``.
    """

    def __init__(self, rel: str, values: dict[str, str]) -> None:
        self.rel, self.values = rel, values

    def value(self, key: str) -> float | None:
        """The glued number, or None (not glued, not a number, NaN or infinite)."""
        return _number(self.values.get(key))

    def has(self, *keys: str) -> bool:
        """Every key is glued as a finite number."""
        return all(self.value(k) is not None for k in keys)

    def has_text(self, *keys: str) -> bool:
        """Every key is glued with a non-empty value (text)."""
        return all(str(self.values.get(k, "")).strip().strip("'\"") for k in keys)

    def paste(self, key: str, fmt: str = "") -> str:
        if key not in self.values:
            raise BookError(f"a page template quotes '{key}' from {self.rel}, which does not glue it")
        return _paste(self.rel, key, fmt)

    def link(self, label: str) -> str:
        return _doc(self.rel, label)


def is_compare(run_dir: str | Path) -> bool:
    """Whether the run compares imported generations (``idfu-lab compare``) instead of training."""
    from idfu_lab.analysis.compare import is_compare as comparing

    return comparing(run_dir)


def compare_context(contents: RunContents) -> dict[str, Any]:
    """What a comparison run compared (the ``compare`` templates' facts); empty for a training run."""
    if not is_compare(contents.dir):
        return {"sentence": "", "columns": [], "rows": []}
    from idfu_lab.analysis.compare import describe, sentence

    table = describe(contents.dir)
    return {
        "sentence": sentence(contents.dir),
        "columns": list(table.columns),
        "rows": [list(row) for row in table.itertuples(index=False)],
    }


#: The libraries whose code the paper plan runs (PEFT's preparation, TRL's casts, the meta model).
PLAN_LIBRARIES = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes")


def paper_plan_key() -> str:
    """What the paper plan is a function of: the paper recipe's bytes, the versions of
    :data:`PLAN_LIBRARIES` and the package's own source (any edit to it recomputes the plan)."""
    import hashlib
    from importlib import metadata

    h = hashlib.sha256()
    h.update(Path(load_config("paper").source).read_bytes())
    for name in PLAN_LIBRARIES:
        try:
            h.update(f"{name}=={metadata.version(name)};".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{name} absent;".encode())
    package = Path(__file__).resolve().parents[1]
    for source in sorted(package.rglob("*.py")):
        h.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes())
    return h.hexdigest()[:16]


@functools.cache
def paper_plan() -> str:
    """What the paper profile's run will do on an 8 GB card (``idfu-lab train --config paper --plan``),
    as Markdown for the reproducibility page: computed offline from the recipe, no weights read.

    Working it out imports TRL, PEFT and transformers, seconds of start-up in a process that needs
    none of them otherwise, and every book build asks for the same plan; so the Markdown is kept in
    the idfu-lab cache (``plans/paper-<key>.md``) under :func:`paper_plan_key`, which changes with
    anything the plan depends on.
    """
    from idfu_lab.generation.models import cache_dir
    from idfu_lab.jsonl import write_text

    cached = cache_dir() / "plans" / f"paper-{paper_plan_key()}.md"
    if cached.is_file():
        return cached.read_text(encoding="utf-8")
    from idfu_lab.training.plan import build_plan, plan_markdown

    text = plan_markdown(build_plan(load_config("paper"), card_gib=8), level=4)
    text = text.replace(str(repo_root()) + "/", "")  # the recipe's path as the repository names it
    write_text(text, cached)  # atomic: a book built at the same moment reads the whole plan or none
    return text


def page_context(contents: RunContents, glued: dict[str, dict[str, str]]) -> dict[str, Any]:
    """What the templates in ``book/templates/`` are rendered with (see its README)."""
    cfg = contents.config
    device = contents.manifest.get("device") or {}
    n_pairs = _count_lines(RunLayout(contents.dir).train_pairs)

    def nb(stem: str, seed: int | None = None) -> NotebookQuote:
        rel = f"{stem}.ipynb" if seed is None else f"seed-{seed}/{stem}.ipynb"
        if rel not in glued:
            raise BookError(f"a page template refers to {rel}, which is not in the book")
        return NotebookQuote(rel, glued[rel])

    def glued_by_every_seed(column: Sequence[str]) -> bool:
        stem, key = column[0], column[1]
        return all(key in glued.get(f"seed-{s}/{stem}.ipynb", {}) for s in contents.seeds)

    run = {
        "name": contents.name,
        "profile": cfg.profile,
        "toy": is_toy(cfg),
        "seeds": contents.seeds,
        "first_seed": contents.seeds[0],
        "where": device.get("gpu") or ("a CUDA GPU" if device.get("cuda") else "a CPU"),
        "n_pairs": n_pairs,
        "pairs": f"{n_pairs} preference pairs" if n_pairs is not None else "the configured preference pairs",
        "config": cfg,
        "benchmark": cfg.evaluation.benchmark,
        "miniature": cfg.evaluation.benchmark == "mini",
        "curated": cfg.data.pairs == CURATE,
        "compare": is_compare(contents.dir),
    }
    return {
        "paper_plan": paper_plan,
        "compare": compare_context(contents),
        "run": run,
        "nb": nb,
        "glued_by_every_seed": glued_by_every_seed,
        "recipe": recipe_context(cfg),
        "provenance": provenance_context(contents),
        "outcomes": outcomes_context(),
    }


def template_environment(root: Path) -> Any:
    """Jinja for Markdown: no HTML escaping, an undefined name is an error, blocks leave no blank lines."""
    import jinja2

    folder = root / TEMPLATES_DIR
    if not folder.is_dir():
        raise BookError(f"{folder} is missing: the book's page templates live there")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = _md_cell
    env.filters["escape_pipes"] = lambda text: str(text).replace("|", "\\|")
    env.filters["when"] = _when
    # a 64-digit SHA-256 is wider than the column: its first 16 digits here, in full in the manifests
    env.filters["short_hash"] = lambda text: re.sub(r"\b([0-9a-f]{16})[0-9a-f]{48}\b", r"\1…", str(text))
    env.tests["glued_by_every_seed"] = lambda column: False  # replaced per run in render_pages
    return env


def _tidy(text: str) -> str:
    """At most one blank line in a row, one final newline (templates' conditional blocks leave gaps)."""
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _render(env: Any, name: str, context: dict[str, Any]) -> str:
    import jinja2

    try:
        return _tidy(env.get_template(name).render(**context))
    except jinja2.TemplateError as e:
        line = getattr(e, "lineno", None)
        raise BookError(f"{TEMPLATES_DIR / name}{f', line {line}' if line else ''}: {e}") from None


def render_pages(root: Path, contents: RunContents, glued: dict[str, dict[str, str]]) -> dict[str, str]:
    """Every page template (``book/templates/**/*.md``, except ``README.md`` and ``_partials``), rendered
    for this run: ``{relative path: Markdown}``."""
    env = template_environment(root)
    context = page_context(contents, glued)
    env.tests["glued_by_every_seed"] = context["glued_by_every_seed"]
    pages: dict[str, str] = {}
    for name in env.list_templates(extensions=["md"]):
        if name == "README.md" or Path(name).name.startswith("_"):
            continue
        pages[name] = _render(env, name, context)
    return pages


def results_note(root: Path, contents: RunContents) -> str:
    """The note every results page of this run carries under its title (empty for a real model)."""
    text = _render(template_environment(root), "results_note.md", page_context(contents, {}))
    return text if text.strip() else ""


# --------------------------------------------------------------------------- table of contents


def _toc_items(toc: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """Every entry of a jb-book ``_toc.yml`` that can hold ``file``/``glob`` keys, in reading order."""

    def walk(items: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
        for item in items:
            yield item
            for key in ("sections", "chapters"):
                yield from walk(item.get(key, []))

    for part in toc.get("parts", []):
        yield from walk(part.get("chapters", []))
    yield from walk(toc.get("chapters", []))


def run_toc(
    toc: dict[str, Any],
    seeds: Sequence[int],
    titles: dict[str, str] | None = None,
    per_seed: Sequence[str] = PER_SEED,
) -> dict[str, Any]:
    """``_toc.yml`` with each glob over the per-seed results expanded in the run's seed order.

    A glob sorts file names as strings (seed 123 before 42 before 7); a study's seeds have an order
    (the recipe's), and the sidebar and the Next/Previous links follow it. ``titles`` (docname ->
    text) gives an entry a shorter name in the sidebar than its page's title.
    """
    titles = titles or {}
    import copy
    import fnmatch

    toc = copy.deepcopy(toc)
    candidates = [f"{RESULTS_DIR.as_posix()}/seed-{s}/{stem}" for s in seeds for stem in per_seed]

    def expand(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for item in items:
            if "glob" in item:
                pattern = str(item["glob"]).removesuffix(".ipynb").removesuffix(".md")
                out += [
                    {"file": c} | ({"title": titles[c]} if c in titles else {})
                    for c in candidates
                    if fnmatch.fnmatch(c, pattern)
                ]
                continue
            if item.get("file") in titles:
                item["title"] = titles[item["file"]]
            for key in ("sections", "chapters"):
                if key in item:
                    item[key] = expand(item[key])
            out.append(item)
        return out

    for part in toc.get("parts", []):
        part["chapters"] = expand(part.get("chapters", []))
    if "chapters" in toc:
        toc["chapters"] = expand(toc["chapters"])
    return toc


def toc_docnames(toc: dict[str, Any]) -> list[str]:
    """The pages of an expanded table of contents, in reading order (the root first)."""
    names = [str(toc["root"])]
    names += [str(item["file"]) for item in _toc_items(toc) if "file" in item]
    return [n.removesuffix(".md").removesuffix(".ipynb") for n in names]


def sidebar_titles(results: Path, rels: Iterable[str]) -> dict[str, str]:
    """Each copied notebook's sidebar name: its title up to the colon (``Seed 42 · Training`` for
    ``# Seed 42 · Training: DPO with LoRA, one seed``), so twelve per-seed entries stay one line each."""
    titles = {}
    for rel in rels:
        nb = nbformat.read(results / rel, as_version=4)
        for cell in nb.cells:
            m = re.search(r"^# (.+)$", cell.source, flags=re.M) if cell.cell_type == "markdown" else None
            if m:
                titles[f"{RESULTS_DIR.as_posix()}/{rel.removesuffix('.ipynb')}"] = (
                    m.group(1).split(":")[0].strip()
                )
                break
    return titles


def run_identity(contents: RunContents) -> dict[str, Any]:
    """What tells one run from another: its name, recipe hash, start time and seeds (no machine paths)."""
    return {
        "run": contents.name,
        "config_hash": contents.manifest.get("config_hash"),
        "started": contents.manifest.get("started"),
        "seeds": contents.seeds,
    }


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
    Besides the pages rendered from ``book/templates/``, ``book/_generated/`` receives the pipeline
    figure, the table of contents in the run's seed order (``_toc.yml``) and the run's identity
    (``idfu-lab-run.json``), which :func:`build` publishes beside the HTML.
    """
    import yaml

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

    keys = copy_notebooks(contents, results, note=results_note(root, contents))
    glued = {f"{RESULTS_DIR.as_posix()}/{rel}": values for rel, values in keys.items()}

    written = []
    for name, text in render_pages(root, contents, keys).items():
        (generated / name).parent.mkdir(parents=True, exist_ok=True)
        (generated / name).write_text(text)
        written.append(generated / name)
    written.append(save_pipeline(generated / "pipeline.png", contents.seeds))
    source = COMPARE_TOC if is_compare(contents.dir) else Path("_toc.yml")
    toc = run_toc(
        yaml.safe_load((root / source).read_text()),
        contents.seeds,
        sidebar_titles(results, keys),
        per_seed=plan_for(contents.dir)[1],
    )
    (generated / "_toc.yml").write_text(
        f"# Written by `idfu-lab book` from {source}: the per-seed pages in the run's seed order.\n"
        + yaml.safe_dump(toc, sort_keys=False, allow_unicode=True)
    )
    (generated / STAMP_NAME).write_text(json.dumps(run_identity(contents), indent=2) + "\n")
    written += [generated / "_toc.yml", generated / STAMP_NAME]
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


#: ``jupyter-book``'s own entry point, run by this interpreter after :data:`WITHOUT_IRI_CHECKS`.
JUPYTER_BOOK_LAUNCHER = (
    WITHOUT_IRI_CHECKS
    + """\
from jupyter_book.cli.main import main
sys.argv[0] = "jupyter-book"
main()
"""
)


def jupyter_book_command() -> list[str]:
    """How ``jupyter-book`` is started: by this interpreter where it has the package (see
    :data:`JUPYTER_BOOK_LAUNCHER`), else the ``jupyter-book`` on PATH as it is."""
    if importlib.util.find_spec("jupyter_book") is not None:
        return [sys.executable, "-c", JUPYTER_BOOK_LAUNCHER]
    found = shutil.which("jupyter-book")
    if not found:
        raise BookError(
            "jupyter-book is not installed in this environment (pip install 'jupyter-book>=1.0.4,<2')"
        )
    return [found]


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

    Runs ``jupyter-book build ROOT --toc book/_generated/_toc.yml -W -n --keep-going --all``: a warning, a broken reference or a
    missing glue key fails the build with :class:`BookError`, which quotes the warnings and keeps the
    full log next to the output (``_build/book-build.log``).
    """
    root = Path(root) if root else repo_root()
    if prepare_first:
        prepare(run_dir or latest_run(), root)
    elif not (root / GENERATED_DIR / "_toc.yml").is_file():
        raise BookError(f"{root / GENERATED_DIR / '_toc.yml'} is missing: prepare the book from a run first")
    html = root / "_build" / "html"
    (html / STAMP_NAME).unlink(missing_ok=True)  # a failed build must not look like this run's book
    toc = (GENERATED_DIR / "_toc.yml").as_posix()
    cmd = [*jupyter_book_command(), "build", str(root), "--toc", str(root / toc), *BUILD_FLAGS]
    logger.info("building the book: jupyter-book %s", " ".join(cmd[cmd.index("build") :]))
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
    if proc.returncode != 0 or not (html / "index.html").exists():
        shown = "\n  ".join(warnings[:15] or log.strip().splitlines()[-5:])
        more = f"\n  ... and {len(warnings) - 15} more" if len(warnings) > 15 else ""
        raise BookError(
            f"the book build failed (exit {proc.returncode}, {len(warnings)} warning(s)); full log: "
            f"{out / 'book-build.log'}\n  {shown}{more}"
        )
    shutil.copy2(root / GENERATED_DIR / STAMP_NAME, html / STAMP_NAME)
    logger.info("book built in %.1f s with %d warnings: %s", seconds, len(warnings), html / "index.html")
    return BuildResult(html_dir=html, seconds=seconds, warnings=warnings, log=log)
