"""CL Lab: `streamlit run app.py [-- --db PATH]`."""

import streamlit as st

from pages.ui.lab import drop_refreshes_while_running, frame, navigation_pages, open_lab, principal_or_none

drop_refreshes_while_running()  # once per server process (a loaded server ran live refreshes back to back)
who = principal_or_none(open_lab())  # None: a visitor of a hosted lab, who gets only the login page
pages = navigation_pages(who)
page = st.navigation(pages, position="hidden")
frame(pages, who)
page.run()
