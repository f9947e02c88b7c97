"""Shared fixtures. Tests never reach the Hugging Face Hub: HF_HUB_OFFLINE is set for the session."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# As in every notebook's kernel (idfu_lab.pipeline.WITHOUT_IRI_CHECKS): jsonschema, which nbformat imports
# to validate notebooks, skips its "iri" format checks (used by no notebook schema) instead of
# compiling rfc3987_syntax's parsers in every test process.
sys.modules.setdefault("rfc3987_syntax", None)


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session):
    """No cyclic garbage collection while the test modules (and torch, transformers, peft) are imported;
    then one, and what is alive moves to the permanent generation (``gc.freeze``).

    Importing them makes ~600,000 long-lived objects. As they are imported, Python runs a full
    collection every time the heap grows by a quarter, and each full collection afterwards (automatic,
    or ``gc.collect()`` in accelerate and the trainers) walks all of them again. Frozen, they are
    walked no more; the tests' own garbage is collected as usual.
    """
    gc.disable()
    try:
        return (yield)
    finally:
        gc.collect()
        gc.freeze()
        gc.enable()


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
DEMO_SEEDS = [42, 7]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real model outputs and MBPP); tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (real-data tests run where it is present)")
    return SHARED_DATA


#: What the test suite changes in configs/tiny.yaml to keep its pipeline run cheap: curation samples a
#: quarter of mini's train split. The model, the decoding, the DPO recipe and the evaluation on all
#: 164 eval problems are the demo's own.
DEMO_TEST_OVERRIDES = {"data": {"curate": {"limit": 120}}}


@pytest.fixture(scope="session")
def demo_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs/tiny.yaml (the miniature) with :data:`DEMO_TEST_OVERRIDES` applied, as a recipe file."""
    import yaml

    cfg = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    cfg["data"]["curate"].update(DEMO_TEST_OVERRIDES["data"]["curate"])
    path = tmp_path_factory.mktemp("configs") / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory, demo_config: Path) -> Path:
    """The whole pipeline on the tiny profile (the miniature), two seeds, executed once per session by papermill.

    Two seeds, not one: what only goes wrong when a per-seed notebook appears more than once in the
    book (duplicate labels, seed ordering, the summary's spread) must be caught by the tests.

    Notebook and book tests assert on this run's executed notebooks and artefacts instead of
    re-executing everything: the papermill run *is* the test of each notebook.
    """
    from idfu_lab.pipeline import run_pipeline

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    # Two seeds at once (``idfu-lab run --jobs 2``): what parallel seeds share is tested on every run.
    run_pipeline(demo_config, seeds=DEMO_SEEDS, run_dir=run_dir, progress=False, jobs=2)
    return run_dir


#: The xdist group of every test that reads the session's demo run (directly or through the book's
#: ``book_run``): one worker runs the pipeline once and all of them; the other workers take the rest.
DEMO_GROUP = "demo_run"


def _work_unit(item: pytest.Item) -> str:
    if {"demo_run", "book_run"} & set(getattr(item, "fixturenames", ())):
        return DEMO_GROUP
    return item.nodeid.split("::", 1)[0]  # the module


def pytest_itemcollected(item: pytest.Item) -> None:
    """Work units for ``make test`` (pytest-xdist, ``--dist loadgroup``).

    Each test module is one unit, so a module's expensive fixtures (a compare run, the 3,280
    agreement samples, a trained adapter) are made once; the tests that read the demo run are one
    unit of their own, wherever they live. The mark is set here, as each test is collected, because
    xdist reads it when collection ends. A run without xdist ignores it.
    """
    item.add_marker(pytest.mark.xdist_group(_work_unit(item)))


def _miniature_is_built() -> bool:
    from idfu_lab.config import load_config
    from idfu_lab.generation.models import tiny_is_built

    return tiny_is_built(load_config("tiny").model.tiny)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The order units are handed out in: the demo run first (the longest chain: the model, the
    pipeline, the book, the browser); then the modules that mostly wait (``waits``: sandbox time
    limits, killed workers), so that their idle seconds fall beside the demo run's CPU work instead
    of idling both cores at the end; then modules with slow tests; then the quick ones, which fill
    the gaps at the end.

    Where the miniature model is not cached yet, the demo run starts by building it on one core for
    a minute or more (one thread: see ``miniature.warm_up``); the modules that keep a core busy
    without that model (``busy``) then go before the waiting ones, which would leave the second
    core idle beside the build, and the waiting ones fall beside the pipeline's parallel seeds."""
    units = {id(item): _work_unit(item) for item in items}
    marked = {
        name: {units[id(item)] for item in items if item.get_closest_marker(name)}
        for name in ("busy", "waits", "slow")
    }
    order = ["busy", "waits", "slow"] if not _miniature_is_built() else ["waits", "busy", "slow"]

    def rank(item: pytest.Item) -> int:
        unit = units[id(item)]
        if unit == DEMO_GROUP:
            return 0
        return 1 + next((i for i, name in enumerate(order) if unit in marked[name]), len(order))

    items.sort(key=rank)
