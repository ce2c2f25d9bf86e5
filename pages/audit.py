"""The audit table, for a hosted lab's admins: who launched, cancelled, resumed, renamed, deleted or
exported which run or sweep, and when; and what was refused, and why (store/audit.py)."""

import streamlit as st

from engine.core.access import ACTIONS
from pages.ui.lab import lab, me
from store.audit import audit_rows

the_lab = lab()
st.title("Audit")
if me().role != "admin":  # not in their sidebar; a link still leads here
    st.error(f"{me()} may not read the audit table: it is for the lab's admins.", icon=":material/block:")
    st.stop()

c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
who = c1.text_input("Who", key="audit_who", max_chars=254, placeholder="an email address, exactly")
action = c2.selectbox("Action", [None, *ACTIONS], format_func=lambda a: "any" if a is None else a, key="audit_action")
run_id = c3.number_input("Run", value=None, min_value=1, step=1, format="%d", key="audit_run")
refused_only = c4.toggle("Refusals only", key="audit_refused")

rows = audit_rows(the_lab.store, who=who.strip().lower() or None, action=action,
                  run_id=int(run_id) if run_id is not None else None, allowed=False if refused_only else None)
st.caption(f"The newest {len(rows)} row(s) first (at most 1,000).")
st.dataframe(rows, hide_index=True, key="audit_table", column_config={
    "happened_at": st.column_config.DatetimeColumn("when", format="YYYY-MM-DD HH:mm:ss"),
    "allowed": st.column_config.CheckboxColumn("allowed"),
})
