"""Printable handouts: one PDF per notebook, printed by headless Chromium from the offline site's pages.

    python tools/build_handouts.py                 # build/handouts/NN_name.pdf for every notebook
    python tools/build_handouts.py --only 01 05    # some of them

The pages come from `make site` (built first when missing), so the math is typeset by the site's own local MathJax
and figures, tables and code print as a learner sees them; nothing is fetched from outside the machine. Needs
Debian's `chromium` and the playwright Python package (the `site` extra); `CHROMIUM` overrides the browser's path.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "build" / "site" / "html"
OUT = ROOT / "build" / "handouts"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def build(only: list[str] | None = None, out: Path = OUT) -> list[Path]:
    """Print each notebook page of the site to ``out/NN_name.pdf`` once MathJax has typeset it; the PDFs written."""
    from playwright.sync_api import sync_playwright

    exe = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("handouts need Debian's chromium (apt-get install chromium) or CHROMIUM=/path/to/chrome")
    if not (HTML / "index.html").exists():
        import build_site

        build_site.build()
    pages = sorted((HTML / "notebooks").glob("[0-9][0-9]_*.html"))
    if only:
        pages = [p for p in pages if p.name[:2] in only]
    if not pages:
        raise SystemExit(f"no notebook pages in {HTML / 'notebooks'} match {only}")
    out.mkdir(parents=True, exist_ok=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(HTML)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    written = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe)
            page = browser.new_page()
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("http://127.0.0.1") else r.abort())
            for p in pages:
                t0 = time.perf_counter()
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/notebooks/{p.name}", wait_until="load")
                page.wait_for_function(
                    "() => !window.MathJax || !MathJax.startup || MathJax.startup.promise", timeout=60_000
                )
                page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
                target = out / f"{p.stem}.pdf"
                page.pdf(path=str(target), format="A4", print_background=True, margin={"top": "12mm", "bottom": "12mm"})
                written.append(target)
                print(
                    f"{target.relative_to(ROOT)}  {target.stat().st_size / 1e6:.1f} MB  {time.perf_counter() - t0:.1f} s"
                )
            browser.close()
    finally:
        server.shutdown()
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="notebook numbers, e.g. 01 05 (default: all)")
    args = parser.parse_args(argv)
    build(args.only)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # build_site, beside this file
    main()
