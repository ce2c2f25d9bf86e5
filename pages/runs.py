import pandas as pd
import streamlit as st

from engine.checkpoint import CheckpointError, resume_point
from engine.strategies import STRATEGIES
from pages.ui.lab import PAGES, lab
from store.queries import runs_table
from store.schema import FINAL_STATUSES, RUN_STATUSES

the_lab = lab()
st.title("Runs")

c1, c2 = st.columns(2)
statuses = c1.multiselect("Status", RUN_STATUSES, key="filter_status")
strategies = c2.multiselect("Strategy", list(STRATEGIES), key="filter_strategy")


@st.fragment(run_every=2.0)
def table() -> None:
    df = runs_table(the_lab.store, statuses, strategies)
    if df.empty:
        st.info("No runs yet. Launch one from the Launch page, or the demo from Home.")
        return
    df["open"] = "/run?run=" + df["id"].astype(str)
    event = st.dataframe(
        df.drop(columns=["error"]), hide_index=True, on_select="rerun", selection_mode="single-row", key="runs_table",
        column_order=["open", "id", "name", "strategy", "scenario", "status", "progress", "final_acc", "sweep", "created"],
        column_config={
            "open": st.column_config.LinkColumn("", display_text="open"),
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
            "final_acc": st.column_config.NumberColumn("final avg. accuracy", format="%.3f"),
            "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm:ss"),
        },
    )
    rows = event.selection.rows if event and event.selection else []
    if not rows:
        st.caption("Select a run to open, cancel or delete it.")
        return
    run = df.iloc[rows[0]]
    run_id, status = int(run["id"]), run["status"]
    st.write(f"**Run {run_id}** · {run['name']} · {status}")
    b1, b2, b3, b4 = st.columns(4)
    if b1.button("Open", icon=":material/open_in_new:", key="open_run"):
        st.switch_page(PAGES["run"], query_params={"run": run_id})
    if status in ("queued", "running") and b2.button("Cancel", icon=":material/stop:", key="cancel_run"):
        the_lab.manager.cancel(run_id)
        st.rerun(scope="fragment")
    point = resume_point(the_lab.store, run_id)
    if point is not None and b2.button(f"Resume from task {point['task'] + 1}", icon=":material/play_arrow:",
                                       key="resume_run"):
        try:
            the_lab.manager.resume_run(run_id)
        except CheckpointError as err:
            st.error(str(err), icon=":material/error:")
        else:
            st.rerun(scope="fragment")
    sweep = run["sweep"]
    if pd.notna(sweep) and b4.button(f"Cancel sweep {int(sweep)}", icon=":material/cancel:",
                                                           key="cancel_sweep"):
        cancelled = the_lab.manager.cancel_sweep(int(sweep))
        st.toast(f"Cancelled {cancelled} run(s) of sweep {int(sweep)}.")
    if status in FINAL_STATUSES:
        if b3.button("Delete", icon=":material/delete:", key="delete_run"):
            st.session_state["confirm_delete"] = run_id
        if st.session_state.get("confirm_delete") == run_id:
            st.warning(f"Delete run {run_id} and all its metrics? This cannot be undone.")
            yes, no = st.columns(2)
            if yes.button("Yes, delete it", type="primary", key="confirm_delete_yes"):
                the_lab.store.delete_run(run_id)
                st.session_state.pop("confirm_delete", None)
                st.rerun()
            if no.button("Keep it", key="confirm_delete_no"):
                st.session_state.pop("confirm_delete", None)
                st.rerun(scope="fragment")


table()
