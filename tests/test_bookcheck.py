"""The browser check: it must pass a good page and catch each way a page can fail a reader.

The pages are a small hand-made site served by the check itself, opened in real headless Chromium
(skipped, with a message, where Chromium is not installed).
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from idfu_lab.pipeline import PER_SEED
from idfu_lab.report import bookcheck

REPO = Path(__file__).resolve().parents[1]


def _page(body: str, head: str = "") -> str:
    return f"<!doctype html><html><head><meta charset='utf-8'><title>t</title>{head}</head><body><article>{body}</article></body></html>"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from matplotlib.figure import Figure

    root = tmp_path_factory.mktemp("site")
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    fig.savefig(root / "figure.png")
    pages = {
        "index.html": "<meta http-equiv='Refresh' content='0; url=good.html' />",
        "good.html": _page("<p>fine</p><img alt='a line' src='figure.png'>"),
        "broken.html": _page("<img alt='gone' src='missing.png'>"),
        "script.html": _page("<p>x</p><script>console.error('bad thing'); throw new Error('boom');</script>"),
        "external.html": _page("<p>x</p>", head="<script src='https://cdn.example.invalid/lib.js'></script>"),
        "noalt.html": _page("<img src='figure.png'>"),
    }
    for name, html in pages.items():
        (root / name).write_text(html)
    return root


def _chromium() -> str:
    exe = bookcheck.find_chromium()
    if exe is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the browser check is skipped")
    return exe


@pytest.fixture(scope="module")
def report(site: Path, tmp_path_factory: pytest.TempPathFactory) -> bookcheck.CheckReport:
    exe = _chromium()
    specs = [
        bookcheck.PageSpec("index"),
        bookcheck.PageSpec("good", min_images=1),
        bookcheck.PageSpec("broken"),
        bookcheck.PageSpec("script"),
        bookcheck.PageSpec("external"),
        bookcheck.PageSpec("absent"),
        bookcheck.PageSpec("noalt", min_images=2),
    ]
    return bookcheck.check_pages(site, specs, shots=tmp_path_factory.mktemp("shots"), executable=exe)


def _page_result(report: bookcheck.CheckReport, name: str) -> bookcheck.PageResult:
    return next(p for p in report.pages if p.docname == name)


@pytest.mark.slow
def test_a_good_page_passes_and_is_photographed(report: bookcheck.CheckReport) -> None:
    good = _page_result(report, "good")
    assert good.ok, good.problems
    assert good.status == 200 and good.content_images == 1 and not good.broken_images
    png = Path(good.screenshot).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    index = _page_result(report, "index")
    assert index.ok and index.final_url.endswith("/good.html")  # the redirect is followed


@pytest.mark.slow
def test_each_failure_is_caught(report: bookcheck.CheckReport) -> None:
    broken = _page_result(report, "broken")
    assert broken.broken_images and broken.broken_images[0].endswith("/missing.png")
    assert any("missing.png (HTTP 404)" in f for f in broken.failed_requests)

    script = _page_result(report, "script")
    assert "bad thing" in script.console_errors
    assert any("boom" in e for e in script.console_errors)

    external = _page_result(report, "external")
    assert external.external_requests == ["https://cdn.example.invalid/lib.js"]
    assert not external.ok

    absent = _page_result(report, "absent")
    assert absent.status == 404 and "page missing (HTTP 404)" in absent.problems

    noalt = _page_result(report, "noalt")
    assert noalt.images_without_alt  # reported, for the notebooks' authors to fix
    assert not any("alt text" in p for p in noalt.problems)
    noalt.require_alt = True
    assert any(p.startswith("figure without alt text: ") for p in noalt.problems)
    assert any("shows 1 image(s), its notebook has 2 figure output(s)" in p for p in noalt.problems)

    assert not report.ok
    assert {p.split(":")[0] for p in report.problems()} == {"broken", "script", "external", "absent", "noalt"}


@pytest.mark.slow
def test_report_file(report: bookcheck.CheckReport) -> None:
    shots = Path(_page_result(report, "good").screenshot).parent
    data = json.loads((shots / "report.json").read_text())
    assert data["ok"] is False
    assert [p["docname"] for p in data["pages"]][:2] == ["index", "good"]
    assert "page missing (HTTP 404)" in next(p for p in data["pages"] if p["docname"] == "absent")["problems"]


def test_expected_pages_follow_the_toc_and_the_recipe_seed_order(tmp_path: Path) -> None:
    pages = bookcheck.expected_pages(REPO, [42, 123, 7], PER_SEED)
    names = [p.docname for p in pages]
    assert names[0] == "book/intro"
    seeded = [n for n in names if "/seed-" in n]
    assert seeded == [f"book/results/seed-{s}/{nb}" for s in (42, 123, 7) for nb in PER_SEED]
    assert names.index("book/results/01_data_audit") < names.index(seeded[0])
    assert names.index(seeded[-1]) < names.index("book/results/06_summary")
    for required in ("book/method", "book/walkthrough/verdicts", "book/reproducibility", "book/limitations"):
        assert required in names


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
    assert bookcheck._figure_outputs(path) == 2


def test_no_browser_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "index.html").write_text("<p>x</p>")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("IDFU_LAB_CHROMIUM", raising=False)
    with pytest.raises(bookcheck.BookCheckError, match="apt-get install chromium"):
        bookcheck.check_pages(tmp_path, [bookcheck.PageSpec("index")])
    with pytest.raises(bookcheck.BookCheckError, match="build the book first"):
        bookcheck.check_pages(tmp_path / "nowhere", [])
