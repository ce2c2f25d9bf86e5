import streamlit as st

from engine.config import parse_config
from pages.ui.lab import PAGES, lab
from store.queries import status_counts

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
done.metric("Done", sum(counts.get(s, 0) for s in ("finished", "failed", "cancelled", "diverged")))
st.caption(f"Database: `{the_lab.store.path}`")

DEMO = {"name": "replay-demo", "scenario": {"dataset": "digits", "setting": "class", "n_tasks": 5},
        "model": {"name": "mlp", "hidden": [256, 256]}, "strategy": {"name": "replay", "buffer_size": 200},
        "train": {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "epochs_per_task": 5}, "eval": {"every": 10}}

st.subheader("Try it")
st.write("Experience Replay with a 200-sample buffer on 5-task class-incremental Split-Digits (about a second).")
if st.button("Launch the demo run", type="primary", icon=":material/play_arrow:"):
    run_id = the_lab.manager.submit(parse_config(DEMO))
    st.switch_page(PAGES["run"], query_params={"run": run_id})
