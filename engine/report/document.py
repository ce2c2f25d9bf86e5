"""A report as data: a title and a list of blocks that the HTML and the PDF writers both render, so
the two forms hold the same content. Every cell and sentence is plain text (the writers escape it); a
table cell may also be a tuple of parts, text and ``Formula``s, set one under the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Heading:
    text: str
    level: int = 2            # 2: a section, 3: a sub-section


@dataclass
class Text:
    text: str
    small: bool = False       # a caption under a chart or a table
    interactive: str = ""     # what the HTML's charts do under the mouse: said in the HTML only (a PDF is still)


@dataclass
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Formula:
    latex: str                # drawn as an image in both forms (engine/report/formulas.py), the LaTeX its alt text


Cell = str | tuple[str | Formula, ...]


def cell_parts(cell: Cell) -> tuple[str | Formula, ...]:
    """A cell's parts, the empty text ones left out."""
    return tuple(p for p in (cell if isinstance(cell, tuple) else (cell,)) if p != "")


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    widths: list[float] | None = None   # relative column widths (the PDF's; HTML lays out by itself)


@dataclass
class Code:
    text: str


@dataclass
class Chart:
    spec: dict[str, Any]      # Vega-Lite, from one of the pages' chart builders
    title: str                # what the chart is, for the PDF's alt text and the HTML's aria label


Block = Heading | Text | Bullets | Table | Code | Chart


@dataclass
class Report:
    title: str
    subtitle: str
    blocks: list[Block]
    kind: str                                    # "run" or "comparison"
    run_ids: list[int]
    sweep_id: int | None = None
    environment: dict[str, Any] = field(default_factory=dict)   # the bundle's environment.json

    @property
    def charts(self) -> list[Chart]:
        return [b for b in self.blocks if isinstance(b, Chart)]


def fmt(value: Any, digits: int = 3) -> str:
    """A cell: n/a for a missing value, floats to ``digits`` decimals, anything else as text."""
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if hasattr(value, "item"):  # numpy scalars
        return fmt(value.item(), digits)
    return str(value)
