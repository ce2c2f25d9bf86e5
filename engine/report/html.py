"""A report as one self-contained HTML file: Vega, Vega-Lite and vega-embed embedded once (the bundle
vl-convert-python ships), each chart's Vega-Lite spec inline as JSON, no request to any network.
The charts stay interactive: the specs keep the pages' shared zoom and hover parameters."""

from __future__ import annotations

import functools
import html
import json
import os
from pathlib import Path

from engine.report.document import Bullets, Cell, Chart, Code, Formula, Heading, Report, Table, Text, cell_parts
from engine.report.formulas import formula_svg

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #222;
       max-width: 1120px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 26px; margin-bottom: 2px; } .subtitle { color: #555; margin-top: 0; }
h2 { font-size: 20px; border-bottom: 1px solid #ddd; padding-bottom: 3px; margin-top: 28px; }
h3 { font-size: 16px; margin-top: 20px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; vertical-align: top; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; border: 1px solid #e3e3e3; padding: 8px 10px; overflow-x: auto; font-size: 12.5px; }
.small { color: #555; font-size: 12.5px; } .chart { margin: 10px 0; }
.formula-box { margin: 3px 0; } svg.formula { vertical-align: middle; }  /* never scaled down: the column widens to it */
footer { color: #777; font-size: 12px; margin-top: 32px; border-top: 1px solid #ddd; padding-top: 6px; }
"""

# Each chart's spec sits in a JSON script beside its container; vegaEmbed draws them all (SVG) and
# keeps the views in window.clLabCharts (promises), which the browser test waits on.
EMBED = """
window.clLabCharts = [];
for (const source of document.querySelectorAll('script[data-chart]')) {
  const target = document.getElementById(source.dataset.chart);
  const options = {renderer: 'svg', actions: {export: true, source: false, compiled: false, editor: false}};
  window.clLabCharts.push(vegaEmbed(target, JSON.parse(source.textContent), options).then(r => r.view)
    .catch(err => { target.textContent = 'This chart could not be drawn: ' + err; throw err; }));
}
"""


def _vega_lite_version() -> str | None:
    """The Vega-Lite version of the bundle: altair's major.minor when vl-convert has it."""
    import altair
    import vl_convert

    wanted = ".".join(altair.VEGALITE_VERSION.split(".")[:2])
    return wanted if wanted in vl_convert.get_vegalite_versions() else None


@functools.lru_cache(maxsize=1)
def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script (about 0.9 MB) that sets ``window.vegaEmbed``.
    vl-convert builds it in about 2 s the first time in a process; it is kept in the user's cache
    folder by vl-convert and Vega-Lite version, so later processes read it in milliseconds."""
    import vl_convert

    version = _vega_lite_version()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cl-lab" / \
        f"vega-bundle-{vl_convert.__version__}-{version or 'latest'}.js"
    try:
        text = cache.read_text(encoding="utf-8")
        if text.rstrip().endswith(";") and "window.vegaEmbed" in text:
            return text
    except OSError:
        pass
    text = vl_convert.javascript_bundle(vl_version=version)
    try:  # a cache that cannot be written only costs the next process the 2 s again
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(cache)
    except OSError:
        pass
    return text


def _script_json(data: dict) -> str:
    """JSON safe inside a <script> element: '</' (which could close it) and '<!--' written escaped."""
    text = json.dumps(data, separators=(",", ":"), default=str, allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\u0021--")


def _is_number(cell: Cell) -> bool:
    if not isinstance(cell, str):
        return False
    try:
        float(cell.split(" ± ")[0])
        return True
    except ValueError:
        return cell == "n/a"


def _cell(cell: Cell) -> str:
    """Text escaped; a cell of parts one under the other, each formula an inline SVG."""
    if isinstance(cell, str):
        return html.escape(cell)
    return "".join(f'<div class="formula-box">{formula_svg(p.latex)}</div>' if isinstance(p, Formula)
                   else f"<div>{html.escape(p)}</div>" for p in cell_parts(cell))


def _table(block: Table) -> str:
    numeric = [bool(block.rows) and all(_is_number(row[i]) for row in block.rows) for i in range(len(block.columns))]
    head = "" if not any(block.columns) else \
        "<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in block.columns) + "</tr></thead>"
    body = "".join("<tr>" + "".join(f'<td{" class=num" if numeric[i] else ""}>{_cell(cell)}</td>'
                                    for i, cell in enumerate(row)) + "</tr>" for row in block.rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def render_html(report: Report) -> bytes:
    esc = html.escape
    parts, specs = [], []
    for block in report.blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            text = f"{block.text} {block.interactive}" if block.interactive else block.text
            parts.append(f'<p{" class=small" if block.small else ""}>{esc(text)}</p>')
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            parts.append(_table(block))
        elif isinstance(block, Code):
            parts.append(f"<pre><code>{esc(block.text)}</code></pre>")
        elif isinstance(block, Chart):
            n = len(specs)
            parts.append(f'<div class="chart" id="chart-{n}" role="figure" aria-label="{esc(block.title)}"></div>')
            specs.append(f'<script type="application/json" data-chart="chart-{n}">{_script_json(block.spec)}</script>')
    script = vega_bundle().replace("</script", "<\\/script")  # none today; a later bundle must not close the tag
    generated = report.environment.get("report", {}).get("generated_at", "")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="CL Lab">
<title>{esc(report.title)}</title>
<style>{STYLE}</style>
</head><body>
<h1>{esc(report.title)}</h1>
<p class="subtitle">{esc(report.subtitle)}</p>
{chr(10).join(parts)}
<footer>CL Lab report, generated {esc(generated)}. Self-contained: it needs no network and no lab to open.</footer>
{chr(10).join(specs)}
<script>{script}</script>
<script>{EMBED}</script>
</body></html>
"""
    return page.encode("utf-8")
