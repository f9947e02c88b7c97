"""Hostile candidates against the host and against each other: each behaviour of the sandbox's second
round with a canary outside the sandbox. Real HumanEval problems, real sandboxed subprocesses.

As in test_execution_hostile.py, each hostile completion answers HumanEval/23 (``strlen``) and is
wrong unless the test says otherwise, so a PASS could only come from a forged verdict. The canaries:
a root-owned file whose mode, owner, times and extended attributes must not change; listening Unix
sockets that must see no connection (or none from root); the host's System V IPC objects
(``/proc/sysvipc``, what ``ipcs`` reads) before and after; the memory and the processes of the
executor's process tree, watched from outside while the samples run.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from idfu_lab.outcomes import Outcome
from idfu_lab.problems import Problem, load_humaneval
from idfu_lab.sandbox import executor as execution
from idfu_lab.sandbox import job_for, protections, run_jobs
from idfu_lab.sandbox.worker import MAX_MESSAGE_CHARS, MAX_MRO_ENTRIES, MAX_NAME_CHARS, REPORT_FD

pytestmark = pytest.mark.waits  # sleeping samples and killed processes: see tests/conftest.py
TIMEOUT = 0.5  # short budgets keep the sleepers and the backstops quick; every check still holds
CORRECT = "    return len(string)\n"
REPO = Path(__file__).resolve().parents[1]
ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def problems() -> dict[str, Problem]:
    return load_humaneval()


@pytest.fixture
def sandbox_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private temporary root for the executor's folders, checked empty afterwards."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root
    assert psutil.Process().children(recursive=True) == []
    assert list(root.iterdir()) == []


@pytest.fixture
def visible_dir() -> Iterator[Path]:
    """A folder outside every folder the sandbox makes private (/tmp, /run, ...): in the repository,
    removed afterwards. Whatever a sample could reach on the host, it can reach here."""
    folder = Path(tempfile.mkdtemp(prefix=".canary-", dir=REPO / "tests"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for path in sorted(folder.rglob("*"), reverse=True):
            path.unlink() if not path.is_dir() or path.is_symlink() else path.rmdir()
        folder.rmdir()


def _jobs(problems: dict[str, Problem], completions: list[str]) -> list:
    return [job_for(problems["HumanEval/23"], completion=c) for c in completions]


def _run(problems: dict[str, Problem], completions: list[str], **kw) -> list:
    kw = {"workers": 1, "timeout": TIMEOUT, "memory_mb": 256, **kw}
    return run_jobs(_jobs(problems, completions), **kw)


def _metadata(path: Path) -> tuple:
    st = os.lstat(path)
    xattrs = {}
    try:
        xattrs = {name: os.getxattr(path, name) for name in os.listxattr(path)}
    except OSError:
        pass
    return st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, st.st_atime_ns, st.st_size, xattrs


# ----------------------------------------------------------------------------------------------
# 1. Host integrity: no metadata change as root


METADATA_ATTACKS = (
    "    import os, posix\n    done = []\n    p = {path!r}\n"
    "    for name, call in [\n"
    "        ('chmod', lambda: posix.chmod(p, 0o4777)),\n"
    "        ('chown', lambda: posix.chown(p, 65534, 65534)),\n"
    "        ('chown root', lambda: posix.chown(p, 0, 0)),\n"
    "        ('utime', lambda: posix.utime(p, (0, 0))),\n"
    "        ('setxattr', lambda: os.setxattr(p, 'user.owned', b'1')),\n"
    "        ('removexattr', lambda: os.removexattr(p, 'user.canary')),\n"
    "        ('fchmod', lambda: posix.fchmod(posix.open(p, posix.O_RDONLY), 0o777)),\n"
    "        ('dir chmod', lambda: posix.chmod({folder!r}, 0o777)),\n"
    "    ]:\n"
    "        try:\n            call()\n            done.append(name)\n"
    "        except Exception:\n            pass\n"
    "    raise AssertionError('changed: ' + ','.join(done))\n"
)


def _canary_file(folder: Path) -> Path:
    canary = folder / "root-owned.txt"
    canary.write_text("precious")
    canary.chmod(0o644)
    os.utime(canary, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    try:
        os.setxattr(canary, "user.canary", b"1")
    except OSError:
        pass  # a file system without user xattrs: the other checks remain
    return canary


def _assert_metadata_kept(problems: dict[str, Problem], visible_dir: Path) -> None:
    canary = _canary_file(visible_dir)
    before = _metadata(canary), _metadata(visible_dir)
    (verdict,) = _run(problems, [METADATA_ATTACKS.format(path=str(canary), folder=str(visible_dir))])
    assert (_metadata(canary), _metadata(visible_dir)) == before
    assert verdict.outcome is Outcome.ASSERTION_FAIL
    assert verdict.message == "changed: "  # every attempt failed inside the sample too


@pytest.mark.skipif(not ROOT, reason="the orchestrator is not root: samples cannot act as root")
def test_samples_cannot_change_metadata_of_root_owned_files(
    problems: dict[str, Problem], visible_dir: Path, sandbox_tmp: Path
) -> None:
    active = protections()
    assert active["unprivileged_identity"]
    _assert_metadata_kept(problems, visible_dir)


@pytest.mark.skipif(not ROOT, reason="the orchestrator is not root: samples cannot act as root")
def test_without_a_user_namespace_samples_switch_to_nobody(
    problems: dict[str, Problem], visible_dir: Path, sandbox_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(execution.SANDBOX_OFF_ENV, "userns")
    active = protections()
    assert not active["user_namespace"]
    assert active["unprivileged_identity"] == active["mount_namespace"]
    if not active["unprivileged_identity"]:
        pytest.skip("no mount namespace here either: samples keep the orchestrator's identity")
    _assert_metadata_kept(problems, visible_dir)
    probe = "    import os\n    assert os.getuid() == 65534 and os.getgroups() == []\n" + CORRECT
    assert [v.outcome for v in _run(problems, [probe, CORRECT])] == [Outcome.PASS] * 2


def test_the_identity_switch_is_recorded_when_off(sandbox_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(execution.SANDBOX_OFF_ENV, "identity")
    assert protections()["unprivileged_identity"] is (not ROOT)


# ----------------------------------------------------------------------------------------------
# 2. Host Unix sockets are unreachable


class _Listener:
    """A listening Unix socket that records every connection and its peer's uid."""

    def __init__(self, address: str | bytes, mode: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(address)
        if mode is not None:
            os.chmod(address, mode)
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.peers: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            self.peers.append(int.from_bytes(creds[4:8], "little"))
            conn.close()

    def close(self) -> list[int]:
        self.stop.set()
        self.thread.join()
        self.sock.close()
        return self.peers


def _connect_all(paths: list[str | bytes]) -> str:
    return (
        "    import socket\n    reached = []\n"
        f"    for address in {paths!r}:\n"
        "        try:\n            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "            s.connect(address)\n            reached.append(repr(address))\n"
        "        except OSError:\n            pass\n"
        "    raise AssertionError('reached: ' + ','.join(reached))\n"
    )


def test_host_unix_sockets_see_no_connection(
    problems: dict[str, Problem], visible_dir: Path, tmp_path: Path, sandbox_tmp: Path
) -> None:
    hidden = str(tmp_path / "in-tmp.sock")  # /tmp is private to the sandbox
    root_only = str(visible_dir / "root-only.sock")
    open_to_all = str(visible_dir / "open.sock")
    abstract = b"\0idfu-canary-" + os.urandom(4).hex().encode()
    listeners = [
        _Listener(hidden, 0o777),
        _Listener(root_only),
        _Listener(open_to_all, 0o777),
        _Listener(abstract),
    ]
    try:
        (verdict,) = _run(problems, [_connect_all([hidden, root_only, open_to_all, abstract])])
    finally:
        peers = [listener.close() for listener in listeners]
    active = protections()
    if active["seccomp"]:
        assert peers == [[], [], [], []]
        assert verdict.message == "reached: "
    else:
        assert peers[0] == [] and peers[3] == []  # private /tmp; another network namespace
    assert all(0 not in found for found in peers)  # never root
    assert verdict.outcome is Outcome.ASSERTION_FAIL


def test_without_seccomp_only_world_writable_sockets_answer_and_never_to_root(
    problems: dict[str, Problem], visible_dir: Path, sandbox_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(execution.SANDBOX_OFF_ENV, "seccomp")
    active = protections()
    assert not active["seccomp"]
    root_only, open_to_all = str(visible_dir / "root-only.sock"), str(visible_dir / "open.sock")
    listeners = [_Listener(root_only), _Listener(open_to_all, 0o777)]
    try:
        _run(problems, [_connect_all([root_only, open_to_all])])
    finally:
        peers = [listener.close() for listener in listeners]
    if active["unprivileged_identity"]:
        assert peers[0] == []
        assert all(uid != 0 for uid in peers[1])


def test_socket_pairs_stay_available(problems: dict[str, Problem], sandbox_tmp: Path) -> None:
    """asyncio needs a socket pair; a sample using it still passes."""
    code = "    import asyncio\n    async def n():\n        return len(string)\n    return asyncio.run(n())\n"
    assert [v.outcome for v in _run(problems, [code])] == [Outcome.PASS]


# ----------------------------------------------------------------------------------------------
# 3. System V IPC never outlives the sample


def _host_ipc() -> dict[str, list[str]]:
    found = {}
    for kind in ("shm", "msg", "sem"):
        try:
            found[kind] = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
        except OSError:
            found[kind] = []
    return found


IPC_MAKER = (
    "    import ctypes\n    libc = ctypes.CDLL(None, use_errno=True)\n    made = []\n"
    "    for name, call in [('shm', lambda: libc.shmget(0x1D4A, 4096, 0o1666)),\n"
    "                       ('msg', lambda: libc.msgget(0x1D4B, 0o1666)),\n"
    "                       ('sem', lambda: libc.semget(0x1D4C, 1, 0o1666))]:\n"
    "        if call() >= 0:\n            made.append(name)\n"
    "    raise AssertionError('made: ' + ','.join(made))\n"
)
IPC_LOOKER = (
    "    import ctypes\n    libc = ctypes.CDLL(None)\n"
    "    assert libc.shmget(0x1D4A, 0, 0) < 0 and libc.msgget(0x1D4B, 0) < 0 and libc.semget(0x1D4C, 0, 0) < 0\n"
    + CORRECT
)


@pytest.mark.parametrize("off", ["", "seccomp"], ids=["seccomp", "ipc-namespaces-only"])
def test_system_v_ipc_stays_in_the_sandbox_and_with_its_sample(
    problems: dict[str, Problem], sandbox_tmp: Path, monkeypatch: pytest.MonkeyPatch, off: str
) -> None:
    monkeypatch.setenv(execution.SANDBOX_OFF_ENV, off)
    active = protections()
    if not active["ipc_namespace"]:
        pytest.skip("no IPC namespaces on this kernel")
    before = _host_ipc()
    verdicts = _run(problems, [IPC_MAKER, IPC_LOOKER, IPC_MAKER, IPC_LOOKER])
    assert _host_ipc() == before  # what `ipcs` shows on the host
    assert [v.outcome for v in verdicts] == [Outcome.ASSERTION_FAIL, Outcome.PASS] * 2
    if active["seccomp"]:
        assert verdicts[0].message == "made: "  # denied outright
    else:
        assert verdicts[0].message == "made: shm,msg,sem"  # made, and gone with the sample


# ----------------------------------------------------------------------------------------------
# 4. Limits per sample, not per process


class _Watch:
    """The executor's process tree seen from outside: peak memory (RSS + shared memory of the whole
    machine, for memory no process maps) and peak process count, sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak_rss = 0
        self.peak_processes = 0
        self.peak_shmem = 0
        self.base_shmem = self._shmem()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @staticmethod
    def _shmem() -> int:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("Shmem:"):
                return int(line.split()[1]) << 10
        return 0

    def _loop(self) -> None:
        me = psutil.Process()
        while not self.stop.is_set():
            rss, count = 0, 0
            for child in me.children(recursive=True):
                try:
                    rss += child.memory_info().rss
                    count += 1
                except psutil.Error:
                    continue
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_processes = max(self.peak_processes, count)
            self.peak_shmem = max(self.peak_shmem, self._shmem() - self.base_shmem)
            time.sleep(0.02)

    def __enter__(self) -> _Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


MB = 1 << 20
MEMFD_HOG = (  # 2 GiB in memfds of 32 MiB (each under the 64 MiB file-size limit)
    "    import os\n    block = b'x' * (16 << 20)\n    fds = [os.memfd_create('hog') for _ in range(64)]\n"
    "    for fd in fds:\n        os.write(fd, block)\n        os.write(fd, block)\n    return 0\n"
)
CHILD_HOGS = (
    "    import posix, time\n    for _ in range(8):\n        if posix.fork() == 0:\n"
    "            hog = b'x' * (200 << 20)\n            time.sleep(30)\n            posix._exit(0)\n"
    "    time.sleep(30)\n    return 0\n"
)
FORK_BOMB = (
    "    import posix, time\n    end = time.monotonic() + 1\n    while time.monotonic() < end:\n"
    "        try:\n            if posix.fork() == 0:\n                time.sleep(30)\n"
    "        except OSError:\n            pass\n    time.sleep(30)\n    return 0\n"
)
DISK_HOG = (
    "    block = b'x' * (16 << 20)\n    for i in range(64):\n"
    "        with open(f'f{i}', 'wb') as f:\n            f.write(block)\n    return 0\n"
)


def test_memfd_is_denied_and_bounded_by_the_memory_group(
    problems: dict[str, Problem], sandbox_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (verdict,) = _run(problems, [MEMFD_HOG])
    if protections()["seccomp"]:
        assert verdict.exception_type == "PermissionError"
    monkeypatch.setenv(execution.SANDBOX_OFF_ENV, "seccomp")
    if not protections()["cgroup_memory"]:
        pytest.skip("no memory control group can be made here")
    with _Watch() as watch:
        (verdict,) = _run(problems, [MEMFD_HOG], timeout=5.0)
    # 2 GiB of memfd under a 256 MiB cap: the worker's group (cap + margin) stops it
    assert verdict.outcome is Outcome.MEMORY_ERROR
    assert watch.peak_shmem < (256 + execution.CGROUP_MARGIN_MB + 256) * MB


def test_forked_children_share_one_memory_bound(problems: dict[str, Problem], sandbox_tmp: Path) -> None:
    if not protections()["cgroup_memory"]:
        pytest.skip("no memory control group can be made here")
    with _Watch() as watch:
        verdicts = _run(problems, [CHILD_HOGS, CORRECT], timeout=1.0, memory_mb=300)
    # 8 children x 200 MB under a 300 MB cap: bounded as one sample (the group holds cap + margin),
    # not 1.6 GB. The RSS summed over the tree counts pages shared after fork once per process, so
    # the bound checked here is 1 GB.
    assert watch.peak_rss < 1024 * MB
    assert not verdicts[0].passed
    assert verdicts[1].outcome is Outcome.PASS


def test_a_fork_bomb_is_bounded_by_the_process_group(problems: dict[str, Problem], sandbox_tmp: Path) -> None:
    if not protections()["cgroup_pids"]:
        pytest.skip("no pids control group can be made here")
    with _Watch() as watch:
        verdicts = _run(problems, [FORK_BOMB, CORRECT], timeout=1.0)
    assert watch.peak_processes <= execution.CGROUP_PIDS + 10
    assert [v.passed for v in verdicts] == [False, True]


def test_the_working_directory_has_a_quota(problems: dict[str, Problem], sandbox_tmp: Path) -> None:
    if not protections()["tmpfs_workdir"]:
        pytest.skip("no private tmpfs here: files are bounded per file only")
    before = _Watch._shmem()
    verdicts = _run(problems, [DISK_HOG, CORRECT], timeout=5.0)
    assert verdicts[0].exception_type == "OSError"
    assert "No space left on device" in verdicts[0].message
    assert verdicts[1].outcome is Outcome.PASS
    assert _Watch._shmem() - before < 64 * MB  # and it was given back


@pytest.mark.parametrize(
    "off, flags",
    [
        ("cgroup", ("cgroup_memory", "cgroup_pids", "cpu_time_budget")),
        ("mountns", ("mount_namespace", "private_tmp", "tmpfs_workdir")),
        ("ipcns", ("ipc_namespace",)),
        ("userns,netns,pidns,landlock,ipcns,mountns,cgroup,seccomp,identity", ("pid_namespace", "seccomp")),
    ],
)
def test_each_fallback_is_recorded_and_still_judges(
    problems: dict[str, Problem], sandbox_tmp: Path, monkeypatch: pytest.MonkeyPatch, off: str, flags: tuple
) -> None:
    monkeypatch.setenv(execution.SANDBOX_OFF_ENV, off)
    active = protections()
    assert not any(active[flag] for flag in flags)
    sleeper = "    import time\n    time.sleep(60)\n"
    verdicts = _run(
        problems,
        [CORRECT, "    return 0\n", sleeper, METADATA_ATTACKS.format(path="/etc/hostname", folder="/etc")],
    )
    assert [v.outcome for v in verdicts[:3]] == [Outcome.PASS, Outcome.ASSERTION_FAIL, Outcome.TIMEOUT]
    assert not verdicts[3].passed
    assert (verdicts[0].cpu_s is not None) == active["cpu_time_budget"] or verdicts[0].cpu_s is not None


# ----------------------------------------------------------------------------------------------
# 5. Nothing the candidate wrote runs outside its limits


def _compile_bomb(depth: int) -> str:
    """Nested ``try/finally`` in the ``finally`` blocks: CPython compiles each finally body twice
    (normal and exceptional exit), so compiling takes 2^depth (depth 20: ~8 s, some GB here)."""
    lines = []
    for level in range(depth):
        pad = "    " * (level + 1)
        lines += [f"{pad}try:", f"{pad}    pass", f"{pad}finally:"]
    lines.append("    " * (depth + 1) + "x = 1")
    return "\n".join(lines) + "\n" + CORRECT


def test_a_compile_bomb_costs_only_its_own_row(problems: dict[str, Problem], sandbox_tmp: Path) -> None:
    # check() calls the candidate three times: 3 x 0.1 s of CPU time, well within the budget
    slow_but_correct = (
        "    import time\n    end = time.process_time() + 0.1\n    while time.process_time() < end:\n        pass\n"
        + CORRECT
    )
    completions = [slow_but_correct, _compile_bomb(21), CORRECT, slow_but_correct]
    start = time.monotonic()
    verdicts = _run(problems, completions, timeout=TIMEOUT, memory_mb=512)
    elapsed = time.monotonic() - start
    assert [v.outcome for v in verdicts[:1] + verdicts[2:]] == [Outcome.PASS] * 3, [
        (v.outcome.value, v.duration_s, v.cpu_s) for v in verdicts
    ]
    assert verdicts[1].outcome in (Outcome.TIMEOUT, Outcome.MEMORY_ERROR)
    assert elapsed < 30  # the bomb was stopped at its budget, not after its ~16 s of compiling


def test_a_sample_that_waited_for_a_cpu_past_its_backstop_still_passes(
    problems: dict[str, Problem], sandbox_tmp: Path
) -> None:
    """A sample within its CPU budget that spent longer than the wall-clock backstop waiting for a
    CPU (the machine's load, not the program) is judged on what it did: a PASS. The worker and six
    busy loops share one CPU, each loop in a session of its own (the scheduler shares a CPU between
    sessions first), so the sample gets about a seventh of it."""
    if not protections()["backstop_excludes_cpu_wait"]:
        pytest.skip("the backstop cannot tell waiting for a CPU from sleeping here")
    cpu = max(os.sched_getaffinity(0))
    busy_loop = [sys.executable, "-c", "while True: pass"]
    pin = lambda: os.sched_setaffinity(0, {cpu})  # noqa: E731
    hogs = [subprocess.Popen(busy_loop, preexec_fn=pin, start_new_session=True) for _ in range(6)]
    mask = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})  # the worker takes the orchestrator's CPUs: this one
    try:
        # check() calls it three times: 0.3 s of CPU time in a 0.5 s budget; ~2.2 s of wall-clock time
        working = (
            "    import time\n    end = time.process_time() + 0.1\n    while time.process_time() < end:\n"
            "        pass\n" + CORRECT
        )
        (verdict,) = _run(problems, [working], timeout=TIMEOUT)
    finally:
        os.sched_setaffinity(0, mask)
        for hog in hogs:
            hog.kill()
            hog.wait()
    backstop = execution.WALL_FACTOR * TIMEOUT
    assert verdict.duration_s > backstop, "the busy loops did not make the sample wait"
    assert verdict.outcome is Outcome.PASS, (verdict.duration_s, verdict.cpu_s, verdict.message)
    assert verdict.cpu_s < TIMEOUT


def test_a_sample_over_its_budget_is_never_a_pass(problems: dict[str, Problem], sandbox_tmp: Path) -> None:
    late = (
        "    import time\n    end = time.process_time() + 1.5\n    while time.process_time() < end:\n        pass\n"
        + CORRECT
    )
    (verdict,) = _run(problems, [late], timeout=TIMEOUT)
    assert verdict.outcome is Outcome.TIMEOUT


# ----------------------------------------------------------------------------------------------
# 8. Sizes are bounded; set-up failures are authenticated; logs escape control characters

HUGE_NAME = "    raise type('E' * 400_000, (AssertionError,), {})('x' * 100_000)\n"
DEEP_MRO = (
    "    base = ValueError\n    for i in range(200):\n        base = type(f'E{i}' + 'n' * 300, (base,), {})\n"
    "    raise base('deep')\n"
)
FAKE_SETUP_FAILURE = (
    f"    import posix\n    posix.write({REPORT_FD}, b'E set-up failed: \\x1b[31m\\x1b[2J' + b'A' * 60_000 + b'\\n')\n"
    "    posix._exit(0)\n"
)
FLOOD = f"    import posix\n    posix.write({REPORT_FD}, b'E set-up failed: ' + b'A' * 900_000 + b'\\n')\n"
SURROGATE = "    raise ValueError('lone \\udc80 surrogate')\n"


def test_sizes_are_bounded_and_fake_set_up_failures_are_not_believed(
    problems: dict[str, Problem], sandbox_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="idfu_lab"):
        verdicts = _run(
            problems, [HUGE_NAME, DEEP_MRO, FAKE_SETUP_FAILURE, SURROGATE, FLOOD] + [FAKE_SETUP_FAILURE] * 20
        )
    huge, deep, fake, surrogate, flood = verdicts[:5]
    # more than its pipe holds: the sample blocks on it until its wall-clock backstop
    assert flood.outcome is Outcome.TIMEOUT
    assert huge.outcome is Outcome.ASSERTION_FAIL and len(huge.exception_type) == MAX_NAME_CHARS
    assert len(huge.message) <= MAX_MESSAGE_CHARS + 4
    assert deep.outcome is Outcome.VALUE_ERROR  # the built-in base is kept, whatever the depth
    assert all(
        v.outcome is Outcome.OTHER_ERROR and "not authenticated" in v.message for v in [fake, *verdicts[5:]]
    )
    surrogate.message.encode("utf-8")  # writable as UTF-8
    assert "\ufffd" in surrogate.message
    assert all(len(v.message) <= MAX_MESSAGE_CHARS + 4 for v in verdicts)
    assert not [r for r in caplog.records if "\x1b" in r.getMessage() or r.levelno >= logging.ERROR]
    assert execution.printable("a\x1b[2Jb\n") == "a\\x1b[2Jb\\n"
    assert MAX_MRO_ENTRIES <= 32


# ----------------------------------------------------------------------------------------------
# 9. No sample changes another's verdict; 6. deep trees are cleaned up

SHRINK_PIPE = f"    import fcntl\n    fcntl.fcntl({REPORT_FD}, 1031, 4096)\n" + CORRECT  # F_SETPIPE_SZ
BIG_VERDICT = "    raise AssertionError('m' * 1900)\n"
MARK_FOLDER = (
    "    import os, posix\n    try:\n        os.setxattr('.', 'user.mark', b'1')\n    except OSError:\n        pass\n"
    "    for folder in ('..', '/tmp'):\n        try:\n            posix.chmod(folder, 0o700)\n        except OSError:\n            pass\n"
    "    posix.chmod('.', 0o755)\n    open('left.txt', 'w').write('x')\n" + CORRECT
)
CHECK_FOLDER = (
    "    import os\n    assert os.listdir('.') == []\n    assert os.stat('.').st_mode & 0o7777 == 0o700\n"
    "    assert os.listxattr('.') == []\n" + CORRECT
)
LO_UP = (
    "    import fcntl, socket, struct\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "    try:\n        fcntl.ioctl(s, 0x8914, struct.pack('16sH14x', b'lo', 1))\n    except OSError:\n        pass\n"
    + CORRECT
)
LO_DOWN = (
    "    import fcntl, socket, struct\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "    flags = struct.unpack('16sH14x', fcntl.ioctl(s, 0x8913, struct.pack('16sH14x', b'lo', 0)))[1]\n"
    "    assert not flags & 1\n" + CORRECT
)


def test_no_sample_changes_the_next_ones_verdict(problems: dict[str, Problem], sandbox_tmp: Path) -> None:
    completions = [SHRINK_PIPE, BIG_VERDICT, MARK_FOLDER, CHECK_FOLDER]
    if protections()["network_namespace"]:
        completions += [LO_UP, LO_DOWN]
    verdicts = _run(problems, completions * 2)
    expected = [Outcome.PASS, Outcome.ASSERTION_FAIL, Outcome.PASS, Outcome.PASS] + [Outcome.PASS] * (
        len(completions) - 4
    )
    assert [v.outcome for v in verdicts] == expected * 2
    assert verdicts[1].message == "m" * 1900


def _deep_tree(depth: int) -> str:
    return (
        f"    import posix\n    for _ in range({depth}):\n        posix.mkdir('d')\n        posix.chdir('d')\n"
        "    open('leaf', 'w').write('x')\n" + CORRECT
    )


def test_a_3000_deep_tree_is_cleaned_up(
    problems: dict[str, Problem], sandbox_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Far deeper than Python's recursion limit (1,000), where a recursive clean-up fails. In the
    worker's private tmpfs; the same iterative removal serves the host-folder fallback and the
    orchestrator's clean-up (next test, on the host's file system)."""
    # Landlock off: its checks walk up the tree, which makes building 3,000 levels take seconds
    monkeypatch.setenv(execution.SANDBOX_OFF_ENV, "landlock")
    depth = 3000
    tidy = "    import os\n    assert os.listdir('.') == []\n" + CORRECT
    verdicts = _run(problems, [_deep_tree(depth), tidy, _deep_tree(depth)], timeout=20.0)
    assert [v.outcome for v in verdicts] == [Outcome.PASS] * 3
    # sandbox_tmp's teardown checks that no folder was left behind


def test_the_orchestrator_removes_a_deep_tree_without_recursion(tmp_path: Path) -> None:
    """1,100 levels (past the recursion limit) on the host's file system; ext4 on this machine's
    slow disk takes ~4 ms per level to make and remove, so not 3,000 here."""
    top = tmp_path / "tree"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    for _ in range(1100):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    os.chmod(top / "d", 0o000)  # locked by its owner, too
    execution._remove_tree(str(top))
    assert not top.exists()
    with pytest.raises(OSError) as info:
        os.stat(top)
    assert info.value.errno == errno.ENOENT
