"""A report as a PDF, paged for A4 or US Letter, with vector charts.

ReportLab (platypus) lays out the text and the tables and leaves a box of the right size for each
chart; vl-convert renders each chart's Vega-Lite spec to a vector PDF without a browser, and pikepdf
(qpdf) places that page into its box as a form XObject, scaled to the column width. ReportLab's
open-source edition cannot embed a PDF page itself, hence the two steps; pypdf can, but it parses and
rewrites every chart's content stream (8 s for the run panels, against 0.1 s here). Text is set in DejaVu Sans where the system has it
(Greek and arrows included), else ReportLab's own Vera."""

from __future__ import annotations

import functools
import io
from pathlib import Path
from xml.sax.saxutils import escape

from engine.report.document import Bullets, Chart, Code, Heading, Report, Table, Text

PAPERS = ("a4", "letter")
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF")


@functools.lru_cache(maxsize=1)
def _fonts() -> dict[str, str]:
    """Register the report's fonts once: regular, bold and monospace."""
    import reportlab
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    for folder in FONT_DIRS:
        files = {"body": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf", "mono": "DejaVuSansMono.ttf"}
        if all((Path(folder) / f).exists() for f in files.values()):
            break
    else:
        folder = str(Path(reportlab.__file__).parent / "fonts")
        files = {"body": "Vera.ttf", "bold": "VeraBd.ttf", "mono": None}
    names = {}
    for role, file in files.items():
        if file is None:
            names[role] = "Courier"
            continue
        name = f"report-{role}"
        pdfmetrics.registerFont(TTFont(name, str(Path(folder) / file)))
        names[role] = name
    return names


def _styles():
    from reportlab.lib.styles import ParagraphStyle

    f = _fonts()
    return {
        "title": ParagraphStyle("title", fontName=f["bold"], fontSize=18, leading=22, spaceAfter=2),
        "subtitle": ParagraphStyle("subtitle", fontName=f["body"], fontSize=10, leading=13, textColor="#555555",
                                   spaceAfter=8),
        2: ParagraphStyle("h2", fontName=f["bold"], fontSize=13, leading=16, spaceBefore=10, spaceAfter=4,
                          keepWithNext=1),
        3: ParagraphStyle("h3", fontName=f["bold"], fontSize=11, leading=14, spaceBefore=8, spaceAfter=3,
                          keepWithNext=1),
        "body": ParagraphStyle("body", fontName=f["body"], fontSize=9, leading=12, spaceAfter=4),
        "small": ParagraphStyle("small", fontName=f["body"], fontSize=7.5, leading=9.5, textColor="#555555",
                                spaceAfter=5),
        "cell": ParagraphStyle("cell", fontName=f["body"], fontSize=7, leading=8.6),
        "head": ParagraphStyle("head", fontName=f["bold"], fontSize=7, leading=8.6),
        "code": ParagraphStyle("code", fontName=f["mono"], fontSize=7, leading=8.6, backColor="#f5f5f5",
                               borderPadding=4, spaceBefore=4, spaceAfter=8),
    }


def chart_pdf(spec: dict) -> bytes:
    """One chart as a one-page vector PDF (vl-convert, no browser)."""
    import vl_convert

    from engine.report.html import _vega_lite_version

    return vl_convert.vegalite_to_pdf(spec, vl_version=_vega_lite_version())


def _chart_slot(pdf: bytes, placed: list, max_height: float):
    """A box the size of the chart, scaled to fit the column (and ``max_height``); when drawn it notes
    its page and position, where the chart is merged in afterwards."""
    import pikepdf
    from reportlab.platypus import Flowable

    source = pikepdf.open(io.BytesIO(pdf))  # kept open (in ``placed``) until its page is merged
    page = source.pages[0]
    left, bottom, right, top = (float(v) for v in page.mediabox)
    width, height = right - left, top - bottom

    class ChartSlot(Flowable):
        def wrap(self, available_width, available_height):
            self.scale = min(1.0, available_width / width, max_height / height)
            self.width, self.height = width * self.scale, height * self.scale
            return self.width, self.height

        def draw(self):
            x, y = self.canv.absolutePosition(0, 0)
            placed.append((self.canv.getPageNumber() - 1, (x, y, x + self.width, y + self.height), source))

    return ChartSlot()


def _table(block: Table, styles, frame_width: float):
    from reportlab.lib import colors
    from reportlab.platypus import Paragraph
    from reportlab.platypus import Table as RLTable
    from reportlab.platypus import TableStyle

    widths = block.widths or [1.0 / len(block.columns)] * len(block.columns)
    total = sum(widths)
    header = any(block.columns)
    data = ([[Paragraph(escape(c), styles["head"]) for c in block.columns]] if header else []) + \
        [[Paragraph(escape(str(cell)), styles["cell"]) for cell in row] for row in block.rows]
    table = RLTable(data, colWidths=[frame_width * w / total for w in widths], repeatRows=1 if header else 0)
    style = [("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#cccccc")), ("VALIGN", (0, 0), (-1, -1), "TOP"),
             ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5)]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f0f0f0")))
    table.setStyle(TableStyle(style))
    return table


def render_pdf(report: Report, paper: str = "a4") -> bytes:
    import pikepdf
    from reportlab.lib.pagesizes import A4, letter
    from reportlab.lib.units import mm
    from reportlab.platypus import ListFlowable, ListItem, Paragraph, Preformatted, SimpleDocTemplate

    if paper not in PAPERS:
        raise ValueError(f"paper = {paper!r}: must be one of {', '.join(PAPERS)}")
    pagesize = A4 if paper == "a4" else letter
    styles = _styles()
    margin = 15 * mm
    frame_width, frame_height = pagesize[0] - 2 * margin, pagesize[1] - 2 * margin
    placed: list = []
    story = [Paragraph(escape(report.title), styles["title"]), Paragraph(escape(report.subtitle), styles["subtitle"])]
    for block in report.blocks:
        if isinstance(block, Heading):
            story.append(Paragraph(escape(block.text), styles[block.level]))
        elif isinstance(block, Text):
            story.append(Paragraph(escape(block.text), styles["small" if block.small else "body"]))
        elif isinstance(block, Bullets):
            story.append(ListFlowable([ListItem(Paragraph(escape(t), styles["body"]), leftIndent=10) for t in block.items],
                                      bulletType="bullet", start="•", leftIndent=10, bulletFontName=_fonts()["body"]))
        elif isinstance(block, Table):
            story.append(_table(block, styles, frame_width))
        elif isinstance(block, Code):
            chars = int(frame_width / (0.6 * styles["code"].fontSize)) - 2  # a monospace glyph is 0.6 em wide
            story.append(Preformatted(block.text.rstrip("\n"), styles["code"], maxLineLength=chars, newLineChars=""))
        elif isinstance(block, Chart):
            story.append(_chart_slot(chart_pdf(block.spec), placed, frame_height * 0.85))

    def footer(canvas, doc):
        canvas.saveState()
        canvas.setFont(_fonts()["body"], 7)
        canvas.setFillColorRGB(0.45, 0.45, 0.45)
        canvas.drawString(margin, margin / 2, f"CL Lab · {report.title}")
        canvas.drawRightString(pagesize[0] - margin, margin / 2, f"page {doc.page}")
        canvas.restoreState()

    text = io.BytesIO()
    doc = SimpleDocTemplate(text, pagesize=pagesize, leftMargin=margin, rightMargin=margin, topMargin=margin,
                            bottomMargin=margin, title=report.title, subject=report.subtitle, author="CL Lab",
                            creator="CL Lab (ReportLab, vl-convert, pypdf)")
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    document = pikepdf.open(io.BytesIO(text.getvalue()))
    for page_index, box, chart in placed:
        document.pages[page_index].add_overlay(chart.pages[0], pikepdf.Rectangle(*box))
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
