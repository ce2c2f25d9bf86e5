"""What a report holds, gathered from the store through the pages' own queries and chart builders
(so a report looks like the app): ``run_report`` for one run, ``compare_report`` for a selection of
runs or a sweep. Both return a ``Report`` that the HTML and PDF writers render alike."""

from __future__ import annotations

import datetime as dt
import json
import platform
from typing import Any, Iterable

import numpy as np
import pandas as pd
import yaml

from engine.report.document import Bullets, Chart, Code, Formula, Heading, Report, Table, Text, fmt
from engine.report.findings import compare_findings, frontier_findings, run_findings
from engine.sweeps.sweep import sweep_outcome
from store.metrics import METRICS
from store.metrics.summary import summary
from store.queries import boundaries, downsampled_long, run_row, run_series
from store.sweeps import sweep_row

# the pages' numeric widths: the run page's panels and matrix, the compare page's panels
PANEL_WIDTH, MATRIX_WIDTH, COMPARE_WIDTH = 720, 260, 720
VERSION_FIELDS = {"python_version": "Python", "torch_version": "torch", "lightning_version": "Lightning",
                  "lab_version": "CL Lab code", "device": "device"}
BETTER = {True: "higher", False: "lower", None: "n/a"}


class ReportError(ValueError):
    """A report that cannot be made from what was asked (no such run or sweep, nothing selected): one line."""


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "n/a"


def _config(row: dict) -> dict:
    config = json.loads(row["config"]) if isinstance(row["config"], str) else row["config"]
    return config if isinstance(config, dict) else {}


def _section(config: dict, key: str) -> dict:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def describe(config: dict) -> str:
    """'replay on digits, class-incremental, 5 tasks' from a run config (parts it lacks left out)."""
    scenario = _section(config, "scenario")
    parts = [f"{_section(config, 'strategy').get('name', '?')} on {scenario.get('dataset', '?')}"]
    if scenario.get("setting"):
        parts.append(f"{scenario['setting']}-incremental")
    if scenario.get("n_tasks"):
        parts.append(f"{scenario['n_tasks']} tasks")
    return ", ".join(parts)


def generator() -> dict[str, str]:
    """The software that wrote the report (the run's own versions are in its row)."""
    import altair
    import duckdb
    import vl_convert

    from engine import code_version

    return {"generated_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "cl_lab_code": code_version(), "python": platform.python_version(), "platform": platform.platform(),
            "altair": altair.__version__, "vega_lite": altair.VEGALITE_VERSION, "vl_convert": vl_convert.__version__,
            "duckdb": duckdb.__version__}


def metric_rows(keys: Iterable[str], values: dict | None = None) -> Table:
    """Metric definitions and sources as on the Metrics page (with each value when ``values`` is given)."""
    rows = []
    for key in keys:
        info = METRICS[key]
        definition = (info.tells, Formula(info.latex), f"Needs: {info.needs}." if info.needs else "")
        row = [f"{info.title} [{key}]", BETTER[info.higher_is_better], definition, info.source]
        if values is not None:
            value = values.get(key)
            why = values.get("unavailable", {}).get(key)
            row.insert(1, fmt(value) if value is not None else f"n/a: {why or 'not computable'}")
        rows.append(row)
    columns = ["Metric", "Better", "Definition", "Source"]
    if values is not None:
        columns.insert(1, "Value")
        return Table(columns, rows, widths=[0.18, 0.14, 0.08, 0.37, 0.23])
    return Table(columns, rows, widths=[0.22, 0.08, 0.45, 0.25])


def run_environment(row: dict) -> dict[str, Any]:
    return {"run": {label: row.get(key) for key, label in VERSION_FIELDS.items()}, "report": generator()}


# ---- one run --------------------------------------------------------------------------------------

def run_report(store, run_id: int) -> Report:
    from engine.charts.panels import ZOOM_HINT, accuracy_matrix_heatmap, gap_marks, run_panels

    row = run_row(store, run_id)
    if row is None:
        raise ReportError(f"there is no run {run_id}")
    config = _config(row)
    result = summary(store, run_id)
    environment = run_environment(row)
    blocks: list = [Heading("Findings"), Bullets(run_findings(result))]

    duration = (row["finished_at"] - row["started_at"]).total_seconds() if row["finished_at"] and row["started_at"] else None
    identity = [
        ["Run", f"{run_id}: {row['name']}"], ["What", describe(config)], ["Status", row["status"]],
        ["Seed", fmt(config.get("seed"))], ["Owner", fmt(row["owner"])],
        ["Created", _when(row["created_at"])], ["Started", _when(row["started_at"])],
        ["Finished", _when(row["finished_at"])], ["Duration", f"{duration:.1f} s" if duration is not None else "n/a"],
        ["Steps", f"{row['last_step'] or 0} of {row['total_steps'] or '?'}"],
        *[[label, fmt(row.get(key))] for key, label in VERSION_FIELDS.items()],
    ]
    if row.get("sweep_id") is not None:
        identity.append(["Sweep", f"{row['sweep_id']}" + (f" (phase {row['sweep_phase']})" if row.get("sweep_phase") else "")])
    if row["error"]:
        identity.append(["Error", row["error"]])
    blocks += [Heading("Run"), Table(["", ""], identity, widths=[0.2, 0.8])]

    blocks.append(Heading("Charts"))
    series = run_series(store, run_id)
    if series.empty:
        blocks.append(Text("The run has no evaluation yet: no chart."))
    else:
        loss = downsampled_long(store, run_id, "train_loss")
        bounds = pd.DataFrame(boundaries(store, run_id), columns=["task", "start_step", "end_step"])
        panels = run_panels(series, loss, bounds, gap_marks(result["stability_gaps"]), width=PANEL_WIDTH)
        blocks += [Chart(panels.to_dict(validate=False), "Accuracy on every task, plasticity and stability, training loss"),
                   Text("Accuracy on every task over the global step, each task's training span shaded, the stability "
                        "gaps marked (red triangles: the lowest accuracy after a switch); plasticity (the task being "
                        "trained) and stability (the mean over earlier tasks) with min-ACC and WC-ACC; the training "
                        "loss. A long run is drawn downsampled as on the run page: each bucket of steps keeps its "
                        "minimum and maximum, so no dip is averaged away.",
                        small=True, interactive=f"{ZOOM_HINT}: the panels move together.")]
    matrix = np.array(result["accuracy_matrix"], dtype=float)
    if matrix.size:
        blocks += [Chart(accuracy_matrix_heatmap(matrix, width=MATRIX_WIDTH).to_dict(validate=False), "Accuracy matrix"),
                   Text("R[i][j]: accuracy on task j after training task i; row init is before training.", small=True)]

    gaps = [[fmt(r["switch_step"]), fmt(r["to_task"]), fmt(x["task"]), fmt(x["before"]), fmt(x["min"]),
             fmt(x["min_step"]), fmt(x["depth"]), fmt(x["recovery_steps"]), x["reason"] or ""]
            for r in result["stability_gaps"] for x in r["tasks"]]
    if gaps:
        blocks += [Heading("Stability gap at each task switch"),
                   Table(["switch at step", "to task", "old task", "before", "lowest", "at step", "depth",
                          "recovery (steps)", "note"], gaps, widths=[0.09, 0.07, 0.07, 0.08, 0.08, 0.08, 0.08, 0.1, 0.35]),
                   Text(f"Depth: accuracy just before the switch minus the lowest after it, during the new task. "
                        f"Recovery: steps from the switch until back within {result['tolerance']:g} of the level "
                        "before it.", small=True)]

    blocks += [Heading("Summary metrics"),
               Text(f"So far: over the {result['tasks_done']} task(s) ended." if result.get("partial") else
                    "Every metric of the Metrics page; n/a with the reason where a metric cannot be computed.", small=True),
               metric_rows(METRICS, result)]
    blocks += [Heading("Config"), Code(yaml.safe_dump(config, sort_keys=False, allow_unicode=True)),
               Heading("Reproduce"),
               Code("python -m engine run config.yaml      # the config above (config.yaml in the bundle)\n"
                    "python -m engine run BUNDLE.zip       # or the bundle itself: it reads only its config.yaml"),
               Text(f"Trained on {row.get('device') or 'an unrecorded device'}. The same config and seed rerun on the "
                    "CPU give the same metrics, step by step.", small=True),
               Heading("Environment"), Table(["", ""], _environment_rows(environment), widths=[0.3, 0.7])]
    return Report(title=f"Run {run_id}: {row['name']}", subtitle=f"{describe(config)} · {row['status']}",
                  blocks=blocks, kind="run", run_ids=[run_id], environment=environment)


def _environment_rows(environment: dict) -> list[list[str]]:
    rows = [[f"run: {k}", fmt(v)] for k, v in environment.get("run", {}).items()]
    return rows + [[f"report: {k}", fmt(v)] for k, v in environment["report"].items()]


# ---- a comparison ---------------------------------------------------------------------------------

def default_group(runs: pd.DataFrame) -> str:
    """Strategy when the runs have several; else the first hyperparameter that differs (a sweep over
    one strategy's learning rate groups by ``train.lr``); else strategy."""
    from store.compare import hyperparameter_keys

    if runs["strategy"].nunique() > 1:
        return "strategy"
    keys = [k for k in hyperparameter_keys(list(runs["config"])) if k not in ("seed", "strategy.name")]
    return keys[0] if keys else "strategy"


def compare_report(store, run_ids: Iterable[int] | None = None, sweep_id: int | None = None,
                   group_by: str | None = None, x: str | None = None, y: str | None = None) -> Report:
    """A selection of runs (``run_ids``), a sweep (``sweep_id``), or the runs of a sweep among
    ``run_ids``. A sweep with phases (a reality check's tune and test) gets one section a phase: the
    phases run on different scenarios and are not mixed on one axis."""
    from store.compare import config_value, group_label, select_runs
    from store.pareto import DEFAULT_X, DEFAULT_Y, axis

    ids = list(dict.fromkeys(int(i) for i in run_ids)) if run_ids else None
    x, y = x or DEFAULT_X, y or DEFAULT_Y
    sweep = None
    if sweep_id is not None:
        try:
            sweep = dict(zip(("id", "name", "kind", "spec"), (sweep_id, *sweep_row(store, sweep_id))))
        except KeyError:
            raise ReportError(f"there is no sweep {sweep_id}") from None
    if ids is None and sweep is None:
        raise ReportError("a comparison needs runs or a sweep")
    runs = select_runs(store, sweep_id=sweep_id, run_ids=ids)
    if ids:
        missing = sorted(set(ids) - set(runs["id"]))
        if missing:
            raise ReportError(f"no run {', '.join(map(str, missing))}" + (f" in sweep {sweep_id}" if sweep else ""))
    if runs.empty:
        raise ReportError(f"sweep {sweep_id} has no runs" if sweep else "no runs selected")
    group_by = group_by or default_group(runs)
    if group_by != "strategy" and all(config_value(c, group_by) is None for c in runs["config"]):
        raise ReportError(f"--group-by {group_by}: no selected run's config has that key (strategy, or a dotted key "
                          "such as train.lr)")
    for key in (x, y):  # UnknownMetric (a ValueError, one line) for a key that is no metric
        if axis(key).higher_is_better is None:
            raise ReportError(f"{key} has no better direction: not a Pareto axis")
    if x == y:
        raise ReportError(f"the Pareto axes must be two different metrics, not {x} twice")

    runs = runs.assign(group=[group_label(c, group_by) for c in runs["config"]])
    if sweep:
        title = f"Sweep {sweep['id']}: {sweep['name']}"
        subtitle = f"{sweep['kind']} sweep · {len(runs)} runs · grouped by {group_by}"
    else:
        title = f"Comparison of {len(runs)} run{'s' if len(runs) != 1 else ''}"
        subtitle = f"runs {', '.join(map(str, runs['id']))} · grouped by {group_by}"

    findings: list[str] = []
    sections: list = []
    phases = [p for p in runs["sweep_phase"].dropna().unique()]
    parts = [(f"Phase: {p}", runs[runs["sweep_phase"] == p]) for p in sorted(phases)] if phases else [("", runs)]
    for label, part in parts:
        part_findings, blocks = _compare_section(store, part, group_by, x, y, label)
        findings += [f"{label}: {f}" if label else f for f in part_findings]
        sections += blocks
    scenarios = {json.dumps(_section(c, "scenario"), sort_keys=True) for c in runs["config"]}
    if len(scenarios) > len(parts):
        findings.append(f"The selection mixes {len(scenarios)} scenarios on one axis: compare their figures with care.")

    outcome = sweep_outcome(store, sweep["id"], "report") if sweep else None  # a reality check's rankings
    if outcome is not None:
        findings += outcome.findings

    blocks: list = [Heading("Findings"), Bullets(findings or ["The selected runs have no summary metric yet."])]
    blocks += [Heading("Runs"), Table(["run", "name", "strategy", "status", "seed", "phase", "group"],
                                      [[fmt(r.id), r.name, fmt(r.strategy), r.status, fmt(r.seed),
                                        fmt(r.sweep_phase) if r.sweep_phase else "", r.group]
                                       for r in runs.itertuples()],
                                      widths=[0.07, 0.3, 0.12, 0.1, 0.07, 0.08, 0.26])]
    blocks += sections
    if outcome is not None:
        blocks += [Heading(outcome.title), Text(outcome.caption, small=True),
                   Table(outcome.columns, [[fmt(v) for v in row] for row in outcome.rows], widths=outcome.widths)]
        if outcome.note:
            blocks.append(Text(outcome.note, small=True))
    from store.compare import TABLE_METRICS

    keys = list(dict.fromkeys([*TABLE_METRICS, *(k for k in (x, y) if k in METRICS)]))
    blocks += [Heading("Metric definitions"), metric_rows(keys)]
    if x not in METRICS or y not in METRICS:
        blocks.append(Text("; ".join(f"{axis(k).title}: {axis(k).definition}" for k in (x, y) if k not in METRICS)))
    blocks += _compare_reproduce(runs, sweep)
    environment = _compare_environment(store, [int(i) for i in runs["id"]])
    blocks += [Heading("Environment"), Table(["runs", *VERSION_FIELDS.values()], environment["runs_table"],
                                             widths=[0.3, 0.12, 0.16, 0.12, 0.12, 0.18]),
               Table(["", ""], [[f"report: {k}", fmt(v)] for k, v in environment["report"].items()], widths=[0.3, 0.7])]
    return Report(title=title, subtitle=subtitle, blocks=blocks, kind="comparison",
                  run_ids=[int(i) for i in runs["id"]], sweep_id=sweep_id,
                  environment={"runs": environment["runs"], "report": environment["report"]})


def _compare_section(store, runs: pd.DataFrame, group_by: str, x: str, y: str, label: str) -> tuple[list[str], list]:
    from engine.interpolate import tradeoff_table
    from engine.charts.panels import ZOOM_HINT, compare_panels
    from store.palette import group_styles
    from engine.charts.pareto import pareto_chart
    from store.compare import COMPARE_SERIES, DEFAULT_X_AXIS, TABLE_METRICS, X_AXES, group_curves, group_metrics
    from store.pareto import axis, axis_title, frontier_table

    blocks: list = [Heading(label)] if label else []
    styles = group_styles(sorted(set(runs["group"])))  # the Compare page's colours, the same in both charts
    curves = group_curves(store, runs, group_by, x=DEFAULT_X_AXIS)
    blocks.append(Heading("Curves by group", 3))
    if curves.empty:
        blocks.append(Text("The selected runs have no evaluation yet."))
    else:
        blocks += [Chart(compare_panels(curves, COMPARE_SERIES, width=COMPARE_WIDTH, x_title=X_AXES[DEFAULT_X_AXIS],
                                        group_title=group_by, styles=styles).to_dict(validate=False),
                         "Curves by group: mean and one standard deviation"),
                   Text(f"One line per group ({group_by}): the mean over its runs, with a band of one standard deviation "
                        "(over seeds, usually).", small=True, interactive=f"{ZOOM_HINT}: the panels move together.")]

    table = group_metrics(store, runs, group_by)
    blocks.append(Heading("Metrics, mean and standard deviation over each group's runs", 3))
    rows = [[r["group"], fmt(r["runs"])] + [f"{fmt(r[k])} ± {fmt(r[f'{k} sd'])}" if r[f"{k} sd"] == r[f"{k} sd"]
                                             else fmt(r[k]) for k in TABLE_METRICS] for _, r in table.iterrows()]
    blocks.append(Table(["group", "runs", *TABLE_METRICS], rows,
                        widths=[0.2, 0.05] + [0.75 / len(TABLE_METRICS)] * len(TABLE_METRICS)))
    findings = compare_findings(table, {k: METRICS[k].higher_is_better for k in TABLE_METRICS},
                                {k: METRICS[k].title for k in TABLE_METRICS})

    blocks.append(Heading("Pareto frontier", 3))
    frontier = frontier_table(store, x, y, run_ids=[int(i) for i in runs["id"]], by="run")
    if frontier.empty:
        blocks.append(Text("No finished run of the selection has both metrics."))
    else:
        finished = [int(i) for i in runs.loc[runs["status"] == "finished", "id"]]
        curves_of = [t for t in (tradeoff_table(store, i) for i in finished) if len(t)]
        tradeoffs = pd.concat(curves_of, ignore_index=True) if curves_of else None
        frontier = frontier.assign(group=frontier["id"].map(dict(zip(runs["id"], runs["group"]))))
        chart = pareto_chart(frontier, x, y, tradeoffs=tradeoffs, color="group", color_title=group_by, styles=styles)
        blocks.append(Chart(chart.to_dict(validate=False),
                            f"Pareto frontier: {axis_title(x)} against {axis_title(y)}"))
        blocks.append(Text("Each point a run; the non-dominated ones are outlined and joined." +
                           (" Beside it, the trade-off curves stored for these runs: weights interpolated between two "
                            "tasks, no retraining." if tradeoffs is not None else ""), small=True))
        front = frontier[frontier["on_front"]]
        blocks.append(Table(["run", "strategy", "hyperparameters", axis_title(x), axis_title(y)],
                            [[fmt(r["id"]), fmt(r["strategy"]), r["hparams"], fmt(r[x], 4), fmt(r[y], 4)]
                             for _, r in front.iterrows()], widths=[0.08, 0.14, 0.42, 0.18, 0.18]))
        findings += frontier_findings(frontier, axis(x).title, axis(y).title)
    excluded = frontier.attrs.get("excluded") or []
    if excluded:
        blocks.append(Text(f"{len(excluded)} run(s) left out of the frontier: " +
                           "; ".join(f"run {e['id']}: {e['reason']}" for e in excluded[:10]) +
                           (" ..." if len(excluded) > 10 else ""), small=True))
    return findings, blocks


def _compare_reproduce(runs: pd.DataFrame, sweep: dict | None) -> list:
    if sweep:
        return [Heading("Reproduce"), Code(f"python -m engine sweep sweep.yaml   # sweep.yaml in the bundle:\n\n"
                                           + yaml.safe_dump(sweep["spec"], sort_keys=False, allow_unicode=True))]
    lines = [f"python -m engine run run-{i}/config.yaml" for i in runs["id"]]
    return [Heading("Reproduce"), Text("Each run's config is in the bundle, under run-<id>/:", small=True),
            Code("\n".join(lines))]


def _compare_environment(store, ids: list[int]) -> dict:
    cols = ", ".join(VERSION_FIELDS)
    rows = store.sql(f"SELECT id, {cols} FROM runs WHERE list_contains(?, id) ORDER BY id", [ids])
    runs = {r[0]: dict(zip(VERSION_FIELDS.values(), r[1:])) for r in rows}
    combos: dict[tuple, list[int]] = {}
    for run_id, versions in runs.items():
        combos.setdefault(tuple(versions.values()), []).append(run_id)
    table = [[_id_list(ids_), *(fmt(v) for v in combo)] for combo, ids_ in combos.items()]
    return {"runs": runs, "runs_table": table, "report": generator()}


def _id_list(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:12])) + (f" and {len(ids) - 12} more" if len(ids) > 12 else "")
