"""The book: generated pages from a run, the checks that guard them, and a real `jupyter-book` build.

The slow tests build the book from the tiny demo run (the ``demo_run`` fixture: the whole pipeline on
two seeds; or the run named by ``$IDFU_LAB_TEST_RUN``) in a copy of the book's sources, with ``-W -n``,
and read the HTML it produced; where chromium and chromedriver are installed they also open every
page in headless Chromium (``tools/book_check.py``).
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
    for name in ("_config.yml", "_toc.yml", "_toc_compare.yml"):
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
    run_dir.mkdir(parents=True)
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


def test_copies_show_the_note_under_the_title_the_parameters_once_and_no_glue_plumbing(
    tmp_path: Path,
) -> None:
    run_dir = _fake_run(tmp_path, [42])
    path = run_dir / "notebooks" / "seed-42" / "03_evaluation.ipynb"
    nb = nbformat.read(path, as_version=4)
    cells = nbformat.v4
    nb.cells = [
        cells.new_markdown_cell("# Evaluation: base vs adapter\n\nThe page's first paragraph."),
        cells.new_code_cell("seed: int = 42  # a seed", execution_count=1, metadata={"tags": ["parameters"]}),
        cells.new_code_cell(
            f'# Parameters\nseed = 42\nrun_dir = "{run_dir}"\n',
            execution_count=2,
            metadata={"tags": ["injected-parameters"]},
        ),
        cells.new_code_cell('glue("fig", plots.figure(x))', execution_count=3),
        cells.new_code_cell('for k in ("a", "b"):\n    glue(k, 1, display=False)', execution_count=4),
        cells.new_code_cell("table = compute()\ntable", execution_count=5),
    ]
    nb.cells[3].outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="})]
    nbformat.write(nb, path)
    contents = book.inspect_run(run_dir)
    book.copy_notebooks(contents, tmp_path / "out", note=book.results_note(REPO, contents))
    copied = nbformat.read(tmp_path / "out" / "seed-42" / "03_evaluation.ipynb", as_version=4)
    sources = [c.source for c in copied.cells]
    tags = [c.metadata.get("tags", []) for c in copied.cells]
    assert sources[0] == "# Seed 42 · Evaluation: base vs adapter"
    assert "idfu-toy-note" in sources[1] and "exercise the machinery only" in sources[1]
    assert sources[2] == "The page's first paragraph."
    assert "remove-cell" in tags[3]  # the defaults: the injected values are shown instead
    assert str(run_dir) not in sources[4] and 'run_dir = "…/run"' in sources[4]
    assert "remove-input" in tags[5] and "remove-cell" in tags[6]
    assert not {"remove-cell", "remove-input"} & set(tags[7])
    audit = nbformat.read(tmp_path / "out" / "01_data_audit.ipynb", as_version=4)
    assert "idfu-toy-note" in audit.cells[1].source  # every results page, in the same place


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


def _render(
    tmp_path: Path, seeds: list[int], glued: dict[str, dict[str, str]] | None = None
) -> dict[str, str]:
    """The run-dependent pages of a fake run, from the committed templates, with these glued values."""
    contents = book.inspect_run(_fake_run(tmp_path, seeds))
    keys = book.copy_notebooks(contents, tmp_path / "out")
    for rel, values in (glued or {}).items():
        keys[rel] = values
    return book.render_pages(REPO, contents, keys)


def test_no_prose_in_python() -> None:
    """The book's prose lives in book/*.md and the notebooks: the report package holds no page text."""
    import ast as _ast

    tree = _ast.parse((REPO / "idfu_lab" / "report" / "book.py").read_text())
    docstrings = {
        id(node.body[0].value)
        for node in _ast.walk(tree)
        if isinstance(node, _ast.Module | _ast.ClassDef | _ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], _ast.Expr)
    }
    strings = [
        node.value
        for node in _ast.walk(tree)
        if isinstance(node, _ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]
    # Error messages and the markup of a single reference only: no Markdown sentence for a page.
    assert strings
    for text in strings:
        assert len(text.split()) <= 25, text[:80]
        assert not re.search(r"\*\*|^:::", text, flags=re.M), text[:80]


def test_recipe_table_lists_every_key_and_marks_differences_from_the_study(tmp_path: Path) -> None:
    text = _render(tmp_path, [42])["recipe.md"]
    sections = re.split(r"^### ", text, flags=re.M)
    for key, _default, help_text in describe():
        section, _, name = key.partition(".") if "." in key else ("", "", key)
        body = next(s for s in sections if s.startswith(f"{_SECTION_TITLES[section]}"))
        assert f"| `{name}` |" in body and help_text.replace("|", "\\|") in body, key
    # the tiny profile's learning rate differs from the study's: bold, the study's value after it
    assert "| `learning_rate` | **`0.0005`** (study: `5e-05`) |" in text
    assert "| `beta` | `0.1` |" in text
    # the study ran no tiny model: its tiny shape is not a value to compare against
    assert "| `tiny.hidden_size` | `128` |" in text and "(study: `shapes`)" not in text
    paper = book.recipe_context(load_config("paper"))
    keys = {row["key"] for s in paper["sections"] for row in s["rows"]}
    assert "tiny.hidden_size" not in keys  # a Hub model has no tiny shape


def test_significance_never_prints_nan(tmp_path: Path) -> None:
    nan_run = {
        "pass1_base_mean": "0.0",
        "pass1_tuned_mean": "0.0",
        "se_one_run_pp": "0.0",
        "mde_pp": "nan",
        "mde_paired_pp": "nan",
        "discordance_pct": "0.0",
        "pooled_diff_pp": "0.0",
        "pooled_ci_low_pp": "nan",
        "pooled_ci_high_pp": "nan",
        "pooled_p_value": "nan",
    }
    text = _render(tmp_path / "a", [42], {"06_summary.ipynb": nan_run})["significance_run.md"]
    assert "nan" not in text.lower().replace("::", " ")
    assert "mde_pp" not in text and "pooled_p_value" not in text
    assert "06_summary.ipynb::pass1_base_mean:.2f" in text
    assert "edge of the scale" in text and "nothing to test" in text
    full = {
        "pass1_base_mean": "80.5",
        "pass1_tuned_mean": "83.9",
        "se_one_run_pp": "3.1",
        "mde_pp": "8.7",
        "mde_paired_pp": "4.2",
        "discordance_pct": "9.8",
        "pooled_diff_pp": "3.4",
        "pooled_ci_low_pp": "1.0",
        "pooled_ci_high_pp": "5.8",
        "pooled_p_value": "0.004",
    }
    text = _render(tmp_path / "b", [42], {"06_summary.ipynb": full})["significance_run.md"]
    assert "::se_one_run_pp:.2f" in text and "::mde_pp:.2f" in text and "::pooled_p_value:.3g" in text
    assert "edge of the scale" not in text and "nothing to test" not in text


def test_results_overview_follows_the_seed_order_and_words_undefined_cells(tmp_path: Path) -> None:
    per_seed = {
        "pass1_base": "0.0",
        "pass1_tuned": "0.0",
        "diff": "0.0",
        "mcnemar_p": "1.0",
        "discordant": "0",
    }
    glued = {f"seed-{s}/03_evaluation.ipynb": per_seed for s in (7, 42, 123)}
    text = _render(tmp_path, [7, 42, 123], glued)["results.md"]
    rows = re.findall(r"^\| (\d+) \|", text, flags=re.M)
    assert rows == ["42", "123", "7"]  # the recipe's order (the fake run's config: 42, 123, 7)
    assert "McNemar p" in text and "| — |" in text and "nothing to test" in text
    assert "mcnemar_p" not in text  # p = 1 of no discordant problem is not pasted
    assert "- {doc}`Summary over seeds" in text and "\n\nPer seed, as each" in text
    assert (
        text.index("seed-42/02_training")
        < text.index("seed-123/02_training")
        < text.index("seed-7/02_training")
    )


def test_outcome_table_comes_from_the_executor(tmp_path: Path) -> None:
    from idfu_lab.outcomes import DESCRIPTIONS, Outcome

    text = _render(tmp_path, [42])["outcomes.md"]
    assert (
        text.index("`NAME_ERROR`")
        < text.index("`ASSERTION_FAIL`")
        < text.index("`TYPE_ERROR`")
        < text.index("`PASS`")
    )
    for outcome in Outcome:
        assert DESCRIPTIONS[outcome].split("(")[0].strip() in text


def test_a_template_quoting_a_key_the_run_lacks_is_named(tmp_path: Path) -> None:
    root = copy_book_sources(tmp_path / "root")
    (root / "book" / "templates" / "extra.md").write_text(
        "{{ nb('06_summary').paste('no_such_key', '.2f') }}\n"
    )
    contents = book.inspect_run(_fake_run(tmp_path, [42]))
    keys = book.copy_notebooks(contents, tmp_path / "out")
    with pytest.raises(book.BookError, match="no_such_key.*06_summary.ipynb"):
        book.render_pages(root, contents, keys)
    (root / "book" / "templates" / "extra.md").write_text("{{ not_a_name }}\n")
    with pytest.raises(book.BookError, match=r"extra.md.*not_a_name"):
        book.render_pages(root, contents, keys)


def test_toc_follows_the_run_seed_order() -> None:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    names = book.toc_docnames(book.run_toc(toc, [42, 123, 7]))
    seeded = [n for n in names if "/seed-" in n]
    assert seeded == [f"book/results/seed-{s}/{nb}" for s in (42, 123, 7) for nb in PER_SEED]
    assert names.index("book/results/01_data_audit") < names.index(seeded[0])
    assert names.index(seeded[-1]) < names.index("book/results/06_summary")
    assert names[0] == "book/intro"


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
    if book.is_toy(contents.config) and contents.config.evaluation.benchmark == "mini":
        assert "Produced by the miniature on a CPU" in intro
        assert "not that DPO fixes Qwen2.5-Coder" in intro
    elif book.is_toy(contents.config):
        assert "Produced by a toy model on a CPU" in intro
        assert "exercise the machinery only" in intro
        for rel in contents.notebooks:  # every results page carries the toy note
            page = (html / book.RESULTS_DIR / rel.replace(".ipynb", ".html")).read_text()
            assert "idfu-toy-note" in page, rel
    # the book says which run it is, beside the HTML (book-check compares it with the run it is given)
    assert json.loads((html / book.STAMP_NAME).read_text()) == book.run_identity(contents)
    # the sidebar follows the run's seed order, not the file names' string order
    sidebar = re.findall(r"results/seed-(\d+)/02_training\.html", (html / "book" / "intro.html").read_text())
    assert [int(s) for s in dict.fromkeys(sidebar)] == contents.seeds

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
    assert "Plan: configs/paper.yaml" in repro and "3,085,938,688" in repro  # the paper plan, worked out


@pytest.mark.slow
def test_built_book_renders_in_chromium(built: tuple[Path, book.BuildResult, Path], tmp_path: Path) -> None:
    from test_bookcheck import bookcheck

    if bookcheck.find_chromium() is None or bookcheck.find_chromedriver() is None:
        pytest.skip("chromium or chromedriver is not installed (make book-check installs them)")
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


@pytest.mark.slow
def test_book_check_refuses_a_book_of_another_run(
    built: tuple[Path, book.BuildResult, Path], tmp_path: Path
) -> None:
    """A book built from one run must not pass as another run's book, nor write into its folder."""
    from test_bookcheck import bookcheck

    root, _result, run_dir = built
    other = tmp_path / "other"
    shutil.copytree(run_dir, other, ignore=shutil.ignore_patterns("book-check"))
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["started"] = "2000-01-01T00:00:00+00:00"  # another run of the same recipe
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(bookcheck.BookCheckError, match=r"built from another run .*\(the run: '2000-01-01"):
        bookcheck.check_book(other, root=root)
    assert not (other / "book-check").exists()


def test_first_page_note_follows_the_profile(tmp_path: Path) -> None:
    tiny = _render(tmp_path / "a", [42])["run_note.md"]
    assert "Produced by a toy model on a CPU" in tiny and "exercise the machinery only" in tiny
    contents = book.inspect_run(_fake_run(tmp_path / "m", [42]))
    contents.config = load_config("tiny")  # the miniature: real effects, habits put there by its warm-up
    keys = book.copy_notebooks(contents, tmp_path / "m-out")
    miniature = book.render_pages(REPO, contents, keys)["run_note.md"]
    assert "Produced by the miniature on a CPU" in miniature and "mini's 164 eval problems" in miniature
    assert "not that DPO fixes Qwen2.5-Coder" in miniature
    contents = book.inspect_run(_fake_run(tmp_path / "b", [42]))
    contents.config = load_config("paper")
    contents.manifest["device"] = {"cuda": True, "gpu": "NVIDIA GeForce RTX 4060"}
    keys = book.copy_notebooks(contents, tmp_path / "b" / "out")
    paper = book.render_pages(REPO, contents, keys)["run_note.md"]
    assert "tiny" not in paper.lower().replace(contents.name, "")
    assert "`Qwen/Qwen2.5-Coder-3B-Instruct`" in paper and "NVIDIA GeForce RTX 4060" in paper
    assert book.results_note(REPO, contents) == ""  # a real model's pages carry no toy note


def test_provenance_says_when_the_tree_was_dirty(tmp_path: Path) -> None:
    contents = book.inspect_run(_fake_run(tmp_path, [42]))
    contents.manifest.update(
        git={"sha": "0123abc", "dirty": True},
        packages={"trl": "1.16.0", "bitsandbytes": None},
        data_hashes={"humaneval": "f" * 64},
        started=1767225600.0,  # an epoch stamp from an older manifest is shown as ISO 8601
        steps={"notebook:01_data_audit": {"finished": "2026-01-01T00:00:00+00:00", "seconds": 14.5}},
    )
    keys = book.copy_notebooks(contents, tmp_path / "out")
    text = book.render_pages(REPO, contents, keys)["provenance.md"]
    assert "`0123abc` — **dirty**" in text
    assert "| `trl` | `1.16.0` |" in text and "| `bitsandbytes` | not installed |" in text
    assert "| run | `notebook:01_data_audit` | 2026-01-01T00:00:00+00:00 | 14.5 |" in text
    assert "| started | 2026-01-01T00:00:00+00:00 |" in text
    contents.manifest["git"] = {"sha": None, "dirty": None}
    assert "not recorded" in book.render_pages(REPO, contents, keys)["provenance.md"]


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


def test_the_paper_plan_is_kept_under_a_key_of_what_it_depends_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reproducibility page's plan comes from the cache when its key matches, and the key moves
    with the recipe and with the libraries whose code the plan runs."""
    from importlib import metadata

    monkeypatch.setenv("IDFU_LAB_CACHE", str(tmp_path / "cache"))
    key = book.paper_plan_key()
    cached = tmp_path / "cache" / "plans" / f"paper-{key}.md"
    cached.parent.mkdir(parents=True)
    cached.write_text("#### the plan as it was kept\n")
    book.paper_plan.cache_clear()
    try:
        assert book.paper_plan() == "#### the plan as it was kept\n"  # read, not recomputed
    finally:
        book.paper_plan.cache_clear()
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "0.0.1" if name == "trl" else real(name))
    assert book.paper_plan_key() != key  # another TRL: another plan
    monkeypatch.setattr(metadata, "version", real)
    recipe = tmp_path / "paper.yaml"
    recipe.write_text(Path(load_config("paper").source).read_text() + "\n# edited\n")
    monkeypatch.setattr(
        book, "load_config", lambda name: load_config(recipe) if name == "paper" else load_config(name)
    )
    assert book.paper_plan_key() != key  # another recipe: another plan
