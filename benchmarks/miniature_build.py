"""The miniature model's one-time build: wall and CPU time, and what greedy decoding makes of mini's eval split.

Builds the model of ``configs/tiny.yaml`` from nothing into a temporary cache (``$IDFU_LAB_CACHE``),
exactly as the first ``make demo`` does (tokenizer training, the warm-up), then evaluates it greedily
on the 164 eval problems with the run's executor and policy, and says whether the build is bit-for-bit
the one in the regular cache (the build is deterministic).

    python benchmarks/miniature_build.py [--config configs/tiny.yaml]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BUILD = """
import sys
from idfu_lab.config import load_config
from idfu_lab.generation.models import tiny_path
print(tiny_path(load_config(sys.argv[1]).model.tiny))
"""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny.yaml")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryDirectory(prefix="idfu-build-") as cache:
        env["IDFU_LAB_CACHE"] = cache
        t0, c0 = time.perf_counter(), cpu_seconds()
        out = subprocess.run(
            [sys.executable, "-c", BUILD, args.config],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        built = Path(out.stdout.strip().splitlines()[-1])
        print(
            f"build: {wall:.1f} s wall, {cpu:.1f} s CPU (target: <= 180 s), load average {os.getloadavg()[0]:.1f}"
        )
        from idfu_lab.config import load_config
        from idfu_lab.generation.models import cache_dir, tiny_fingerprint

        cfg = load_config(args.config)
        regular = cache_dir() / f"tiny-{tiny_fingerprint(cfg.model.tiny)}"
        if (regular / "model.safetensors").exists():
            same = (regular / "model.safetensors").read_bytes() == (built / "model.safetensors").read_bytes()
            print(f"identical to the cached build in {regular}: {same}")
        os.environ["IDFU_LAB_CACHE"] = cache
        from collections import Counter

        from idfu_lab.analysis.evaluation import judge, load_benchmark
        from idfu_lab.generation.generate import generate

        problems = load_benchmark(cfg.evaluation.benchmark)
        rows = generate(cfg.model, cfg.generation, list(problems.values()), progress=False)
        results = judge(
            rows, problems, postprocess=cfg.evaluation.postprocess, imports=cfg.evaluation.imports
        )
        passed = sum(r["passed"] for r in results)
        print(
            f"greedy pass@1 on {cfg.evaluation.benchmark}: {passed}/{len(results)} = {passed / len(results):.1%}"
        )
        failures = Counter(f"{r['outcome']}/{r['phase']}" for r in results if not r["passed"])
        print("failures:", ", ".join(f"{k} {v}" for k, v in failures.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
