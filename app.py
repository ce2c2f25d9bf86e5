"""CL Lab in the browser (issue 3 builds the pages; for now: the runs in the store)."""

import streamlit as st

from store import DEFAULT_DB, Store

st.set_page_config(page_title="CL Lab", layout="wide")
st.title("CL Lab")
st.caption("Continual learning runs: stability against plasticity.")


@st.cache_resource(scope="global")
def get_store() -> Store:
    return Store(DEFAULT_DB)


store = get_store()
st.write(f"Database: `{store.path}`")
st.dataframe(store.df("SELECT id, name, config->>'$.strategy.name' AS strategy, status, created_at FROM runs ORDER BY id DESC"))
