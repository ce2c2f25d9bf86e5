"""Streamlit's own export controls, kept from a principal who may not export (a hosted lab's viewer).

Every table (st.dataframe) and chart (st.vega_lite_chart, st.altair_chart) has a toolbar drawn by the
browser on hover: "Download as CSV" on tables; "Show data" (a table of the chart's data, with its own
CSV button), "Download as PNG" and, on localhost, "Copy Vega-Lite spec" on charts; fullscreen. Cells
of a read-only table can also be copied to the clipboard. Vega-Embed's own "..." actions menu is off in
Streamlit 1.67 (it embeds with ``actions: false`` and drops any ``embedOptions`` but the renderer,
theme and padding), so there is nothing to turn off there.

Two layers, one place for every page (pages/ui/lab.py's ``frame`` applies both):
- the server: Streamlit's ``client.disableDataExport`` switched on for the session alone, in the
  session message that starts each script run (it removes the CSV buttons, the Show data table's
  included, and clipboard copy; it is one option for the whole server otherwise);
- the page: a style rule that hides the element toolbars (Download as PNG and Copy Vega-Lite spec
  have no option of their own).
Neither keeps data from the browser: what a viewer may read is sent to it, and a screenshot or the
browser's developer tools still get it. They remove the export buttons, not the data."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import streamlit as st

TOOLBAR_HIDDEN = '<style>[data-testid="stElementToolbar"] { display: none !important; }</style>'


def hide_element_toolbars() -> None:
    """Hide every table's and chart's toolbar on this page (a style tag, drawn in no space)."""
    st.html(TOOLBAR_HIDDEN)


def disable_data_export_for(may_export: Callable[[Mapping[str, Any]], bool]) -> bool:
    """Install, once per server process: each session message (sent as a script run starts, before the
    page knows who it is for) has ``disable_data_export`` on unless ``may_export(the session's login)``
    says otherwise. The login is what st.user reads (``is_logged_in``, ``email``, ...). True if
    installed; False on a Streamlit whose session has another layout (the style rule still hides the
    toolbars)."""
    try:
        from streamlit.runtime.app_session import AppSession
    except ImportError:
        return False
    create = getattr(AppSession, "_create_new_session_message", None)
    if create is None:
        return False
    if getattr(AppSession, "_cl_lab_guards_export", False):
        return True

    def create_without_export(self, *args, **kwargs):
        msg = create(self, *args, **kwargs)
        login = dict(getattr(self, "_user_info", None) or {})
        if not may_export(login):
            msg.new_session.config.disable_data_export = True
        return msg

    AppSession._create_new_session_message = create_without_export
    AppSession._cl_lab_guards_export = True
    return True
