import streamlit as st

from engine.core.access import AccessDenied
from engine.config import load_config
from engine.runs.artifacts import disk_free_line
from pages.ui.lab import PAGES, PROJECT_ROOT, lab, may, me
from store.queries import status_counts
from store.schema import FINAL_STATUSES

DEMO = PROJECT_ROOT / "configs" / "replay-demo.yaml"  # the Home button launches exactly this file

the_lab = lab()
st.title("CL Lab")
st.markdown(
    "Train a model on a sequence of tasks and watch **stability** (what earlier tasks taught) trade "
    "against **plasticity** (learning the new task), evaluated on every task every few steps."
)

counts = status_counts(the_lab.store)
running, queued, done = st.columns(3)
running.metric("Running", counts.get("running", 0))
queued.metric("Queued", counts.get("queued", 0))
done.metric("Done", sum(counts.get(s, 0) for s in FINAL_STATUSES))
st.caption(f"Database: `{the_lab.store.path}` · {disk_free_line(the_lab.store.path)}")
if the_lab.store.disk_full:  # the writer is waiting for space: runs fail if none comes back
    st.warning(the_lab.store.disk_full, icon=":material/hard_drive:")
if (cluster := the_lab.cluster()) is not None:  # lab.toml's [executor] kind = "ray"
    st.subheader("Cluster")
    st.caption(cluster.summary)
    st.dataframe(cluster.records(), hide_index=True)

st.subheader("Try it: the stability gap")
st.write("Experience Replay on 5-task class-incremental Split-Digits, every task evaluated at every step "
         "(a few seconds).")
st.markdown(
    "**What to look at:** on the run's *accuracy on every task* panel, right after each task switch "
    "(the dashed lines), the earlier tasks' accuracy drops sharply for a few steps and then climbs back "
    "while the new task is learned: the **stability gap** (De Lange et al., ICLR 2023). Each dip's lowest "
    "point is marked with a red ▼; the table under the charts gives its depth and recovery time. Final "
    "accuracy hides the dip; *min-ACC* and *WC-ACC* show it."
)
who = me()
if not may(who, "launch"):
    st.info("You have read access: the lab's runs are on the Runs page.", icon=":material/visibility:")
elif st.button("Launch the demo run", type="primary", icon=":material/play_arrow:"):
    try:
        run_id = the_lab.launch_run(load_config(DEMO), principal=who)
    except AccessDenied as err:  # a quota reached, or the role changed
        st.error(str(err), icon=":material/block:")
    else:
        st.switch_page(PAGES["run"], query_params={"run": run_id})
