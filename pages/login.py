import streamlit as st

from pages.ui.lab import PAGES, login_page, open_lab, principal_or_none

if principal_or_none(open_lab()) is not None:  # a local lab, or logged in already
    st.switch_page(PAGES["home"])
login_page()
