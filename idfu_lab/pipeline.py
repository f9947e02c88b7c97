"""The whole study as papermill runs of the numbered notebooks.

``01_data_audit`` runs once; ``02_training``, ``03_evaluation``, ``04_failure_taxonomy`` and
``05_delta_tracing`` run once per seed, in that order; ``06_summary`` runs once over all seeds.
Executed copies (with their injected parameters) are kept in the run directory::

    runs/<name>/notebooks/01_data_audit.ipynb
    runs/<name>/notebooks/seed-<s>/02_training.ipynb ... 05_delta_tracing.ipynb
    runs/<name>/notebooks/06_summary.ipynb

Resuming: a notebook is skipped when its executed copy exists and was produced for the same config
hash from the same inputs — the notebook itself and the files it reads (:func:`notebook_inputs`: the
pairs and problems files for 01, the audited pairs for 02, the adapter for 03, the results for 04 and
05, every seed's results and delta for 06), compared by content hash. Anything else re-runs it, and
the log says why; since each notebook's outputs are the next one's inputs, a change re-runs
everything downstream of it (``--force`` re-runs everything, and forgets every finished step inside
the notebooks too).
A failing notebook stops the run with its path and the failing cell; seeds already finished are kept.
Seeds are independent: ``--seeds 123`` on one machine and ``--seeds 7`` on another, into the same run
directory layout, then ``--only 06_summary``, is the cluster recipe; ``--jobs N`` runs N seeds at once
on one machine (each seed's notebooks in order, in kernels of their own).

A comparison run (``idfu-lab compare``, :mod:`idfu_lab.analysis.compare`) has no 01 and no 02: 03-05
run once per TUNED file (in a seed's place) on the imported generations, then 06; :func:`plan_for`
tells the two plans apart by the run directory's ``compare.json``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from idfu_lab import runs
from idfu_lab.config import repo_root
from idfu_lab.errors import IdfuError

logger = logging.getLogger(__name__)

ONCE_BEFORE = ("01_data_audit",)
PER_SEED = ("02_training", "03_evaluation", "04_failure_taxonomy", "05_delta_tracing")
ONCE_AFTER = ("06_summary",)
NOTEBOOKS = ONCE_BEFORE + PER_SEED + ONCE_AFTER
#: A comparison of imported generations (``idfu-lab compare``): nothing to audit or train; each
#: TUNED file takes a seed's place.
COMPARE_PER_SEED = ("03_evaluation", "04_failure_taxonomy", "05_delta_tracing")


def plan_for(run_dir: str | Path) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(once before the seeds, per seed, once after)`` for a run directory: the study's plan, or the
    comparison plan (no 01/02) where the run compares imported generations."""
    from idfu_lab.analysis.compare import is_compare

    if is_compare(run_dir):
        return (), COMPARE_PER_SEED, ONCE_AFTER
    return ONCE_BEFORE, PER_SEED, ONCE_AFTER


class NotebookFailed(IdfuError):
    """A notebook raised; the message names the executed copy and the cell."""


@dataclass
class StepResult:
    notebook: str
    seed: int | None
    output: Path
    skipped: bool
    seconds: float


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def _executed_path(run: runs.Run, notebook: str, seed: int | None) -> Path:
    path = run.layout.executed_notebook(notebook, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def notebook_inputs(run: runs.Run, notebook: str, seed: int | None, seeds: Sequence[int]) -> list[Path]:
    """What a notebook reads, for resuming: the notebook itself and the artefacts it is computed from."""
    from idfu_lab.analysis.annotate import annotations_path

    layout = run.layout
    inputs = [notebooks_dir() / f"{notebook}.ipynb"]
    if notebook == "01_data_audit":
        inputs += runs.local_data_files(run.config)
    elif notebook == "02_training":
        inputs.append(layout.train_pairs)
    elif notebook == "03_evaluation" and layout.compare_json.is_file():
        from idfu_lab.analysis.compare import input_files

        # a comparison: the imported generations and the user's files they came from
        inputs += [layout.generations(seed, m) for m in layout.MODELS]
        inputs += input_files(run, seed)
    elif notebook == "03_evaluation":
        inputs.append(layout.adapter(seed))
    elif notebook == "04_failure_taxonomy":
        inputs += [layout.results(seed, m) for m in layout.MODELS]
    elif notebook == "05_delta_tracing":
        inputs += [layout.results(seed, m) for m in layout.MODELS]
        inputs.append(annotations_path(run.name, seed))
    elif notebook == "06_summary":
        for s in seeds:
            inputs += [layout.results(s, m) for m in layout.MODELS]
            inputs.append(layout.delta_json(s))
    return inputs


#: The longest path a Unix socket may have (``sun_path`` is 108 bytes on Linux, its NUL included).
_SOCKET_PATH_MAX = 107


def _ipc_prefix() -> str:
    """A socket path prefix of this kernel's own: ``<jupyter runtime dir>/idfu-<random>-ipc``.

    jupyter_client names IPC sockets ``<ip>-1`` ... ``<ip>-5``, numbering from the first free one;
    its default ``ip`` is ``kernel-ipc`` in the working directory, so two runs started together from
    the repository (two seeds as jobs on one node, parallel test workers) picked the same sockets and
    talked to each other's kernels ("Invalid Signature", or worse, cells executed in the wrong
    kernel). A random prefix in a private folder gives every kernel sockets nobody else can pick.
    """
    import tempfile
    import uuid

    from jupyter_core.paths import jupyter_runtime_dir

    name = f"idfu-{uuid.uuid4().hex[:12]}-ipc"
    folder = Path(jupyter_runtime_dir())
    if len(str(folder / name)) + 3 > _SOCKET_PATH_MAX:  # + "-NN": a deep home folder; /tmp is short
        folder = Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return str(folder / name)


#: The first lines of the Python processes the pipeline and the book start that read notebooks (the
#: kernels, ``jupyter-book build``): jsonschema (through nbformat, which ``myst_nb.glue`` imports in
#: every notebook) imports ``rfc3987_syntax`` eagerly when it is installed, and that module compiles
#: some 40 Earley parsers on import, in every such process, for the "iri" format checks, which no
#: schema a notebook validates uses. Marking the module absent makes jsonschema skip those two checks,
#: as it does wherever the package is not installed.
WITHOUT_IRI_CHECKS = """\
import sys
sys.modules.setdefault("rfc3987_syntax", None)
"""

#: Where the recipe never uses bitsandbytes (:attr:`idfu_lab.config.Config.uses_bitsandbytes`), its kernels
#: start without it too: peft imports it whenever it is installed, and on import its CPU backend
#: compiles its kernels with ``torch.compile`` (~1.4 s of CPU in every kernel that trains or loads an
#: adapter). Marked absent, the libraries see what they see on a machine without the package.
WITHOUT_BITSANDBYTES = """\
sys.modules.setdefault("bitsandbytes", None)
"""

#: The kernels' cyclic garbage collector runs its young generation every 50,000 allocations instead of
#: Python's 700. A kernel that imports torch, transformers and peft makes ~600,000 objects that live as
#: long as it does; with the default, importing them runs eight full collections over the growing heap
#: (1.4 s of CPU, measured with ``gc.callbacks``), with this one (0.6 s). Cyclic garbage waits a
#: little longer to be freed; nothing else changes.
KERNEL_GC_THRESHOLDS = (50_000, 20, 10)

#: What ``python -m ipykernel_launcher`` does, after :data:`WITHOUT_IRI_CHECKS` (and, for a recipe
#: without bitsandbytes, :data:`WITHOUT_BITSANDBYTES`), with :data:`KERNEL_GC_THRESHOLDS`.
KERNEL_START = f"""\
import gc
gc.set_threshold{KERNEL_GC_THRESHOLDS}
from pathlib import Path
if sys.path and (sys.path[0] == "" or Path(sys.path[0]) == Path.cwd()):
    del sys.path[0]  # as ipykernel_launcher: the working directory is added back by the kernel
from ipykernel import kernelapp
kernelapp.launch_new_instance()
"""


def kernel_command(cmd: list[str], *, without_bitsandbytes: bool = False) -> list[str]:
    """A kernel spec's command with our launcher (:data:`KERNEL_START` after :data:`WITHOUT_IRI_CHECKS`)
    in place of ``-m ipykernel_launcher``.

    Any other kernel (another language, a custom launcher) is started exactly as its spec says.
    """
    if len(cmd) >= 3 and cmd[1:3] == ["-m", "ipykernel_launcher"]:
        launcher = WITHOUT_IRI_CHECKS + (WITHOUT_BITSANDBYTES if without_bitsandbytes else "") + KERNEL_START
        return [cmd[0], "-c", launcher, *cmd[3:]]
    return cmd


def _kernel_manager_class(*, without_bitsandbytes: bool = False) -> type:
    """Kernels reached over Unix sockets of their own instead of localhost TCP.

    No port is opened, so no other local process can try to connect, and the kernel does not
    print its warning about unencrypted TCP into every run's log. Each kernel's sockets have a
    random name (:func:`_ipc_prefix`), so kernels started at the same moment never share them.
    Where Unix sockets are not available (Windows), papermill's default (TCP) is kept. Python kernels
    start through :func:`kernel_command`'s launcher.
    """
    from jupyter_client.localinterfaces import localhost
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            return kernel_command(
                super().format_kernel_cmd(extra_arguments), without_bitsandbytes=without_bitsandbytes
            )

        @default("transport")
        def _default_transport(self) -> str:
            return "ipc" if os.name == "posix" else "tcp"

        @default("ip")
        def _default_ip(self) -> str:
            return _ipc_prefix() if self.transport == "ipc" else localhost()

    return IPCKernelManager


def _execute(
    source: Path, output: Path, parameters: dict, kernel_name: str, *, without_bitsandbytes: bool = False
) -> None:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    logging.getLogger("papermill").setLevel(logging.WARNING)  # our progress bar and log say what runs
    try:
        pm.execute_notebook(
            str(source),
            str(output),
            parameters=parameters,
            kernel_name=kernel_name,
            cwd=str(repo_root()),
            progress_bar=False,
            log_output=False,
            request_save_on_cell_execute=True,
            kernel_manager_class=_kernel_manager_class(without_bitsandbytes=without_bitsandbytes),
        )
    except PapermillExecutionError as e:
        where = f"cell {e.exec_count}" if e.exec_count is not None else f"cell index {e.cell_index}"
        raise NotebookFailed(
            f"notebook {source.name} failed at {where} with {e.ename}: {e.evalue}; executed copy: {output}"
        ) from None


def run_pipeline(
    config_path: str | Path,
    seeds: Sequence[int] | None = None,
    run_dir: str | Path | None = None,
    *,
    force: bool = False,
    only: Sequence[str] | None = None,
    kernel_name: str = "python3",
    progress: bool = True,
    jobs: int = 1,
) -> list[StepResult]:
    """Execute the notebooks for ``seeds`` (default: the config's) and return what ran or was skipped.

    ``jobs``: how many seeds' notebooks run at the same moment, each seed's in order, each in a kernel
    of its own (the notebooks before and after the seeds run alone). Seeds are independent runs, so
    this changes when they run, not what they compute; the files they share (the run's manifest, the
    generation cache of the base model's replies) are written under file locks. On one GPU keep 1:
    two seeds would share its memory.
    """
    from tqdm.auto import tqdm

    run = runs.open(config_path, run_dir=run_dir)
    seeds = list(seeds) if seeds else run.seeds
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int):
            raise IdfuError(f"seed must be an integer, got {s!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise IdfuError(f"jobs must be a positive integer, got {jobs!r}")
    before, per_seed, after = plan_for(run.dir)
    available = before + per_seed + after
    wanted = set(only) if only else set(available)
    unknown = wanted - set(available)
    if unknown:
        raise IdfuError(
            f"unknown notebook(s) {sorted(unknown)} for this run; notebooks: {', '.join(available)}"
        )
    if force:
        forget_everything(run, seeds)

    first = [(nb, None) for nb in before if nb in wanted]
    chains = {s: [(nb, s) for nb in per_seed if nb in wanted] for s in seeds}
    last = [(nb, None) for nb in after if nb in wanted]

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if run.config.profile == "tiny":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tiny profile never needs the Hub
    config_arg = _display_path(Path(run.config.source)) if run.config.source else str(config_path)
    bar = tqdm(
        total=len(first) + sum(map(len, chains.values())) + len(last),
        desc="notebooks",
        unit="nb",
        disable=not progress,
    )

    def step(notebook: str, seed: int | None) -> StepResult:
        bar.set_postfix_str(notebook if seed is None else f"{notebook} seed {seed}")
        result = _run_step(run, notebook, seed, seeds, config_arg, kernel_name)
        bar.update()
        return result

    try:
        results = [step(nb, s) for nb, s in first]
        results += _run_chains(chains, step, jobs)
        results += [step(nb, s) for nb, s in last]
    finally:
        bar.close()
    run.update_manifest(
        last_pipeline={"seeds": seeds, "notebooks": sorted(wanted), "finished": runs.timestamp()}
    )
    return results


def _run_chains(
    chains: dict[int, list[tuple[str, int]]], step: Callable[[str, int], StepResult], jobs: int
) -> list[StepResult]:
    """Each seed's notebooks in order, up to ``jobs`` seeds at once; results in seed order.

    A failing notebook stops its seed; seeds not started yet are not started, the ones running
    finish the notebook they are in (their results are kept, as a sequential run keeps the seeds
    before the failure), and the failure of the first seed (in the order given) that failed is raised.
    """
    if jobs == 1 or len(chains) <= 1:
        return [step(nb, s) for chain in chains.values() for nb, s in chain]
    import threading
    from concurrent.futures import ThreadPoolExecutor

    stop = threading.Event()

    def run_chain(chain: list[tuple[str, int]]) -> list[StepResult]:
        done = []
        for nb, s in chain:
            if stop.is_set():
                break
            try:
                done.append(step(nb, s))
            except BaseException:
                stop.set()
                raise
        return done

    with ThreadPoolExecutor(max_workers=min(jobs, len(chains)), thread_name_prefix="seed") as pool:
        futures = {seed: pool.submit(run_chain, chain) for seed, chain in chains.items()}
    failures = [f.exception() for f in futures.values() if f.exception() is not None]
    if failures:
        raise failures[0]
    return [r for f in futures.values() for r in f.result()]


def _run_step(
    run: runs.Run,
    notebook: str,
    seed: int | None,
    seeds: Sequence[int],
    config_arg: str,
    kernel_name: str,
) -> StepResult:
    """One notebook: skipped when done for this config and these inputs, else executed by papermill."""
    scoped = run if seed is None else run.for_seed(seed)
    step = f"notebook:{notebook}"
    output = _executed_path(run, notebook, seed)
    where = "" if seed is None else f" (seed {seed})"
    inputs = scoped.input_hashes(notebook_inputs(run, notebook, seed, seeds))
    reason = scoped.why_not_done(step, inputs)
    if reason is None:
        logger.info("skip %s%s: done for this config and these inputs", notebook, where)
        return StepResult(notebook, seed, output, True, 0.0)
    logger.info("run %s%s: %s", notebook, where, reason)
    params: dict = {"config_path": config_arg, "run_dir": _display_path(run.dir)}
    if seed is not None:
        params["seed"] = seed
    source = notebooks_dir() / f"{notebook}.ipynb"
    if not source.exists():
        raise IdfuError(f"notebook not found: {source}")
    t0 = time.perf_counter()
    _execute(source, output, params, kernel_name, without_bitsandbytes=not run.config.uses_bitsandbytes)
    seconds = time.perf_counter() - t0
    scoped.mark_done(step, [output], inputs=inputs, seconds=round(seconds, 2))
    logger.info("ran %s%s in %.1f s", notebook, where, seconds)
    return StepResult(notebook, seed, output, False, seconds)


def _display_path(path: Path) -> str:
    """A path as the executed notebooks (and so the book) show it: relative to the repository when inside it.

    The kernel runs with the repository as its working directory, so a relative path resolves the same.
    """
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(repo_root()))
    except ValueError:
        return str(resolved)


def forget_everything(run: runs.Run, seeds: Sequence[int]) -> None:
    """Drop every finished-step record (run level and given seeds) so everything is recomputed."""
    for scoped in [run, *(run.for_seed(s) for s in seeds)]:
        m = scoped.manifest()
        if m.get("steps"):
            scoped.update_manifest(steps={})
