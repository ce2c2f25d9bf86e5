"""The lab's runs: search, filter and sort them by any hyperparameter or metric, open, cancel, resume,
relaunch with changes, rename, annotate, tag and delete them. The table and the selected run's
actions refresh live; the selection follows the run (its id), never a row position
(pages/ui/selection.py)."""

import streamlit as st

from engine.core.access import AccessDenied
from engine.annotations import AnnotationError, parse_tags
from engine.training.checkpoint import CheckpointError
from engine.core.limits import limits
from engine.runs.artifacts import resume_point
from engine.strategies import STRATEGIES
from pages.ui.lab import PAGES, lab, live_refresh, may, me
from pages.ui.selection import selected_row
from store.metrics import METRICS
from store.runs_view import BASE_SORT, RUN_METRICS, column_options, runs_view
from store.schema import FINAL_STATUSES, RUN_STATUSES

the_lab = lab()
store = the_lab.store
st.title("Runs")

c0, c1, c2 = st.columns([2, 1, 1])
search = c0.text_input("Search", key="runs_search", max_chars=limits().max_search_chars,
                       placeholder="words in the name, notes, tags, strategy, dataset or owner")
statuses = c1.multiselect("Status", RUN_STATUSES, key="filter_status")
strategies = c2.multiselect("Strategy", list(STRATEGIES), key="filter_strategy")

keys, numeric_keys = column_options(store)


def label(column: str) -> str:
    return f"{column} · {METRICS[column].title}" if column in METRICS else column


with st.expander("Columns, filters and sorting", icon=":material/tune:"):
    chosen = st.session_state.get("runs_columns", [])  # kept as options even when no run differs on them
    optional = ["notes", *RUN_METRICS, *keys, *(c for c in chosen if c not in keys and c not in RUN_METRICS)]
    columns = st.multiselect("Columns", list(dict.fromkeys(optional)), default=["acc"], format_func=label,
                             key="runs_columns", help="Summary metrics, and the hyperparameters (config keys) "
                             "whose value differs between runs")
    s1, s2 = st.columns([3, 1])
    sort_options = [c for c in dict.fromkeys([*BASE_SORT, *RUN_METRICS, *keys, *columns]) if c != "notes"]
    sort_by = s1.selectbox("Sort by", sort_options, format_func=label, key="runs_sort")
    descending = s2.toggle("Descending", value=True, key="runs_descending")
    filter_on = st.multiselect("Range filters", list(dict.fromkeys([*RUN_METRICS, *sorted(numeric_keys)])),
                               format_func=label, key="runs_filter_on")
    ranges = {}
    for column in filter_on:
        low, high = st.columns(2)
        ranges[column] = (low.number_input(f"{column} at least", value=None, format="%g", key=f"runs_min_{column}"),
                          high.number_input(f"{column} at most", value=None, format="%g", key=f"runs_max_{column}"))


def text_width(texts) -> int:
    """The pixels a table column needs for the longest of ``texts`` in the grid's 14 px font (under
    6.5 px a character), padding included: the grid sized the tags column from its header and cut them."""
    return max(60, min(400, 16 + round(6.5 * max(map(len, texts), default=0))))


@st.fragment(run_every=live_refresh())
def table() -> None:
    try:
        df = runs_view(store, statuses=statuses, strategies=strategies, search=search, columns=columns,
                       ranges=ranges, sort_by=sort_by, descending=descending,
                       max_search_chars=limits().max_search_chars)
    except ValueError as err:  # a search past its limit (the widget's max_chars stops a browser earlier)
        st.error(str(err), icon=":material/error:")
        return
    if df.empty:
        filtered = search or statuses or strategies or any(v is not None for r in ranges.values() for v in r)
        st.info("No run matches these filters." if filtered else
                "No runs yet. Launch one from the Launch page, or the demo from Home.")
        return
    df["open"] = "/run?run=" + df["id"].astype(str)
    run_id, key, selection = selected_row(st.session_state, "runs_table", df["id"].tolist())
    # The default columns fit a 1440 px window: the run's link shows its id (no column of its own),
    # progress only while a listed run trains (a finished run's bar says what its status does), sweep
    # only when a listed run has one, tags as text sized to the longest, the created time to the minute.
    live = df["status"].isin(["queued", "running"]).any()
    shown = ["open", "id", "name", "tags", "strategy", "scenario", "status", *(["progress"] if live else []), *columns,
             *(["sweep"] if (df["sweep"] != "").any() else []),
             *(["owner"] if store.access is not None else []), "created"]  # a hosted lab's runs have owners
    tags = df["tags"].map(", ".join)
    st.dataframe(
        df[shown].assign(tags=tags), hide_index=True, on_select="rerun", selection_mode="single-row",
        key=key, selection_default=selection,  # only what is shown goes to the browser (id: for the selection)
        column_order=[c for c in shown if c != "id"],
        column_config={
            "open": st.column_config.LinkColumn("run", display_text=r"run=(\d+)", help="Open the run's page"),
            "tags": st.column_config.TextColumn("tags", width=text_width(tags)),
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
            "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
            **{m: st.column_config.NumberColumn(m, format="%.3f", help=METRICS[m].title)
               for m in columns if m in RUN_METRICS},
        },
    )
    st.caption(f"{len(df)} run(s)." + ("" if run_id is not None else " Select one to open, change or delete it."))
    if run_id is not None:
        actions(df.set_index("id").loc[run_id], run_id)


def refused(action) -> bool:
    """Run ``action`` (a button's); False, or True after showing why the lab refused it."""
    try:
        action()
    except (AccessDenied, CheckpointError) as err:
        st.error(str(err), icon=":material/block:")
        return True
    return False


def actions(run, run_id: int) -> None:
    """The selected run's buttons: those the session's principal may use on it (the manager and the
    store check again)."""
    status, who, owner = run["status"], me(), run["owner"]
    st.write(f"**Run {run_id}** · {run['name']} · {status}" + (f" · {owner}" if store.access is not None else ""))
    bar = st.container(horizontal=True)  # each button as wide as its label (five columns cut the longer ones)
    if bar.button("Open", icon=":material/open_in_new:", key="open_run"):
        st.switch_page(PAGES["run"], query_params={"run": run_id})
    if may(who, "launch") and bar.button("Relaunch with changes", icon=":material/restart_alt:", key="relaunch_run",
                                        help="Opens the Launch page with this run's config in the form"):
        st.switch_page(PAGES["launch"], query_params={"from": run_id})
    if status in ("queued", "running") and may(who, "cancel", owner) and bar.button(
            "Cancel", icon=":material/stop:", key="cancel_run"):
        if not refused(lambda: the_lab.cancel_run(run_id, principal=who)):
            st.rerun(scope="fragment")
    point = resume_point(store, run_id) if may(who, "resume", owner) else None
    if point is not None and bar.button(f"Resume from task {point['task'] + 1}", icon=":material/play_arrow:",
                                       key="resume_run"):
        if not refused(lambda: the_lab.resume_run(run_id, principal=who)):
            st.rerun(scope="fragment")
    sweep = run["sweep"]
    if run["sweep_live"] > 0 and may(who, "cancel", owner) and bar.button(
            f"Cancel sweep {sweep}", icon=":material/cancel:", key="cancel_sweep"):
        cancelled = []
        if not refused(lambda: cancelled.append(the_lab.cancel_sweep(int(sweep), principal=who))):
            st.toast(f"Cancelled {cancelled[0]} run(s) of sweep {sweep}.")
    if status in FINAL_STATUSES and may(who, "delete", owner):
        if bar.button("Delete", icon=":material/delete:", key="delete_run"):
            st.session_state["confirm_delete"] = run_id
        if st.session_state.get("confirm_delete") == run_id:
            st.warning(f"Delete run {run_id} and all its metrics? This cannot be undone.")
            yes, no = st.columns(2)
            if yes.button("Yes, delete it", type="primary", key="confirm_delete_yes"):
                st.session_state.pop("confirm_delete", None)
                if not refused(lambda: the_lab.delete_run(run_id, principal=who)):
                    st.rerun()
            if no.button("Keep it", key="confirm_delete_no"):
                st.session_state.pop("confirm_delete", None)
                st.rerun(scope="fragment")
    if may(who, "annotate", owner):
        annotate(run, run_id, who)


def annotate(run, run_id: int, who) -> None:
    """Rename the run, and set its tags and notes: checked as hostile input, written together or not at all."""
    lim = limits()
    with st.form(f"annotate_{run_id}", border=False):
        n, t = st.columns(2)
        name = n.text_input("Name", value=run["name"], max_chars=lim.max_run_name_chars, key=f"run_name_{run_id}")
        tags = t.text_input("Tags", value=", ".join(run["tags"]), key=f"run_tags_{run_id}",
                            help=f"Separated by commas; at most {lim.max_tags}, each up to {lim.max_tag_chars} "
                                 "letters, digits or _ . - : + /")
        notes = st.text_area("Notes", value=run["notes"], max_chars=lim.max_notes_chars, key=f"run_notes_{run_id}")
        if st.form_submit_button("Save", icon=":material/save:"):
            try:
                the_lab.annotate_run(run_id, name=name, tags=parse_tags(tags), notes=notes, principal=who)
            except (AnnotationError, AccessDenied) as err:
                st.session_state[f"annotate_error_{run_id}"] = str(err)
            else:
                st.session_state.pop(f"annotate_error_{run_id}", None)
                st.toast(f"Run {run_id} saved.")
                st.rerun()  # the table above was drawn with the old values
    if f"annotate_error_{run_id}" in st.session_state:  # kept across the 2 s refreshes until the next save
        st.error(st.session_state[f"annotate_error_{run_id}"], icon=":material/error:")


table()
