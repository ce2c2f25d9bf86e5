"""A sweep's outcome as one table, built once by its kind and rendered in three places: the Compare
page (``records``, a dataframe), reports (``engine/report/content.py``: a heading, a caption and a
table of the cells ``fmt`` writes) and the CLI (``text``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

WHERE = ("cli", "page", "report")  # the places an outcome may be shown


@dataclass
class Outcome:
    title: str                       # "Reality check": the report's heading, the page's bold lead
    caption: str                     # one or two sentences saying what the table holds
    columns: list[str]
    rows: list[list[Any]]            # raw values (numbers, None, text, lists): each place formats them
    key: str = ""                    # the page's widget key
    widths: list[float] | None = None   # the report's relative column widths (the PDF's)
    findings: list[str] = field(default_factory=list)  # what it says, in sentences (the report's findings)
    note: str = ""                   # a line under the table (rows left out, a mark explained)

    def records(self) -> list[dict[str, Any]]:
        """One mapping a row, column to raw value (the page's dataframe)."""
        return [dict(zip(self.columns, row)) for row in self.rows]

    def text(self) -> str:
        """The table as aligned text: numbers right-aligned to 4 decimals, n/a where a value is missing,
        - for an empty cell (columns stay apart by two spaces or more)."""
        cells = [self.columns] + [[_text(v) for v in row] for row in self.rows]
        numeric = [all(isinstance(row[i], (int, float)) or row[i] is None for row in self.rows)
                   for i in range(len(self.columns))]
        width = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        lines = [f"{self.title}: {self.caption}"]
        for r in cells:
            lines.append("  ".join(c.rjust(w) if num else c.ljust(w)
                                   for c, w, num in zip(r, width, numeric)).rstrip())
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)


def _text(value: Any) -> str:
    if value is None:
        return "n/a"
    if value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)
