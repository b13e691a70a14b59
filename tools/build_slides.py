"""Build one reveal.js slide deck per notebook that works offline: ``python tools/build_slides.py``.

Writes ``build/slides/NN_name.slides.html`` for each ``notebooks/NN_*.ipynb`` (``--only 01 09`` for a
few), with nbconvert's slides exporter and a template that loads reveal.js 4, MathJax 3 and the
ipywidgets embedder from ``build/slides/_static`` (unpacked from the npm tarballs pinned in
``tools/build_site.py``), never from a CDN. Nothing is executed: the decks show the committed outputs.

A cell tagged for slides (JupyterLab's property inspector, "Slide Type", i.e. the cell's
``slideshow.slide_type`` metadata) keeps its type. Untagged cells, which today are all of them,
get one assigned in memory (the files are not touched):

- a Markdown cell that starts with a ``#`` or ``##`` heading starts a new slide, one that starts
  with ``###`` a new sub-slide (reveal.js's vertical stack, reached with the down arrow);
- every other cell continues the current (sub-)slide, until what it holds would overflow the
  slide: then it starts a new sub-slide (estimated from lines of text and figures);
- a code cell whose source is longer than ``MAX_CODE_LINES`` shows its outputs only, and is
  skipped when it has none; long printed output keeps its last ``MAX_STREAM_LINES`` lines.

Slides that still overflow scroll vertically.
"""

from __future__ import annotations

import argparse
import copy
import math
import shutil
import sys
import time
from pathlib import Path

import nbformat
from jinja2 import DictLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_site import BUILD, ROOT, keep_mathjax, keep_widgets, unpack  # noqa: E402

OUT = BUILD / "slides"
MAX_CODE_LINES = 15  # longer code cells show their outputs only
MAX_STREAM_LINES = 12  # printed output kept per stream (the last lines)
SLIDE_LINES = 24  # what fits on a 960 x 700 slide, in lines of body text
FIGURE_LINES = 14  # a figure counts as this many lines

TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{# nbconvert's reveal template with every script local: no jQuery, require.js or mermaid from a CDN #}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}
<link rel="icon" href="data:,">
<script>
window.MathJax = {
  tex: {inlineMath: [['$', '$'], ['\\(', '\\)']], displayMath: [['$$', '$$'], ['\\[', '\\]']],
        processEscapes: true, processEnvironments: true, tags: 'ams'},
  chtml: {matchFontHeight: false},
  options: {ignoreHtmlClass: 'tex2jax_ignore', processHtmlClass: 'tex2jax_process'}
};
</script>
<script defer src="{{ resources.course_static }}/mathjax/tex-chtml.js"></script>
<style>
.reveal .slides > section, .reveal .slides > section > section { height: 100%; overflow-y: auto; }
.reveal img { max-height: 460px; width: auto; }
.reveal .jp-OutputArea-output pre { font-size: 15px; }
:root { --jp-code-font-size: 15px; --jp-cell-prompt-width: 70px; }
</style>
{%- endblock html_head_js_mathjax -%}
{% block footer_js %}
{%- if "widgets" in nb.metadata %}
<script>{{ resources.mathjax2_compat }}</script>
<script src="{{ resources.course_static }}/widgets/embed.js"></script>
{%- endif %}
<script src="{{ reveal_url_prefix }}/dist/reveal.js"></script>
<script src="{{ reveal_url_prefix }}/plugin/notes/notes.js"></script>
<script>
Reveal.initialize({
  controls: true, progress: true, history: true, hash: true,
  transition: "{{ reveal_transition }}", slideNumber: "{{ reveal_number }}",
  width: {{ reveal_width }}, height: {{ reveal_height }},
  plugins: [RevealNotes]
});
</script>
{% endblock footer_js %}
"""


def text_lines(text: str, width: int = 90) -> int:
    return sum(max(1, math.ceil(len(line) / width)) for line in text.splitlines() or [""])


def prepare_code_cell(cell) -> int:
    """Trim a code cell for a slide (in place); returns its height in lines, 0 when skipped."""
    src_lines = len(cell.source.splitlines())
    show_source = src_lines <= MAX_CODE_LINES
    if not show_source:
        if not cell.outputs:
            cell.metadata["slideshow"] = {"slide_type": "skip"}
            return 0
        cell.metadata.setdefault("transient", {})["remove_source"] = True
    height = src_lines + 1 if show_source else 0
    for out in cell.outputs:
        if out.output_type == "stream":
            lines = out.text.splitlines()
            if len(lines) > MAX_STREAM_LINES:
                out.text = "\n".join([f"[... {len(lines) - MAX_STREAM_LINES} lines above]"] + lines[-MAX_STREAM_LINES:])
            height += min(len(lines), MAX_STREAM_LINES + 1)
        elif out.output_type in ("display_data", "execute_result"):
            data = out.get("data", {})
            if any(k.startswith("image/") for k in data) or "application/vnd.jupyter.widget-view+json" in data:
                height += FIGURE_LINES
            elif "text/html" in data or "text/markdown" in data:
                height += min(20, text_lines(str(data.get("text/markdown", data.get("text/html", "")))) // 2 + 2)
            else:
                height += text_lines(str(data.get("text/plain", "")))
        elif out.output_type == "error":
            height += 6
    return height


def assign_slide_types(nb) -> dict[str, int]:
    """Give every cell a ``slideshow.slide_type`` (see the module docstring); returns counts per type."""
    used = 0
    counts: dict[str, int] = {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            height = text_lines(cell.source) + 2 * cell.source.count("$$") // 2 + 1
            first = cell.source.lstrip().split("\n", 1)[0]
            if first.startswith(("# ", "## ")):
                kind, used = "slide", height
            elif first.startswith("### "):
                kind, used = "subslide", height
            elif used and used + height > SLIDE_LINES:
                kind, used = "subslide", height
            else:
                kind, used = "-", used + height
        elif cell.cell_type == "code":
            height = prepare_code_cell(cell)
            if not height:
                kind = "skip"
            elif used and used + height > SLIDE_LINES:
                kind, used = "subslide", height
            else:
                kind, used = "-", used + height
        else:
            kind, height = "skip", 0
        tagged = cell.metadata.get("slideshow", {}).get("slide_type")
        if tagged:  # an author's tag (Jupyter's slideshow metadata) wins over the rules above
            kind, used = tagged, (height if tagged in ("slide", "subslide") else used)
        cell.metadata["slideshow"] = {"slide_type": kind}
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def unpack_assets(static: Path) -> None:
    reveal = unpack(
        "reveal.js",
        BUILD / "cache" / "reveal.js",
        lambda rel: rel in ("LICENSE", "package.json") or rel.startswith(("dist/", "plugin/notes/")),
    )
    mathjax = unpack("mathjax", BUILD / "cache" / "mathjax", keep_mathjax)
    widgets = unpack("html-manager", BUILD / "cache" / "html-manager", keep_widgets)
    for src, dst in [
        (reveal, static / "reveal.js"),
        (mathjax / "es5", static / "mathjax"),
        (widgets / "dist", static / "widgets"),
    ]:
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".sha256"))


def exporter():
    from nbconvert import SlidesExporter

    exp = SlidesExporter(
        extra_loaders=[DictLoader({"course_reveal.html.j2": TEMPLATE})],
        template_file="course_reveal.html.j2",
        reveal_url_prefix="_static/reveal.js",
        reveal_theme="white",
        reveal_transition="none",
        reveal_number="c/t",
    )
    return exp


def build(only: list[str] | None = None, out: Path = OUT) -> list[Path]:
    t0 = time.perf_counter()
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if only:
        notebooks = [p for p in notebooks if any(p.name.startswith(o) for o in only)]
        if not notebooks:
            raise SystemExit(f"no notebook matches {only}")
    out.mkdir(parents=True, exist_ok=True)
    unpack_assets(out / "_static")
    exp = exporter()
    compat = (ROOT / "site" / "_static" / "mathjax2-compat.js").read_text()  # see that file
    written = []
    for path in notebooks:
        nb = copy.deepcopy(nbformat.read(path, as_version=4))
        counts = assign_slide_types(nb)
        heading = next((c.source.lstrip().split("\n", 1)[0] for c in nb.cells if c.cell_type == "markdown"), "")
        nb.metadata["title"] = heading.lstrip("# ").strip() or path.stem
        body, _ = exp.from_notebook_node(
            nb, resources={"metadata": {"name": path.stem}, "course_static": "_static", "mathjax2_compat": compat}
        )
        target = out / f"{path.stem}.slides.html"
        target.write_text(body, encoding="utf-8")
        written.append(target)
        print(f"{target.relative_to(ROOT)}: {counts.get('slide', 0)} slides, {counts.get('subslide', 0)} sub-slides")
    print(f"{len(written)} decks in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", help="notebook name prefixes, e.g. 01 09_audio")
    args = ap.parse_args(argv)
    build(args.only)


if __name__ == "__main__":
    main()
