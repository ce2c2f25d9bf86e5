"""A hosted lab in a real browser: `streamlit run app.py` with an [auth] section in its secrets, a real
OIDC server (oidc-provider-mock) that the test starts, and Debian's headless Chromium logging in through
the provider's authorize form, one browser context (its own cookies) per user.

Users (the access file): A and B members, C an admin, D a viewer; B has a disk quota for weights
smaller than any run's weights, so each launch of B's is refused by it, whatever the queue does
(runs_queued or runs_at_once would depend on how fast the runs train on a loaded machine)."""

import re
from contextlib import contextmanager
from urllib.parse import urlparse

import pytest
from oidc_provider_mock import User, run_server_in_thread
from playwright.sync_api import expect

from tests import test_browser
from tests.test_browser import free_port, no_exception, pytestmark, wait_for_the_script  # noqa: F401
from tests.test_report_browser import browser  # noqa: F401 - the fixture

A, B, C, D = "a@lab.test", "b@lab.test", "c@lab.test", "d@lab.test"
OUTSIDER = "e@elsewhere.test"  # a login the access file does not let in
ACCESS = f"""
[users]
"{A}" = "member"
"{B}" = {{ role = "member", weights_gb = 0.000001 }}  # 1 kB: a run's weights alone are more
"{C}" = "admin"
"{D}" = "viewer"
"""
LAB_PAGES = ["Home", "Launch", "Runs", "Run", "Compare", "Metrics"]


@pytest.fixture(scope="module")
def hosted(tmp_path_factory):
    """The OIDC server and the hosted lab; yields the lab's URL and a dict the tests share (the run)."""
    with hosted_lab(tmp_path_factory.mktemp("hosted")) as url:
        yield url, {}


@contextmanager
def hosted_lab(folder):
    """The OIDC server and a hosted lab over ``folder``/lab.duckdb (its secrets, access file and log
    beside it), for the users above; yields the lab's URL."""
    users = [User(sub=email, claims={"email": email, "email_verified": True}) for email in (A, B, C, D, OUTSIDER)]
    with run_server_in_thread(port=0, user_claims=users) as oidc, pytest.MonkeyPatch.context() as mp:
        port = free_port()
        # the browser comes back to this address after the login, so the lab must be served on it
        (folder / "secrets.toml").write_text(f"""
[auth]
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
cookie_secret = "a test cookie secret, long enough to sign with"
client_id = "cl-lab"
client_secret = "any secret: the mock accepts every client"
server_metadata_url = "http://localhost:{oidc.server_port}/.well-known/openid-configuration"
""")
        (folder / "access.toml").write_text(ACCESS)
        mp.setenv("STREAMLIT_SECRETS_FILES", str(folder / "secrets.toml"))  # never the project's own secrets
        mp.setenv("CL_LAB_ACCESS", str(folder / "access.toml"))
        with test_browser.streamlit_server(folder / "lab.duckdb", folder / "streamlit.log", port) as url:
            assert urlparse(url).port == port
            yield url


@pytest.fixture(scope="module")
def sessions(browser):
    """A new page for a user, in their own browser context (their cookies: a user logs in once). The
    pages open before are closed, so the server does not keep refreshing live views nobody looks at."""
    contexts = {}

    def session(who: str):
        for context in contexts.values():
            for page in context.pages:
                page.close()
        if who not in contexts:
            contexts[who] = browser.new_context(viewport={"width": 1400, "height": 1000})
            contexts[who].set_default_timeout(30_000)
        return contexts[who].new_page()

    yield session
    for context in contexts.values():
        context.close()


def expect_sidebar(page, names: list[str]) -> None:
    """The sidebar's page links are exactly these (each link's text is its icon's name, then its title)."""
    links = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]')
    expect(links).to_have_text([re.compile(rf"{name}$") for name in names], timeout=60_000)


def expect_login_page(page) -> None:
    expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=60_000)
    assert page.locator('[data-testid="stDataFrame"]').count() == 0  # no runs
    expect_sidebar(page, ["Log in"])
    assert page.get_by_role("button", name=re.compile("Launch")).count() == 0
    no_exception(page)


def log_in(page, url: str, email: str) -> None:
    """Through the lab's Log in button and the provider's authorize form, back to the lab."""
    page.goto(url, wait_until="networkidle")
    page.get_by_role("button", name="Log in").click(timeout=60_000)
    page.wait_for_url(re.compile(r"/oauth2/authorize"))
    page.get_by_placeholder("sub").fill(email)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(re.compile(re.escape(url)))


def log_out(page, url: str) -> None:
    """The Log out button: Streamlit ends the provider's session too (its end-session page, confirmed
    there), and the browser comes back to the lab's login page."""
    button(page, "Log out").click()
    page.wait_for_url(re.compile(r"/oauth2/end_session"), timeout=60_000)
    page.get_by_role("button", name="End session").click()
    page.wait_for_url(re.compile(re.escape(url)), timeout=60_000)
    expect_login_page(page)


def logged_in(sessions, url: str, email: str, role: str):
    """A page of ``email``'s, logged in: the sidebar says who they are and as what."""
    page = sessions(email)
    log_in(page, url, email)
    expect(page.locator('[data-testid="stSidebar"]').get_by_text(f"{email} · {role}")).to_be_visible(timeout=60_000)
    no_exception(page)
    return page


def test_a_visitor_sees_only_the_login_on_every_page(hosted, sessions):
    url, _ = hosted
    page = sessions("visitor")
    # a freshly started server's first load, by a link to a run (run without app.py: the legacy way)
    page.goto(f"{url}/run?run=1", wait_until="networkidle")
    expect_login_page(page)
    assert page.get_by_role("heading", name=re.compile("^Run")).count() == 0
    for path in ("runs", "launch"):
        page.goto(f"{url}/{path}", wait_until="networkidle")
        expect_login_page(page)


def test_a_member_logs_in_and_launches_a_run_they_may_cancel(hosted, sessions):
    url, shared = hosted
    page = logged_in(sessions, url, A, "member")
    expect_sidebar(page, LAB_PAGES)  # no Audit page for a member
    page.get_by_role("link", name="Launch").first.click()
    page.get_by_role("heading", name="Launch a run").wait_for()
    # long enough to be still training when the admin cancels it (it is cancelled, never waited for)
    for label, value in (("Run name", "a-long-run"), ("Epochs per task", "2000")):
        field = page.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Enter")
        wait_for_the_script(page)
    page.get_by_role("button", name="Launch").last.click()
    page.wait_for_url(re.compile(r"/run\?run=\d+"), timeout=120_000)
    shared["run"] = run_id = int(page.url.rsplit("=", 1)[1])
    expect(page.get_by_role("heading", name=f"Run {run_id}: a-long-run")).to_be_visible(timeout=60_000)
    expect(page.get_by_text(f"owner {A}")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel run")).to_be_visible()  # their own run
    no_exception(page)


def test_another_member_sees_the_run_but_may_not_cancel_or_delete_it(hosted, sessions):
    url, shared = hosted
    run_id = shared["run"]
    page = logged_in(sessions, url, B, "member")
    page.goto(f"{url}/run?run={run_id}", wait_until="networkidle")
    expect(page.get_by_role("heading", name=f"Run {run_id}: a-long-run")).to_be_visible(timeout=60_000)
    expect(page.get_by_text(re.compile(rf"(queued|running) · .* owner {re.escape(A)}"))).to_be_visible()
    page.wait_for_timeout(2000)  # a few live refreshes of the run view
    assert page.get_by_role("button", name="Cancel run").count() == 0
    no_exception(page)

    select_run(page, url, run_id)
    expect(page.get_by_text(re.compile(rf"Run {run_id} · a-long-run · (queued|running) · {re.escape(A)}"))).to_be_visible()
    expect(button(page, "Relaunch with changes")).to_be_visible()  # A's config, as B's own run
    for name in ("Cancel", "Delete", "Save"):
        assert button(page, name).count() == 0, name
    no_exception(page)


def test_a_quota_stops_a_launch_with_its_message(hosted, sessions):
    url, shared = hosted
    page = sessions(B)  # logged in by the test above
    page.goto(url, wait_until="networkidle")
    page.get_by_role("button", name="Launch the demo run").click(timeout=60_000)
    refusal = page.locator('[data-testid="stAlert"]').filter(has_text="may not launch runs")
    expect(refusal).to_be_visible(timeout=60_000)
    assert f"{B} (member) may not launch runs" in refusal.inner_text()
    assert "over the quota of 1e-06 GB (weights_gb)" in refusal.inner_text()
    assert "/run" not in page.url  # nothing was launched: Home stays
    page.goto(f"{url}/runs", wait_until="networkidle")
    expect(page.get_by_text("1 run(s).", exact=False)).to_be_visible(timeout=60_000)  # only A's


def test_an_admin_cancels_and_deletes_another_users_run(hosted, sessions):
    url, shared = hosted
    run_id = shared["run"]
    page = logged_in(sessions, url, C, "admin")
    expect_sidebar(page, [*LAB_PAGES, "Audit"])
    page.goto(f"{url}/run?run={run_id}", wait_until="networkidle")
    page.get_by_role("button", name="Cancel run").click(timeout=60_000)
    expect(page.get_by_text(re.compile(r"^cancelled ·"))).to_be_visible(timeout=60_000)

    select_run(page, url, run_id)
    expect(page.get_by_text(f"Run {run_id} · a-long-run · cancelled · {A}")).to_be_visible()
    button(page, "Delete").click()
    page.get_by_role("button", name="Yes, delete it").click()
    expect(page.get_by_text("No run matches these filters.")).to_be_visible(timeout=60_000)  # the search is kept
    no_exception(page)

    # the admin's audit page has it all: A's launch, B's refusal, C's cancel and delete
    page.get_by_role("link", name="Audit").first.click()
    expect(page.get_by_role("heading", name="Audit")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("The newest 4 row(s) first")).to_be_visible()
    no_exception(page)


def test_a_viewer_reads_but_cannot_launch(hosted, sessions):
    url, _ = hosted
    page = logged_in(sessions, url, D, "viewer")
    expect_sidebar(page, [p for p in LAB_PAGES if p != "Launch"])
    expect(page.get_by_text("You have read access")).to_be_visible()
    assert page.get_by_role("button", name="Launch the demo run").count() == 0
    # a link to the Launch page, which is not in a viewer's navigation: Streamlit says so, and shows Home
    page.goto(f"{url}/launch", wait_until="networkidle")
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name="Page not found")).to_be_visible(timeout=60_000)
    dialog.get_by_role("button", name="Close").click()
    expect(page.get_by_text("You have read access")).to_be_visible(timeout=60_000)
    assert page.get_by_role("heading", name="Launch a run").count() == 0
    assert page.get_by_role("button", name=re.compile("Launch")).count() == 0
    no_exception(page)


def test_a_login_the_access_file_does_not_list_is_refused_and_logging_out_ends_a_session(hosted, sessions):
    url, _ = hosted
    page = sessions(OUTSIDER)
    log_in(page, url, OUTSIDER)
    expect(page.get_by_text(f"{OUTSIDER} is not allowed in this lab")).to_be_visible(timeout=60_000)
    assert page.locator('[data-testid="stDataFrame"]').count() == 0
    log_out(page, url)

    page = sessions(D)  # logged in by the test above
    page.goto(f"{url}/runs", wait_until="networkidle")
    log_out(page, url)
    page.goto(f"{url}/runs", wait_until="networkidle")
    expect_login_page(page)


def button(page, name: str):
    """The button called ``name`` (its accessible name is its icon's name, then its label)."""
    return page.get_by_role("button", name=re.compile(rf"(^|\s){re.escape(name)}$"))


def select_run(page, url: str, run_id: int) -> None:
    """Open the Runs page filtered to the run, and select its row (the table is a canvas: click the
    row's selection box, left of its first cell)."""
    page.goto(f"{url}/runs", wait_until="networkidle")
    search = page.get_by_role("textbox", name="Search")
    search.fill("a-long-run")
    search.press("Enter")
    table = page.locator('[data-testid="stDataFrame"]')
    table.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    box = table.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the header is a row high (35 px)
    page.get_by_text(f"Run {run_id} · a-long-run").wait_for(timeout=30_000)
