import json

import numpy as np
import pandas as pd
import streamlit as st

from engine.core.access import AccessDenied
from engine.training.checkpoint import CheckpointError
from engine.runs.artifacts import resume_point
from engine.charts.panels import accuracy_matrix_spec, gap_marks, run_spec
from pages.ui.downloads import download_menu, exported, run_downloads
from pages.ui.lab import PAGES, lab, live_refresh, may, me
from pages.ui.toolbars import hide_element_toolbars
from store.metrics import METRICS
from store.metrics.summary import samples_used
from store.queries import SERIES_EMPTY, run_row, runs_table
from store.run_view import run_view as read_run_view
from store.schema import FINAL_STATUSES

the_lab = lab()
store = the_lab.store

run_id = st.query_params.get("run")
if run_id is None or not str(run_id).isdigit() or run_row(store, int(run_id)) is None:
    st.title("Run")
    if run_id is not None:
        st.warning(f"There is no run {run_id!r} in this lab.")
    runs = runs_table(store)
    if runs.empty:
        st.info("No runs yet.")
        st.page_link(PAGES["launch"], label="Launch one", icon=":material/rocket_launch:")
        st.stop()
    choice = st.selectbox("Open a run", runs["id"], format_func=lambda i: f"{i} · {runs.set_index('id').loc[i, 'name']}")
    if st.button("Open"):
        st.query_params["run"] = str(choice)
        st.rerun()
    st.stop()

run_id = int(run_id)
opened = run_row(store, run_id)  # the run as the page opens: its config, and whether it is live
live = opened["status"] not in FINAL_STATUSES
if not may(me(), "export", opened["owner"] or ""):
    hide_element_toolbars()  # a member viewing another's run: no CSV or PNG of what they may not export

# About how many rows the panels draw, each bucket's extremes kept (a dip is never smoothed away).
# Fewer while the run trains: the browser redraws the live panels at every refresh, and its cost grows
# with the rows (one tab's main thread at 1 s refreshes: ~0.42 CPU-s/s at 2,000 rows, ~0.19 at 600).
LIVE_POINTS, FINISHED_POINTS = 800, 2000
# The headline figures: the metrics the registry gives a figure label, in their order (figure_at); one
# with settings (Mammoth's Task-IL column: class-incremental) only for runs of those settings.
FIGURES = sorted((m for m in METRICS.values() if m.figure), key=lambda m: m.figure_at)


refresh = live_refresh() if live else None
# The stability-gap table: accuracies to 3 decimals, steps and tasks as integers.
GAP_COLUMNS = {
    **{c: st.column_config.NumberColumn(c, format="%d") for c in ("switch at step", "to task", "old task", "at step")},
    "before": st.column_config.NumberColumn("before", format="%.3f", help="Accuracy on the old task at the switch"),
    "lowest": st.column_config.NumberColumn("lowest", format="%.3f", help="Its lowest accuracy during the new task"),
    "depth": st.column_config.NumberColumn("depth", format="%.3f", help="max(0, before - lowest): 0 where there "
                                           "was no dip (the accuracy stayed at or above its value at the switch)"),
    "recovery (steps)": st.column_config.NumberColumn("recovery (steps)", format="%d"),
    "note": st.column_config.TextColumn("note"),
}


@st.fragment(run_every=refresh)
def run_view() -> None:
    # One snapshot, read before anything is drawn: every element below shows the same moment.
    view = read_run_view(store, run_id, points=LIVE_POINTS if live else FINISHED_POINTS)
    if view is None:
        st.warning(f"Run {run_id} was deleted.")
        return
    run, status, metrics, series = view.run, view.status, view.summary, view.series
    final = status in FINAL_STATUSES
    config = json.loads(run["config"])
    # Everything drawn is made before the first element is sent: the browser shows each element as it
    # comes, and a chart built after the numbers were sent (Altair takes seconds for a new layout on a
    # loaded machine) left the new numbers beside the previous refresh's chart for that long.
    waiting = series.empty
    if waiting and not final:
        # Until the first evaluation the panels are drawn empty, with the columns they will have: one
        # chart from the first refresh on, its data updated in place. Drawn only at the first evaluation,
        # the browser first loaded its chart code and meanwhile showed this waiting note beside the new numbers.
        n_tasks = int(config["scenario"].get("n_tasks") or 0)
        series = pd.DataFrame(columns=["step", *(f"task {j}" for j in range(1, n_tasks + 1)), *SERIES_EMPTY[1:]])
    panels = None if series.empty and final else run_spec(series, view.loss, view.bounds,
                                                          gap_marks(metrics["stability_gaps"]), live=not final)
    matrix = np.array(metrics["accuracy_matrix"], dtype=float)
    matrix = accuracy_matrix_spec(matrix, live=not final) if np.isfinite(matrix).any() else None
    gaps = [{"switch at step": r["switch_step"], "to task": r["to_task"], "old task": x["task"],
             "before": x["before"], "lowest": x["min"], "at step": x["min_step"], "depth": x["depth"],
             "recovery (steps)": x["recovery_steps"], "note": x["reason"] or ""}
            for r in metrics["stability_gaps"] for x in r["tasks"]]
    point = resume_point(store, run_id) if final and may(me(), "resume", run["owner"] or "") else None
    st.title(f"Run {run_id}: {run['name']}")
    total, step = run["total_steps"] or 0, run["last_step"] or 0
    # Every slot below is filled on every render (an empty placeholder where there is nothing to
    # show), so a refresh replaces elements in place and never leaves one of the previous state.
    head, action, files = st.columns([4, 1.5, 1.5], vertical_alignment="center")
    head.markdown(f"**{status}** · {config['strategy']['name']} on {config['scenario']['dataset']}, "
                  f"{config['scenario']['setting']}-incremental, {config['scenario']['n_tasks']} tasks · "
                  f"step {step}/{total or '?'} · owner {run['owner']}"
                  + (f" · redrawn every {refresh:.3g} s" if refresh and not final else ""))
    if final:
        head.empty()
    else:
        head.progress(min(1.0, step / total) if total else 0.0)
    who, owner = me(), run["owner"] or ""  # the buttons shown are the actions who may take on this run
    if not final and may(who, "cancel", owner):
        if action.button("Cancel run", icon=":material/stop:", key="cancel"):
            try:
                the_lab.cancel_run(run_id, principal=who)
            except AccessDenied as err:
                st.error(str(err), icon=":material/block:")
    elif point is not None:
        if action.button(f"Resume from task {point['task'] + 1}", icon=":material/play_arrow:", key="resume",
                         help=f"Go on from step {point['step']}: the weights, strategy state and random "
                              "states saved at that task's end; later metrics are replaced."):
            try:
                the_lab.resume_run(run_id, principal=who)
            except (CheckpointError, AccessDenied) as err:
                st.error(str(err), icon=":material/error:")
            else:
                st.rerun()
    else:
        action.empty()
    if may(who, "export", owner):
        with files:
            download_menu(exported(run_downloads(store, run_id), the_lab, [run_id], who))
    else:
        files.empty()
    if run["error"] and status != "finished":
        (st.warning if status == "cancelled" else st.error)(
            f"{status.capitalize()}: {run['error']}", icon=":material/error:")

    setting = config["scenario"].get("setting", "class")
    shown = [m for m in FIGURES if not m.settings or setting in m.settings]
    figures = st.columns(len(shown))
    for column, info in zip(figures, shown):
        value = metrics.get(info.key)
        help_text = f"**{info.title}**. {info.tells} Source: {info.source}."
        if value is None:
            help_text = f"Unavailable: {metrics['unavailable'].get(info.key, '')}. " + help_text
        column.metric(info.figure, "n/a" if value is None else f"{value:.3f}", help=help_text)
    so_far = f"So far: over the {metrics['tasks_done']} task(s) ended. " if metrics.get("partial") else ""
    st.caption(so_far + samples_used(config))

    if waiting:
        st.info("Waiting for the first evaluation..." if not final else "This run has no evaluation to draw.")
    else:
        st.empty()
    if panels is None:
        st.empty()
    else:
        st.vega_lite_chart(panels, width="stretch", key="panels")
    st.caption("Plasticity (panel 2) is drawn from the first evaluation after training on a task begins; "
               "the hollow marker at each switch is the new task's accuracy before training on it.")

    matrix_column, gap_column = st.columns([1, 1.5], gap="medium")
    if matrix is not None:
        matrix_column.vega_lite_chart(matrix, width="stretch", key="matrix")
    else:
        matrix_column.empty()
    with gap_column:
        if gaps:
            st.markdown("**Stability gap at each task switch**")
            st.caption(f"Depth: accuracy just before the switch minus the lowest after it, during the new task; "
                       f"0 with the note \"no dip\" where the task never fell below its accuracy at the switch "
                       f"(a gap is a drop: a rise counts as none). Recovery: steps until back within "
                       f"{metrics['tolerance']:g} of the level before the switch.")
        else:
            st.caption("Stability gaps: none yet (they are measured once a task has ended).")
    if gaps:  # the main column's width: its note column holds a sentence
        st.dataframe(pd.DataFrame(gaps), hide_index=True, key="gaps", height=300, column_config=GAP_COLUMNS)
    else:
        st.empty()
    if live and final:
        st.rerun()  # the run ended: one last full render, and no more refreshing


run_view()
# A run's config does not change: drawn once, below the live part (each redraw of the fragment is
# rendered again in the browser, a JSON tree included)
with st.expander("Config"):
    st.json(json.loads(opened["config"]))
