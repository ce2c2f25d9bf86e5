import json

import pandas as pd
import streamlit as st

from engine.core.access import AccessDenied
from engine.interpolate import MissingWeights, tradeoff_table
from engine.sweeps.sweep import format_progress, sweep_outcome, sweep_progress
from engine.charts.panels import compare_spec
from pages.ui.downloads import download_menu, exported, report_downloads
from pages.ui.lab import PAGES, lab, live_refresh, may, me
from engine.charts.pareto import pareto_chart, pareto_spec
from pages.ui.toolbars import hide_element_toolbars
from store.pareto import AXES, DEFAULT_X, DEFAULT_Y, axis_title, frontier_table
from store.palette import group_styles
from store.compare import (COMPARE_SERIES, DEFAULT_X_AXIS, TABLE_METRICS, X_AXES, any_live, group_curves, group_label,
                           group_metrics, hyperparameter_keys, in_scenario, scenario_counts, select_runs)
from store.metrics import METRICS
from store.schema import RUN_STATUSES
from store.sweeps import list_sweeps, sweep_owner

the_lab = lab()
store = the_lab.store
who = me()  # the session's principal: the buttons and menus below are what it may use
st.title("Compare")

@st.fragment(run_every=live_refresh())
def sweep_status(sweep_id: int) -> None:
    """The sweep's progress, a group cancel, and its outcome (its kind's: a reality check's two
    rankings side by side, a search's best trials)."""
    progress = sweep_progress(store, sweep_id)
    c1, c2 = st.columns([4, 1])
    c1.progress(progress["done_fraction"], text=format_progress(progress))
    owner = sweep_owner(store, sweep_id) or ""
    if progress["active"] and may(who, "cancel", owner) and c2.button(
            "Cancel sweep", icon=":material/cancel:", key="cancel_sweep_group"):
        try:
            the_lab.cancel_sweep(sweep_id, principal=who)
        except AccessDenied as err:
            st.error(str(err), icon=":material/block:")
    outcome = sweep_outcome(store, sweep_id, "page")
    if outcome is not None:
        st.markdown(f"**{outcome.title}**: {outcome.caption}")
        st.dataframe(outcome.records(), hide_index=True, key=outcome.key)


# ---- which runs --------------------------------------------------------------------------------
how = st.radio("Select runs", ["By filter", "By sweep", "By hand"], horizontal=True, key="compare_how")
if how == "By filter":
    c1, c2 = st.columns(2)
    statuses = c1.multiselect("Status", RUN_STATUSES, default=["finished"], key="compare_status")
    everything = select_runs(store)
    strategies = c2.multiselect("Strategy", sorted(everything["strategy"].dropna().unique()), key="compare_strategy")
    runs = select_runs(store, statuses=statuses, strategies=strategies)
elif how == "By sweep":
    sweeps = list_sweeps(store)
    if sweeps.empty:
        st.info("No sweeps yet: launch one from the Launch page or with `python -m engine sweep SWEEP.yaml`.")
        st.stop()
    labels = {int(r.id): f"{r.id} · {r.name} ({r.kind})" for r in sweeps.itertuples()}
    sweep_id = st.selectbox("Sweep", list(labels), format_func=labels.get, key="compare_sweep")
    sweep_status(sweep_id)
    runs = select_runs(store, sweep_id=sweep_id)
    phases = sorted(p for p in runs["sweep_phase"].dropna().unique())
    if phases:
        phase = st.radio("Phase", phases, horizontal=True, key="compare_phase")
        runs = runs[runs["sweep_phase"] == phase]
else:
    everything = select_runs(store)
    names = {int(r.id): f"{r.id} · {r.name} ({r.status})" for r in everything.itertuples()}
    picked = st.multiselect("Runs", list(names), format_func=names.get, key="compare_ids")
    runs = select_runs(store, run_ids=picked) if picked else everything.iloc[:0]

if runs.empty:
    st.info("No runs selected.")
    st.stop()

# ---- one scenario at a time, unless asked -------------------------------------------------------------
scenarios = scenario_counts(runs)
mixed = False
if len(scenarios) > 1:
    c1, c2 = st.columns([4, 1])
    scenario = c1.selectbox("Scenario", list(scenarios), format_func=lambda s: f"{s} ({scenarios[s]} run(s))",
                            key="compare_scenario",
                            help="Runs of different datasets, settings or numbers of tasks are not comparable "
                                 "on one axis: the page shows one scenario at a time.")
    mixed = c2.checkbox("Mix scenarios", key="compare_mix",
                        help="Put every scenario's runs on the same axes and frontier.")
    if mixed:
        st.warning(f"The axes, table and frontier below MIX {len(scenarios)} scenarios "
                   f"({'; '.join(scenarios)}): their values are not comparable.", icon=":material/warning:")
    else:
        runs = in_scenario(runs, scenario)
else:
    st.caption(f"Scenario: {next(iter(scenarios))}")

keys = ["strategy"] + [k for k in hyperparameter_keys(list(runs["config"])) if k not in ("strategy.name", "seed")]
c1, c2 = st.columns([3, 2])
group_by = c1.selectbox("Group by", keys, key="compare_group",
                        help="runs with the same value are one group: its line is their mean, its band one "
                             "standard deviation (over seeds, usually)")
x_axis = c2.radio("x axis", list(X_AXES), index=list(X_AXES).index(DEFAULT_X_AXIS), format_func=X_AXES.get,
                  horizontal=True, key="compare_x",
                  help="Task progress: task k spans k-1 to k whatever its length, so runs of different lengths "
                       "line up task by task. Global step: the training step itself.")
configs = runs["config"].map(lambda c: json.dumps({k: v for k, v in c.items() if k not in ("name", "seed")}, sort_keys=True))
c1, c2 = st.columns([4, 1])
c1.caption(f"{len(runs)} run(s) of {configs.nunique()} config(s) (a config: the run config but its name and seed).")
run_ids = [int(i) for i in runs["id"]]
owners = [o for (o,) in store.sql("SELECT DISTINCT coalesce(owner, '') FROM runs WHERE list_contains(?, id)", [run_ids])]
may_export_all = all(may(who, "export", owner) for owner in owners)
if not may_export_all:
    hide_element_toolbars()  # a member comparing another's runs: no CSV or PNG of what they may not export
if may_export_all:  # a member exports a comparison of their own runs
    with c2:  # the report of what is selected, grouped and plotted as on this page (engine/report)
        pareto_axes = {k: st.session_state.get(f"pareto_{k}") for k in ("x", "y")}
        download_menu(exported(report_downloads(
            store, run_ids, sweep_id=sweep_id if how == "By sweep" else None,
            stem="comparison-report", group_by=group_by,
            **(pareto_axes if None not in pareto_axes.values() and pareto_axes["x"] != pareto_axes["y"] else {})),
            the_lab, run_ids, who), label="Export report")
live = any_live(runs)
labels = {int(i): group_label(c, group_by) for i, c in zip(runs["id"], runs["config"])}
styles = group_styles(sorted(set(labels.values())))


def mean_sd(table: pd.DataFrame) -> pd.DataFrame:
    """Each metric of ``store.compare.group_metrics`` as one text column, "mean ± sd" to 3 decimals (the
    mean alone for a group of one run, "n/a" where no run has it): a column for each mean and each sd
    made 17 columns, wider than the page at 1440 px."""
    def cell(mean: float, sd: float) -> str:
        return "n/a" if pd.isna(mean) else f"{mean:.3f}" if pd.isna(sd) else f"{mean:.3f} ± {sd:.3f}"
    return table[["group", "runs"]].assign(**{
        key: [cell(m, sd) for m, sd in zip(table[key], table[f"{key} sd"])] for key in TABLE_METRICS if key in table})


@st.fragment(run_every=live_refresh() if live else None)
def results() -> None:
    """Curves, metrics and frontier; refreshed every ``live_refresh()`` while a selected run is queued or running."""
    current = select_runs(store, run_ids=run_ids)  # fresh statuses
    still_live = any_live(current)
    if mixed:
        st.caption(":material/warning: Mixed scenarios: " + "; ".join(scenarios))
    # ---- curves ----------------------------------------------------------------------------------
    curves = group_curves(store, current, group_by, x=x_axis)
    if curves.empty:
        st.info("The selected runs have no evaluations yet.")
    else:
        # the same spec every refresh, new data only: the chart updates in place
        st.vega_lite_chart(compare_spec(curves, COMPARE_SERIES, x_title=X_AXES[x_axis], group_title=group_by,
                                        styles=styles), width="stretch", key="compare_panels")

    # ---- metrics ---------------------------------------------------------------------------------
    st.subheader("Metrics, mean and standard deviation over each group's runs")
    table = mean_sd(group_metrics(store, current, group_by))
    config = {"group": st.column_config.TextColumn("group"), "runs": st.column_config.NumberColumn("runs")}
    for key in TABLE_METRICS:
        info = METRICS[key]
        config[key] = st.column_config.TextColumn(key, help=f"{info.title}: {info.tells} Mean ± sd over the group's runs.")
    st.dataframe(table, hide_index=True, column_config=config, key="compare_table")
    frontier_view(current)
    if live and not still_live:
        st.rerun()  # every run ended: one last full render, and no more refreshing


def frontier_view(current) -> None:
    st.header("Pareto frontier")
    st.caption("Each point a run (or a config, averaged over its seeds); the non-dominated ones are outlined and "
               "joined. Click a point to open its run.")
    c1, c2, c3 = st.columns([2, 2, 1])
    axes = [k for k, a in AXES.items() if a.higher_is_better is not None]
    x = c1.selectbox("x", axes, index=axes.index(DEFAULT_X), format_func=axis_title, key="pareto_x")
    y = c2.selectbox("y", axes, index=axes.index(DEFAULT_Y), format_func=axis_title, key="pareto_y")
    by = c3.radio("Points", ["run", "config"], format_func={"run": "runs", "config": "configs"}.get, key="pareto_by")
    if x == y:
        st.warning("Choose two different metrics.")
        return
    frontier = frontier_table(store, x, y, run_ids=run_ids, by=by)
    if frontier.attrs.get("excluded"):
        with st.expander(f"{len(frontier.attrs['excluded'])} run(s) left out: a metric is unavailable"):
            st.dataframe(frontier.attrs["excluded"], hide_index=True)
    if frontier.empty:
        st.info("No finished run of the selection has both metrics.")
        return
    frontier = frontier.assign(group=frontier["id"].map(labels))

    finished = [int(i) for i in current.loc[current["status"] == "finished", "id"]]
    curve_runs = st.multiselect(
        "Trade-off curves (weights interpolated between tasks, no retraining)", finished, key="pareto_curves",
        format_func=lambda i: f"run {i}", help="θ(α) = (1-α) θ after task k-1 + α θ after task k, for 11 α, "
                                               "evaluated on every task (after IBCL, zero-shot trade-off models)")
    tradeoffs = []
    for run_id in curve_runs:
        table = tradeoff_table(store, run_id)
        if table.empty:
            try:
                with st.spinner(f"Interpolating run {run_id}..."):
                    table = the_lab.tradeoff_curve(run_id)
            except MissingWeights as err:
                st.warning(str(err))
                continue
        tradeoffs.append(table)
    curves = pd.concat(tradeoffs, ignore_index=True) if tradeoffs else None

    if curves is None:  # the same spec every refresh, new data only
        event = st.vega_lite_chart(pareto_spec(frontier, x, y, color="group", color_title=group_by, styles=styles),
                                   on_select="rerun", selection_mode="pick", width="stretch", key="pareto_chart")
    else:
        event = st.altair_chart(pareto_chart(frontier, x, y, tradeoffs=curves, color="group", color_title=group_by,
                                             styles=styles),
                                on_select="rerun", selection_mode="pick", key="pareto_chart")
    picked = event.selection.get("pick") if event and event.selection else None
    if picked:
        st.switch_page(PAGES["run"], query_params={"run": int(picked[0]["id"])})
    on_front = frontier[frontier["on_front"]]
    st.dataframe(on_front[["id", "strategy", "hparams", x, y]], hide_index=True, key="pareto_front",
                 column_config={x: st.column_config.NumberColumn(x, format="%.4f"),
                                y: st.column_config.NumberColumn(y, format="%.4f")})


results()
