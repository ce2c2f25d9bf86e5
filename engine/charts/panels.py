"""Chart builders: plain functions, data in, Altair chart out. The pages and the report exporter
share them, so a report looks like the app. No Streamlit here."""

from __future__ import annotations

import copy
import functools
import json

import altair as alt
import numpy as np
import pandas as pd

from store.palette import task_colors

PANEL_WIDTH = 720
STABILITY_COLORS = {"plasticity": "#1f77b4", "stability": "#2ca02c", "min-ACC": "#d62728", "WC-ACC": "#9467bd"}


def _task_columns(series: pd.DataFrame) -> list[str]:
    return [c for c in series.columns if c.startswith("task ")]


def _legend(title: str | None, n_entries: int, columns: int = 10, **options) -> alt.Legend:
    """A legend above its panel, in rows of at most ``columns`` entries, labels never cut short: a
    legend at the side took width from the plot and was clipped ("evaluate…") in a narrow column."""
    return alt.Legend(title=title, orient="top", direction="horizontal", columns=min(max(n_entries, 1), columns),
                      labelLimit=0, titleLimit=0, symbolType="stroke", offset=4, **options)


def before_training(series: pd.DataFrame, bounds: pd.DataFrame) -> pd.DataFrame:
    """Each task's accuracy at its own start step, before any training on it (step, task, value).
    Plasticity is drawn from the first evaluation after training on a task begins; this value, near
    0 in class-incremental learning, is a hollow marker instead of a fall to 0 at every switch."""
    rows = []
    if not bounds.empty and len(series):
        at = series.set_index("step")
        for task, start in zip(bounds["task"], bounds["start_step"]):
            column = f"task {int(task)}"
            if column in at.columns and start in at.index:
                value = at.loc[start, column]
                value = value.iloc[0] if isinstance(value, pd.Series) else value
                if value == value:
                    rows.append({"step": int(start), "task": f"task {int(task)}", "value": float(value)})
    return pd.DataFrame(rows, columns=["step", "task", "value"])


def gap_marks(records: list[dict]) -> pd.DataFrame:
    """The stability-gap marks of the accuracy panel, one per (switch, earlier task) whose accuracy
    fell, from ``store.metrics.summary(...)["stability_gaps"]``."""
    rows = [{"switch_step": r["switch_step"], "task": f"task {x['task']}", "min_step": x["min_step"],
             "min_acc": x["min"], "depth": x["depth"], "recovery_steps": x["recovery_steps"]}
            for r in records for x in r["tasks"] if x["depth"] is not None and x["depth"] > 0]
    return pd.DataFrame(rows, columns=["switch_step", "task", "min_step", "min_acc", "depth", "recovery_steps"])


SERIES_DATA, SPANS_DATA, LOSS_DATA, GAPS_DATA, STARTS_DATA = "run_series", "run_spans", "run_loss", "run_gaps", "run_starts"


def run_panels(series: pd.DataFrame, loss: pd.DataFrame, bounds: pd.DataFrame,
               gaps: pd.DataFrame | None = None, width: int = PANEL_WIDTH) -> alt.VConcatChart:
    """The run page's three synchronized panels over the global step:
    1. accuracy on every task, with each task's training span marked (and stability gaps, if given);
    2. plasticity and stability, with min-ACC and WC-ACC;
    3. the training loss.
    The panels share the x axis: zooming (Shift + wheel) or panning (drag) one moves all (an x-only
    interval bound to the scales), and a hover rule marks the same step in every panel with the values in a tooltip.
    ``width`` is the whole chart's, axes and all (autosize fit-x); Streamlit's ``width="stretch"``
    replaces it with the container's.

    The curves of panel 2 are defined relative to the task being trained, so each is drawn one
    segment a training task: nothing joins one task's last value to the next task's first (that
    joint was a vertical fall to 0 at every switch in class-incremental learning). A hollow marker
    shows each task's accuracy before training on it.

    series: ``store.queries.run_series``; loss: step/task/value rows of the training loss;
    bounds: task/start_step/end_step; gaps: switch_step/task/depth/min_step rows (optional)."""
    data, layout = _run_data(series, loss, bounds, gaps)
    chart = _run_chart(*layout, width)
    chart.datasets = {name: _records(df) for name, df in data.items()}
    return chart


def run_spec(series: pd.DataFrame, loss: pd.DataFrame, bounds: pd.DataFrame,
             gaps: pd.DataFrame | None = None, width: int = PANEL_WIDTH, live: bool = False) -> dict:
    """``run_panels`` as a Vega-Lite spec for ``st.vega_lite_chart``. The spec without its data is
    built and validated by Altair once per layout (the tasks evaluated, whether gaps are marked) and
    kept; the data are named datasets. A live page's refresh thus sends the same spec with new data:
    the browser updates the chart in place instead of building it anew, and the server skips Altair
    (whose conversion Streamlit runs under one process-wide lock).

    ``live``: the renderer and ARIA are pinned. Streamlit's front end (1.67) otherwise picks them from
    the datasets' row counts (canvas past 2,000 marks drawn per row, no ARIA past 5,000 marks), so a
    growing run's spec changed as it crossed them and the chart was built anew (blank, under load,
    for seconds). A canvas also costs the browser less for a chart redrawn every second."""
    data, layout = _run_data(series, loss, bounds, gaps)
    spec = copy.deepcopy(_run_template(*layout, width))
    if live:
        _pin_renderer(spec)
    spec["datasets"] = data
    return spec


def _pin_renderer(spec: dict) -> None:
    """A live chart's renderer (canvas) and ARIA (off) set in its spec, so that Streamlit's front end
    does not choose them from the data's size and rebuild the chart when the choice changes."""
    spec["usermeta"] = {"embedOptions": {"renderer": "canvas"}}
    spec.setdefault("config", {}).setdefault("mark", {})["aria"] = False


def _run_data(series: pd.DataFrame, loss: pd.DataFrame, bounds: pd.DataFrame, gaps: pd.DataFrame | None):
    """The panels' named datasets, and the layout key: (task columns, label every n-th task, gaps marked)."""
    tasks = _task_columns(series)
    bounds = bounds.copy()
    if not bounds.empty:
        last = max(series["step"].max() if len(series) else 0, loss["step"].max() if len(loss) else 0)
        bounds["end_step"] = bounds["end_step"].fillna(last)
    n = max(len(tasks), len(bounds))
    # "task k" while there is room for it; past 6 tasks the number alone, and past 40 every few
    spans = bounds.assign(label=("task " if n <= 6 else "") + bounds["task"].astype(str))
    data = {SERIES_DATA: series.rename(columns={"min_acc": "min-ACC", "wc_acc": "WC-ACC", "training task": "training_task"}),
            SPANS_DATA: spans[["task", "start_step", "end_step", "label"]],
            LOSS_DATA: loss[["step", "value"]],
            STARTS_DATA: before_training(series, bounds)}
    if gaps is not None:
        data[GAPS_DATA] = gaps
    return data, (tuple(tasks), max(1, -(-n // 40)), gaps is not None)


@functools.lru_cache(maxsize=64)
def _run_template(tasks: tuple, label_every: int, has_gaps: bool, width: int) -> dict:
    return _run_chart(tasks, label_every, has_gaps, width).to_dict()


def _boundary_layers(labels_every: int | None) -> list[alt.Chart]:
    """Each task's training span as a faint band, with a rule at each switch and the task named
    (every ``labels_every``-th task; None: no names). The layers are there even before the first task
    starts: a live chart keeps one structure, so its data are updated in place."""
    spans = alt.Chart(alt.Data(name=SPANS_DATA))
    # every other span shaded; a fixed colour keeps the bands out of the lines' colour scale
    band = spans.mark_rect(color="#000").encode(
        x=alt.X("start_step:Q"), x2=alt.X2("end_step"),
        opacity=alt.condition("datum.task % 2 == 0", alt.value(0.05), alt.value(0.0)))
    rules = spans.transform_filter("datum.start_step > 0").mark_rule(strokeDash=[4, 3], color="#888").encode(
        x=alt.X("start_step:Q"))
    layers = [band, rules]
    if labels_every is not None:
        layers.append(spans.transform_filter(f"(datum.task - 1) % {labels_every} == 0")
                      .mark_text(align="left", baseline="top", dx=3, dy=2, color="#555", fontSize=11)
                      .encode(x=alt.X("start_step:Q"), y=alt.value(0), text=alt.Text("label:N")))
    return layers


def _run_chart(tasks: tuple, label_every: int, has_gaps: bool, width: int) -> alt.VConcatChart:
    tasks = list(tasks)
    # One zoom and one hover parameter, declared once at the top level and attached to the same
    # sub-layer (the "pointer" layer) of every panel: interacting with any panel moves them all.
    params, _ = _shared_x_params(["accuracy", "stability", "loss"])
    hovered = {"param": "hover", "empty": False}
    x = alt.X("step:Q", title="global step", scale=alt.Scale(nice=False))

    def hover_layers(panel: str, fields: list[str]) -> list[alt.Chart]:
        base = alt.Chart()
        # named views: the shared parameters list exactly these three
        tooltip = [alt.Tooltip("step:Q")] + [alt.Tooltip(f"{f}:Q", format=".3f") for f in fields]
        # the tooltip on the pointer layer: the nearest-step hover covers it with a voronoi, which is
        # what the pointer is over and takes its tooltip (on the 1 px rule only, it was hardly ever shown)
        catcher = base.mark_rule(strokeWidth=12, opacity=0).encode(x=x, tooltip=tooltip).properties(
            name=f"{panel}_pointer")
        rule = base.mark_rule(color="#444").encode(
            x=x, opacity=alt.condition(hovered, alt.value(0.6), alt.value(0)), tooltip=tooltip)
        return [catcher, rule]

    height = 220
    # The series is the top-level data; layers without data of their own inherit it.
    acc_lines = alt.Chart().transform_fold(tasks, as_=["task", "accuracy"]).mark_line(strokeWidth=1.5).encode(
        x=x, y=alt.Y("accuracy:Q", title="accuracy", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("task:N", sort=tasks, legend=_legend("evaluated on", len(tasks)),
                        scale=alt.Scale(domain=tasks, range=task_colors(len(tasks)))))
    acc_layers = [*_boundary_layers(label_every), acc_lines]
    if has_gaps:  # even empty: one structure from the first refresh to the last
        acc_layers.append(alt.Chart(alt.Data(name=GAPS_DATA)).mark_point(shape="triangle-down", size=70, filled=True,
                                                                         color="#d62728")
                          .encode(x=alt.X("min_step:Q"), y=alt.Y("min_acc:Q"),
                                  tooltip=[alt.Tooltip("task:N", title="old task"),
                                           alt.Tooltip("switch_step:Q", title="switch at"),
                                           alt.Tooltip("depth:Q", format=".3f", title="gap depth"),
                                           alt.Tooltip("recovery_steps:Q", title="recovery (steps)")]))
    accuracy = alt.layer(*acc_layers, *hover_layers("accuracy", tasks)).properties(
        width=width, height=height, title="Accuracy on every task")

    sp_names = list(STABILITY_COLORS)
    sp_lines = alt.Chart().transform_fold(sp_names, as_=["series", "value"]).mark_line(strokeWidth=1.5).encode(
        x=x, y=alt.Y("value:Q", title="accuracy", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("series:N", sort=sp_names, legend=_legend(None, len(sp_names)),
                        scale=alt.Scale(domain=sp_names, range=list(STABILITY_COLORS.values()))),
        detail=alt.Detail("training_task:O"),  # one segment a training task
        strokeDash=alt.condition("datum.series == 'min-ACC' || datum.series == 'WC-ACC'",
                                 alt.value([5, 3]), alt.value([1, 0])))
    # the markers before training: even when empty, as the gaps' layer: one structure throughout
    starts = alt.Chart(alt.Data(name=STARTS_DATA)).mark_point(filled=False, size=30, strokeWidth=1.2,
                                                              color=STABILITY_COLORS["plasticity"]).encode(
        x=alt.X("step:Q"), y=alt.Y("value:Q"),
        tooltip=[alt.Tooltip("task:N", title="before training on"), alt.Tooltip("step:Q"),
                 alt.Tooltip("value:Q", format=".3f", title="accuracy")])
    stability = alt.layer(*_boundary_layers(None), sp_lines, starts, *hover_layers("stability", sp_names)).properties(
        width=width, height=160, title="Plasticity and stability")

    loss_line = alt.Chart(alt.Data(name=LOSS_DATA)).mark_line(strokeWidth=1, color="#555").encode(
        x=x, y=alt.Y("value:Q", title="training loss"))
    training = alt.layer(*_boundary_layers(None), loss_line, *hover_layers("loss", ["train_loss"])).properties(
        width=width, height=120, title="Training loss")

    chart = alt.vconcat(accuracy, stability, training, data=alt.Data(name=SERIES_DATA)).resolve_scale(
        x="shared", color="independent")
    chart.params = params
    # fit-x: ``width`` is the whole chart's, axes included, so the chart never spills out of its container
    return chart.properties(autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))


MATRIX_DATA = "accuracy_matrix"


def accuracy_matrix_heatmap(matrix: np.ndarray, width: int = 260) -> alt.LayerChart:
    """R[i][j], accuracy on task j after training task i; row 0 is before training ("init").
    Every row keeps its label at any number of tasks (a row is at least 16 px high and labels never
    hide each other); the values are printed in the cells up to 10 tasks, in the tooltip always."""
    matrix = np.asarray(matrix, dtype=float)
    chart = _matrix_chart(*_matrix_shape(matrix), width)
    chart.datasets = {MATRIX_DATA: _records(_matrix_rows(matrix))}
    return chart


def accuracy_matrix_spec(matrix: np.ndarray, width: int = 260, live: bool = False) -> dict:
    """``accuracy_matrix_heatmap`` as a Vega-Lite spec for ``st.vega_lite_chart``: the spec without
    its data is built once per shape and kept, the cells are a named dataset. A live run's matrix
    changes at every evaluation (the row of the task training now): the browser then updates the
    chart in place, and the server skips Altair. ``live``: as ``run_spec``'s."""
    matrix = np.asarray(matrix, dtype=float)
    spec = copy.deepcopy(_matrix_template(*_matrix_shape(matrix), width))
    if live:
        _pin_renderer(spec)
    spec["datasets"] = {MATRIX_DATA: _matrix_rows(matrix)}
    return spec


def _matrix_shape(matrix: np.ndarray) -> tuple[int, int]:
    return matrix.shape if matrix.ndim == 2 else (0, 0)


def _matrix_rows(matrix: np.ndarray) -> pd.DataFrame:
    """One row a measured cell: after (its row's name), on (its column's), accuracy."""
    n_rows, n_tasks = _matrix_shape(matrix)
    rows = [{"after": "init" if i == 0 else f"task {i}", "on": f"task {j + 1}", "accuracy": float(v)}
            for i, row in enumerate(matrix) for j, v in enumerate(row) if v == v]
    return pd.DataFrame(rows, columns=["after", "on", "accuracy"])


@functools.lru_cache(maxsize=64)
def _matrix_template(n_rows: int, n_tasks: int, width: int) -> dict:
    return _matrix_chart(n_rows, n_tasks, width).to_dict()


def _matrix_chart(n_rows: int, n_tasks: int, width) -> alt.LayerChart:
    row_names = ["init" if i == 0 else f"task {i}" for i in range(n_rows)]
    columns = [f"task {j + 1}" for j in range(n_tasks)]
    # fixed domains: a row or column not measured yet keeps its place and its label
    base = alt.Chart().encode(
        x=alt.X("on:N", title="evaluated on", sort=columns, scale=alt.Scale(domain=columns),
                axis=alt.Axis(orient="top", labelAngle=0 if n_tasks <= 6 else -90, labelOverlap=False,
                              labelLimit=0, labelFontSize=10 if n_tasks <= 10 else 9)),
        y=alt.Y("after:N", title="after training", sort=row_names, scale=alt.Scale(domain=row_names),
                axis=alt.Axis(labelOverlap=False, labelLimit=0, labelFontSize=10 if n_tasks <= 10 else 9)))
    heat = base.mark_rect().encode(
        color=alt.Color("accuracy:Q", scale=alt.Scale(domain=[0, 1], scheme="viridis"), legend=None),
        tooltip=[alt.Tooltip("after:N", title="after training"), alt.Tooltip("on:N", title="evaluated on"),
                 alt.Tooltip("accuracy:Q", format=".3f")])
    layers = [heat]
    if n_tasks <= 10:
        layers.append(base.mark_text(fontSize=10 if n_tasks <= 6 else 8).encode(
            text=alt.Text("accuracy:Q", format=".2f"),
            color=alt.condition("datum.accuracy > 0.6", alt.value("black"), alt.value("white"))))
    height = max(16 * n_rows, min(int(width), 22 * n_rows)) if isinstance(width, (int, float)) else 18 * n_rows
    # the title is placed outside the axes' bounds: above the column labels, never on them
    return alt.layer(*layers, data=alt.Data(name=MATRIX_DATA)).properties(
        width=width, height=height, title="Accuracy matrix",
        autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))


# Vega's event filter: a wheel event zooms only with Shift held (Vega lets the others through to the page)
ZOOM_EVENTS = "wheel![event.shiftKey]"
ZOOM_HINT = "Shift + wheel zooms, a drag pans, a double click resets; hover for values"


def _shared_x_params(panels: list[str]) -> tuple[list, list[str]]:
    """A zoom (x-only, bound to the scales) and a hover (nearest step) parameter for the "pointer"
    sub-layer of each panel; Altair suffixes a named layer in the i-th panel of a concat with "_i".
    The wheel zooms only with Shift held (``ZOOM_EVENTS``): a plain wheel scrolls the page, as on any
    page that scrolls; a drag pans, a double click resets."""
    pointers = [f"{p}_pointer_{i}" for i, p in enumerate(panels)]
    zoom = alt.TopLevelSelectionParameter(
        name="zoom", bind="scales",
        select=alt.IntervalSelectionConfig(type="interval", encodings=["x"], zoom=ZOOM_EVENTS), views=pointers)
    hover = alt.TopLevelSelectionParameter(
        name="hover", select=alt.PointSelectionConfig(type="point", on="pointerover", nearest=True, fields=["step"],
                                                      clear="pointerout"),
        views=pointers)
    return [zoom, hover], pointers


CURVES_DATA, HOVER_DATA = "compare_curves", "compare_hover"


def compare_panels(curves: pd.DataFrame, series: dict[str, str], width: int = PANEL_WIDTH,
                   x_title: str = "task progress (task k spans k-1 to k)", group_title: str = "group",
                   styles: dict[str, list] | None = None) -> alt.VConcatChart:
    """Runs compared by group: one panel per series (``store.compare.COMPARE_SERIES``), one line per
    group (its mean over the group's runs, usually seeds) with a band of one standard deviation. The
    panels share x, zoom and hover as the run page's do; the hover tooltip lists every group's mean.
    Group colours (and, past 20 groups, dashes) come from ``styles`` (``store.palette.group_styles``)
    so that other charts of the page can use the same.

    curves: ``store.compare.group_curves`` (group, task, bucket, x, n, <series>_mean/_lo/_hi)."""
    data, hover, layout = _compare_data(curves, series, styles)
    chart = _compare_chart(*layout, x_title, group_title, width)
    chart.datasets = {CURVES_DATA: _records(data), HOVER_DATA: _records(hover)}
    return chart


def compare_spec(curves: pd.DataFrame, series: dict[str, str], width: int = PANEL_WIDTH,
                 x_title: str = "task progress (task k spans k-1 to k)", group_title: str = "group",
                 styles: dict[str, list] | None = None) -> dict:
    """``compare_panels`` as a Vega-Lite spec for ``st.vega_lite_chart``: the spec without its data
    is built once per layout (series, groups, titles) and kept, and the data are named datasets, so a
    refresh sends the same spec with new data (the chart updates in place: no flicker, zoom kept)."""
    data, hover, layout = _compare_data(curves, series, styles)
    spec = copy.deepcopy(_compare_template(*layout, x_title, group_title, width))
    spec["datasets"] = {CURVES_DATA: data, HOVER_DATA: hover}
    return spec


def _records(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.to_json(orient="records"))  # NaN as null


def _compare_data(curves: pd.DataFrame, series: dict[str, str], styles: dict[str, list] | None):
    """The curves, one row per bucket with every group's mean side by side (the hover tooltip's),
    and the layout key: (series, groups, styles) as tuples."""
    from store.palette import group_styles

    groups = sorted(curves["group"].unique().tolist()) if len(curves) else []
    styles = styles or group_styles(groups)
    data = curves[["group", "task", "bucket", "x", "n", *[f"{s}_{p}" for s in series for p in ("mean", "lo", "hi")]]]
    # hover columns g<i>_<series>: group names may hold dots or brackets, which Vega-Lite would read
    # as nested fields
    index = {g: i for i, g in enumerate(groups)}
    wide = data.assign(g=data["group"].map(index))
    means = [f"{s}_mean" for s in series]
    hover = wide.pivot_table(index=["task", "bucket"], columns="g", values=means, aggfunc="first")
    hover = hover.reindex(columns=pd.MultiIndex.from_product([means, range(len(groups))]))
    hover.columns = [f"g{g}_{name[:-len('_mean')]}" for name, g in hover.columns]
    hover = hover.assign(x=wide.groupby(["task", "bucket"])["x"].mean()).reset_index(drop=True)
    layout = (tuple(series.items()), tuple(groups),
              (tuple(styles["domain"]), tuple(styles["colors"]), tuple(tuple(d) for d in styles["dashes"])))
    return data, hover, layout


@functools.lru_cache(maxsize=32)
def _compare_template(series: tuple, groups: tuple, styles: tuple, x_title: str, group_title: str, width: int) -> dict:
    # fit-x: ``width`` is the whole chart's, axes included, so ``width="stretch"`` fits it to the page's column
    chart = _compare_chart(series, groups, styles, x_title, group_title, width)
    return chart.properties(autosize=alt.AutoSizeParams(type="fit-x", contains="padding")).to_dict()


def _compare_chart(series: tuple, groups: tuple, styles: tuple, x_title: str, group_title: str,
                   width: int) -> alt.VConcatChart:
    domain, colors, dashes = (list(v) for v in styles)
    params, _ = _shared_x_params([name for name, _ in series])
    params[1].select.fields = ["x"]  # the hover finds the nearest bucket
    hovered = {"param": "hover", "empty": False}
    x = alt.X("x:Q", title=x_title)
    # every panel has its own legend (one scrolled out of view tells nothing), labels never cut short
    # (its symbols opaque and thick: the band's opacity would otherwise pale them)
    legend = _legend(group_title, len(domain), columns=5, symbolOpacity=1, symbolStrokeWidth=2.5)
    color = alt.Color("group:N", title=group_title, sort=domain, scale=alt.Scale(domain=domain, range=colors),
                      legend=legend)
    dash = {"strokeDash": alt.StrokeDash("group:N", title=group_title, sort=domain, legend=legend,
                                         scale=alt.Scale(domain=domain, range=[list(d) for d in dashes]))
            } if len(domain) > 20 else {}
    panels = []
    for name, title in series:
        is_acc = name != "train_loss"
        y_scale = alt.Scale(domain=[0, 1], clamp=True) if is_acc else alt.Scale(zero=True)
        valid = f"isValid(datum['{name}_mean'])"  # a bucket without this series (loss-only steps)
        band = alt.Chart().transform_filter(valid).mark_area(opacity=0.18).encode(
            x=x, y=alt.Y(f"{name}_lo:Q", scale=y_scale, title="accuracy" if is_acc else "loss"),
            y2=alt.Y2(f"{name}_hi:Q"), color=color, detail=alt.Detail("task:N"))
        line = alt.Chart().transform_filter(valid).mark_line(strokeWidth=1.6).encode(
            x=x, y=alt.Y(f"{name}_mean:Q"), color=color, detail=alt.Detail("task:N"), **dash)
        per_bucket = alt.Chart(alt.Data(name=HOVER_DATA))
        tooltip = [alt.Tooltip("x:Q", title=x_title, format=".3f")] + \
            [alt.Tooltip(f"g{i}_{name}:Q", title=g, format=".3f") for i, g in enumerate(groups)]
        catcher = per_bucket.mark_rule(strokeWidth=12, opacity=0).encode(x=x, tooltip=tooltip).properties(
            name=f"{name}_pointer")
        rule = per_bucket.mark_rule(color="#444").encode(
            x=x, opacity=alt.condition(hovered, alt.value(0.6), alt.value(0)), tooltip=tooltip)
        panels.append(alt.layer(band, line, catcher, rule).properties(width=width, height=150, title=title))
    chart = alt.vconcat(*panels, data=alt.Data(name=CURVES_DATA)).resolve_scale(x="shared").resolve_legend(
        color="independent", strokeDash="independent")
    chart.params = params
    return chart
