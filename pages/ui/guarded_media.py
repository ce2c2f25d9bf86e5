"""The lab's guard on Streamlit's media store (``/media/<id>.<ext>``), where a download button's file
is served once it is made. Streamlit serves those files to anyone who has the address; in a hosted lab
this middleware (app.py's st.App) lets through only a request whose login cookie is the session's
login: a download (a file served as an attachment) needs the role that may export every run it was
made from, as its button did (``Lab.check_export``, which writes each one to the audit table), and
any other media a principal the access file lets in. Everyone else gets 403. A local lab has no login:
its media are served as Streamlit serves them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import OrderedDict

MEDIA_PREFIX = "/media/"
MADE_KEPT = 1000  # downloads remembered (each a hash and its runs); older ones are refused as unknown
# Streamlit's front end fetches a download twice a click (it checks the address, then downloads it):
# a principal's fetches of one file this close together are one audit row (each is still checked)
AUDIT_ONCE_S = 30.0

_made: OrderedDict[str, tuple[tuple[int, ...], str]] = OrderedDict()
_audited: dict[tuple[str, str], float] = {}  # (email, file hash): when its last audit row was written
_made_lock = threading.Lock()


def remember_download(data: bytes, run_ids, file_name: str) -> bytes:
    """Note which runs a download's bytes were made from (the media store knows only the bytes)."""
    key = hashlib.sha256(data).hexdigest()
    with _made_lock:
        _made[key] = (tuple(int(r) for r in run_ids), file_name)
        _made.move_to_end(key)
        while len(_made) > MADE_KEPT:
            _made.popitem(last=False)
    return data


def check_download(the_lab, who, data: bytes) -> None:
    """``AccessDenied`` unless ``who`` may export every run the file was made from (a file the lab did
    not make, or has forgotten, is refused); one audit row per principal and file per ``AUDIT_ONCE_S``."""
    from engine.core.access import AccessDenied

    key = hashlib.sha256(data).hexdigest()
    with _made_lock:
        made = _made.get(key)
        now = time.monotonic()
        for old in [k for k, at in _audited.items() if now - at > AUDIT_ONCE_S]:
            del _audited[old]
        audited = (who.email, key) in _audited
        if made is not None and not audited:  # this fetch writes the row (the click's two fetches come at once)
            _audited[(who.email, key)] = now
    if made is None:
        raise AccessDenied("this file is not a download this lab made (or it is too old): download it again from its page")
    run_ids, file_name = made
    if audited:
        for run_id in run_ids:
            the_lab.store.authorize(who, "export", run_id=run_id)
        return
    try:
        the_lab.check_export(list(run_ids), who, detail=f"downloaded {file_name}")
    except AccessDenied:
        with _made_lock:
            _audited.pop((who.email, key), None)
        raise


def logged_in_user(cookies: dict[str, str]) -> dict | None:
    """The login a request's cookies carry (Streamlit's signed ``_streamlit_user`` cookie, checked
    with Streamlit's own decoder and cookie secret, for this lab's origin), or None."""
    from streamlit.auth_util import get_cookie_with_chunks, get_origin_from_redirect_uri
    from streamlit.web.server.server_util import get_cookie_secret
    from streamlit.web.server.starlette.starlette_app_utils import decode_signed_value
    from streamlit.web.server.starlette.starlette_server_config import USER_COOKIE_NAME

    secret = get_cookie_secret()

    def signed(name: str) -> bytes | None:
        value = cookies.get(name)
        return None if value is None else decode_signed_value(secret, name, value.encode("latin-1"))

    raw = get_cookie_with_chunks(signed, USER_COOKIE_NAME)
    try:
        user = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(user, dict) or user.get("is_logged_in") is not True:
        return None
    return user if user.get("origin") == get_origin_from_redirect_uri() else None


async def respond(send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class MediaGuard:
    """ASGI middleware over Streamlit's app: the checks above on every ``/media/`` request of a hosted lab."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        from pages.ui.lab import hosted_mode, opened_lab

        if scope["type"] != "http" or not scope["path"].startswith(MEDIA_PREFIX) or not hosted_mode():
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request

        user = logged_in_user(Request(scope).cookies)
        the_lab = opened_lab(hosted=True)  # None before the first page load: no download exists yet
        if user is None or the_lab is None:
            await respond(send, 403, "log in to this lab to download its files")
            return
        from engine.core.access import AccessDenied, principal_for

        store = the_lab.store
        try:
            who = principal_for(store.access, user.get("email"), user.get("email_verified"))
        except AccessDenied as err:
            await respond(send, 403, str(err))
            return
        # the file's own bytes, whole and not compressed: a part would not be known as the download it is
        inner = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k not in (b"range", b"accept-encoding")]}
        start, chunks = None, []

        async def keep(message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            else:
                chunks.append(message.get("body", b""))

        await self.app(inner, receive, keep)
        body = b"".join(chunks)
        response_headers = dict(start["headers"]) if start else {}
        if start and start["status"] == 200 and response_headers.get(b"content-disposition", b"").startswith(b"attachment"):
            try:  # the button's own check, and its audit row (the database's writer: off the event loop)
                await asyncio.to_thread(check_download, the_lab, who, body)
            except AccessDenied as err:
                await respond(send, 403, str(err))
                return
        if start is not None:
            await send(start)
        await send({"type": "http.response.body", "body": body})
