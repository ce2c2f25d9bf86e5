"""The Pareto chart: runs (or configs) on two metrics, the non-dominated ones joined by the frontier,
and optionally the weight-interpolation trade-off curves beside them. A plain function, data in,
Altair chart out, shared by the pages and the report exporter. No Streamlit here.

A page opens the clicked run with::

    event = st.altair_chart(pareto_chart(table, x, y), on_select="rerun", selection_mode="pick")
    picked = event.selection.pick   # [{"id": 42}] once a point is clicked
"""

from __future__ import annotations

import copy
import functools

import altair as alt
import numpy as np
import pandas as pd

from store.pareto import axis_title

MAX_ROWS = 5000          # Altair's limit per dataset (MaxRowsError above it)
WIDTH, HEIGHT = 520, 420
FRONT_COLOR = "#222"


def _fit_rows(table: pd.DataFrame, limit: int = MAX_ROWS) -> tuple[pd.DataFrame, str]:
    """At most ``limit`` rows: every frontier point, and an evenly spread sample of the rest."""
    if len(table) <= limit:
        return table, ""
    front = table[table["on_front"]]
    rest = table[~table["on_front"]]
    keep = max(0, limit - len(front))
    picked = rest.iloc[np.linspace(0, len(rest) - 1, keep).round().astype(int)] if keep else rest.iloc[:0]
    return pd.concat([front, picked]), f" (showing {len(front) + len(picked):,} of {len(table):,}, every frontier point kept)"


def pareto_chart(table: pd.DataFrame, x: str, y: str, tradeoffs: pd.DataFrame | None = None,
                 width: int = WIDTH, height: int = HEIGHT, color: str = "strategy", color_title: str | None = None,
                 styles: dict[str, list] | None = None) -> alt.TopLevelMixin:
    """Scatter of ``table`` (``store.pareto.frontier_table``, by run or by config) on ``x`` and ``y``:

    - coloured by strategy (or the column ``color``, with the colours of ``styles``,
      ``store.palette.group_styles``, so that a page's charts agree); the non-dominated points
      bigger and outlined, joined by the frontier line (sorted along x); configs (``<x>_std`` columns) get one-standard-deviation error bars;
    - a tooltip with the id, strategy, hyperparameters and both values (mean, sd and n for configs);
    - a point selection named ``pick`` on the field ``id`` (click), for
      ``st.altair_chart(..., on_select="rerun", selection_mode="pick")``;
    - with ``tradeoffs`` (rows of ``engine.interpolate.tradeoff_table``, any number of runs), a
      second panel below it: each interpolation curve, plasticity (accuracy on the new task k)
      against stability (mean accuracy on the tasks before k), as a line with small points,
      labelled by run and switch at alpha 0 and 1, alpha in the tooltip.

    Only the columns drawn are converted, once (the layers share the top-level data); more than
    5,000 rows are cut to every frontier point plus an even sample."""
    data, title, layout = _points(table, x, y, color, color_title, styles)
    runs = _runs_layer(data, *layout, width, height).properties(title=title)
    # SVG: each point is an element with its data in an aria label (clickable by tests, crisp in reports)
    svg = {"embedOptions": {"renderer": "svg"}}
    if tradeoffs is None or len(tradeoffs) == 0:
        return runs.properties(usermeta=svg)
    # below the frontier, not beside it: two 520 px panels side by side spilled out of a 1440 px page (1768 px)
    return alt.vconcat(runs, _tradeoff_panel(tradeoffs, width, height)).resolve_scale(color="independent").properties(
        usermeta=svg)


POINTS_DATA = "pareto_points"


def pareto_spec(table: pd.DataFrame, x: str, y: str, width: int = WIDTH, height: int = HEIGHT,
                color: str = "strategy", color_title: str | None = None, styles: dict[str, list] | None = None) -> dict:
    """``pareto_chart`` without trade-off curves as a Vega-Lite spec for ``st.vega_lite_chart``: the
    spec without its data is built (and validated by Altair) once per layout and kept, the points are
    a named dataset, so a page refreshing during a sweep sends the same spec with new data."""
    data, title, layout = _points(table, x, y, color, color_title, styles)
    spec = copy.deepcopy(_runs_template(*layout, width, height))
    spec["title"] = title
    spec["datasets"] = {POINTS_DATA: data}
    return spec


@functools.lru_cache(maxsize=32)
def _runs_template(*args) -> dict:
    return _runs_layer(alt.Data(name=POINTS_DATA), *args).properties(
        usermeta={"embedOptions": {"renderer": "svg"}}).to_dict()


def _points(table: pd.DataFrame, x: str, y: str, color: str, color_title: str | None,
            styles: dict[str, list] | None) -> tuple[pd.DataFrame, str, tuple]:
    """The rows drawn, the title, and the layout (what the spec depends on besides the data)."""
    config_mode = f"{x}_std" in table.columns
    cols = ["id", "strategy", "hparams", x, y, "on_front"] + ([color] if color not in ("strategy", x, y) else [])
    if config_mode:
        cols += [f"{x}_std", f"{y}_std", "n"]
    elif "name" in table.columns:
        cols.append("name")
    data, note = _fit_rows(table[cols])
    data = data.assign(on_front=data["on_front"].astype(bool))
    if config_mode:  # NaN (one run) -> null: no error bar
        data = data.astype({f"{x}_std": float, f"{y}_std": float})
    n_front = int(data["on_front"].sum())
    title = f"{'Configs' if config_mode else 'Runs'}: {n_front} on the frontier of {len(table):,}{note}"
    palette = (tuple(styles["domain"]), tuple(styles["colors"])) if styles else None
    return data, title, (x, y, config_mode, "name" in data.columns, color, color_title, palette)


def _runs_layer(data, x: str, y: str, config_mode: bool, named: bool, color: str, color_title: str | None,
                palette: tuple | None, width: int, height: int) -> alt.LayerChart:
    pick = alt.selection_point(name="pick", fields=["id"], on="click")
    ex = alt.X(f"{x}:Q", title=axis_title(x), scale=alt.Scale(zero=False))
    ey = alt.Y(f"{y}:Q", title=axis_title(y), scale=alt.Scale(zero=False))
    tooltip = [alt.Tooltip("id:Q", title="config (first run)" if config_mode else "run"),
               alt.Tooltip("strategy:N"), alt.Tooltip("hparams:N", title="hyperparameters"),
               alt.Tooltip(f"{x}:Q", format=".4f"), alt.Tooltip(f"{y}:Q", format=".4f")]
    if config_mode:
        tooltip += [alt.Tooltip(f"{x}_std:Q", format=".4f", title=f"{x} sd"),
                    alt.Tooltip(f"{y}_std:Q", format=".4f", title=f"{y} sd"), alt.Tooltip("n:Q", title="seeds")]
    elif named:
        tooltip.insert(1, alt.Tooltip("name:N"))
    tooltip.append(alt.Tooltip("on_front:N", title="on the frontier"))
    front = "datum.on_front"
    scale = alt.Scale(domain=list(palette[0]), range=list(palette[1])) if palette else alt.Undefined
    hue = alt.Color(f"{color}:N", title=color_title or color, scale=scale)
    if color != "strategy":
        tooltip.insert(2, alt.Tooltip(f"{color}:N", title=color_title or color))

    base = alt.Chart().encode(x=ex, y=ey)
    layers = []
    if config_mode:
        layers += [
            base.transform_calculate(lo=f"datum['{x}'] - datum['{x}_std']", hi=f"datum['{x}'] + datum['{x}_std']")
            .transform_filter(f"isValid(datum['{x}_std'])")
            .mark_rule(opacity=0.4).encode(x=alt.X("lo:Q"), x2=alt.X2("hi:Q"), color=hue.legend(None)),
            base.transform_calculate(lo=f"datum['{y}'] - datum['{y}_std']", hi=f"datum['{y}'] + datum['{y}_std']")
            .transform_filter(f"isValid(datum['{y}_std'])")
            .mark_rule(opacity=0.4).encode(y=alt.Y("lo:Q"), y2=alt.Y2("hi:Q"), color=hue.legend(None)),
        ]
    frontier = base.transform_filter(front).mark_line(color=FRONT_COLOR, strokeWidth=1.5, strokeDash=[6, 3]).encode(
        order=alt.Order(f"{x}:Q"))
    points = base.mark_point(filled=True).encode(
        color=hue,
        size=alt.condition(front, alt.value(150), alt.value(45)),
        stroke=alt.condition(front, alt.value(FRONT_COLOR), alt.value(None)),
        strokeWidth=alt.condition(front, alt.value(1.8), alt.value(0)),
        opacity=alt.condition(pick, alt.value(0.95), alt.value(0.25)),
        tooltip=tooltip,
    ).add_params(pick)
    layers += [frontier, points]
    return alt.layer(*layers, data=data).properties(width=width, height=height)


def _tradeoff_panel(tradeoffs: pd.DataFrame, width: int, height: int) -> alt.LayerChart:
    t = tradeoffs[["run_id", "from_task", "to_task", "alpha", "plasticity", "stability"]]
    t = t.assign(curve="run " + t["run_id"].astype(str) + ": " + t["from_task"].astype(str) + "→"
                 + t["to_task"].astype(str))
    if len(t) > MAX_ROWS:  # whole curves, as many as fit
        curves = t["curve"].drop_duplicates()
        sizes = t.groupby("curve", sort=False).size().reindex(curves).cumsum()
        t = t[t["curve"].isin(sizes[sizes <= MAX_ROWS].index)]
    ends = "datum.alpha == 0 || datum.alpha == 1"
    t = t.assign(label=np.where(t["alpha"] == 0, t["curve"] + " α=0", "α=1"))
    base = alt.Chart().encode(
        x=alt.X("plasticity:Q", title="plasticity: accuracy on the new task k", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("stability:Q", title="stability: mean accuracy on tasks before k", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("curve:N", title="interpolation"))
    line = base.mark_line(strokeWidth=1.5).encode(order="alpha:Q", detail="curve:N")
    dots = base.mark_point(size=22, filled=True).encode(
        tooltip=[alt.Tooltip("curve:N", title="run: task switch"), alt.Tooltip("alpha:Q", format=".2f"),
                 alt.Tooltip("plasticity:Q", format=".4f"), alt.Tooltip("stability:Q", format=".4f")])
    labels = base.transform_filter(ends).mark_text(align="left", dx=5, dy=-5, fontSize=10).encode(text="label:N")
    return alt.layer(line, dots, labels, data=t).properties(
        width=width, height=height,
        title="Trade-off models: weights interpolated θ(α) = (1-α) θ(k-1) + α θ(k), no retraining")
