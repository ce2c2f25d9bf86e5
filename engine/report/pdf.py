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

from engine.report.document import Bullets, Cell, Chart, Code, Formula, Heading, Report, Table, Text, cell_parts
from engine.report.formulas import formula_png

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
        "head": ParagraphStyle("head", fontName=f["bold"], fontSize=7, leading=8.6, splitLongWords=0),
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


PAD = 13  # a cell's left and right padding (ReportLab's 6 + 6) and a point to spare


def _longest_word(text: str, style) -> float:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    return max((stringWidth(word, style.fontName, style.fontSize) for word in text.split()), default=0.0)


def _fit(block: Table, styles, frame_width: float) -> tuple[list[float], object, object]:
    """Column widths and the header and cell styles for a table: each column at least as wide as its
    longest word (a header word is never split: "forgetting", not "forgettin g"; a cell word up to a
    quarter of the page), the rest shared as ``block.widths`` asks; a table whose words do not fit the
    page gets a smaller font."""
    head, cell = styles["head"], styles["cell"]
    n = len(block.columns)
    for _ in range(2):
        need = []
        for i, column in enumerate(block.columns):
            texts = [p for row in block.rows for p in cell_parts(row[i]) if isinstance(p, str)]
            need.append(PAD + max([_longest_word(column, head)] +
                                  [min(_longest_word(t, cell), frame_width / 4) for t in texts]))
        if sum(need) <= frame_width:
            break
        factor = 0.98 * (frame_width - n * PAD) / (sum(need) - n * PAD)
        head, cell = (style.clone(style.name, fontSize=style.fontSize * factor, leading=style.leading * factor)
                      for style in (head, cell))
    share = block.widths or [1.0] * n
    widths = [frame_width * w / sum(share) for w in share]
    deficit = sum(max(k - w, 0) for k, w in zip(need, widths))
    slack = [max(w - k, 0) for k, w in zip(need, widths)]  # what a column can give to the ones too narrow
    widths = [max(w, k) - (deficit * s / sum(slack) if sum(slack) else 0) for k, w, s in zip(need, widths, slack)]
    return widths, head, cell


def _cell(cell: Cell, style, width: float):
    """A Paragraph; a cell of parts a list of flowables, each formula a PNG scaled to the column."""
    from reportlab.platypus import Image, Paragraph

    if isinstance(cell, str):
        return Paragraph(escape(cell), style)
    flowables = []
    for part in cell_parts(cell):
        if isinstance(part, Formula):
            png, w, h = formula_png(part.latex)
            scale = min(1.0, (width - PAD) / w)
            flowables.append(Image(io.BytesIO(png), width=w * scale, height=h * scale, hAlign="LEFT"))
        else:
            flowables.append(Paragraph(escape(part), style))
    return flowables


def _table(block: Table, styles, frame_width: float):
    from reportlab.lib import colors
    from reportlab.platypus import Paragraph
    from reportlab.platypus import Table as RLTable
    from reportlab.platypus import TableStyle

    widths, head, cell = _fit(block, styles, frame_width)
    header = any(block.columns)
    data = ([[Paragraph(escape(c), head) for c in block.columns]] if header else []) + \
        [[_cell(value, cell, widths[i]) for i, value in enumerate(row)] for row in block.rows]
    table = RLTable(data, colWidths=widths, repeatRows=1 if header else 0)
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
