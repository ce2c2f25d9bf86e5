"""CL Lab: `streamlit run app.py [-- --db PATH]`."""

import streamlit as st

from pages.ui.lab import frame, navigation_pages, open_lab, principal_or_none

who = principal_or_none(open_lab())  # None: a visitor of a hosted lab, who gets only the login page
pages = navigation_pages(who)
page = st.navigation(pages, position="hidden")
frame(pages, who)
page.run()
