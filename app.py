"""CL Lab: `streamlit run app.py [-- --db PATH]`.

Streamlit reads this file two ways. `streamlit run` finds ``app`` (an st.App) and serves it: Streamlit's
server with the lab's guard on downloads (pages/ui/guarded_media.py) and its pages told where the
server is (pages/ui/page_html.py). Each page load then runs the file
as a script (``__main__``, as AppTest does too): the lab's pages."""

import streamlit as st

if __name__ == "__main__":  # a page load
    from pages.ui.lab import drop_refreshes_while_running, frame, navigation_pages, open_lab, principal_or_none

    drop_refreshes_while_running()  # once per server process (a loaded server ran live refreshes back to back)
    who = principal_or_none(open_lab())  # None: a visitor of a hosted lab, who gets only the login page
    pages = navigation_pages(who)
    page = st.navigation(pages, position="hidden")
    frame(pages, who)
    page.run()
else:  # imported by `streamlit run app.py`: the server
    from starlette.middleware import Middleware

    from pages.ui.guarded_media import MediaGuard
    from pages.ui.page_html import BackendBaseUrl

    app = st.App(__file__, middleware=[Middleware(MediaGuard), Middleware(BackendBaseUrl)])
