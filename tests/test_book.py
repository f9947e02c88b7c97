"""The book: generated pages from a run, the checks that guard them, and a real `jupyter-book` build.

The slow tests build the book from the tiny demo run (the ``demo_run`` fixture: the whole pipeline on
two seeds; or the run named by ``$IDFU_LAB_TEST_RUN``) in a copy of the book's sources, with ``-W -n``,
and read the HTML it produced; where Chromium is installed they also open every page in headless
Chromium (``idfu_lab.report.bookcheck``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from idfu_lab.config import describe, load_config
from idfu_lab.pipeline import ONCE_AFTER, ONCE_BEFORE, PER_SEED
from idfu_lab.report import book

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def copy_book_sources(dest: Path) -> Path:
    """The book's committed sources (no generated pages, no results) in ``dest``: a book root to build."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(
        REPO / "book",
        dest / "book",
        ignore=shutil.ignore_patterns("_generated", "results", "__pycache__", ".ipynb_checkpoints"),
    )
    return dest


@pytest.fixture(scope="module")
def book_run(request: pytest.FixtureRequest) -> Path:
    """The run the book is built from: ``$IDFU_LAB_TEST_RUN`` (an existing run directory, e.g.
    ``runs/tiny`` after ``make demo``) when set, else the session's tiny demo run."""
    given = os.environ.get("IDFU_LAB_TEST_RUN")
    if given:
        return Path(given).resolve()
    return request.getfixturevalue("demo_run")


def _fake_run(tmp_path: Path, seeds: list[int], *, with_notebooks: bool = True) -> Path:
    """A run directory layout with trivially 'executed' notebooks (for the fast checks only)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = load_config("tiny-humaneval")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    (run_dir / "manifest.json").write_text(json.dumps({"profile": "tiny", "config_hash": "abc"}))
    if with_notebooks:
        paths = [f"{s}.ipynb" for s in (*ONCE_BEFORE, *ONCE_AFTER)]
        paths += [f"seed-{s}/{stem}.ipynb" for s in seeds for stem in PER_SEED]
        for rel in paths:
            nb = nbformat.v4.new_notebook()
            nb.cells = [
                nbformat.v4.new_markdown_cell("# Title"),
                nbformat.v4.new_code_cell("1 + 1", execution_count=1),
            ]
            p = run_dir / "notebooks" / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, p)
    return run_dir


# --------------------------------------------------------------------------- fast tests


def test_inspect_run_names_every_missing_notebook(tmp_path: Path) -> None:
    run_dir = _fake_run(tmp_path, [42])
    (run_dir / "notebooks" / "seed-42" / "04_failure_taxonomy.ipynb").unlink()
    (run_dir / "notebooks" / "06_summary.ipynb").unlink()
    with pytest.raises(book.BookError) as err:
        book.inspect_run(run_dir)
    assert "06_summary.ipynb" in str(err.value)
    assert "seed-42/04_failure_taxonomy.ipynb" in str(err.value)


def test_inspect_run_orders_seeds_as_the_recipe(tmp_path: Path) -> None:
    run_dir = _fake_run(tmp_path, [7, 42, 123])
    assert book.inspect_run(run_dir).seeds == [42, 123, 7]  # the recipe's order, not the file system's


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(book.BookError, match="config.yaml"):
        book.inspect_run(tmp_path)


def test_error_outputs_lost_figures_and_unexecuted_notebooks_are_refused(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1/0", execution_count=1)]
    nb.cells[0].outputs = [
        nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])
    ]
    with pytest.raises(book.BookError, match=r"cell 0 .*ZeroDivisionError"):
        book.check_executed(nb, tmp_path / "x.ipynb")
    lost = nbformat.v4.new_notebook()
    lost.cells = [nbformat.v4.new_code_cell("fig", execution_count=1)]
    lost.cells[0].outputs = [
        nbformat.v4.new_output("display_data", data={"text/plain": "<Figure size 800x360 with 2 Axes>"})
    ]
    with pytest.raises(
        book.BookError, match=r"cell 0 shows a figure as the text '<Figure size 800x360 with 2 Axes>'"
    ):
        book.check_executed(lost, tmp_path / "z.ipynb")
    fresh = nbformat.v4.new_notebook()
    fresh.cells = [nbformat.v4.new_code_cell("1 + 1")]
    with pytest.raises(book.BookError, match="never executed"):
        book.check_executed(fresh, tmp_path / "y.ipynb")


def test_seed_is_added_to_the_copied_title(tmp_path: Path) -> None:
    run_dir = _fake_run(tmp_path, [42])
    contents = book.inspect_run(run_dir)
    book.copy_notebooks(contents, tmp_path / "out")
    copied = nbformat.read(tmp_path / "out" / "seed-42" / "02_training.ipynb", as_version=4)
    assert copied.cells[0].source.startswith("# Seed 42 · Title")
    untouched = nbformat.read(tmp_path / "out" / "01_data_audit.ipynb", as_version=4)
    assert untouched.cells[0].source == "# Title"


def test_glue_reference_to_a_key_the_run_lacks_is_named(tmp_path: Path) -> None:
    (tmp_path / "book" / "walkthrough").mkdir(parents=True)
    page = tmp_path / "book" / "walkthrough" / "p.md"
    page.write_text(
        "Mean: {glue:text}`/book/results/06_summary.ipynb::pass1_base_mean:.2f` and {glue:text}`../results/06_summary.ipynb::nope`."
    )
    glued = {"book/results/06_summary.ipynb": {"pass1_base_mean": "80.5", "label": "np.float64(1.0)"}}
    with pytest.raises(book.BookError) as err:
        book.check_glue_references(tmp_path, glued)
    assert "'nope'" in str(err.value) and "p.md" in str(err.value)
    assert "pass1_base_mean" not in str(err.value).split("glues:")[0]
    page.write_text("{glue:text}`/book/results/06_summary.ipynb::label:.2f`")
    with pytest.raises(book.BookError, match="glue a plain Python number"):
        book.check_glue_references(tmp_path, glued)
    page.write_text("Mean: {glue:text}`/book/results/06_summary.ipynb::pass1_base_mean:.2f`.")
    assert book.check_glue_references(tmp_path, glued) == [
        (page, "book/results/06_summary.ipynb", "pass1_base_mean")
    ]


_SECTION_TITLES = {
    "": "Run",
    "model": "Model",
    "data": "Preference pairs",
    "lora": "LoRA",
    "dpo": "DPO",
    "generation": "Generation",
    "evaluation": "Evaluation",
    "audit": "Pair audit",
}


def test_recipe_table_lists_every_key_and_marks_differences_from_the_study() -> None:
    cfg = load_config("tiny-humaneval")
    text = book.recipe_markdown(cfg)
    sections = re.split(r"^### ", text, flags=re.M)
    for key, _default, help_text in describe():
        section, _, name = key.partition(".") if "." in key else ("", "", key)
        body = next(s for s in sections if s.startswith(f"{_SECTION_TITLES[section]}"))
        assert f"| `{name}` |" in body and help_text.replace("|", "\\|") in body, key
    # the tiny profile's learning rate differs from the study's: bold, the study's value after it
    assert "| `learning_rate` | **`0.0005`** (study: `5e-05`) |" in text
    assert "| `beta` | `0.1` |" in text
    paper = book.recipe_markdown(load_config("paper"))
    assert "`tiny.hidden_size`" not in paper  # a Hub model has no tiny shape


def test_significance_never_prints_nan() -> None:
    text = book.significance_markdown(
        {"pass1_base_mean": "0.0", "pass1_tuned_mean": "0.0", "se_one_run_pp": "0.0", "mde_pp": "nan"}
    )
    assert "nan" not in text.lower().replace("::", " ")
    assert "mde_pp" not in text
    assert "06_summary.ipynb::pass1_base_mean:.2f" in text
    assert "edge of the scale" in text
    full = book.significance_markdown(
        {"pass1_base_mean": "80.5", "pass1_tuned_mean": "83.9", "se_one_run_pp": "3.1", "mde_pp": "8.7"}
    )
    assert "::se_one_run_pp:.2f" in full and "::mde_pp:.2f" in full and "edge of the scale" not in full


def test_outcome_table_comes_from_the_executor() -> None:
    from idfu_lab.outcomes import DESCRIPTIONS, Outcome

    text = book.outcomes_markdown()
    assert (
        text.index("`NAME_ERROR`")
        < text.index("`ASSERTION_FAIL`")
        < text.index("`TYPE_ERROR`")
        < text.index("`PASS`")
    )
    for outcome in Outcome:
        assert DESCRIPTIONS[outcome].split("(")[0].strip() in text


def test_latest_run_is_the_most_recently_executed(tmp_path: Path) -> None:
    older, newer = tmp_path / "a", tmp_path / "b"
    for d in (older, newer):
        (d / "notebooks").mkdir(parents=True)
        (d / "notebooks" / "01_data_audit.ipynb").write_text("{}")
    past = time.time() - 100
    os.utime(older / "notebooks" / "01_data_audit.ipynb", (past, past))
    (tmp_path / "empty").mkdir()
    assert book.latest_run(tmp_path) == newer
    with pytest.raises(book.BookError, match="no run"):
        book.latest_run(tmp_path / "empty")


def test_pipeline_figure(tmp_path: Path) -> None:
    from matplotlib.image import imread

    from idfu_lab.report.plots.method import PIPELINE, pipeline_figure, save_pipeline

    fig = pipeline_figure([42, 123, 7])
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {s.title for s in PIPELINE} <= texts
    assert {s.notebook for s in PIPELINE if s.notebook} <= texts
    assert "once per training seed (42, 123, 7)" in [
        t.get_text() for t in fig.axes[0].get_legend().get_texts()
    ]
    path = save_pipeline(tmp_path / "p.png", [42])
    height, width = imread(path).shape[:2]
    assert width > 1000 and height > 500


# --------------------------------------------------------------------------- the real build


@pytest.fixture(scope="module")
def built(book_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, book.BuildResult, Path]:
    root = copy_book_sources(tmp_path_factory.mktemp("book"))
    result = book.build(book_run, root=root)
    return root, result, book_run


@pytest.mark.slow
def test_book_builds_without_warnings_and_shows_the_run(built: tuple[Path, book.BuildResult, Path]) -> None:
    root, result, run_dir = built
    assert result.warnings == []
    html = result.html_dir
    contents = book.inspect_run(run_dir)
    for rel in contents.notebooks:
        page = html / book.RESULTS_DIR / rel.replace(".ipynb", ".html")
        assert page.exists(), page
    for s in contents.seeds:
        text = (html / book.RESULTS_DIR / f"seed-{s}" / "02_training.html").read_text()
        assert f"Seed {s} ·" in text
    # index.html reaches the first page
    assert "book/intro.html" in (html / "index.html").read_text()

    intro = (html / "book" / "intro.html").read_text()
    if contents.config.profile == "tiny" and contents.config.evaluation.benchmark == "mini":
        assert "Produced by the miniature on a CPU" in intro
        assert "not that DPO fixes Qwen2.5-Coder" in intro
    elif contents.config.profile == "tiny":
        assert "Produced by a tiny model on a CPU" in intro
        assert "exercise the machinery only" in intro

    method = (html / "book" / "method.html").read_text()
    img = re.search(r'<img alt="(Flow chart[^"]*)" src="([^"]+)"', method)
    assert img, "the pipeline figure with its alt text"
    assert (html / "book" / img.group(2)).resolve().exists()
    assert "figcaption" in method

    # numbers are pasted from the notebooks' glue, formatted as the page asks
    summary_nb = nbformat.read(run_dir / "notebooks" / "06_summary.ipynb", as_version=4)
    values = book.glue_values(summary_nb)
    significance = (html / "book" / "walkthrough" / "significance.html").read_text()
    expected = format(float(values["pass1_base_mean"]), ".2f")
    assert re.search(rf'<span class="pasted-text">{re.escape(expected)}</span>', significance)
    assert "nan" not in re.sub(r"<[^>]+>", "", significance).lower().split()

    # the walkthrough quotes the first seed's own numbers, pasted the same way
    seed = contents.seeds[0]
    evaluation = book.glue_values(
        nbformat.read(contents.notebooks[f"seed-{seed}/03_evaluation.ipynb"], as_version=4)
    )
    verdicts = (html / "book" / "walkthrough" / "verdicts.html").read_text()
    pasted = re.findall(r'<span class="pasted-text">([^<]*)</span>', verdicts)
    assert format(float(evaluation["pass1_tuned"]), ".2f") in pasted
    assert f"Seed {seed}" in verdicts and f"seed-{seed}/03_evaluation.html" in verdicts
    overview = (html / "book" / "_generated" / "results.html").read_text()
    assert overview.count('class="pasted-text"') >= len(contents.seeds) * 2  # base and tuned pass@1 per seed

    repro = (html / "book" / "reproducibility.html").read_text()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config_hash"] in repro


@pytest.mark.slow
def test_built_book_renders_in_chromium(built: tuple[Path, book.BuildResult, Path], tmp_path: Path) -> None:
    from idfu_lab.report import bookcheck

    if bookcheck.find_chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the browser check is skipped")
    root, _result, run_dir = built
    report = bookcheck.check_book(run_dir, root=root, shots=tmp_path / "shots")
    assert report.ok, "\n".join(report.problems())
    contents = book.inspect_run(run_dir)
    checked = {p.docname for p in report.pages}
    assert {"index", "book/intro", "book/walkthrough/verdicts", "book/results/06_summary"} <= checked
    assert {f"book/results/seed-{s}/03_evaluation" for s in contents.seeds} <= checked
    for page in report.pages:
        assert Path(page.screenshot).stat().st_size > 10_000
    method = next(p for p in report.pages if p.docname == "book/method")
    assert method.content_images >= 1 and not method.images_without_alt
    assert json.loads((tmp_path / "shots" / "report.json").read_text())["ok"] is True


def test_first_page_note_follows_the_profile(tmp_path: Path) -> None:
    run_dir = _fake_run(tmp_path, [42])
    contents = book.inspect_run(run_dir)
    tiny = book.run_note_markdown(contents)
    assert "Produced by a tiny model on a CPU" in tiny and "exercise the machinery only" in tiny
    contents.config = load_config("tiny")  # the miniature: real effects, habits put there by its warm-up
    miniature = book.run_note_markdown(contents)
    assert "Produced by the miniature on a CPU" in miniature and "mini's 164 eval problems" in miniature
    assert "not that DPO fixes Qwen2.5-Coder" in miniature
    contents.config = load_config("paper")
    contents.manifest["device"] = {"cuda": True, "gpu": "NVIDIA GeForce RTX 4060"}
    paper = book.run_note_markdown(contents)
    assert "tiny" not in paper.lower().replace(contents.name, "")
    assert "`Qwen/Qwen2.5-Coder-3B-Instruct`" in paper and "NVIDIA GeForce RTX 4060" in paper


def test_provenance_says_when_the_tree_was_dirty(tmp_path: Path) -> None:
    run_dir = _fake_run(tmp_path, [42])
    contents = book.inspect_run(run_dir)
    contents.manifest.update(
        git={"sha": "0123abc", "dirty": True},
        packages={"trl": "1.16.0", "bitsandbytes": None},
        data_hashes={"humaneval": "f" * 64},
        steps={"notebook:01_data_audit": {"finished": "2026-01-01T00:00:00+00:00", "seconds": 14.5}},
    )
    text = book.provenance_markdown(contents)
    assert "`0123abc` — **dirty**" in text
    assert "| `trl` | `1.16.0` |" in text and "| `bitsandbytes` | not installed |" in text
    assert "| run | `notebook:01_data_audit` | 2026-01-01T00:00:00+00:00 | 14.5 |" in text
    contents.manifest["git"] = {"sha": None, "dirty": None}
    assert "not recorded" in book.provenance_markdown(contents)


def test_walkthrough_names_the_annotation_columns_and_labels_of_the_code() -> None:
    from idfu_lab.analysis.annotate import COLUMNS
    from idfu_lab.analysis.delta import LABELS

    page = (REPO / "book" / "walkthrough" / "delta_tracing.md").read_text()
    table = page[page.index("| column | what it holds |") :].split("\n\n")[0]
    assert tuple(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M)) == COLUMNS
    for label in LABELS:
        assert f"`{label}`" in page, label


def test_figure_labels_are_unique_per_seed(tmp_path: Path) -> None:
    """A per-seed notebook appears once per seed: its named figures must not collide in Sphinx."""
    run_dir = _fake_run(tmp_path, [42, 7])
    contents = book.inspect_run(run_dir)
    for s in (42, 7):
        path = run_dir / "notebooks" / f"seed-{s}" / "02_training.ipynb"
        nb = nbformat.read(path, as_version=4)
        cell = nbformat.v4.new_code_cell("1")
        cell.metadata["mystnb"] = {"figure": {"caption": "c", "name": "fig-train-curves"}}
        nb.cells.append(cell)
        nbformat.write(nb, path)
    book.copy_notebooks(contents, tmp_path / "out")
    names = {
        s: nbformat.read(tmp_path / "out" / f"seed-{s}" / "02_training.ipynb", as_version=4)
        .cells[-1]
        .metadata["mystnb"]["figure"]["name"]
        for s in (42, 7)
    }
    assert names == {42: "seed-42-fig-train-curves", 7: "seed-7-fig-train-curves"}
