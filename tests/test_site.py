"""The offline website and slide decks, checked in a real browser (headless Chromium).

Builds the site (``tools/build_site.py``) and the slide decks (``tools/build_slides.py``) once,
unless a build newer than every source is already there, serves ``build/`` on 127.0.0.1 and opens
every page with Playwright driving Debian's ``chromium`` (``CHROMIUM`` overrides its path; no
browser is downloaded). Every page must load with no console error, no failed request and no
request leaving the local server; MathJax must typeset every math element (none left as raw TeX,
no TeX error); every image must decode, every audio player must load its sound, every internal
link must point to an existing file (and anchor); the saved widgets must render; the built-in
search must find "Tweedie"; one deck must start reveal.js with its math typeset.
"""

from __future__ import annotations

import functools
import html
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
HTML = BUILD / "site" / "html"
SLIDES = BUILD / "slides"
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DOCS = sorted(p.relative_to(ROOT / "docs").with_suffix("").as_posix() for p in (ROOT / "docs").rglob("*.md"))
PAGES = ["index", *(f"notebooks/{n}" for n in NOTEBOOKS), *(f"docs/{d}" for d in DOCS), "genindex"]
DECK = "01_forward_process"  # the deck opened in the browser: math, figures, many slides
NEEDS = (
    "the site's browser test needs Debian's chromium and the playwright Python package: "
    "apt-get install chromium; pip install -e '.[site]'"
)

pytestmark = pytest.mark.site


def newest(paths) -> float:
    return max((p.stat().st_mtime for p in paths if p.is_file()), default=0.0)


def site_sources() -> list[Path]:
    return [
        *(ROOT / "notebooks").glob("*.ipynb"),
        *(ROOT / "docs").rglob("*.md"),
        ROOT / "README.md",
        *(ROOT / "site").rglob("*"),
        ROOT / "tools" / "build_site.py",
    ]


_build_failures: dict[str, str] = {}


def build_if_stale(target: Path, sources: list[Path], command: list[str]) -> None:
    """Run `command` unless `target` is newer than every source; a failed build fails once, not per test."""
    key = " ".join(command)
    if key in _build_failures:
        pytest.fail(f"{key} failed (see the first test that used it)", pytrace=False)
    if target.exists() and target.stat().st_mtime > newest(sources):
        return
    r = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        _build_failures[key] = r.stderr
        pytest.fail(f"{key} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}", pytrace=False)


@pytest.fixture(scope="module")
def site() -> Path:
    pytest.importorskip("myst_nb", reason="building the site needs the site extras: pip install -e '.[site]'")
    build_if_stale(HTML / "index.html", site_sources(), ["tools/build_site.py"])
    return HTML


@pytest.fixture(scope="module")
def slides() -> Path:
    deck = SLIDES / f"{DECK}.slides.html"
    sources = [
        ROOT / "notebooks" / f"{DECK}.ipynb",
        ROOT / "tools" / "build_slides.py",
        ROOT / "tools" / "build_site.py",
    ]
    build_if_stale(deck, sources, ["tools/build_slides.py", "--only", DECK])
    return deck


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(site):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(BUILD)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    exe = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip(f"no chromium on PATH: {NEEDS}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"no playwright: {NEEDS}")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe)
        yield b
        b.close()


class Visit:
    """A page opened with every request, console error and failure recorded."""

    def __init__(self, context, base: str, path: str):
        self.base, self.problems, self.outside = base, [], []
        self.page = context.new_page()
        # only requests to elsewhere are intercepted (matched by the driver: local ones pass at full speed)
        self.page.route(re.compile("^(?!" + re.escape(base) + ")"), self._route)
        self.page.on("request", self._request)
        # generous: a page with a notebook's figures loads in seconds, but a loaded 2-core machine (make test runs two
        # notebooks beside this) once took over 30 s; the test checks what renders, not how fast
        self.page.set_default_timeout(120_000)
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} ({r.failure})"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))
        self.page.goto(base + path, wait_until="load")

    def _route(self, route):
        url = route.request.url
        if url.startswith(("data:", "blob:", "about:")):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def _request(self, request):
        # a second net under the route: any request that is not local is recorded
        url = request.url
        if not url.startswith((self.base, "data:", "blob:", "about:")) and url not in self.outside:
            self.outside.append(url)

    def close(self):
        self.page.close()


@pytest.fixture(scope="module")
def context(browser):
    # one context for every page: its HTTP cache keeps MathJax and the theme's scripts compiled
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()


@pytest.fixture
def visit(context, server):
    opened = []

    def open_(path):
        v = Visit(context, server, path)
        opened.append(v)
        return v

    yield open_
    for v in opened:
        v.close()


# JavaScript run in the page ------------------------------------------------------------------

WAIT_MATHJAX = """async () => {
  if (!window.MathJax) return null;
  for (let i = 0; i < 300 && !(MathJax.startup && MathJax.startup.promise); i++) await new Promise(r => setTimeout(r, 100));
  await MathJax.startup.promise;
  return true;
}"""

MATH_REPORT = """() => {
  const math = [...document.querySelectorAll('span.math, div.math')];
  const untypeset = math.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80));
  const errors = [...document.querySelectorAll('mjx-merror')].map(e => e.getAttribute('data-mjx-error') || e.textContent);
  const root = (document.querySelector('article') || document.querySelector('.reveal .slides') || document.body).cloneNode(true);
  root.querySelectorAll('pre, code, script, style, mjx-container, .highlight, .cell_output, .output, .jp-OutputArea')
      .forEach(e => e.remove());
  return {math: math.length, containers: document.querySelectorAll('mjx-container').length,
          untypeset, errors, text: root.textContent};
}"""

IMAGES = """async () => {
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => { i.loading = 'eager'; return i.decode().catch(() => null); }));
  return imgs.map(i => ({src: i.currentSrc.slice(0, 100), w: i.naturalWidth}));
}"""

AUDIO = """async () => {
  const players = [...document.querySelectorAll('audio')];
  const ready = a => new Promise(res => {
    if (a.readyState >= 1) return res();
    a.addEventListener('loadedmetadata', res, {once: true});
    a.addEventListener('error', res, {once: true});
    a.querySelectorAll('source').forEach(s => s.addEventListener('error', res, {once: true}));
    a.preload = 'metadata'; a.load();
    setTimeout(res, 15000);
  });
  await Promise.all(players.map(ready));
  return players.map(a => ({src: a.currentSrc.slice(0, 60), state: a.readyState, duration: a.duration,
                            error: a.error && a.error.code}));
}"""

WIDGETS_RENDERED = """() => [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')]
  .every(s => s.previousElementSibling && s.previousElementSibling.classList.contains('widget-subarea')
              && s.previousElementSibling.querySelector('.jupyter-widgets'))"""

LINKS = "() => [...document.querySelectorAll('a[href]')].map(a => a.href)"

RAW_TEX = re.compile(r"\$[^$\n]{1,200}\$|\\\(|\\\)|\\\[|\\\]|\\(?:frac|mathcal|sqrt|alpha|beta|sigma|bar)\b")


def link_target(href: str, base: str) -> tuple[Path, str] | None:
    """The file and (raw) fragment an internal link points to; None for external links."""
    if not href.startswith(base):
        return None
    parts = urlsplit(href)
    path = BUILD / unquote(parts.path).lstrip("/")
    if path.is_dir():
        path = path / "index.html"
    return path, parts.fragment


@functools.cache
def ids_in(path: Path) -> frozenset[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    return frozenset(html.unescape(i) for i in re.findall(r'\bid="([^"]+)"', text))


def check_page(v: Visit, path: str) -> dict:
    page = v.page
    if page.evaluate(WAIT_MATHJAX) is None and path.startswith("notebooks/"):
        v.problems.append("MathJax is not loaded")
    math = page.evaluate(MATH_REPORT)
    images = page.evaluate(IMAGES)
    audio = page.evaluate(AUDIO)
    links = page.evaluate(LINKS)

    problems = list(v.problems)
    problems += [f"request leaving the local server: {u}" for u in dict.fromkeys(v.outside)]
    problems += [f"math not typeset: {t!r}" for t in math["untypeset"]]
    problems += [f"TeX error: {t!r}" for t in math["errors"]]
    for m in RAW_TEX.finditer(math["text"]):
        ctx = math["text"][max(0, m.start() - 40) : m.end() + 40].replace("\n", " ")
        problems.append(f"raw TeX in the text: {ctx!r}")
    problems += [f"image does not load: {i['src']}" for i in images if not i["w"]]
    problems += [f"audio does not load: {a}" for a in audio if a["state"] < 1 or a["error"] or not a["duration"] > 0]
    for href in links:
        target = link_target(href, v.base)
        if target is None:
            continue
        file, fragment = target
        if not file.is_file():
            problems.append(f"broken link: {href}")
        elif (
            fragment
            and not fragment.startswith("/")
            and file.suffix == ".html"
            and not {fragment, unquote(fragment)} & ids_in(file)
        ):
            # ("#/3/1" is a reveal.js slide address, not an anchor)
            problems.append(f"broken anchor: {href}")
    assert not problems, f"{path}: {len(problems)} problem(s):\n" + "\n".join(problems[:40])
    return {"math": math, "images": images, "audio": audio, "links": links}


# The tests --------------------------------------------------------------------------------------


def test_built_pages_reference_only_local_assets(site):
    """No page names a script, style or font on another host (the browser test checks the requests too)."""
    remote = re.compile(r"""<(?:script|link|img|audio|source|iframe)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""", re.I)
    offenders = {}
    for page in site.rglob("*.html"):
        hits = remote.findall(page.read_text(encoding="utf-8", errors="replace"))
        if hits:
            offenders[str(page.relative_to(site))] = hits[:3]
    assert not offenders, offenders
    missing = [p for p in PAGES if not (site / f"{p}.html").is_file()]
    assert not missing, f"pages missing from the site: {missing}"
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()


@pytest.mark.parametrize("path", PAGES)
def test_page_in_browser(visit, site, path):
    v = visit(f"site/html/{path}.html")
    # every widget output left on the page renders from the saved state, without a kernel
    # (tools/build_site.py replaces those whose state was not saved with a note)
    v.page.wait_for_function(WIDGETS_RENDERED, timeout=120_000)
    report = check_page(v, path)
    if path.startswith("notebooks/"):
        source = (ROOT / f"{path}.ipynb").read_text(encoding="utf-8")
        if "$" in source:
            assert report["math"]["containers"] > 0, "the notebook has math, the page shows none typeset"
        if '"image/png"' in source:
            assert report["images"], "the notebook has figures, the page shows none"
    if path == "notebooks/09_audio":
        assert len(report["audio"]) >= 5, report["audio"]
    if path == "index":
        hrefs = {urlsplit(h).path.rsplit("/", 1)[-1] for h in report["links"]}
        missing = [n for n in NOTEBOOKS if f"{n}.html" not in hrefs]
        assert not missing, f"the front page does not link to {missing}"


def test_search_finds_tweedie(visit, site):
    v = visit("site/html/search.html?q=Tweedie")
    v.page.wait_for_function(
        "() => document.querySelectorAll('#search-results ul.search li').length > 0", timeout=120_000
    )
    results = v.page.eval_on_selector_all("#search-results ul.search li a", "els => els.map(e => e.href)")
    assert any("notebooks/" in r for r in results), results
    assert not v.problems and not v.outside, v.problems + v.outside


def test_slides_deck_in_browser(visit, slides):
    v = visit(f"slides/{slides.name}")
    v.page.wait_for_function("() => window.Reveal && Reveal.isReady()", timeout=120_000)
    n = v.page.evaluate("() => Reveal.getTotalSlides()")
    assert n > 10, f"only {n} slides"
    report = check_page(v, f"slides/{slides.name}")
    assert report["math"]["containers"] > 20, report["math"]["containers"]
    assert report["images"], "no figures in the deck"
    v.page.keyboard.press("ArrowRight")
    v.page.wait_for_function("() => Reveal.getIndices().h === 1")
    assert not v.problems, v.problems


def test_a_handout_prints_with_its_math_typeset(site, browser, tmp_path):
    """`make handouts`: notebook 13's page printed to PDF by the same Chromium (the `browser` fixture skips without it)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_handouts.py"), "--only", "13"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    pdf = ROOT / "build" / "handouts" / "13_interview.pdf"
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and len(data) > 20_000 and data.count(b"/Type /Page") >= 3


def test_slide_types_follow_headings_and_an_authors_tags():
    sys.path.insert(0, str(ROOT / "tools"))
    import build_slides
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("## A section"),
        nbformat.v4.new_markdown_cell("text under it"),
        nbformat.v4.new_markdown_cell("### A subsection"),
        nbformat.v4.new_markdown_cell("tagged by the author", metadata={"slideshow": {"slide_type": "fragment"}}),
        nbformat.v4.new_markdown_cell("## tagged to be left out", metadata={"slideshow": {"slide_type": "skip"}}),
    ]
    build_slides.assign_slide_types(nb)
    kinds = [c.metadata["slideshow"]["slide_type"] for c in nb.cells]
    assert kinds == ["slide", "-", "subslide", "fragment", "skip"]
