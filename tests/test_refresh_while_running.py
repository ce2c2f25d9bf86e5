"""A live refresh that reaches a session while its script is running is dropped (pages/ui/lab.py,
``drop_refreshes_while_running``): in a real ``streamlit run`` and Chromium, with a fragment slower
than its period, as on a loaded server. Without it, Streamlit ran the refreshes back to back, and each
run's start cleared the output of the one before it that was not sent yet (a live Run page never got
its chart under 20 sessions)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, free_port, goto_when_listening

SLOW_FRAGMENT_APP = textwrap.dedent('''
    import time

    import streamlit as st

    from pages.ui.lab import drop_refreshes_while_running

    st.caption(f"dropping: {drop_refreshes_while_running()}")


    @st.fragment(run_every=0.5)
    def live():
        st.write(f"drawn at {time.time():.3f}")
        time.sleep(1.5)  # a run three periods long


    live()
''')


def frames(page) -> list[tuple[str, str]]:
    """What the page's WebSocket carries, in order: ("in", kind) from the server (new_session of a
    fragment run, with its fragments' ids; script_finished) and ("out", "refresh") for a live refresh
    the browser sends."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    seen = []

    def received(payload) -> None:
        msg = ForwardMsg()
        msg.ParseFromString(payload if isinstance(payload, bytes) else payload.encode())
        kind = msg.WhichOneof("type")
        if kind == "new_session" and msg.metadata.run.fragment_ids:
            seen.append(("in", "fragment run", *msg.metadata.run.fragment_ids))
        elif kind == "script_finished":
            seen.append(("in", "finished"))

    def sent(payload) -> None:
        msg = BackMsg()
        msg.ParseFromString(payload if isinstance(payload, bytes) else payload.encode())
        if msg.WhichOneof("type") == "rerun_script" and msg.rerun_script.is_auto_rerun:
            seen.append(("out", "refresh"))

    page.on("websocket", lambda ws: (ws.on("framereceived", received), ws.on("framesent", sent)))
    return seen


def watch(tmp_path, source: str, seconds: float) -> list[tuple]:
    """Serve the app ``source`` with ``streamlit run``, open it in Chromium, and return ``frames`` of
    ``seconds`` after the lab's drop is reported installed."""
    from playwright.sync_api import sync_playwright

    app = tmp_path / "app.py"
    app.write_text(source)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(port),
                               "--server.address", "127.0.0.1", "--server.headless", "true"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page()
            seen = frames(page)
            goto_when_listening(page, f"http://127.0.0.1:{port}/")
            page.get_by_text("dropping: True").wait_for(timeout=60_000)
            page.wait_for_timeout(seconds * 1000)
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    return seen


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Debian's chromium is not installed")
def test_a_refresh_sent_while_the_script_runs_is_dropped_so_runs_never_follow_back_to_back(tmp_path):
    seen = watch(tmp_path, SLOW_FRAGMENT_APP, 12)
    # Each fragment run after the first must answer a refresh the browser sent after the run before
    # it had finished; one that starts with no refresh since is a refresh queued while running.
    runs, back_to_back, refreshed = 0, 0, False
    last_finished = None
    for i, (direction, what, *_) in enumerate(seen):
        if what == "finished":
            last_finished, refreshed = i, False
        elif what == "refresh" and last_finished is not None:
            refreshed = True
        elif what == "fragment run":
            runs += 1
            if last_finished is not None and not refreshed:
                back_to_back += 1
    refreshes = sum(what == "refresh" for _, what, *_ in seen)
    assert runs >= 4, seen
    assert refreshes >= 2 * runs, (refreshes, runs)  # the timer sent three a run: most were dropped
    # a refresh crossing a run's end on the wire may look back to back (more often on a loaded
    # machine: the suite runs two files at once); queued, every run after the first was
    assert 2 * back_to_back < runs - 1, (back_to_back, runs, seen)


TWO_FRAGMENTS_APP = textwrap.dedent('''
    import time

    import streamlit as st

    from pages.ui.lab import drop_refreshes_while_running

    st.caption(f"dropping: {drop_refreshes_while_running()}")


    @st.fragment(run_every=1)
    def slow():
        st.write(f"slow, drawn at {time.time():.3f}")
        time.sleep(0.9)  # most of its period: the other fragment's refresh comes while it runs


    @st.fragment(run_every=1)
    def quick():
        st.write(f"quick, drawn at {time.time():.3f}")


    slow()
    quick()
''')


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Debian's chromium is not installed")
def test_two_live_fragments_of_a_page_both_keep_refreshing(tmp_path):
    """A refresh of one fragment reaching the session while the other runs goes through (only a run
    of the same fragment already asked for is dropped): neither starves."""
    seen = watch(tmp_path, TWO_FRAGMENTS_APP, 10)
    runs: dict[str, int] = {}
    for _, what, *fragments in seen:
        if what == "fragment run":
            for fragment in fragments:
                runs[fragment] = runs.get(fragment, 0) + 1
    assert len(runs) == 2 and min(runs.values()) >= 4, runs
