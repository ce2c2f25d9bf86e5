import streamlit as st

from pages.ui.lab import lab
from store.metrics import METRICS

lab()  # a visitor of a hosted lab gets the login page, also on a fresh server's first load

GROUPS = {
    "matrix": ("At task boundaries", "From the accuracy matrix R: R[i][j] is the accuracy on task j after training "
               "task i, row 0 before any training."),
    "continual": ("From continual evaluation", "From the accuracy on every task every few steps, A(j, t) "
                  "(De Lange et al., ICLR 2023): these see the stability gap that final accuracy hides."),
    "l2m": ("Lifelong-learning metrics (L2M)", "After the DARPA L2M framework (lifelong-learning-systems/l2metrics)."),
}

st.title("Metrics")
st.markdown(
    "Every metric is defined once, over the per-step table of the store, and a metric that cannot be "
    "computed for a run says why instead of showing 0. Where libraries disagree, the definition used here "
    "is the one below; the source says where it comes from."
)
st.info("Class-incremental EWC and LwF ending near 1/T accuracy (about 0.20 on 5 tasks) with one head is the "
        "known result, not a bug (van de Ven et al.): replay is what holds up there.", icon=":material/info:")

for group, (title, blurb) in GROUPS.items():
    st.header(title)
    st.caption(blurb)
    for key, info in METRICS.items():
        if info.group != group:
            continue
        with st.container(border=True):
            st.subheader(info.title)
            st.latex(info.latex)
            better = {True: "higher is better", False: "lower is better", None: "neither: read it as a diagnostic"}
            st.markdown(f"**{better[info.higher_is_better].capitalize()}.** {info.tells}")
            st.caption(f"Source: {info.source}" + (f" · Needs: {info.needs}" if info.needs else "") + f" · key `{key}`")
