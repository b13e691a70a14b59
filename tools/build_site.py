"""Build the course as a static website that works offline: ``python tools/build_site.py``.

The site is rendered by Sphinx with myst-nb from the committed, executed notebooks (nothing is
executed) into ``build/site/html`` (open ``build/site/html/index.html``). Every script, style and
font is local: MathJax 3, the one third-party asset myst-nb and Sphinx would fetch from a CDN, and
the ipywidgets HTML manager (which shows the saved state of the notebooks' widgets) come from the
npm registry as tarballs, fetched once into ``build/cache/npm`` and checked against the sha256
pinned below. A machine with no network at all can build the site once those tarballs are in the
cache (copy them there by hand, or set ``COURSE_ASSET_CACHE`` to a folder holding them).

Steps:

1. fetch and verify the tarballs, unpack what the pages use into ``build/site/static``;
2. generate the Sphinx sources in ``build/site/src``: ``index.md`` from README.md (the
   introduction and the course map, with a toctree), a copy of each notebook (adapted in memory by
   ``prepare_notebook``) and of ``docs/*.md``;
3. run ``sphinx-build`` with the configuration in ``site/conf.py``, failing on any warning
   (a missing page, a broken cross-reference, a notebook that does not parse).

``tools/build_slides.py`` uses the same asset cache for the slide decks.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import nbformat

from dlib.data import sha256  # the one hashing helper: data files, checkpoints, and these assets

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
SITE_CONF = ROOT / "site"
SITE_BUILD = BUILD / "site"
SRC = SITE_BUILD / "src"
HTML = SITE_BUILD / "html"
STATIC = SITE_BUILD / "static"  # unpacked third-party assets, copied into html/_static by Sphinx

# name -> (npm registry tarball, sha256 of the tarball). Bump both together.
ASSETS = {
    "mathjax": (
        "https://registry.npmjs.org/mathjax/-/mathjax-3.2.2.tgz",
        "1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09",
    ),
    "reveal.js": (
        "https://registry.npmjs.org/reveal.js/-/reveal.js-4.6.1.tgz",
        "4f4121ef2b8e7e9398bdecd7b3b6ce5e0ee3a2f5af221708eb6c4ce03bcae6be",
    ),
    "html-manager": (
        "https://registry.npmjs.org/@jupyter-widgets/html-manager/-/html-manager-1.0.15.tgz",
        "2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638",
    ),
}

# The README sections the front page shows (besides the introduction above the first section).
INDEX_SECTIONS = ["Start here: two commands", "The course map"]


def cache_dir() -> Path:
    return Path(os.environ.get("COURSE_ASSET_CACHE") or BUILD / "cache" / "npm")


def fetch(name: str) -> Path:
    """The verified tarball of asset `name`, downloaded into the cache on first use."""
    url, want = ASSETS[name]
    path = cache_dir() / url.rsplit("/", 1)[1]
    if path.exists() and sha256(path) == want:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    print(f"fetching {url}", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as e:
        raise SystemExit(
            f"could not download {url} ({e}).\nOffline: put that file (sha256 {want}) into {path.parent} "
            "or point COURSE_ASSET_CACHE at a folder that holds it."
        ) from e
    got = sha256(tmp)
    if got != want:
        tmp.unlink()
        raise SystemExit(f"{url}: sha256 {got}, expected {want}: refusing to use it")
    tmp.replace(path)
    return path


def unpack(name: str, dest: Path, keep=lambda rel: True) -> Path:
    """Unpack the npm tarball of `name` (its ``package/`` folder) into `dest`, the files `keep` accepts.

    A stamp file records the tarball's hash, so a second call with the same tarball does nothing."""
    url, want = ASSETS[name]
    stamp = dest / ".sha256"
    if stamp.exists() and stamp.read_text() == want:
        return dest
    tgz = fetch(name)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            rel = member.name.split("/", 1)[1] if "/" in member.name else ""
            if not member.isfile() or not rel or ".." in rel.split("/") or not keep(rel):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    stamp.write_text(want)
    return dest


def keep_mathjax(rel: str) -> bool:
    # es5/tex-chtml.js and what it loads on demand (TeX extensions, CHTML fonts, menu, accessibility)
    if rel in ("LICENSE", "package.json", "es5/tex-chtml.js"):
        return True
    return rel.startswith(("es5/input/", "es5/output/chtml", "es5/ui/", "es5/a11y/", "es5/sre/", "es5/adaptors/"))


def keep_widgets(rel: str) -> bool:
    # the standalone (non-AMD) embedder and the fonts and images it loads relative to itself
    return rel in ("LICENSE", "package.json") or (rel.startswith("dist/") and not rel.endswith((".map", "-amd.js")))


def unpack_assets(static: Path) -> None:
    """MathJax into static/mathjax (tex-chtml.js at its top), the widget embedder into static/widgets."""
    mathjax = unpack("mathjax", BUILD / "cache" / "mathjax", keep_mathjax)
    widgets = unpack("html-manager", BUILD / "cache" / "html-manager", keep_widgets)
    for src, dst in [(mathjax / "es5", static / "mathjax"), (widgets / "dist", static / "widgets")]:
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst)
        for meta in ("LICENSE", "package.json"):  # the licence (or the package.json naming it) travels along
            if (src.parent / meta).exists():
                shutil.copy2(src.parent / meta, dst / meta)


def readme_sections(text: str) -> tuple[str, str, dict[str, str]]:
    """The README's title, its introduction (before the first ``##``) and its ``##`` sections by name."""
    title_m = re.match(r"#\s+(.+)\n", text)
    if not title_m:
        raise SystemExit("README.md does not start with a '# title' line")
    parts = re.split(r"^## +(.+)$", text[title_m.end() :], flags=re.M)
    intro, rest = parts[0], parts[1:]
    sections = {rest[i].strip(): rest[i + 1] for i in range(0, len(rest), 2)}
    return title_m.group(1).strip(), intro.strip(), sections


INLINE_MATH = re.compile(r"(?<![\\$])\$([^$\n]+?)\$(?!\$)")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_NOTE = (
    "*An interactive widget ran here. Its saved state does not match this output, so it cannot be shown "
    "without a kernel: open the notebook in JupyterLab to use it.*"
)


def math_in_raw_html(html_text: str) -> str:
    """``$x$`` inside raw HTML (MyST leaves it as text) as the math span Sphinx would write for it."""
    return INLINE_MATH.sub(
        lambda m: f'<span class="math notranslate nohighlight">\\({html.escape(m.group(1))}\\)</span>', html_text
    )


def prepare_notebook(nb) -> dict[str, int]:
    """Adapt a copy of a notebook for the site, in memory; returns what was changed.

    - math in ``<summary>`` lines (the interview questions' collapsible titles) is raw HTML to MyST;
      it becomes a math span, which MathJax typesets like any other;
    - a widget output whose model is missing from the notebook's saved widget state cannot render
      without a kernel: it becomes a note saying so (the widgets whose state was saved do render).
    """
    changed = {"summary_math": 0, "widget_notes": 0}
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type == "markdown" and "<summary>" in cell.source:
            new = re.sub(r"<summary>.*?</summary>", lambda m: math_in_raw_html(m.group(0)), cell.source, flags=re.S)
            changed["summary_math"] += new != cell.source
            cell.source = new
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view and view.get("model_id") not in state:
                out["data"] = {"text/markdown": WIDGET_NOTE}
                changed["widget_notes"] += 1
    return changed


def write_sources(src: Path) -> dict[str, list[str]]:
    """Generate the Sphinx source tree in `src`; returns the toctree's documents by caption."""
    if src.exists():
        shutil.rmtree(src)
    (src / "notebooks").mkdir(parents=True)
    (src / "docs").mkdir()
    notebooks = sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    docs = sorted(p.relative_to(ROOT / "docs") for p in (ROOT / "docs").rglob("*.md"))  # instructors/, interview/ too
    if not notebooks:
        raise SystemExit("no notebooks/NN_*.ipynb found")
    for p in notebooks:
        nb = nbformat.read(p, as_version=4)
        prepare_notebook(nb)
        nbformat.write(nb, src / "notebooks" / p.name)
    for p in docs:
        (src / "docs" / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / "docs" / p, src / "docs" / p)

    title, intro, sections = readme_sections((ROOT / "README.md").read_text())
    missing = [s for s in INDEX_SECTIONS if s not in sections]
    if missing:
        raise SystemExit(f"README.md has no section(s) {missing}: update INDEX_SECTIONS in {__file__}")
    toc = {
        "Notebooks": [f"notebooks/{p.stem}" for p in notebooks],
        "Reference": [f"docs/{p.with_suffix('').as_posix()}" for p in docs],
    }
    template = (SITE_CONF / "index.md").read_text()
    body = "\n\n".join(f"## {s}\n\n{sections[s].strip()}" for s in INDEX_SECTIONS)
    toctrees = "\n\n".join(
        f"```{{toctree}}\n:caption: {cap}\n:maxdepth: 1\n\n" + "\n".join(entries) + "\n```"
        for cap, entries in toc.items()
    )
    index = template.replace("{{ title }}", title).replace("{{ intro }}", intro).replace("{{ readme }}", body)
    index = index.replace("{{ toctrees }}", toctrees)
    (src / "index.md").write_text(index)
    return toc


def build(jobs: str = "auto", quiet: bool = True) -> Path:
    t0 = time.perf_counter()
    STATIC.mkdir(parents=True, exist_ok=True)
    unpack_assets(STATIC)
    write_sources(SRC)
    if HTML.exists():  # no page of a deleted notebook may survive
        shutil.rmtree(HTML)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(SITE_CONF), "-W", "--keep-going", "-j", jobs]
    if quiet:
        cmd.append("-q")
    # -E: read every source afresh (the sources were just rewritten; the build is fast anyway).
    # -W --keep-going: every warning fails the build, after listing them all (site/conf.py silences the harmless)
    cmd += ["-E", "-d", str(SITE_BUILD / "doctrees"), str(SRC), str(HTML)]
    env = dict(os.environ, COURSE_SITE_STATIC=str(STATIC))
    r = subprocess.run(cmd, env=env, cwd=ROOT)
    if r.returncode:
        raise SystemExit(f"sphinx-build failed (exit {r.returncode}): see the warnings above")
    print(f"built {HTML / 'index.html'} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return HTML / "index.html"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-j", "--jobs", default="1", help="sphinx-build -j (default 1; 'auto' uses every core)")
    ap.add_argument("-v", "--verbose", action="store_true", help="show sphinx-build's progress")
    args = ap.parse_args(argv)
    build(args.jobs, quiet=not args.verbose)


if __name__ == "__main__":
    main()
