"""The metrics' formulas (``store.metrics.METRICS[key].latex``, which the Metrics page shows with
st.latex) drawn for the reports with matplotlib's mathtext, no TeX and no browser: SVG inline in the
HTML, PNG in the PDF (ReportLab places PNGs). Each formula is drawn once a process (about 0.1 s).

Mathtext reads a subset of LaTeX: the few commands it lacks are written as their equivalents first."""

from __future__ import annotations

import functools
import io
import re
import zlib

# (pattern, replacement): \Big( ... \Big) as \left( ... \right) (mathtext has no \big, \Big); a
# starred operator name as a plain one (limits under it are then set as subscripts); \le, \ge spelled out
MATHTEXT = [(r"\\[Bb]ig\(", r"\\left("), (r"\\[Bb]ig\)", r"\\right)"), (r"\\operatorname\*", r"\\operatorname"),
            (r"\\le(?![a-zA-Z])", r"\\leq"), (r"\\ge(?![a-zA-Z])", r"\\geq")]
SVG_SIZE = 11    # points: beside the HTML tables' 13 px text
PNG_SIZE = 8     # points: beside the PDF tables' 7 pt text
PNG_DPI = 300


class FormulaError(ValueError):
    """A formula mathtext cannot read."""


def mathtext(latex: str) -> str:
    for pattern, replacement in MATHTEXT:
        latex = re.sub(pattern, replacement, latex)
    return f"${latex}$"


def _draw(latex: str, size: float, fmt: str, dpi: float = 72) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)  # never a window; the lab and the CLI have no display
    from matplotlib import mathtext as mt
    from matplotlib.font_manager import FontProperties

    out = io.BytesIO()
    try:
        mt.math_to_image(mathtext(latex), out, prop=FontProperties(size=size), dpi=dpi, format=fmt)
    except ValueError as err:
        raise FormulaError(f"{latex}: {str(err).splitlines()[0]}") from None
    return out.getvalue()


@functools.lru_cache(maxsize=None)
def formula_svg(latex: str) -> str:
    """The formula as an ``<svg>`` element for inline HTML: its size in points, its text alternative
    the LaTeX (role img, aria-label, title), and its ids made its own (two formulas' glyph ids collide)."""
    from html import escape

    svg = _draw(latex, SVG_SIZE, "svg").decode("utf-8")
    svg = svg[svg.index("<svg"):]
    # out: a date, the LaTeX again, and a style sheet (inline, its rule for * would reach the whole page)
    svg = re.sub(r"<metadata>.*?</metadata>|<!--.*?-->|<style.*?</style>", "", svg, flags=re.S)
    prefix = f"f{zlib.crc32(latex.encode()):08x}-"  # the same in every process: a report is reproducible
    svg = re.sub(r'id="([^"]+)"', rf'id="{prefix}\1"', svg)
    svg = re.sub(r'(xlink:href|href)="#([^"]+)"', rf'\1="#{prefix}\2"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}\1)", svg)
    label = escape(latex, quote=True)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{label}" class="formula" ', 1).replace(
        ">", f"><title>{label}</title>", 1)


@functools.lru_cache(maxsize=None)
def formula_png(latex: str) -> tuple[bytes, float, float]:
    """The formula as a PNG at 300 dpi, with its size in points (width, height)."""
    from PIL import Image

    png = _draw(latex, PNG_SIZE, "png", PNG_DPI)
    width, height = Image.open(io.BytesIO(png)).size
    return png, width * 72 / PNG_DPI, height * 72 / PNG_DPI
