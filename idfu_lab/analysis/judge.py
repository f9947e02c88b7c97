"""Judging samples: rows or a samples file -> jobs -> verdicts -> results rows and file.

Long runs (:func:`evaluate_file`, ``idfu-lab evaluate``)
    A run of tens of thousands of samples must survive being killed, so nothing waits for the end:

    * **Written as judged.** Rows are judged in chunks and each chunk's result rows are appended, in
      input order, to ``RESULTS.partial`` and flushed to disk (``fsync``) before the next chunk
      starts. A chunk is sized to about :data:`CHECKPOINT_S` seconds of judging at the rate
      measured so far, so a kill loses at most that much work, while the cost of a chunk boundary
      (workers started again, ~0.1 s, and the chunk's last samples running with cores idle) stays
      small; ``benchmarks/executor.py`` measures it. The partial file's first line is a header that
      identifies the run (:func:`run_identity`: the samples file's sha256, the benchmark's hash,
      limits, policy, shard, sandbox switches, package version); the rest are result rows.
    * **The final file appears atomically.** When every row is judged the rows are copied to a
      temporary file renamed over ``RESULTS``, then the ``.meta.json`` sidecar is written the same
      way, then the partial file is removed. A reader never sees half a results file.
    * **Resume.** ``resume=True`` (``--resume``) continues from the rows in the partial file, after
      checking that its header names the same run; a line cut short by a kill is dropped and judged
      again. Without ``resume`` an existing partial file holding judged rows is an error rather than
      being overwritten. With ``resume`` and no partial file, a finished ``RESULTS`` of the same run
      is kept as it is (a re-submitted job does nothing twice). The partial file is locked while a
      run writes it, so two runs never append to the same one.
    * **Interruption.** Inside :func:`stop_on_signals` (the command uses it), SIGINT and SIGTERM stop
      the run between two writes, never in the middle of one: the executor's ``finally`` stops its
      workers and removes its temporary directory, and :class:`Interrupted` says exactly how many
      rows the partial file keeps and whether any sandbox directory was left behind.
    * **Shards.** ``shard=(K, N)`` judges rows ``K-1, K-1+N, K-1+2N, ...`` (0-based) of the samples
      file: interleaved rather than in blocks, so each shard gets a share of every task's samples
      and of its slow ones. :func:`merge_shards` checks that N shard files of one run are all there
      and interleaves them back into the file an unsharded run writes.

Writing never fails on the content of a row: lone surrogates (from the sample's text, an exception
message, a pass-through field) are written as JSON ``\\u`` escapes and NaN/Infinity as ``null``
(:mod:`idfu_lab.jsonl`). A row whose post-processing raises (a reply nested too deeply for the
parser, say) gets an OTHER_ERROR verdict naming the error and is not run; the run goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import logging
import os
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from idfu_lab.benchmarks import suites
from idfu_lab.benchmarks.calibrate import TimeoutPolicy, time_policy
from idfu_lab.errors import IdfuError
from idfu_lab.jsonl import ENCODE_ERRORS, dumps, iter_records, parse_line, write_json
from idfu_lab.outcomes import Outcome, Phase
from idfu_lab.problems import Problem, dataset_hash, load_benchmark
from idfu_lab.results import counts_dict, estimate_pass_at_k, read_result_rows
from idfu_lab.sandbox import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    Job,
    Verdict,
    job_for,
    protections,
    run_jobs,
    run_jobs_with_protections,
    usable_cpus,
)

logger = logging.getLogger(__name__)

#: Target seconds of judging between two writes of the partial file (what a kill can lose).
CHECKPOINT_S = 20.0
#: Samples per worker in the first chunk, before a rate has been measured.
FIRST_CHUNK_PER_WORKER = 32
#: Header key that marks a partial results file.
PARTIAL_MARK = "idfu_lab_partial"
#: Longest error text kept in the message of a row whose post-processing failed.
MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class EvaluationSummary:
    """What :func:`evaluate_file` wrote and the figures a reader looks at first."""

    out: Path
    meta: Path
    n_samples: int
    n_tasks: int
    n_passed: int
    pass_at_k: dict[str, float]
    counts: dict[str, dict[str, int]]
    protections: dict[str, bool]
    duration_s: float
    #: Rows taken from an earlier, interrupted run (``resume``); 0 for a run from scratch.
    resumed_rows: int = 0
    #: ``(K, N)`` for a shard, None for the whole file.
    shard: tuple[int, int] | None = None
    #: True when ``resume`` found this run already finished and judged nothing.
    already_complete: bool = False


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT/SIGTERM (or KeyboardInterrupt): what was kept, for the message."""

    def __init__(
        self,
        signal_name: str,
        *,
        kept: int,
        total: int,
        partial: Path | None,
        in_progress: int,
        leftovers: Sequence[str] = (),
    ) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.kept = kept
        self.total = total
        self.partial = partial
        self.in_progress = in_progress
        self.leftovers = list(leftovers)

    @property
    def exit_status(self) -> int:
        """128 + the signal's number, as a shell reports a process killed by it."""
        number = getattr(signal.Signals, self.signal_name, signal.SIGINT)
        return 128 + int(number)


class _Stop(KeyboardInterrupt):
    """Raised by the signal handler of :func:`stop_on_signals`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name


@dataclass
class _Gate:
    """SIGINT/SIGTERM handling while a run is active: stop between writes, once."""

    critical: int = 0
    pending: int | None = None
    fired: bool = False
    installed: bool = False

    def handler(self, signum: int, frame: Any) -> None:
        if self.fired:
            logger.warning("%s received again: already stopping", signal.Signals(signum).name)
            return
        if self.critical:
            self.pending = signum  # raised when the write in progress is complete
            return
        self.fired = True
        raise _Stop(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A section (a write) that a signal does not cut short; the signal is acted on after it."""
        self.critical += 1
        try:
            yield
        finally:
            self.critical -= 1
            if not self.critical and self.pending is not None and not self.fired:
                signum, self.pending = self.pending, None
                self.fired = True
                raise _Stop(signum)


_gate = _Gate()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM stop a run cleanly (between two writes of the partial file) while active.

    Without it SIGTERM kills the process at once (no clean-up) and SIGINT may cut a write short
    (``resume`` then drops the cut line). A second signal while stopping is logged and ignored, so
    the clean-up finishes. Main thread only.
    """
    global _gate
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    _gate = _Gate(installed=True)
    for sig in previous:
        signal.signal(sig, _gate.handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _gate = _Gate()


# ------------------------------------------------------------------------------------------------
# Rows


def _row_job(row: Mapping[str, Any], problems: Mapping[str, Problem], where: str) -> Job:
    """Validate one input row and build its job; IdfuError naming ``where`` otherwise."""
    if not isinstance(row, Mapping):
        raise IdfuError(f"{where}: a sample must be a JSON object, not {type(row).__name__}")
    if "task_id" not in row or row["task_id"] in (None, ""):
        raise IdfuError(f"{where}: the row has no task_id")
    task_id = str(row["task_id"])
    problem = problems.get(task_id)
    if problem is None:
        raise IdfuError(f"{where}: unknown task_id {task_id!r}")
    has_completion, has_solution = row.get("completion") is not None, row.get("solution") is not None
    if has_completion == has_solution:
        which = (
            "both 'completion' and 'solution'" if has_completion else "neither 'completion' nor 'solution'"
        )
        raise IdfuError(f"{where}: the row has {which}; give exactly one")
    key = "completion" if has_completion else "solution"
    if not isinstance(row[key], str):
        raise IdfuError(f"{where}: '{key}' must be a string, not {type(row[key]).__name__}")
    return job_for(problem, **{key: row[key]})


def _check_policy(postprocess: str, imports: str) -> bool:
    """Whether a policy changes the rows; IdfuError for an unknown one."""
    if postprocess in ("raw", None) and imports in ("none", None):
        return False
    from idfu_lab.generation import postprocess as policy  # imported only when a policy is asked for

    if postprocess not in policy.POSTPROCESS:
        raise IdfuError(f"unknown postprocess {postprocess!r} (choose from {', '.join(policy.POSTPROCESS)})")
    if imports not in policy.IMPORTS:
        raise IdfuError(f"unknown imports policy {imports!r} (choose from {', '.join(policy.IMPORTS)})")
    return True


def _prepare(
    row: dict, problems: Mapping[str, Problem], postprocess: str, imports: str, applied: bool, where: str
) -> tuple[dict, Job | Verdict]:
    """The row as it will be written and its job, or its verdict when post-processing it failed.

    The post-processing policies read untrusted text in this process; whatever one raises on a row
    (RecursionError, MemoryError, ...) fails that row alone, with the error in its message.
    """
    if not applied:
        return row, _row_job(row, problems, where)
    from idfu_lab.generation.postprocess import apply_policy

    problem = problems[str(row["task_id"])]
    try:
        new = apply_policy(row, problem, postprocess=postprocess, imports=imports)
    except IdfuError:
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted text: one row must never cost the run
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        logger.warning("%s: post-processing (%s) failed: %s", where, postprocess, text[:200])
        failed = {**row, "raw": row.get("completion", row.get("solution"))}
        failed.update(postprocess=postprocess, imports=imports)
        message = f"post-processing ({postprocess}) failed: {text}"[:MESSAGE_CHARS]
        return failed, Verdict(False, Outcome.OTHER_ERROR, Phase.DEFINITION, type(exc).__name__, message, 0.0)
    return new, _row_job(new, problems, f"{where} after post-processing")


def evaluate_rows(rows: list[dict], problems: Mapping[str, Problem], **run_kw: Any) -> list[dict]:
    """Judge rows with ``task_id`` and ``completion`` or ``solution``: input fields + verdict fields.

    Every other input field is passed through; the verdict fields (:data:`VERDICT_FIELDS`) come last
    and replace input fields of the same name, ``timeout_s`` (the sample's own budget) the very last.
    Bad rows raise IdfuError naming the row (1-based) before anything runs. ``run_kw``:
    :func:`run_jobs`'s keyword arguments, where ``timeout`` may also be ``"auto"`` or a
    :class:`~idfu_lab.benchmarks.calibrate.TimeoutPolicy` (``auto`` calibrates ``problems``).
    """
    jobs = [_row_job(row, problems, f"row {number}") for number, row in enumerate(rows, start=1)]
    policy = time_policy(run_kw.pop("timeout", DEFAULT_TIMEOUT_S), problems, workers=run_kw.get("workers"))
    # each job carries its task's budget (the policy's, or the benchmark's own longer bound)
    row_problems = [problems[str(row["task_id"])] for row in rows]
    budgets = [policy.budget(problem) for problem in row_problems]
    jobs = [dataclasses.replace(job, timeout=budget) for job, budget in zip(jobs, budgets, strict=True)]
    # a problem with several test suites (EvalPlus's base and plus) is one job per suite, one row
    jobs, merge = suites.expand(jobs, row_problems)
    fields = merge(run_jobs(jobs, timeout=policy.seconds, **run_kw))
    return [
        {**row, **verdict, "timeout_s": budget}
        for row, verdict, budget in zip(rows, fields, budgets, strict=True)
    ]


# ------------------------------------------------------------------------------------------------
# Settings checked before any work


def machine_memory_mb() -> int:
    """The most memory one sample could be given here, in MiB.

    Physical memory plus swap, lowered by this process's cgroup memory limit (v1 or v2) and by its
    hard address-space limit (a sample's cap cannot be raised above it).
    """
    import psutil

    limits = [psutil.virtual_memory().total + psutil.swap_memory().total]
    limits += _cgroup_memory_limits()
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard != resource.RLIM_INFINITY:
        limits.append(hard)
    return min(limits) // 2**20


def _cgroup_memory_limits() -> list[int]:
    """The memory limits (bytes) of this process's cgroup, v1 and v2, where they can be read."""
    candidates = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":  # v2
            candidates += [Path("/sys/fs/cgroup", relative, "memory.max"), Path("/sys/fs/cgroup/memory.max")]
        elif "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory")
            candidates += [base / relative / "memory.limit_in_bytes", base / "memory.limit_in_bytes"]
    limits = []
    for candidate in candidates:
        try:
            text = candidate.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # "max" or ~2**63: no limit
            limits.append(int(text))
    return limits


def check_memory_mb(memory_mb: int) -> None:
    """IdfuError unless ``memory_mb`` (0: no cap) is a cap this machine can give a sample."""
    if memory_mb < 0:
        raise IdfuError(f"memory_mb must be >= 0 (0: no cap), not {memory_mb}")
    ceiling = machine_memory_mb()
    if memory_mb > ceiling:
        raise IdfuError(
            f"a memory cap of {memory_mb} MB is more than this machine can give a sample ({ceiling} MB: "
            "memory + swap, within this process's cgroup and address-space limits); use 0 for no cap"
        )


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (1 <= K <= N) as ``(K, N)``; ValueError with a reason otherwise."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"expected K/N, e.g. 3/8, not {text!r}")
    k, n = (int(p) for p in parts)
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= K <= N, not {text!r}")
    return k, n


def shard_positions(total: int, shard: tuple[int, int] | None) -> range:
    """The 0-based positions of the samples file that a shard judges (every row without one)."""
    if shard is None:
        return range(total)
    k, n = shard
    return range(k - 1, total, n)


# ------------------------------------------------------------------------------------------------
# Files


def _read_samples(path: Path) -> tuple[str, list[tuple[int, dict]]]:
    """(sha256 of the file, (line number, row) for every non-blank line); IdfuError naming the line."""
    if not path.is_file():
        raise IdfuError(f"{path}: no such samples file")
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    rows = list(iter_records(path))
    if not rows:
        raise IdfuError(f"{path}: no samples")
    return digest, rows


def run_identity(
    *,
    samples_sha256: str,
    n_input_rows: int,
    benchmark: str,
    problems_hash: str,
    timeout: Any,
    memory_mb: int,
    postprocess: str,
    imports: str,
    shard: tuple[int, int] | None,
) -> dict[str, Any]:
    """What makes two runs the same run: resuming and merging check it. Workers and paths are not in it
    (they do not change a verdict); the sandbox switches and the package version are."""
    from idfu_lab import __version__
    from idfu_lab.sandbox import protections_off

    return {
        "samples_sha256": samples_sha256,
        "n_input_rows": n_input_rows,
        "benchmark": str(benchmark),
        "dataset_hash": problems_hash,
        "timeout_s": timeout,
        "memory_mb": memory_mb,
        "policy": {"postprocess": postprocess, "imports": imports},
        "shard": list(shard) if shard else None,
        "sandbox_off": protections_off(),
        "package_version": __version__,
    }


def _differences(expected: Mapping[str, Any], found: Mapping[str, Any]) -> str:
    keys = sorted(set(expected) | set(found))
    parts = [
        f"{k}: {found.get(k)!r} there, {expected.get(k)!r} now"
        for k in keys
        if expected.get(k) != found.get(k)
    ]
    return "; ".join(parts)


class _PartialFile:
    """``RESULTS.partial``: a header line naming the run, then result rows in input order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: IO[bytes] | None = None
        self.rows = 0

    def open(self, identity: Mapping[str, Any], expected_ids: Sequence[str], *, resume: bool) -> list[dict]:
        """Lock the file and return the rows it keeps (none for a new file); IdfuError when it belongs
        to another run, holds rows and ``resume`` is off, or does not match the samples."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+b")  # noqa: SIM115 - held open for the run, closed by close()
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise IdfuError(f"{self.path}: another run is writing this partial file") from None
        self.fh = fh
        try:
            kept = self._read_kept(identity, expected_ids, resume=resume)
        except BaseException:
            self.close()
            raise
        if not kept:  # nothing worth keeping: start the file afresh
            fh.seek(0)
            fh.truncate()
            header = {PARTIAL_MARK: 1, "run": dict(identity)}
            fh.write((dumps(header) + "\n").encode("utf-8", ENCODE_ERRORS))
            self._sync()
        self.rows = len(kept)
        return kept

    def _read_kept(
        self, identity: Mapping[str, Any], expected_ids: Sequence[str], *, resume: bool
    ) -> list[dict]:
        assert self.fh is not None
        self.fh.seek(0)
        lines = self.fh.read().split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # the tail is b"" unless a write was cut short
        if not complete:
            return []
        where = f"{self.path}:1"
        try:
            header = parse_line(complete[0], where)
        except IdfuError:
            header = {}
        if header.get(PARTIAL_MARK) != 1 or not isinstance(header.get("run"), dict):
            raise IdfuError(
                f"{where}: not a partial results file of idfu-lab evaluate; remove it or choose another --out"
            )
        if len(complete) == 1:
            return []
        if not resume:
            raise IdfuError(
                f"{self.path}: holds {len(complete) - 1} judged rows of an interrupted run; add --resume to "
                "continue it, or delete the file to start over"
            )
        if header["run"] != dict(identity):
            raise IdfuError(
                f"{self.path}: belongs to another run, so it cannot be resumed ({_differences(identity, header['run'])}); "
                "delete it to start over"
            )
        kept = []
        for lineno, raw in enumerate(complete[1:], start=2):
            row = parse_line(raw, f"{self.path}:{lineno}")
            position = len(kept)
            if position >= len(expected_ids) or str(row.get("task_id")) != expected_ids[position]:
                raise IdfuError(
                    f"{self.path}:{lineno}: does not match the samples (row {position + 1}); delete it"
                )
            kept.append(row)
        if tail:
            logger.warning("%s: dropping a last line cut short by the interruption", self.path)
        good_end = sum(len(line) + 1 for line in complete)
        self.fh.truncate(good_end)
        self.fh.seek(0, os.SEEK_END)
        return kept

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append rows and put them on disk; a signal waits until they are (see :func:`stop_on_signals`)."""
        assert self.fh is not None
        data = "".join(dumps(row) + "\n" for row in rows).encode("utf-8", ENCODE_ERRORS)
        with _gate.deferred():
            self.fh.write(data)
            self._sync()
            self.rows += len(rows)

    def _sync(self) -> None:
        assert self.fh is not None
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def iter_raw_rows(self) -> Iterator[bytes]:
        """The row lines (bytes, newline included), header excluded."""
        assert self.fh is not None
        self.fh.flush()
        with open(self.path, "rb") as fh:
            next(fh, None)
            yield from fh

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()  # releases the lock
            self.fh = None


def _remove_tree(path: Path) -> bool:
    """Remove a directory tree of any depth; True when it is gone.

    ``shutil.rmtree`` recurses in Python (a tree a few thousand levels deep raises RecursionError
    before 3.12) and stops at directories a sample made unreadable; ``rm -rf`` is tried after it.
    """
    import shutil
    import subprocess

    with contextlib.suppress(OSError, RecursionError):
        shutil.rmtree(path)
    if path.exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["chmod", "-R", "u+rwx", "--", str(path)], capture_output=True, timeout=60)
            subprocess.run(["rm", "-rf", "--", str(path)], capture_output=True, timeout=300)
    return not path.exists()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _write_final(partial: _PartialFile, out: Path) -> None:
    """The partial file's rows, as RESULTS, atomically."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            for raw in partial.iter_raw_rows():
                fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------
# Judging a file


@dataclass
class _Progress:
    """Chunk sizing from the rate measured so far."""

    workers: int
    rate: float | None = None
    sizes: list[int] = field(default_factory=list)

    def next_size(self, left: int) -> int:
        if self.rate is None:
            size = FIRST_CHUNK_PER_WORKER * self.workers
        else:
            size = int(self.rate * CHECKPOINT_S)
        size = max(size, 4 * self.workers)
        # no small remainder left for a chunk of its own
        return left if size >= left * 0.8 else size

    def record(self, rows: int, seconds: float) -> None:
        self.sizes.append(rows)
        if seconds > 0:
            measured = rows / seconds
            self.rate = measured if self.rate is None else 0.5 * (self.rate + measured)


def _judge_chunk(
    prepared: Sequence[tuple[dict, Job | Verdict]],
    problems: Mapping[str, Problem],
    *,
    workers: int | None,
    policy: TimeoutPolicy,
    memory_mb: int,
) -> tuple[list[dict], dict[str, bool] | None]:
    """Result rows for a chunk, in order; the protections the workers reported (None: none ran).

    Each job gets its task's budget from ``policy`` (recorded on its row as ``timeout_s``). A problem
    with several test suites (EvalPlus's base and plus) is one job per suite and one row.
    """
    runnable = [(row, item) for row, item in prepared if isinstance(item, Job)]
    active = None
    fields: list[dict[str, Any]] = []
    if runnable:
        row_problems = [problems[str(row["task_id"])] for row, _ in runnable]
        jobs = [
            dataclasses.replace(job, timeout=policy.budget(problem))
            for (_, job), problem in zip(runnable, row_problems, strict=True)
        ]
        jobs, merge = suites.expand(jobs, row_problems)
        verdicts, active = run_jobs_with_protections(
            jobs,
            workers=workers,
            timeout=policy.seconds,
            memory_mb=memory_mb,
            progress=False,
        )
        fields = merge(verdicts)
    ran = iter(fields)
    rows = []
    for row, item in prepared:
        verdict = next(ran) if isinstance(item, Job) else item.as_dict()
        budget = policy.budget(problems[str(row["task_id"])])
        rows.append({**row, **verdict, "timeout_s": budget})
    return rows, active


def evaluate_file(
    samples: str | Path,
    out: str | Path,
    *,
    benchmark: str = "humaneval",
    workers: int | None = None,
    timeout: float | str | TimeoutPolicy = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    postprocess: str = "raw",
    imports: str = "none",
    progress: bool = False,
    resume: bool = False,
    shard: tuple[int, int] | None = None,
    problems_file: str | Path | None = None,
    calibration: str | Path | None = None,
) -> EvaluationSummary:
    """Judge a samples JSONL file; write the results JSONL and its ``.meta.json`` sidecar.

    Every row is validated first (malformed JSON or UTF-8, no task_id, neither or both of
    completion and solution, unknown task_id: IdfuError naming the line) and so is ``memory_mb``
    (:func:`check_memory_mb`), so that nothing is run or written for a bad file. ``benchmark``:
    a name (``humaneval``, ``humaneval+``, ``mbpp``, ``mbpp+``, whose data ``problems_file`` gives
    where needed) or a problems file (see :func:`idfu_lab.problems.load_benchmark`).
    ``postprocess``/``imports``: a policy from :mod:`idfu_lab.generation.postprocess` applied to
    each row first (``raw``/``none``: the text as given). Rows are written as they are judged to
    ``OUT.partial``; ``resume`` continues from it; ``shard=(K, N)`` judges every N-th row from the
    K-th (see the module docstring). ``timeout``: seconds per sample (``fixed``), or ``"auto"``: each
    task's budget calibrated on its canonical solution (:mod:`idfu_lab.benchmarks.calibrate`; measured
    once per machine and benchmark, then read from the cache; ``calibration``: a calibration file to
    use instead, the same for every shard of a job array). Every row records its budget
    (``timeout_s``), the sidecar the policy (``timeout_policy``). Raises :class:`Interrupted` on
    SIGINT/SIGTERM/KeyboardInterrupt.
    """
    started = time.monotonic()
    samples, out = Path(samples), Path(out)
    check_memory_mb(memory_mb)
    problems = load_benchmark(benchmark, problems_file)
    digest, numbered = _read_samples(samples)
    for lineno, row in numbered:
        _row_job(row, problems, f"{samples}:{lineno}")
    applied = _check_policy(postprocess, imports)
    positions = shard_positions(len(numbered), shard)
    if not positions:
        raise IdfuError(f"{samples}: shard {shard[0]}/{shard[1]} has no rows (the file has {len(numbered)})")
    selected = [numbered[i] for i in positions]
    policy = time_policy(
        timeout,
        problems,
        benchmark=str(benchmark),
        workers=workers,
        progress=progress,
        calibration_file=calibration,
    )
    identity = run_identity(
        samples_sha256=digest,
        n_input_rows=len(numbered),
        benchmark=benchmark,
        problems_hash=dataset_hash(problems),
        timeout=policy.identity(),
        memory_mb=memory_mb,
        postprocess=postprocess,
        imports=imports,
        shard=shard,
    )
    meta_path = out.with_name(out.name + ".meta.json")
    partial = _PartialFile(out.with_name(out.name + ".partial"))

    if resume and not partial.path.exists():
        finished = _finished_run(out, meta_path, identity)
        if finished is not None:
            logger.info("%s: this run is already complete; nothing to do", out)
            return finished
    kept = partial.open(identity, [str(row["task_id"]) for _, row in selected], resume=resume)
    if kept:
        logger.info("resuming: %d of %d rows judged already, in %s", len(kept), len(selected), partial.path)
    n_workers = workers or usable_cpus()
    active: dict[str, bool] | None = None
    chunk_end = len(kept)  # the rows judged so far and in the chunk in progress
    from tqdm.auto import tqdm

    bar = tqdm(total=len(selected), initial=len(kept), desc="judging", unit="sample", disable=not progress)
    pacing = _Progress(n_workers)
    summary: EvaluationSummary | None = None
    # The run's own temporary directory, made the process's default while it runs: the executor
    # makes its working directories with tempfile, so they land inside it, and whatever a run leaves
    # (an interrupted one included) is found and removed in one place, never confused with another's.
    private = Path(tempfile.mkdtemp(prefix="idfu-evaluate-"))
    previous_tempdir, tempfile.tempdir = tempfile.tempdir, str(private)
    try:
        position = len(kept)
        while position < len(selected):
            size = pacing.next_size(len(selected) - position)
            chunk = selected[position : position + size]
            chunk_end = position + len(chunk)
            chunk_started = time.monotonic()
            prepared = [
                _prepare(dict(row), problems, postprocess, imports, applied, f"{samples}:{lineno}")
                for lineno, row in chunk
            ]
            rows, reported = _judge_chunk(
                prepared, problems, workers=workers, policy=policy, memory_mb=memory_mb
            )
            active = active or reported
            partial.append(rows)
            pacing.record(len(chunk), time.monotonic() - chunk_started)
            position += len(chunk)
            bar.update(len(chunk))
        bar.close()
        out.parent.mkdir(parents=True, exist_ok=True)
        with _gate.deferred():  # a signal now waits until RESULTS, its sidecar and the clean-up are done
            _write_final(partial, out)
            results = read_result_rows(out)
            summary = _summarise(out, meta_path, results, active, started, len(kept), shard)
            meta = _meta(samples, benchmark, problems, identity, summary, workers=n_workers, policy=policy)
            write_json(meta, meta_path)
            partial.close()
            partial.path.unlink()
    except KeyboardInterrupt as exc:
        name = getattr(exc, "signal_name", "SIGINT")
        if summary is None:
            bar.close()
            partial.close()
            if partial.rows == 0:
                partial.path.unlink(missing_ok=True)
            tempfile.tempdir = previous_tempdir
            removed = _remove_tree(private)
            raise Interrupted(
                name,
                kept=partial.rows,
                total=len(selected),
                partial=partial.path if partial.rows else None,
                in_progress=max(0, chunk_end - partial.rows),
                leftovers=[] if removed else [str(private)],
            ) from None
        logger.warning("%s arrived as the run finished: %s is complete", name, out)
    finally:
        bar.close()
        partial.close()
        tempfile.tempdir = previous_tempdir
        if private.exists() and not _remove_tree(private):
            logger.warning("could not remove the run's temporary directory %s", private)
    assert summary is not None
    logger.info("wrote %d results to %s (%d chunks)", summary.n_samples, out, len(pacing.sizes))
    return summary


def _summarise(
    out: Path,
    meta_path: Path,
    results: list[dict],
    active: dict[str, bool] | None,
    started: float,
    resumed: int,
    shard: tuple[int, int] | None,
    *,
    duration_s: float | None = None,
) -> EvaluationSummary:
    return EvaluationSummary(
        out=out,
        meta=meta_path,
        n_samples=len(results),
        n_tasks=len({str(r["task_id"]) for r in results}),
        n_passed=sum(bool(r["passed"]) for r in results),
        pass_at_k=estimate_pass_at_k(results),
        counts=counts_dict(results),
        protections=dict(active if active is not None else protections()),
        duration_s=round(time.monotonic() - started, 3) if duration_s is None else duration_s,
        resumed_rows=resumed,
        shard=shard,
    )


def _meta(
    samples: Path,
    benchmark: str,
    problems: Mapping[str, Problem],
    identity: Mapping[str, Any],
    summary: EvaluationSummary,
    *,
    workers: int,
    policy: TimeoutPolicy,
) -> dict[str, Any]:
    from idfu_lab import __version__

    # timeout_s: a fixed policy's budget, or a benchmark's own longer bound (EvalPlus's suites), as
    # before policies existed; "auto" for the calibrated policy, whose budgets are per row
    timeout: Any = suites.timeout_for(problems, policy.seconds) if policy.kind == "fixed" else policy.kind

    return {
        "samples": str(samples),
        "benchmark": benchmark,
        "dataset_hash": identity["dataset_hash"],
        "suites": list(suites.suite_names(problems)),
        "n_problems": len(problems),
        "n_samples": summary.n_samples,
        "n_tasks": summary.n_tasks,
        "timeout_s": timeout,
        "timeout_policy": policy.metadata(),
        "memory_mb": identity["memory_mb"],
        "workers": workers,
        "policy": {**identity["policy"], "applied": _check_policy(**identity["policy"])},
        "protections": summary.protections,
        "pass_at_k": summary.pass_at_k,
        "shard": identity["shard"],
        "resumed_rows": summary.resumed_rows,
        "run": dict(identity),
        "executor": "idfu_lab.sandbox.executor",
        "package_version": __version__,
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "created": _now(),
        "duration_s": summary.duration_s,
    }


def _read_meta(meta_path: Path) -> dict[str, Any] | None:
    try:
        return parse_line(meta_path.read_bytes(), str(meta_path))
    except (OSError, IdfuError):
        return None


def _finished_run(out: Path, meta_path: Path, identity: Mapping[str, Any]) -> EvaluationSummary | None:
    """The summary of a finished ``out`` of the same run, or None."""
    meta = _read_meta(meta_path)
    if meta is None or meta.get("run") != dict(identity) or not out.is_file():
        return None
    results = read_result_rows(out)
    if len(results) != meta.get("n_samples"):
        return None
    summary = _summarise(
        out,
        meta_path,
        results,
        meta.get("protections"),
        0.0,
        0,
        identity["shard"] and tuple(identity["shard"]),
        duration_s=meta.get("duration_s", 0.0),
    )
    return EvaluationSummary(**{**summary.__dict__, "already_complete": True})


# ------------------------------------------------------------------------------------------------
# Merging shards


def merge_shards(shard_files: Sequence[str | Path], out: str | Path) -> EvaluationSummary:
    """Interleave the results of N shards of one run into the file an unsharded run writes.

    Each shard file needs its ``.meta.json``. All N shards must be given, once each, of the same
    run (:func:`run_identity` equal but for the shard) and complete; IdfuError naming the file
    otherwise. The merged sidecar records each shard's figures; its ``protections`` are those active
    on every shard, its ``duration_s`` the longest shard's (the wall time of a job array that ran
    them side by side).
    """
    started = time.monotonic()
    out = Path(out)
    if not shard_files:
        raise IdfuError("no shard files to merge")
    shards: dict[int, tuple[Path, dict[str, Any]]] = {}
    common: dict[str, Any] | None = None
    count = None
    for name in shard_files:
        path = Path(name)
        if not path.is_file():
            raise IdfuError(f"{path}: no such results file")
        meta_path = path.with_name(path.name + ".meta.json")
        meta = _read_meta(meta_path)
        if meta is None or not isinstance(meta.get("run"), dict):
            raise IdfuError(f"{meta_path}: missing or not written by idfu-lab evaluate")
        run = dict(meta["run"])
        shard = run.pop("shard", None)
        if not shard:
            raise IdfuError(f"{path}: not a shard (written without --shard)")
        k, n = shard
        if common is None:
            common, count = run, n
        elif run != common or n != count:
            raise IdfuError(f"{path}: from another run than {shard_files[0]} ({_differences(common, run)})")
        if k in shards:
            raise IdfuError(f"{path}: shard {k}/{n} given twice (also {shards[k][0]})")
        shards[k] = (path, meta)
    assert common is not None and count is not None
    missing = sorted(set(range(1, count + 1)) - set(shards))
    if missing:
        raise IdfuError(f"shard(s) {', '.join(f'{k}/{count}' for k in missing)} missing")
    total = common["n_input_rows"]
    columns = []
    for k in range(1, count + 1):
        path, meta = shards[k]
        rows = read_result_rows(path)
        expected = len(shard_positions(total, (k, count)))
        if len(rows) != expected or meta.get("n_samples") != expected:
            raise IdfuError(f"{path}: {len(rows)} rows where shard {k}/{count} of {total} has {expected}")
        columns.append(rows)
    merged = [columns[i % count][i // count] for i in range(total)]
    from idfu_lab.jsonl import write_records

    write_records(merged, out)
    metas = [shards[k][1] for k in range(1, count + 1)]
    keys = set().union(*(m.get("protections", {}) for m in metas))
    active = {key: all(m.get("protections", {}).get(key, False) for m in metas) for key in sorted(keys)}
    meta_path = out.with_name(out.name + ".meta.json")
    summary = _summarise(
        out,
        meta_path,
        merged,
        active,
        started,
        0,
        None,
        duration_s=max(float(m.get("duration_s") or 0.0) for m in metas),
    )
    first = metas[0]
    meta = {
        **{key: first[key] for key in ("samples", "benchmark", "dataset_hash", "n_problems") if key in first},
        "n_samples": summary.n_samples,
        "n_tasks": summary.n_tasks,
        "timeout_s": first.get("timeout_s"),
        "timeout_policy": first.get("timeout_policy"),
        "memory_mb": first.get("memory_mb"),
        "policy": first.get("policy"),
        "protections": active,
        "pass_at_k": summary.pass_at_k,
        "shard": None,
        "run": {**common, "shard": None},
        "merged_from": [
            {
                "file": str(shards[k][0]),
                "shard": [k, count],
                "n_samples": m.get("n_samples"),
                "workers": m.get("workers"),
                "duration_s": m.get("duration_s"),
                "resumed_rows": m.get("resumed_rows", 0),
                "protections": m.get("protections"),
                "created": m.get("created"),
            }
            for k, m in zip(range(1, count + 1), metas, strict=True)
        ],
        "executor": first.get("executor"),
        "package_version": first.get("package_version"),
        "python": first.get("python"),
        "platform": first.get("platform"),
        "created": _now(),
        "duration_s": summary.duration_s,
    }
    write_json(meta, meta_path)
    logger.info("merged %d shards (%d rows) into %s", count, len(merged), out)
    return summary
