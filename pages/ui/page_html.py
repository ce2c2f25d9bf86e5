"""Tell Streamlit's front end where its server is, so a page load asks no wrong address.

Streamlit 1.67's front end guesses the server's address from the page's path: on ``/run?run=7`` it
first asks ``/run/_stcore/health`` and ``/run/_stcore/host-config`` (two 404s in the console on every
load of every page but Home, streamlit issue #7074), then the parent path. Its page reads
``window.__streamlit.BACKEND_BASE_URL`` when set, and then asks that one address only. This middleware
(app.py's st.App) sets it in each page's HTML to the folder the page's own ``./static/...`` links
resolve against: the server's root, or its ``server.baseUrlPath``."""

from __future__ import annotations

SETTING = (b"<script>window.__streamlit = {BACKEND_BASE_URL: new URL('.', window.location.href).href}"
           b"</script>")


def is_page_path(path: str) -> bool:
    """A page's address (``/``, ``/run``, ``/lab/run``): no file name, not one of Streamlit's routes."""
    return "." not in path.rsplit("/", 1)[-1] and "/_stcore/" not in f"{path}/"


class BackendBaseUrl:
    """ASGI middleware: the setting above in every HTML page Streamlit serves; the rest passes as it is."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not is_page_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        # the page's HTML is small: uncompressed, so the setting can be put in it
        inner = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"accept-encoding"]}
        start, chunks = None, []

        async def add_setting(message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message["headers"])
                if message["status"] == 200 and headers.get(b"content-type", b"").startswith(b"text/html"):
                    start = message  # held until the whole page is here
                    return
            elif start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                page = b"".join(chunks).replace(b"<head>", b"<head>" + SETTING, 1)
                headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
                message = {"type": "http.response.body", "body": page}
            await send(message)

        await self.app(inner, receive, add_setting)
