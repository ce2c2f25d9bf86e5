"""CL Lab: `streamlit run app.py [-- --db PATH]`."""

import streamlit as st

from pages.ui.lab import frame, navigation_pages

pages = navigation_pages()
page = st.navigation(pages, position="hidden")
frame(pages)
page.run()
