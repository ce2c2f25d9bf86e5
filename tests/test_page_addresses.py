"""Every request a page load makes finds its address: Streamlit's front end no longer guesses the server
from the page's path (it asked ``/run/_stcore/health`` and ``/run/_stcore/host-config`` first, two 404s
in the console on each load of a Run page; streamlit issue #7074). A real server and Chromium."""

import re

from tests.test_browser import no_exception, page, pytestmark, server  # noqa: F401 - fixtures, skip mark


def failed_requests_of_a_load(page, address: str) -> list[str]:
    """Load ``address`` afresh and return every response of 400 or more (status and URL) until the page
    is idle, with the console's errors."""
    failed: list[str] = []
    on_response = lambda response: failed.append(f"{response.status} {response.url}") if response.status >= 400 else None  # noqa: E731
    on_console = lambda message: failed.append(f"console: {message.text}") if message.type == "error" else None  # noqa: E731
    page.on("response", on_response)
    page.on("console", on_console)
    try:
        page.goto(address, wait_until="networkidle")
        page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
    finally:
        page.remove_listener("response", on_response)
        page.remove_listener("console", on_console)
    return failed


def test_a_run_page_load_asks_no_address_that_is_not_there(server, page):
    url, _ = server
    page.goto(url, wait_until="networkidle")
    page.get_by_role("button", name="Launch the demo run").click(timeout=60_000)
    page.wait_for_url(re.compile(r"/run\?run=\d+"), timeout=60_000)
    run_id = int(page.url.rsplit("=", 1)[1])
    page.get_by_role("heading", name=re.compile(rf"^Run {run_id}")).wait_for(timeout=60_000)
    for path in (f"run?run={run_id}", "runs", "compare", ""):
        assert failed_requests_of_a_load(page, f"{url}/{path}") == [], path
    page.goto(f"{url}/run?run={run_id}", wait_until="networkidle")
    page.get_by_role("heading", name=re.compile(rf"^Run {run_id}")).wait_for(timeout=60_000)  # the page works
    no_exception(page)
