"""Open the built book in headless Chromium and fail on what a reader would notice.

``make book-check`` and ``idfu-lab book-check`` run this script. Selenium drives Debian's ``chromium``
through its matching ``chromedriver`` (both installed by the Makefile; the driver's path is given, so
Selenium Manager never runs and nothing is downloaded). ``_build/html`` is served on a local port and
every page ``_toc.yml`` promises for the run is opened at 1280 px. A page fails when:

- it is missing (HTTP status other than 200; the index's redirect must land on the first page);
- an image is broken, has no alt text, or a results page shows fewer images than its notebook has
  figure outputs;
- the console shows an error, a request fails, or a request leaves the machine (the book reads offline);
- its text shows ``nan``/``NaN``/``<NA>`` outside code cells: an undefined statistic must be said in words;
- a table is wider than the content column (only a box made to scroll, ``.idfu-scroll``, such as the
  delta's side-by-side code, may hold a wider one), or the page scrolls sideways;
- it shows an absolute path of the machine that built it (the repository, the run directory, the home
  folder or the Python environment);
- on a toy run, a results page lacks the toy-model note directly under its title;
- the sidebar lists the seeds in another order than the run's, or Next/Previous skip out of the
  book's reading order.

Before opening anything it checks that the built book belongs to the run it was given (the run
identity ``idfu-lab book`` publishes beside the HTML: name, recipe hash, start time, seeds), so a
book of another run is refused and no screenshot lands in the wrong run directory. Each page is saved
as a screenshot in ``<run>/book-check/`` with ``report.json`` beside them.

Usage: ``python tools/book_check.py [--run RUN_DIR] [--shots DIR] [--root BOOK_ROOT]``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import logging
import os
import shutil
import sys
import threading
import time
from base64 import b64decode
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import nbformat

logger = logging.getLogger("book_check")

#: Executables tried in order (``$IDFU_LAB_CHROMIUM`` / ``$IDFU_LAB_CHROMEDRIVER`` first).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMEDRIVER_NAMES = ("chromedriver",)
#: Chromium's flags: headless, no sandbox (root in containers), nothing phoning home.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
)
VIEWPORT = (1280, 900)
#: Screenshots stop here: a long notebook page is still readable, the files stay small.
MAX_SCREENSHOT_HEIGHT = 15000
PAGE_TIMEOUT_S = 30.0
#: Note classes (``book/templates/results_note.md`` and ``run_note.md``) a toy run's results pages carry.
NOTE_CLASSES = ("idfu-toy-note", "idfu-run-note")


class BookCheckError(Exception):
    """The check could not run (no browser, no built book, a book of another run)."""


# --------------------------------------------------------------------------- what to expect


@dataclass
class PageSpec:
    """A page the book must have, and what it must show."""

    docname: str  # e.g. book/results/seed-42/04_failure_taxonomy
    min_images: int = 0  # images the page must show (figure outputs of its notebook)
    needs_note: bool = False  # a toy run's results page: the toy-model note right under the title
    prev: str | None = None  # the docname Previous must link to (None: not checked)
    next: str | None = None  # the docname Next must link to

    @property
    def html(self) -> str:
        return f"{self.docname}.html"

    @property
    def shot_name(self) -> str:
        return self.docname.removeprefix("book/").replace("/", "__") + ".png"


@dataclass
class Expect:
    """What every page of this book must respect."""

    seeds: list[int] = field(default_factory=list)  # the sidebar's seed order ([]: not checked)
    forbidden: list[str] = field(default_factory=list)  # absolute paths no page may show


def figure_outputs(path: Path) -> int:
    """How many figure outputs a notebook shows (outputs of removed cells, or glued with display=False, are not)."""
    from idfu_lab.report.book import LOST_FIGURE

    if not path.exists():
        return 0
    nb = nbformat.read(path, as_version=4)
    count = 0
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type != "code" or "remove-output" in tags or "remove-cell" in tags:
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") not in ("display_data", "execute_result"):
                continue
            data = out.get("data", {})
            if any(k.startswith("image/") for k in data) or LOST_FIGURE.match(
                str(data.get("text/plain", "")).strip()
            ):
                count += 1  # a figure lost as text still counts: the page must show it
    return count


def expected_pages(
    root: Path, seeds: Sequence[int], *, toy: bool, run_dir: Path | None = None
) -> list[PageSpec]:
    """Every page ``_toc.yml`` promises for a run with these seeds, in reading order, with its neighbours.

    Globs are expanded against what the run *should* have (each seed × each per-seed notebook, in the
    run's seed order), not against what the build produced, so a missing page is reported missing.
    """
    import yaml

    from idfu_lab.pipeline import PER_SEED, plan_for
    from idfu_lab.report.book import COMPARE_TOC, is_compare, run_toc, toc_docnames

    comparing = run_dir is not None and is_compare(run_dir)  # a comparison's book has its own contents
    source = yaml.safe_load((root / (COMPARE_TOC if comparing else "_toc.yml")).read_text())
    per_seed = plan_for(run_dir)[1] if run_dir is not None else PER_SEED
    names = toc_docnames(run_toc(source, seeds, per_seed=per_seed))
    pages = [PageSpec("index")]
    for i, name in enumerate(names):
        results = name.startswith("book/results/") or name == "book/_generated/results"
        pages.append(
            PageSpec(
                name,
                min_images=figure_outputs(root / f"{name}.ipynb"),
                needs_note=toy and results,
                prev=names[i - 1] if i > 0 else None,
                next=names[i + 1] if i + 1 < len(names) else None,
            )
        )
    return pages


def forbidden_paths(*paths: str | Path) -> list[str]:
    """The absolute paths of this machine a page must never show (each resolved, longest first)."""
    found = set()
    for p in paths:
        text = str(Path(p).resolve())
        if text not in ("/", "") and len(text) > 4:
            found.add(text)
    return sorted(found, key=len, reverse=True)


# --------------------------------------------------------------------------- serving and the browser


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        logger.debug("http: " + format, *args)


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The browser cancels requests when it navigates on (a broken pipe): not the book's problem.
        logger.debug("http: connection from %s ended early", client_address, exc_info=True)


class StaticServer:
    """``_build/html`` on 127.0.0.1, on a free port, in a thread (the published site, locally)."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = _QuietServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self) -> StaticServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _find(env: str, names: Sequence[str]) -> str | None:
    given = os.environ.get(env)
    if given:
        return given if Path(given).exists() else shutil.which(given)
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def find_chromium() -> str | None:
    """The Chromium executable (``$IDFU_LAB_CHROMIUM``, then the usual names on PATH), or None."""
    return _find("IDFU_LAB_CHROMIUM", CHROMIUM_NAMES)


def find_chromedriver() -> str | None:
    """The chromedriver matching it (``$IDFU_LAB_CHROMEDRIVER``, then ``chromedriver`` on PATH), or None."""
    return _find("IDFU_LAB_CHROMEDRIVER", CHROMEDRIVER_NAMES)


def start_browser(executable: str | None = None, driver: str | None = None) -> Any:
    """Headless Chromium under Selenium, with console and network logging, at :data:`VIEWPORT`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    exe, drv = executable or find_chromium(), driver or find_chromedriver()
    if not exe or not drv:
        missing = "Chromium" if not exe else "chromedriver"
        raise BookCheckError(
            f"{missing} is not installed (looked for {', '.join(CHROMIUM_NAMES if not exe else CHROMEDRIVER_NAMES)}); "
            "on Debian/Ubuntu: apt-get install chromium chromium-driver (make book-check does it)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = exe
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=drv))
    browser.set_page_load_timeout(PAGE_TIMEOUT_S)
    browser.set_script_timeout(PAGE_TIMEOUT_S)
    browser.execute_cdp_cmd("Network.enable", {})
    # The cache stays on, as in a reader's browser: the theme's scripts and styles are fetched and
    # compiled once, not on every page. What fails is never cached, so a missing image or style, or
    # a request leaving the machine, is still seen on every page that asks for it.
    browser.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": False})
    _viewport(browser, VIEWPORT[1])
    return browser


def _viewport(browser: Any, height: int) -> None:
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": VIEWPORT[0], "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


# --------------------------------------------------------------------------- checking pages


@dataclass
class PageResult:
    """What the browser saw on one page."""

    docname: str
    url: str
    final_url: str = ""
    status: int | None = None
    title: str = ""
    images: int = 0
    content_images: int = 0
    min_images: int = 0
    broken_images: list[str] = field(default_factory=list)
    images_without_alt: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    nan_texts: list[str] = field(default_factory=list)
    wide_tables: list[str] = field(default_factory=list)
    sideways_px: int = 0
    absolute_paths: list[str] = field(default_factory=list)
    note_missing: str = ""
    sidebar_seeds: list[int] = field(default_factory=list)
    expected_seeds: list[int] = field(default_factory=list)
    neighbours: dict[str, str | None] = field(default_factory=dict)
    expected_neighbours: dict[str, str | None] = field(default_factory=dict)
    screenshot: str = ""
    seconds: float = 0.0

    @property
    def problems(self) -> list[str]:
        out = []
        if self.status != 200:
            out.append(f"page missing (HTTP {self.status})")
            return out
        if self.broken_images:
            out.append("broken image(s): " + ", ".join(self.broken_images))
        if self.content_images < self.min_images:
            out.append(
                f"shows {self.content_images} image(s), its notebook has {self.min_images} figure output(s)"
            )
        out += [f"image without alt text: {src}" for src in self.images_without_alt]
        out += [f"console error: {e}" for e in self.console_errors]
        out += [f"failed request: {e}" for e in self.failed_requests]
        out += [
            f"request leaves the machine (the book must read offline): {e}" for e in self.external_requests
        ]
        out += [f"shows an undefined number as text: “{t}”" for t in self.nan_texts]
        out += [f"table wider than the content column: {t}" for t in self.wide_tables]
        if self.sideways_px > 1:
            out.append(f"the page scrolls sideways by {self.sideways_px} px at {VIEWPORT[0]} px")
        out += [f"shows an absolute path of the build machine: {p}" for p in self.absolute_paths]
        if self.note_missing:
            out.append(f"toy run without the toy-model note under the title: {self.note_missing}")
        if self.expected_seeds and self.sidebar_seeds != self.expected_seeds:
            out.append(
                f"the sidebar lists seeds {self.sidebar_seeds}, the run's order is {self.expected_seeds}"
            )
        for side, want in self.expected_neighbours.items():
            if self.neighbours.get(side) != want:
                out.append(f"{side} goes to {self.neighbours.get(side)}, expected {want}")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems


_READY_JS = """
return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete);
"""
#: Resolves once the page's fonts are loaded and two frames have been drawn since: whatever the last
#: change was (a redirect's new page, a taller viewport), it has been laid out and painted by then.
_PAINTED_JS = """
const done = arguments[arguments.length - 1];
document.fonts.ready.then(() => requestAnimationFrame(() => requestAnimationFrame(() => done(true))));
"""

#: Everything measured in the page, in one round trip. The content column is the article element.
_INSPECT_JS = r"""
const [noteClasses, forbidden] = arguments;
const article = document.querySelector('article.bd-article') || document.querySelector('article')
  || document.querySelector('main') || document.body;
const out = {};
out.images = Array.from(document.images).map(img => ({
  src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth,
  alt: img.getAttribute('alt'), inContent: article.contains(img)}));

// Text a reader sees as results or prose: not code sources (cell inputs, literal blocks in prose).
const skip = el => el.closest('.cell_input, script, style, noscript, .headerlink')
  || (el.closest('div.highlight') && !el.closest('.cell_output'));
const nan = /(^|[^A-Za-z0-9_])(nan|NaN|NAN|<NA>)(?![A-Za-z0-9_])/;
out.nan = [];
const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  if (!n.parentElement || skip(n.parentElement)) continue;
  const m = n.textContent.match(nan);
  if (m) {
    const i = n.textContent.indexOf(m[2]);
    out.nan.push(n.textContent.slice(Math.max(0, i - 40), i + 40).replace(/\s+/g, ' ').trim());
  }
}

// Tables must fit the column. Only a box made to scroll (class idfu-scroll: the delta's side-by-side
// code) may hold a wider one; a results table cut off at the column's edge is what a reader notices.
const column = article.getBoundingClientRect();
out.wide = [];
for (const table of article.querySelectorAll('table')) {
  const box = table.closest('.idfu-scroll') || table;
  const r = box.getBoundingClientRect();
  if (r.width > 0 && (r.right > column.right + 1 || r.left < column.left - 1)) {
    const head = Array.from(table.querySelectorAll('th')).slice(0, 4).map(t => t.textContent.trim()).join(' | ');
    out.wide.push(`${Math.round(r.width)} px in a ${Math.round(column.width)} px column (${head || 'no header'})`);
  }
}
out.sideways = Math.max(0, document.documentElement.scrollWidth - window.innerWidth);

const text = document.body.innerText;
out.paths = forbidden.filter(p => text.includes(p));

// The note under the title: the first element after the page's h1 carries one of the note classes.
const h1 = article.querySelector('h1');
if (!h1) { out.note = 'no title'; } else {
  let el = h1.nextElementSibling;
  while (el && (el.tagName === 'A' || el.tagName === 'SPAN' || el.classList.contains('toctree-wrapper') && false)) el = el.nextElementSibling;
  const has = el && noteClasses.some(c => el.classList.contains(c) || el.querySelector('.' + c));
  out.note = has ? '' : (article.querySelector(noteClasses.map(c => '.' + c).join(','))
    ? 'the note is on the page but not directly under the title' : 'no note on the page');
}

// The sidebar's seeds, in the order its links name them; the Previous/Next links.
const links = Array.from(document.querySelectorAll('.bd-sidebar-primary a, nav.bd-links a'));
const seeds = [];
for (const a of links) {
  const m = (a.href || '').match(/seed-(-?\d+)\//);
  if (m && !seeds.includes(Number(m[1]))) seeds.push(Number(m[1]));
}
out.seeds = seeds;
const page = sel => { const a = document.querySelector(sel); return a ? a.href : null; };
out.prev = page('a.left-prev');
out.next = page('a.right-next');
out.title = document.title;
out.href = location.href;
return out;
"""


def _is_local(url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme in ("data", "blob", "about", "chrome", "devtools", ""):
        return True
    return parsed.hostname in ("127.0.0.1", "localhost")


def _browser_own(url: str) -> bool:
    """A request the browser makes by itself, not the page (the site-root favicon, which Sphinx never names)."""
    return urlparse(url).path == "/favicon.ico"


def _docname(url: str | None, base_url: str) -> str | None:
    if not url:
        return None
    path = urlparse(url).path
    base = urlparse(base_url).path
    return path.removeprefix(base).removesuffix(".html") or None


def _drain(browser: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The DevTools events and console entries logged since the last call."""
    events = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    return events, browser.get_log("browser")


def _settle(browser: Any) -> None:
    """Wait until the page (after any redirect) is complete with every image decoded, and painted."""
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    last = None
    while time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            href = browser.execute_script("return location.href")
            if href == last and browser.execute_script(_READY_JS):
                break
        except Exception:  # noqa: BLE001 - the page navigated away mid-call (a redirect): ask again
            href = None
        last = href
    _painted(browser)


def _painted(browser: Any) -> None:
    """Block until :data:`_PAINTED_JS` resolves (a page that navigates meanwhile is asked again)."""
    for _ in range(3):
        try:
            browser.execute_async_script(_PAINTED_JS)
            return
        except Exception:  # noqa: BLE001 - navigated away mid-call: the new page is asked
            time.sleep(0.05)


def screenshot(browser: Any) -> bytes:
    """A PNG of the page from the top, the viewport's width, at most :data:`MAX_SCREENSHOT_HEIGHT` high.

    The viewport is made as tall as the page for the shot, then put back.
    """
    height = browser.execute_script(
        "return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)"
    )
    height = int(min(max(height or VIEWPORT[1], VIEWPORT[1]), MAX_SCREENSHOT_HEIGHT))
    _viewport(browser, height)
    try:
        _painted(browser)  # laid out and painted at the new height
        # optimizeForSpeed: a faster PNG encoder (somewhat larger files); these are for looking at
        shot = browser.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "fromSurface": True, "optimizeForSpeed": True}
        )
    finally:
        _viewport(browser, VIEWPORT[1])
    return b64decode(shot["data"])


def check_page(browser: Any, base_url: str, spec: PageSpec, expect: Expect, shots: Path | None) -> PageResult:
    """Load one page and record what the browser saw (and a screenshot under ``shots``)."""
    from selenium.common.exceptions import WebDriverException

    url = base_url + spec.html
    result = PageResult(docname=spec.docname, url=url, min_images=spec.min_images)
    t0 = time.monotonic()
    _drain(browser)
    try:
        browser.get(url)
    except WebDriverException as e:
        result.console_errors.append(f"navigation failed: {e.msg}")
    _settle(browser)
    events, console = _drain(browser)
    documents: dict[str, int] = {}
    for ev in events:
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Network.requestWillBeSent":
            req_url = params.get("request", {}).get("url", "")
            if not _is_local(req_url):
                result.external_requests.append(req_url)
        elif method == "Network.responseReceived":
            resp = params.get("response", {})
            if params.get("type") == "Document":
                documents[resp.get("url", "")] = resp.get("status")
            elif resp.get("status", 200) >= 400 and not _browser_own(resp.get("url", "")):
                result.failed_requests.append(f"{resp.get('url')} (HTTP {resp.get('status')})")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            result.failed_requests.append(f"{params.get('errorText')} ({params.get('type')})")
    for entry in console:
        # Failed loads are reported above, from the network events; the rest is the page's own errors.
        if entry.get("level") == "SEVERE" and entry.get("source") != "network":
            result.console_errors.append(str(entry.get("message", "")))
    seen = browser.execute_script(_INSPECT_JS, list(NOTE_CLASSES), expect.forbidden)
    result.final_url, result.title = seen["href"], seen["title"]
    # The status of the page asked for; a redirect page (the index) counts as found when it lands.
    result.status = documents.get(result.final_url, documents.get(result.url))
    result.images = len(seen["images"])
    result.content_images = sum(1 for i in seen["images"] if i["inContent"])
    result.broken_images = [i["src"] for i in seen["images"] if not i["complete"] or not i["width"]]
    result.images_without_alt = [
        i["src"]
        for i in seen["images"]
        if i["inContent"] and (not (i["alt"] or "").strip() or "/_images/" in (i["alt"] or ""))
    ]
    result.nan_texts = seen["nan"]
    result.wide_tables = seen["wide"]
    result.sideways_px = int(seen["sideways"])
    result.absolute_paths = seen["paths"]
    if spec.needs_note:
        result.note_missing = seen["note"]
    if expect.seeds and seen["seeds"]:
        result.sidebar_seeds, result.expected_seeds = seen["seeds"], list(expect.seeds)
    if spec.docname != "index":
        result.neighbours = {
            "Previous": _docname(seen["prev"], base_url),
            "Next": _docname(seen["next"], base_url),
        }
        result.expected_neighbours = {"Previous": spec.prev, "Next": spec.next}
    if shots is not None and result.status is not None:
        path = shots / spec.shot_name
        path.write_bytes(screenshot(browser))
        result.screenshot = str(path)
    result.seconds = round(time.monotonic() - t0, 2)
    return result


@dataclass
class CheckReport:
    """The whole check: one :class:`PageResult` per page."""

    html_dir: str
    pages: list[PageResult]
    seconds: float
    browser: str

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.pages)

    def problems(self) -> list[str]:
        return [f"{p.docname}: {problem}" for p in self.pages for problem in p.problems]

    def write(self, path: Path) -> None:
        data = asdict(self)
        for page, raw in zip(self.pages, data["pages"], strict=True):
            raw["problems"] = page.problems
        data["ok"] = self.ok
        path.write_text(json.dumps(data, indent=2) + "\n")


def check_pages(
    html_dir: str | Path,
    pages: Sequence[PageSpec],
    expect: Expect | None = None,
    *,
    shots: str | Path | None = None,
    executable: str | None = None,
    driver: str | None = None,
) -> CheckReport:
    """Serve ``html_dir`` locally and check each page in headless Chromium.

    Screenshots and ``report.json`` go to ``shots`` when given. The report lists every problem; the
    caller decides to fail (:func:`main` exits 1).
    """
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").exists():
        raise BookCheckError(f"{html_dir / 'index.html'} is missing: build the book first (idfu-lab book)")
    expect = expect or Expect()
    shots_dir = Path(shots) if shots is not None else None
    t0 = time.monotonic()
    results: list[PageResult] = []
    browser = start_browser(executable, driver)
    if shots_dir is not None:
        if shots_dir.exists():
            shutil.rmtree(shots_dir)
        shots_dir.mkdir(parents=True)
    try:
        name = browser.capabilities.get("browserName", "chromium")
        version = browser.capabilities.get("browserVersion", "")
        with StaticServer(html_dir) as server:
            for spec in pages:
                res = check_page(browser, server.url, spec, expect, shots_dir)
                logger.info("%s %s (%.1f s)", "ok  " if res.ok else "FAIL", spec.docname, res.seconds)
                results.append(res)
    finally:
        browser.quit()
    report = CheckReport(str(html_dir), results, round(time.monotonic() - t0, 2), f"{name} {version}".strip())
    if shots_dir is not None:
        report.write(shots_dir / "report.json")
    return report


def check_book(
    run_dir: str | Path,
    *,
    root: str | Path | None = None,
    shots: str | Path | None = None,
    executable: str | None = None,
    driver: str | None = None,
) -> CheckReport:
    """Check the built book of ``run_dir``: first that it *is* that run's book, then every page.

    Screenshots go to ``<run_dir>/book-check/`` unless ``shots`` says otherwise.
    """
    from idfu_lab.config import repo_root
    from idfu_lab.report.book import STAMP_NAME, inspect_run, is_toy, run_identity
    from idfu_lab.runs import RunLayout

    root = Path(root) if root else repo_root()
    html = root / "_build" / "html"
    contents = inspect_run(run_dir)
    stamp_path = html / STAMP_NAME
    if not stamp_path.exists():
        raise BookCheckError(
            f"{stamp_path} is missing: build the book of this run first (idfu-lab book --run {run_dir})"
        )
    built, wanted = json.loads(stamp_path.read_text()), run_identity(contents)
    if built != wanted:
        differ = ", ".join(
            f"{k} {built.get(k)!r} (the run: {wanted[k]!r})" for k in wanted if built.get(k) != wanted[k]
        )
        raise BookCheckError(
            f"the book in {html} was built from another run ({differ}); build this run's book first: "
            f"idfu-lab book --run {run_dir}"
        )
    pages = expected_pages(root, contents.seeds, toy=is_toy(contents.config), run_dir=contents.dir)
    expect = Expect(
        seeds=contents.seeds,
        forbidden=forbidden_paths(root, contents.dir, Path.home(), sys.prefix),
    )
    return check_pages(
        html,
        pages,
        expect,
        shots=Path(shots) if shots else RunLayout(run_dir).book_check_dir,
        executable=executable,
        driver=driver,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="book-check",
        description="Open the built book in headless Chromium and check every page as a reader sees it.",
    )
    parser.add_argument(
        "--run", metavar="RUN_DIR", help="run directory the book was built from (default: the latest)"
    )
    parser.add_argument("--shots", metavar="DIR", help="where screenshots go (default: RUN_DIR/book-check)")
    parser.add_argument(
        "--root", metavar="DIR", help="the book's root, with _build/html (default: the repository)"
    )
    parser.add_argument(
        "--chromium", metavar="PATH", help="the Chromium executable (default: chromium on PATH)"
    )
    parser.add_argument(
        "--chromedriver", metavar="PATH", help="its chromedriver (default: chromedriver on PATH)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from idfu_lab.errors import IdfuError
    from idfu_lab.report.book import latest_run

    try:
        run_dir = Path(args.run) if args.run else latest_run()
        report = check_book(
            run_dir, root=args.root, shots=args.shots, executable=args.chromium, driver=args.chromedriver
        )
    except (BookCheckError, IdfuError) as e:
        print(f"book-check: {e}", file=sys.stderr)
        return 2
    for page in report.pages:
        mark = "ok  " if page.ok else "FAIL"
        print(f"{mark} {page.docname:45s} {page.content_images:3d} image(s)  {page.seconds:5.1f} s")
        for problem in page.problems:
            print(f"       {problem}")
    shots = Path(report.pages[0].screenshot).parent if report.pages and report.pages[0].screenshot else None
    print(f"{len(report.pages)} pages in {report.seconds:.1f} s with {report.browser}; screenshots: {shots}")
    if not report.ok:
        print(f"book-check failed: {len(report.problems())} problem(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
