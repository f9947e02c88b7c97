"""Open the built book in a real browser and check that its pages render, with their figures.

A Sphinx build that passes with ``-W`` can still produce a page a reader cannot use: an image whose
file is missing from ``_build/html``, a script that throws, a figure that needs a CDN the reader cannot
reach. This module serves ``_build/html`` on a local port, drives headless Chromium over the DevTools
protocol (a websocket, :mod:`websocket`; no browser download, no WebDriver), and for every page of
the book asserts:

- the page exists (HTTP 200; the index's redirect lands on the first page);
- every image loaded (``complete`` and ``naturalWidth > 0``), and results pages show at least as many
  images as their notebook has figure outputs;
- no console error, no uncaught exception, no failed request;
- no request leaves the machine: the book must read offline, as it is built.

Each page is saved as a screenshot (``<run>/book-check/*.png``) with a ``report.json`` beside them, so
a person can look at what the browser saw.
"""

from __future__ import annotations

import fnmatch
import functools
import http.server
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from base64 import b64decode
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import nbformat
import yaml

from idfu_lab.config import repo_root
from idfu_lab.errors import IdfuError
from idfu_lab.report.book import LOST_FIGURE
from idfu_lab.runs import RunLayout

logger = logging.getLogger(__name__)

#: Chromium's flags: headless, no sandbox (root in containers), nothing phoning home, a fresh profile.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
#: Executables tried in order (``$IDFU_LAB_CHROMIUM`` first).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIEWPORT = (1280, 900)
#: Screenshots stop here: a long notebook page is still readable, the files stay small.
MAX_SCREENSHOT_HEIGHT = 5000
PAGE_TIMEOUT_S = 30.0


class BookCheckError(IdfuError):
    """The check could not run (no browser, no built book)."""


# --------------------------------------------------------------------------- pages to check


@dataclass
class PageSpec:
    """A page the book must have."""

    docname: str  # e.g. book/results/seed-42/04_failure_taxonomy
    min_images: int = 0  # images the page must show (figure outputs of its notebook)

    @property
    def html(self) -> str:
        return f"{self.docname}.html"

    @property
    def shot_name(self) -> str:
        return self.docname.removeprefix("book/").replace("/", "__") + ".png"


def _figure_outputs(path: Path) -> int:
    """How many figure outputs a notebook shows (glued with display=False ones are not shown)."""
    if not path.exists():
        return 0
    nb = nbformat.read(path, as_version=4)
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code" or "remove-output" in cell.metadata.get("tags", []):
            continue
        if "remove-cell" in cell.metadata.get("tags", []):
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


def _toc_entries(toc: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """(kind, value) for every entry of a jb-book ``_toc.yml``: ("file", docname) or ("glob", pattern)."""
    yield ("file", toc["root"])

    def walk(items: list[dict[str, Any]]) -> Iterable[tuple[str, str]]:
        for item in items:
            if "file" in item:
                yield ("file", item["file"])
            elif "glob" in item:
                yield ("glob", item["glob"])
            for key in ("sections", "chapters"):
                yield from walk(item.get(key, []))

    for part in toc.get("parts", []):
        yield from walk(part.get("chapters", []))
    yield from walk(toc.get("chapters", []))


def expected_pages(
    root: Path, seeds: Sequence[int], per_seed: Sequence[str], toc_file: str | Path = "_toc.yml"
) -> list[PageSpec]:
    """Every page ``toc_file`` (``_toc.yml``; a comparison's book has its own) promises for a run with
    these seeds, in reading order.

    Globs are expanded against what the run *should* have (each seed × each per-seed notebook), not
    against what the build produced, so a page that is missing from the build is reported missing.
    """
    toc = yaml.safe_load((root / toc_file).read_text())
    candidates = [f"book/results/seed-{s}/{nb}" for s in seeds for nb in per_seed]
    pages: list[PageSpec] = []
    for kind, value in _toc_entries(toc):
        value = value.removesuffix(".md").removesuffix(".ipynb")
        names = [value] if kind == "file" else [c for c in candidates if fnmatch.fnmatch(c, value)]
        if kind == "glob":
            names.sort(key=lambda c: candidates.index(c))
        for name in names:
            nb = root / f"{name}.ipynb"
            pages.append(PageSpec(name, _figure_outputs(nb)))
    return pages


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


def find_chromium() -> str | None:
    """The Chromium executable (``$IDFU_LAB_CHROMIUM``, then the usual names on PATH), or None."""
    env = os.environ.get("IDFU_LAB_CHROMIUM")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class DevTools:
    """A minimal Chrome DevTools Protocol client for one page target, over a websocket."""

    def __init__(self, ws_url: str, timeout: float = PAGE_TIMEOUT_S) -> None:
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.timeout = timeout
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        self.ws.close()

    def _recv(self, deadline: float) -> dict[str, Any] | None:
        import websocket

        self.ws.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return None

    def send(
        self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Call ``method`` and return its result; events that arrive meanwhile are kept in :attr:`events`."""
        self._id += 1
        mid = self._id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params or {}}))
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            msg = self._recv(deadline)
            if msg is None:
                continue
            if msg.get("id") == mid:
                if "error" in msg:
                    raise BookCheckError(f"DevTools {method} failed: {msg['error'].get('message')}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise BookCheckError(f"DevTools {method} got no answer in {timeout or self.timeout:.0f} s")

    def wait_event(self, method: str, timeout: float) -> dict[str, Any] | None:
        """The first event ``method`` (already received or arriving within ``timeout``), or None."""
        for ev in self.events:
            if ev["method"] == method and not ev.get("_seen"):
                ev["_seen"] = True
                return ev
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self._recv(deadline)
            if msg is None or "method" not in msg:
                continue
            self.events.append(msg)
            if msg["method"] == method:
                msg["_seen"] = True
                return msg
        return None

    def pump(self, seconds: float) -> None:
        """Collect events for ``seconds`` (late console errors, late image loads)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = self._recv(deadline)
            if msg is not None and "method" in msg:
                self.events.append(msg)

    def evaluate(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            raise BookCheckError(f"script failed in the page: {result['exceptionDetails'].get('text')}")
        return result.get("result", {}).get("value")


class Chromium:
    """Headless Chromium with a fresh profile, started with :data:`CHROMIUM_FLAGS`; closed on exit."""

    def __init__(self, executable: str | None = None, log_path: Path | None = None) -> None:
        exe = executable or find_chromium()
        if not exe:
            raise BookCheckError(
                "Chromium is not installed (looked for "
                + ", ".join(CHROMIUM_NAMES)
                + "); on Debian/Ubuntu: apt-get install chromium"
            )
        self.executable = exe
        self.profile = Path(tempfile.mkdtemp(prefix="idfu-lab-chromium-"))
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Chromium:
        w, h = VIEWPORT
        cmd = [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", f"--window-size={w},{h}"]
        cmd.append("about:blank")
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        logger.debug("starting %s", " ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        if self.log_path:
            log.close()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def port(self, timeout: float = 30.0) -> int:
        """The DevTools port Chromium chose (written to ``DevToolsActivePort`` in the profile)."""
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                hint = f"; its output is in {self.log_path}" if self.log_path else ""
                raise BookCheckError(f"Chromium exited at start-up with status {self.proc.returncode}{hint}")
            if marker.exists():
                lines = marker.read_text().split()
                if lines:
                    return int(lines[0])
            time.sleep(0.1)
        raise BookCheckError(f"Chromium did not open its DevTools port within {timeout:.0f} s")

    def page(self) -> DevTools:
        """A DevTools session on the browser's first page tab."""
        port = self.port()
        deadline = time.monotonic() + 15
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:  # noqa: S310
                targets = json.load(r)
            pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
            if pages:
                return DevTools(pages[0]["webSocketDebuggerUrl"])
            if time.monotonic() > deadline:
                raise BookCheckError("Chromium shows no page to drive")
            time.sleep(0.2)


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
    screenshot: str = ""
    seconds: float = 0.0
    require_alt: bool = False

    @property
    def problems(self) -> list[str]:
        out = []
        if self.status != 200:
            out.append(f"page missing (HTTP {self.status})")
        if self.broken_images:
            out.append("broken image(s): " + ", ".join(self.broken_images))
        if self.content_images < self.min_images:
            out.append(
                f"shows {self.content_images} image(s), its notebook has {self.min_images} figure output(s)"
            )
        out += [f"console error: {e}" for e in self.console_errors]
        out += [f"failed request: {e}" for e in self.failed_requests]
        out += [
            f"request leaves the machine (the book must read offline): {e}" for e in self.external_requests
        ]
        if self.require_alt:
            out += [f"figure without alt text: {src}" for src in self.images_without_alt]
        return out

    @property
    def ok(self) -> bool:
        return not self.problems


_IMAGES_JS = """
(() => {
  const content = document.querySelector('article') || document.querySelector('main') || document.body;
  return Array.from(document.images).map(img => ({
    src: img.currentSrc || img.src,
    complete: img.complete,
    width: img.naturalWidth,
    alt: img.getAttribute('alt'),
    inContent: content.contains(img),
  }));
})()
"""

_READY_JS = """
(() => document.readyState === 'complete' && Array.from(document.images).every(i => i.complete))()
"""


def _is_local(url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme in ("data", "blob", "about", "chrome", "devtools", ""):
        return True
    return parsed.hostname in ("127.0.0.1", "localhost")


def _browser_own(url: str) -> bool:
    """A request the browser makes by itself, not the page (the site-root favicon, which Sphinx never names)."""
    return urlparse(url).path == "/favicon.ico"


def _describe_console(ev: dict[str, Any]) -> str | None:
    method, params = ev["method"], ev.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        args = params.get("args", [])
        return " ".join(str(a.get("value", a.get("description", ""))) for a in args)
    if method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        exc = details.get("exception", {})
        return f"uncaught {exc.get('description') or details.get('text', 'exception')}"
    if method == "Log.entryAdded":
        entry = params.get("entry", {})
        if entry.get("level") == "error" and not _browser_own(entry.get("url", "")):
            return f"{entry.get('text', '')} ({entry.get('url', '')})".strip()
    return None


def check_page(
    tab: DevTools, base_url: str, spec: PageSpec, shots: Path | None, *, require_alt: bool = False
) -> PageResult:
    """Load one page and record what the browser saw (and a screenshot under ``shots``)."""
    url = base_url + spec.html
    result = PageResult(docname=spec.docname, url=url, min_images=spec.min_images, require_alt=require_alt)
    t0 = time.monotonic()
    tab.events.clear()
    nav = tab.send("Page.navigate", {"url": url})
    if nav.get("errorText"):
        result.console_errors.append(f"navigation failed: {nav['errorText']}")
    tab.wait_event("Page.loadEventFired", PAGE_TIMEOUT_S)
    _settle(tab, url)
    _collect(tab, result, spec)
    if shots is not None and result.status is not None:
        shots.mkdir(parents=True, exist_ok=True)
        path = shots / spec.shot_name
        path.write_bytes(screenshot(tab))
        result.screenshot = str(path)
    result.seconds = round(time.monotonic() - t0, 2)
    return result


def _settle(tab: DevTools, url: str) -> None:
    """Wait until the page (after any redirect) is complete with every image decoded, then a little more."""
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    last_href = None
    while time.monotonic() < deadline:
        tab.pump(0.15)
        try:
            href = tab.evaluate("location.href")
            if href == last_href and tab.evaluate(_READY_JS):
                break
        except BookCheckError:  # the page navigated away mid-call (a redirect): ask again
            href = None
        last_href = href
    tab.pump(0.3)


def _collect(tab: DevTools, result: PageResult, spec: PageSpec) -> None:
    documents: dict[str, int] = {}
    for ev in tab.events:
        method, params = ev["method"], ev.get("params", {})
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
        else:
            text = _describe_console(ev)
            if text:
                result.console_errors.append(text)
    result.final_url = tab.evaluate("location.href")
    result.title = tab.evaluate("document.title") or ""
    # The status of the page we asked for; a redirect page (the index) counts as found when it lands.
    result.status = documents.get(result.final_url, documents.get(result.url))
    images = tab.evaluate(_IMAGES_JS) or []
    result.images = len(images)
    result.content_images = sum(1 for i in images if i["inContent"])
    result.broken_images = [i["src"] for i in images if not i["complete"] or not i["width"]]
    result.images_without_alt = [
        i["src"]
        for i in images
        if i["inContent"] and (not i["alt"] or i["alt"].strip() == "" or "/_images/" in i["alt"])
    ]


def _viewport(tab: DevTools, height: int) -> None:
    tab.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": VIEWPORT[0], "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def screenshot(tab: DevTools) -> bytes:
    """A PNG of the page from the top, the viewport's width, at most :data:`MAX_SCREENSHOT_HEIGHT` high.

    The window is made as tall as the page for the shot (capturing "beyond the viewport" instead
    shifts pages whose code blocks scroll sideways), then put back.
    """
    height = (
        tab.evaluate("Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)")
        or VIEWPORT[1]
    )
    height = int(min(max(height, VIEWPORT[1]), MAX_SCREENSHOT_HEIGHT))
    _viewport(tab, height)
    try:
        tab.pump(0.3)  # let the page lay itself out at the new height
        shot = tab.send("Page.captureScreenshot", {"format": "png", "fromSurface": True})
    finally:
        _viewport(tab, VIEWPORT[1])
    return b64decode(shot["data"])


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
    *,
    shots: str | Path | None = None,
    executable: str | None = None,
    require_alt: bool = False,
) -> CheckReport:
    """Serve ``html_dir`` locally and check each page in headless Chromium.

    ``require_alt``: a figure without alt text is a problem too (otherwise it is only reported).

    Screenshots and ``report.json`` go to ``shots`` when given. The report lists every problem; it is
    the caller who decides to fail (:func:`check_book` raises nothing, the command exits 1).
    """
    html_dir = Path(html_dir)
    if not (html_dir / "index.html").exists():
        raise BookCheckError(f"{html_dir / 'index.html'} is missing: build the book first (idfu-lab book)")
    shots_dir = Path(shots) if shots is not None else None
    if shots_dir is not None:
        if shots_dir.exists():
            shutil.rmtree(shots_dir)
        shots_dir.mkdir(parents=True)
    log = (shots_dir / "chromium.log") if shots_dir is not None else None
    t0 = time.monotonic()
    results: list[PageResult] = []
    with StaticServer(html_dir) as server, Chromium(executable, log_path=log) as browser:
        tab = browser.page()
        try:
            tab.send("Page.enable")
            tab.send("Runtime.enable")
            tab.send("Log.enable")
            tab.send("Network.enable")
            tab.send("Network.setCacheDisabled", {"cacheDisabled": True})
            _viewport(tab, VIEWPORT[1])
            for spec in pages:
                res = check_page(tab, server.url, spec, shots_dir, require_alt=require_alt)
                logger.info(
                    "%s %s (%d image(s), %.1f s)",
                    "ok  " if res.ok else "FAIL",
                    spec.docname,
                    res.images,
                    res.seconds,
                )
                results.append(res)
        finally:
            tab.close()
    report = CheckReport(str(html_dir), results, round(time.monotonic() - t0, 2), browser.executable)
    if shots_dir is not None:
        report.write(shots_dir / "report.json")
    return report


def check_book(
    run_dir: str | Path,
    *,
    root: str | Path | None = None,
    shots: str | Path | None = None,
    executable: str | None = None,
    require_alt: bool = False,
) -> CheckReport:
    """Check the built book of ``run_dir``: every page ``_toc.yml`` promises for the run's seeds.

    Screenshots go to ``<run_dir>/book-check/`` unless ``shots`` says otherwise.
    """
    from idfu_lab.pipeline import plan_for
    from idfu_lab.report.book import COMPARE_TOC, inspect_run, is_compare

    root = Path(root) if root else repo_root()
    contents = inspect_run(run_dir)
    toc = COMPARE_TOC if is_compare(run_dir) else "_toc.yml"
    pages = [PageSpec("index")] + expected_pages(root, contents.seeds, plan_for(run_dir)[1], toc)
    return check_pages(
        root / "_build" / "html",
        pages,
        shots=Path(shots) if shots else RunLayout(run_dir).book_check_dir,
        executable=executable,
        require_alt=require_alt,
    )
