"""The sandbox: runs untrusted candidate programs against benchmark tests and returns typed verdicts.

Its public surface is small on purpose: a :class:`Job` (program + test), a :class:`Verdict` (passed,
outcome, phase, exception, message, time), :func:`run_jobs` (jobs in, verdicts out, in order),
:func:`job_for` (a job from a benchmark problem), :func:`protections` (which isolation is active
here), and for the evaluation's bookkeeping :func:`run_jobs_with_protections` (the same, with the
protections the workers reported), :func:`protections_off` and the wall-clock backstop's factor. The executor (:mod:`.executor`) and the worker that runs inside the sandbox (:mod:`.worker`)
are private; the threat model is in :mod:`.executor`'s docstring.
"""

from idfu_lab.sandbox.executor import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    WALL_FACTOR,
    Job,
    Verdict,
    job_for,
    protections,
    protections_off,
    run_jobs,
    run_jobs_with_protections,
    usable_cpus,
)

__all__ = [
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT_S",
    "WALL_FACTOR",
    "Job",
    "Verdict",
    "job_for",
    "protections",
    "protections_off",
    "run_jobs",
    "run_jobs_with_protections",
    "usable_cpus",
]
