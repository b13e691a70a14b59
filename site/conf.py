"""Sphinx configuration of the course's offline website; build it with ``python tools/build_site.py``.

Sources are generated into build/site/src (index.md from site/index.md and README.md, copies of the
notebooks and docs). Notebooks are rendered with their committed outputs and never executed. Every
asset is served from the site itself: MathJax 3 and the ipywidgets HTML manager are unpacked from
pinned npm tarballs into build/site/static by tools/build_site.py; nothing is fetched from a CDN.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATIC = Path(os.environ.get("COURSE_SITE_STATIC") or ROOT / "build" / "site" / "static")
if not (STATIC / "mathjax" / "tex-chtml.js").exists():
    raise RuntimeError(f"{STATIC}/mathjax is missing: build the site with `python tools/build_site.py`")

project = "Diffusion models, from the forward process to fast samplers"
author = "the course's authors"
copyright = "the course's authors, MIT licence"
language = "en"

extensions = ["myst_nb"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
# tools/build_site.py runs sphinx-build -W: any warning fails the build (a page missing from the
# toctree, a broken cross-reference, an output myst-nb cannot render). Only these are harmless:
suppress_warnings = [
    "myst.header",  # a heading level skipped (### right after #) in a notebook: renders fine
]

# --- notebooks: render the committed outputs, execute nothing
nb_execution_mode = "off"
nb_render_markdown_format = "myst"  # text/markdown outputs (notebook 10's tables) with tables and math
nb_merge_streams = True
# The widget embedder from the npm tarball (not require.js and the HTML manager from a CDN, myst-nb's
# default); it renders the saved widget state (controls and their last output) without a kernel.
nb_ipywidgets_js = {"widgets/embed.js": {}}

# --- Markdown (MyST): $...$ and $$...$$ math as in the notebooks, AMS environments
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_dmath_double_inline = True
myst_heading_anchors = 3

# --- math: the local MathJax 3 (Sphinx's default is MathJax 4 from jsDelivr)
mathjax_path = "mathjax/tex-chtml.js"
mathjax3_config = {"tex": {"tags": "ams"}, "chtml": {"matchFontHeight": False}}

# --- HTML
html_theme = "sphinx_book_theme"
html_title = "Diffusion models course"
html_static_path = [str(STATIC), "_static"]
html_css_files = ["course.css"]
html_js_files = [("mathjax2-compat.js", {"priority": 200})]  # before the widget embedder: see the file
html_favicon = "_static/favicon.svg"  # also spares the browser a request for /favicon.ico
html_copy_source = False  # the notebooks are in the repository; no 16 MB of _sources copies
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "navigation_with_keys": False,
    "home_page_in_toc": True,
}
# light by default: the figures and widgets are drawn on white (the reader can still switch);
# without it the theme logs a console error on a first visit ("Got invalid theme mode")
html_context = {"default_mode": "light"}


def setup(app):
    # MathJax on every page, not only on pages with math: the navigation bar shows page titles
    # with math (notebook 04's) on every page.
    app.set_html_assets_policy("always")
