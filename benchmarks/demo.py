"""Wall time and peak memory of the demo (the tiny pipeline for three seeds, then the book), after set-up.

Runs ``idfu-lab run`` and ``idfu-lab book`` as child processes into a fresh run directory and polls the
resident memory of the whole process tree (the CLI, papermill's kernels, the executor's workers, the
book build) every 0.1 s; the peak of that sum is reported. The tiny model is built once beforehand, as
``make demo`` would have built it on an earlier run; pass ``--cold`` to include building it.

    python benchmarks/demo.py [--seeds 42 123 7] [--jobs 2] [--cold] [--keep runs/bench]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """(seconds, peak tree RSS in bytes, exit code) of one command."""
    peak = 0
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    ps = psutil.Process(proc.pid)
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                peak = max(peak, tree_rss(ps))
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    rc = proc.wait()
    done.set()
    t.join()
    return time.perf_counter() - t0, peak, rc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 123, 7])
    ap.add_argument("--jobs", type=int, default=2, help="seeds at once, as `make demo` (JOBS, default 2)")
    ap.add_argument("--cold", action="store_true", help="also build the tiny model (empty model cache)")
    ap.add_argument(
        "--keep", type=Path, help="run into this directory and keep it (default: a temporary one)"
    )
    args = ap.parse_args()

    cli = str(Path(sys.executable).with_name("idfu-lab"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    work = Path(tempfile.mkdtemp(prefix="idfu-demo-bench-"))
    if args.cold:
        env["IDFU_LAB_CACHE"] = str(work / "cache")
    else:
        from idfu_lab.config import load_config
        from idfu_lab.generation import models

        models.tiny_path(load_config("tiny").model.tiny)
    run_dir = args.keep.resolve() if args.keep else work / "tiny"
    seeds = [str(s) for s in args.seeds]
    steps = [
        (
            "pipeline",
            [cli, "run", "--config", "configs/tiny.yaml", "--seeds", *seeds, "--run-dir", str(run_dir)]
            + ["--jobs", str(args.jobs)],
        ),
        ("book", [cli, "book", "--run", str(run_dir)]),
    ]
    total_s, total_peak = 0.0, 0
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    # the machine may be shared: CPU time (every process of the tree) and the load say how much of the
    # wall time was this run's own work
    print("| step | wall time (s) | CPU time (s) | peak memory of the process tree (GiB) | load average |")
    print("|---|---|---|---|---|")
    total_cpu = 0.0
    for name, cmd in steps:
        cpu0 = children_cpu()
        seconds, peak, rc = measure(cmd, env)
        cpu = children_cpu() - cpu0
        if rc != 0:
            print(f"{name} failed with exit code {rc}", file=sys.stderr)
            return rc
        total_s += seconds
        total_cpu += cpu
        total_peak = max(total_peak, peak)
        print(f"| {name} | {seconds:.1f} | {cpu:.1f} | {peak / 2**30:.2f} | {os.getloadavg()[0]:.1f} |")
    print(
        f"| **demo (seeds {' '.join(seeds)}, --jobs {args.jobs})** | **{total_s:.1f}** | {total_cpu:.1f} | **{total_peak / 2**30:.2f}** | |"
    )
    print("targets: <= 300 s and <= 4 GiB on 2 cores")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
