"""CL Lab: `streamlit run app.py [-- --db PATH]`."""

import streamlit as st

st.set_page_config(page_title="CL Lab", page_icon=":material/science:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/launch.py", title="Launch", icon=":material/rocket_launch:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/table_rows:"),
    st.Page("pages/run.py", title="Run", icon=":material/monitoring:", url_path="run"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/metrics.py", title="Metrics", icon=":material/function:"),
]
page = st.navigation(pages, position="hidden")
with st.sidebar:
    st.markdown("### CL Lab")
    for p in pages:
        st.page_link(p)
page.run()
