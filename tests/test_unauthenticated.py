"""What a client that reaches the port can do without a login: a bare WebSocket on `/_stcore/stream`
(no cookie, no XSRF token) sending Streamlit's BackMsgs to a real `streamlit run app.py`."""

import re
import time

import pytest
from playwright.sync_api import expect

from tests.test_browser import goto_when_listening, launch_from_the_form, no_exception, page, pytestmark, streamlit_server  # noqa: F401


class BareClient:
    """``url``'s Streamlit WebSocket opened as a bare client: no cookie, no Origin, no XSRF token."""

    def __init__(self, url: str):
        from websockets.sync.client import connect

        self.ws = connect(url.replace("http://", "ws://") + "/_stcore/stream", max_size=None)

    def send(self, *messages) -> None:
        for message in messages:
            self.ws.send(message.SerializeToString())

    def receive(self, seconds: float = 2.0) -> list:
        """The ForwardMsgs the server sends within ``seconds``."""
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        from websockets.exceptions import ConnectionClosed

        received, end = [], time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                frame = self.ws.recv(timeout=left)
            except (TimeoutError, ConnectionClosed):
                break
            msg = ForwardMsg()
            msg.ParseFromString(frame)
            received.append(msg)
        return received

    def close(self) -> None:
        self.ws.close()


def clear_cache():
    from streamlit.proto.BackMsg_pb2 import BackMsg

    msg = BackMsg()
    msg.clear_cache = True
    return msg


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("unauthenticated") / "lab.duckdb"
    with streamlit_server(db, tmp_path_factory.mktemp("log") / "streamlit.log") as url:
        yield url, db


def test_a_clear_cache_message_from_a_bare_websocket_does_not_stop_a_training_run(server, page):
    url, _ = server
    goto_when_listening(page, f"{url}/launch")
    page.get_by_role("heading", name="Launch a run").wait_for(timeout=60_000)
    # a run that trains for several seconds, so the message reaches the lab while it trains
    launch_from_the_form(page, {"Run name": "long-run", "Tasks": "2", "Epochs per task": "80"})
    expect(page.get_by_text(re.compile(r"^running ·"))).to_be_visible(timeout=120_000)

    client = BareClient(url)
    client.send(clear_cache(), clear_cache())
    client.receive(2)  # the server handles them meanwhile
    client.close()

    status = page.get_by_text(re.compile(r"^(finished|failed|cancelled) ·"))
    expect(status).to_be_visible(timeout=180_000)
    assert status.inner_text().startswith("finished"), page.locator('[data-testid="stAlert"]').all_inner_texts()
    assert page.get_by_text("shut down").count() == 0
    no_exception(page)


def test_a_bare_websocket_cannot_upload_files(server):
    """The lab has no file uploader, so it takes no uploads: Streamlit hands any session upload URLs,
    and kept each file (200 MB each by default, any number) in memory until the session ended."""
    import requests
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string

    url, _ = server
    client = BareClient(url)
    try:
        ask = BackMsg()
        ask.file_urls_request.request_id = "r1"
        ask.file_urls_request.file_names.append("big.bin")
        client.send(ask)
        [answer] = [m.file_urls_response for m in client.receive(5) if m.WhichOneof("type") == "file_urls_response"]
        token = generate_xsrf_token_string()  # the XSRF check compares a cookie with a header: both the client's
        upload = requests.put(url + answer.file_urls[0].upload_url, headers={"X-Xsrftoken": token},
                          cookies={"_streamlit_xsrf": token},
                          files={"file": ("big.bin", b"x" * 2_000_000)}, timeout=60)
        assert upload.status_code == 413, (upload.status_code, upload.text)
    finally:
        client.close()
