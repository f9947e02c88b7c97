"""The browser check (``tools/book_check.py``): it must pass a good page and catch each way a page can
fail a reader.

The pages are a small hand-made site served by the check itself, opened in real headless Chromium
through Selenium (skipped, with a message, where chromium or chromedriver is not installed:
``make book-check`` installs both).
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from helpers import load_script

from idfu_lab.pipeline import PER_SEED

REPO = Path(__file__).resolve().parents[1]


bookcheck = load_script(REPO / "tools" / "book_check.py")

#: The article's width in the pages below: a table wider than it must be caught.
_STYLE = "<style>body{margin:0} article{width:600px;margin:0 40px}</style>"


def _page(body: str, head: str = "", sidebar: str = "", nav: str = "") -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>t</title>{_STYLE}{head}</head><body>"
        f"<div class='bd-sidebar-primary'>{sidebar}</div><article class='bd-article'>{body}{nav}</article>"
        "</body></html>"
    )


def _wide_table(columns: int) -> str:
    head = "".join(f"<th>a rather long column header {i}</th>" for i in range(columns))
    return f"<table><tr>{head}</tr></table>"


NOTE = "<div class='admonition warning idfu-toy-note'><p>toy</p></div>"
SIDEBAR_OK = "".join(f"<a href='book/results/seed-{s}/02_training.html'>s</a>" for s in (42, 123, 7))
SIDEBAR_SORTED = "".join(f"<a href='book/results/seed-{s}/02_training.html'>s</a>" for s in (123, 42, 7))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from matplotlib.figure import Figure

    root = tmp_path_factory.mktemp("site")
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    fig.savefig(root / "figure.png")
    nav = "<a class='left-prev' href='index.html'>p</a><a class='right-next' href='broken.html'>n</a>"
    pages = {
        "index.html": "<meta http-equiv='Refresh' content='0; url=good.html' />",
        "good.html": _page(
            f"<h1>Good</h1>{NOTE}<p>fine, p = 0.031</p><img alt='a line' src='figure.png'>"
            "<div class='idfu-scroll' style='overflow-x:auto'>"
            + _wide_table(12)
            + "</div><div class='highlight'><pre>x = nan  # code</pre></div>",
            sidebar=SIDEBAR_OK,
            nav=nav,
        ),
        "broken.html": _page("<h1>B</h1><img alt='gone' src='missing.png'>"),
        "script.html": _page("<p>x</p><script>console.error('bad thing'); throw new Error('boom');</script>"),
        "external.html": _page("<p>x</p>", head="<script src='https://cdn.example.invalid/lib.js'></script>"),
        "noalt.html": _page("<img src='figure.png'>"),
        "reader.html": _page(
            "<h1>Seed 42 · Summary</h1><p>intro first</p>" + NOTE + "<p>p = nan</p>"
            "<table><tr><td>NaN</td></tr></table><div style='overflow-x:auto'>"
            + _wide_table(12)
            + "</div><p>written in /build/machine/repo/runs</p>",
            sidebar=SIDEBAR_SORTED,
            nav="<a class='right-next' href='good.html'>n</a>",
        ),
        "nonote.html": _page("<h1>Results</h1><p>no note</p>"),
    }
    for name, html in pages.items():
        (root / name).write_text(html)
    return root


def _browser() -> None:
    if bookcheck.find_chromium() is None or bookcheck.find_chromedriver() is None:
        pytest.skip("chromium or chromedriver is not installed (make book-check installs them)")


@pytest.fixture(scope="module")
def report(site: Path, tmp_path_factory: pytest.TempPathFactory):
    _browser()
    specs = [
        bookcheck.PageSpec("index"),
        bookcheck.PageSpec("good", min_images=1, needs_note=True, prev="index", next="broken"),
        bookcheck.PageSpec("broken"),
        bookcheck.PageSpec("script"),
        bookcheck.PageSpec("external"),
        bookcheck.PageSpec("absent"),
        bookcheck.PageSpec("noalt", min_images=2),
        bookcheck.PageSpec("reader", needs_note=True, prev=None, next="nonote"),
        bookcheck.PageSpec("nonote", needs_note=True),
    ]
    expect = bookcheck.Expect(seeds=[42, 123, 7], forbidden=["/build/machine/repo"])
    return bookcheck.check_pages(site, specs, expect, shots=tmp_path_factory.mktemp("shots"))


def _page_result(report, name: str):
    return next(p for p in report.pages if p.docname == name)


@pytest.mark.slow
def test_a_good_page_passes_and_is_photographed(report) -> None:
    good = _page_result(report, "good")
    assert good.ok, good.problems  # a wide table that scrolls in its own box, 'nan' in code: fine
    assert good.status == 200 and good.content_images == 1 and not good.broken_images
    assert good.sidebar_seeds == [42, 123, 7]
    png = Path(good.screenshot).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    index = _page_result(report, "index")
    assert index.ok and index.final_url.endswith("/good.html")  # the redirect is followed


@pytest.mark.slow
def test_each_failure_is_caught(report) -> None:
    broken = _page_result(report, "broken")
    assert broken.broken_images and broken.broken_images[0].endswith("/missing.png")
    assert any("missing.png (HTTP 404)" in f for f in broken.failed_requests)

    script = _page_result(report, "script")
    assert any("bad thing" in e for e in script.console_errors)
    assert any("boom" in e for e in script.console_errors)

    external = _page_result(report, "external")
    assert external.external_requests == ["https://cdn.example.invalid/lib.js"]
    assert not external.ok

    absent = _page_result(report, "absent")
    assert absent.status == 404 and "page missing (HTTP 404)" in absent.problems

    noalt = _page_result(report, "noalt")
    assert any(p.startswith("image without alt text: ") for p in noalt.problems)
    assert any("shows 1 image(s), its notebook has 2 figure output(s)" in p for p in noalt.problems)

    assert not report.ok
    assert {p.split(":")[0] for p in report.problems()} == {
        "broken",
        "script",
        "external",
        "absent",
        "noalt",
        "reader",
        "nonote",
    }


@pytest.mark.slow
def test_what_a_reader_notices_is_caught(report) -> None:
    reader = _page_result(report, "reader")
    problems = "\n".join(reader.problems)
    assert len(reader.nan_texts) == 2 and "p = nan" in reader.nan_texts[0]
    assert "table wider than the content column" in problems and "600 px column" in problems
    assert "absolute path of the build machine: /build/machine/repo" in problems
    assert "not directly under the title" in reader.note_missing
    assert "the sidebar lists seeds [123, 42, 7], the run's order is [42, 123, 7]" in problems
    assert "Next goes to good, expected nonote" in problems and "Previous goes to None" not in problems
    nonote = _page_result(report, "nonote")
    assert nonote.note_missing == "no note on the page"


@pytest.mark.slow
def test_report_file(report) -> None:
    shots = Path(_page_result(report, "good").screenshot).parent
    data = json.loads((shots / "report.json").read_text())
    assert data["ok"] is False
    assert [p["docname"] for p in data["pages"]][:2] == ["index", "good"]
    assert "page missing (HTTP 404)" in next(p for p in data["pages"] if p["docname"] == "absent")["problems"]


def test_expected_pages_follow_the_toc_and_the_run_seed_order() -> None:
    pages = bookcheck.expected_pages(REPO, [42, 123, 7], toy=True)
    names = [p.docname for p in pages]
    assert names[:2] == ["index", "book/intro"]
    seeded = [n for n in names if "/seed-" in n]
    assert seeded == [f"book/results/seed-{s}/{nb}" for s in (42, 123, 7) for nb in PER_SEED]
    for required in ("book/method", "book/walkthrough/verdicts", "book/reproducibility", "book/limitations"):
        assert required in names
    by_name = {p.docname: p for p in pages}
    first = by_name[seeded[0]]
    assert first.prev == "book/results/01_data_audit" and first.next == seeded[1]
    assert by_name["book/results/06_summary"].needs_note and not by_name["book/method"].needs_note
    assert not any(p.needs_note for p in bookcheck.expected_pages(REPO, [42], toy=False))


def test_figure_outputs_counts_figures_lost_as_text(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    shown = nbformat.v4.new_code_cell("fig", execution_count=1)
    shown.outputs = [
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}),
        nbformat.v4.new_output("display_data", data={"text/plain": "<Figure size 640x480 with 1 Axes>"}),
        nbformat.v4.new_output("display_data", data={"application/papermill.record/image/png": "x"}),
    ]
    hidden = nbformat.v4.new_code_cell("fig", execution_count=2)
    hidden.metadata["tags"] = ["remove-output"]
    hidden.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo="})]
    nb.cells = [shown, hidden]
    path = tmp_path / "n.ipynb"
    nbformat.write(nb, path)
    assert bookcheck.figure_outputs(path) == 2


def test_no_browser_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "index.html").write_text("<p>x</p>")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("IDFU_LAB_CHROMIUM", raising=False)
    monkeypatch.delenv("IDFU_LAB_CHROMEDRIVER", raising=False)
    with pytest.raises(bookcheck.BookCheckError, match="apt-get install chromium chromium-driver"):
        bookcheck.check_pages(tmp_path, [bookcheck.PageSpec("index")])
    with pytest.raises(bookcheck.BookCheckError, match="build the book first"):
        bookcheck.check_pages(tmp_path / "nowhere", [])


def test_forbidden_paths_are_absolute_and_longest_first(tmp_path: Path) -> None:
    paths = bookcheck.forbidden_paths(tmp_path, tmp_path / "runs" / "tiny", "/")
    assert paths == [str((tmp_path / "runs" / "tiny").resolve()), str(tmp_path.resolve())]


def test_the_command_runs_the_tool_and_refuses_a_book_that_is_not_the_runs(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """``idfu-lab book-check`` runs tools/book_check.py; a run whose book was never built is refused
    before any browser starts, and nothing is written into the run's folder."""
    from test_book import _fake_run

    from idfu_lab.cli import main

    run_dir = _fake_run(tmp_path, [42])
    assert main(["book-check", "--run", str(run_dir)]) == 2
    err = capfd.readouterr().err
    assert "book-check:" in err and ("is missing: build the book" in err or "built from another run" in err)
    assert not (run_dir / "book-check").exists()
