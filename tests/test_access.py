"""A shared lab's access control below the pages (engine/core/access.py, Store, RunManager): the access file as
hostile input, every role x every action allowed or refused at the manager and store, quotas with their
figures, the audit table, and a local lab (no access file) that behaves as before. Real DuckDB files and
the real RunManager; the runs that train are tiny."""

import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.training import checkpoint as checkpoints
from engine.runs import artifacts
from engine.core.access import (AccessDenied, AccessFileError, Principal, QuotaExceeded, lab_access, load_access,
                           local_principal, parse_access, principal_for)
from engine.runs.manager import RunManager, default_owner
from engine.sweeps.sweep import cancel_sweep, launch_sweep, parse_sweep
from store import Store
from store.audit import audit_rows
from tests.conftest import ROOT, small_config

ACCESS = """
[quotas]
runs_queued = 50

[users]
"ada@lab.org" = "admin"
"Bob@Lab.org" = "member"
"cat@lab.org" = "viewer"
"eve@lab.org" = { role = "member", runs_queued = 2, largest_sweep = 3 }

[domains]
"team.org" = "member"
"""
ADA, BOB, CAT, DAN = "ada@lab.org", "bob@lab.org", "cat@lab.org", "dan@team.org"
TINY = {"scenario": {"dataset": "digits", "n_tasks": 2}, "model": {"hidden": [32]},
        "train": {"epochs_per_task": 1, "weights": "none"}, "eval": {"every": 5}}


def access_file(tmp_path, text: str = ACCESS) -> Path:
    path = tmp_path / "access.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A hosted lab: its policy from a real access file; the queue held and no workers (nothing trains)."""
    tmp = tmp_path_factory.mktemp("hosted")
    store = Store(tmp / "lab.duckdb", serve=False, access=load_access(access_file(tmp)))
    manager = RunManager(store, max_parallel=1, warm_workers=0, paused=True)
    yield store, manager
    manager.shutdown()
    store.close()


@contextmanager
def a_lab(tmp_path, access, max_parallel=1, warm_workers=0, paused=True):
    """A lab of its own (hosted when ``access`` is a policy), its manager stopped after; by default
    the queue is held and no worker starts (nothing trains)."""
    with Store(tmp_path / "lab.duckdb", serve=False, access=access) as store:
        manager = RunManager(store, max_parallel=max_parallel, warm_workers=warm_workers, paused=paused)
        try:
            yield store, manager
        finally:
            manager.shutdown()


def who(store, email):
    return store.access.principal(email)


def config(name="r"):
    return small_config("naive", name=name, train={"weights": "none"})


# ---- the access file ------------------------------------------------------------------------------------

def test_principals_from_the_access_file(tmp_path):
    access = load_access(access_file(tmp_path))
    assert access.principal(" BOB@lab.ORG ") == Principal(BOB, "member", access.defaults)
    assert access.principal(ADA).role == "admin" and access.principal(CAT).role == "viewer"
    assert access.principal("Dan@Team.org") == Principal(DAN, "member", access.defaults)  # by its domain
    eve = access.principal("eve@lab.org")
    assert (eve.quotas.runs_queued, eve.quotas.largest_sweep, eve.quotas.runs_at_once) == (2, 3, None)
    assert access.defaults.runs_queued == 50 and access.principal(BOB).quotas.runs_queued == 50
    for email, message in (("x@sub.team.org", "x@sub.team.org is not allowed in this lab: neither the address "
                                              "nor @sub.team.org is listed"),
                           ("mallory@evil.org", "mallory@evil.org is not allowed in this lab"),
                           (None, "the login gave no email address"),
                           ("", "the login gave no email address"),
                           ("no-at-sign", "not an address this lab accepts"),
                           ("a\u202e@lab.org", "not an address this lab accepts")):
        with pytest.raises(AccessDenied, match=re.escape(message)):
            access.principal(email)
    with pytest.raises(AccessDenied, match="not verified"):
        access.principal(BOB, verified=False)
    assert access.principal(BOB, verified=True).role == "member"


@pytest.mark.parametrize("text, lines", [
    ("[users\n", ["is not valid TOML"]),
    ("", ["lists no users and no domains, so nobody could use the lab"]),
    ("[admins]\n\"a@b.org\" = 1\n[users]\n\"a@b.org\" = \"admin\"", ["admins: is not a known table"]),
    ('users = 5', ["users = 5: must be a table"]),
    ('[users]\n"a@b.org" = "root"', ["users.'a@b.org' = 'root': the role must be one of admin, member, viewer"]),
    ('[users]\n"not-an-email" = "admin"', ["users.'not-an-email': not an email address"]),
    ('[users]\n"a\u202e@b.org" = "admin"', ["not an email address"]),
    ('[users]\n"A@b.org" = "admin"\n"a@b.org" = "viewer"', ["listed twice (a@b.org"]),
    ('[users]\n"a@b.org" = { runs_queued = 3 }', ["users.'a@b.org': has no role"]),
    ('[users]\n"a@b.org" = { role = "member", speed = 3 }', ["users.'a@b.org'.speed: is not a known setting"]),
    ('[domains]\n"@b.org" = "member"', ["domains.'@b.org': not a domain name such as example.org (without the @)"]),
    ('[domains]\n"b_.org" = "member"', ["domains.'b_.org': not a domain name"]),
    ('[quotas]\nruns_queued = -1\nruns_at_once = true\nlargest_sweep = 2.5\nweights_gb = "lots"\n'
     '[users]\n"a@b.org" = "admin"',
     ["quotas.runs_queued = -1: must be a positive whole number", "quotas.runs_at_once = True: must be a positive whole",
      "quotas.largest_sweep = 2.5: must be a positive whole number", "quotas.weights_gb = 'lots': must be a positive number of GB"]),
    ('[quotas]\nweights_gb = inf\n[users]\n"a@b.org" = "admin"', ["quotas.weights_gb = inf: must be a positive number"]),
])
def test_a_hostile_access_file_gets_one_line_a_problem(tmp_path, text, lines):
    with pytest.raises(AccessFileError) as err:
        load_access(access_file(tmp_path, text))
    assert len(err.value.problems) == len(lines)
    for problem, line in zip(err.value.problems, lines):
        assert "\n" not in problem and line in problem


def test_an_access_file_that_is_not_text_too_large_or_missing(tmp_path):
    path = tmp_path / "access.toml"
    path.write_bytes(b"\xff\xfe[users]")
    with pytest.raises(AccessFileError, match="byte 0xff at line 1, column 1 .* is not UTF-8"):
        load_access(path)
    path.write_text("# " + "x" * 300_000)
    with pytest.raises(AccessFileError, match=r"larger than 262,144 bytes, the most the lab reads"):
        load_access(path)
    with pytest.raises(AccessFileError, match="cannot be read"):
        load_access(tmp_path / "nowhere.toml")
    with pytest.raises(AccessFileError, match="must be a TOML document"):
        parse_access([1, 2])


def test_where_the_access_file_is(tmp_path, monkeypatch):
    monkeypatch.delenv("CL_LAB_ACCESS", raising=False)
    monkeypatch.setenv("CL_LAB_SETTINGS", str(tmp_path / "lab.toml"))
    assert lab_access(is_hosted=False) is None  # a local lab has no policy, whatever the files say
    with pytest.raises(AccessFileError, match="is hosted .* but has no access file"):
        lab_access(is_hosted=True)
    (tmp_path / "lab.toml").write_text('[access]\nfile = "access.toml"\n')
    access_file(tmp_path)
    assert lab_access(is_hosted=True).principal(ADA).role == "admin"  # relative to lab.toml
    (tmp_path / "lab.toml").write_text('[access]\nfile = 5\n')
    with pytest.raises(AccessFileError, match=r"\[access\] must be a table with one key"):
        lab_access(is_hosted=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("CL_LAB_ACCESS", str(access_file(tmp_path / "elsewhere", '[users]\n"z@z.org" = "viewer"')))
    assert lab_access(is_hosted=True).principal("z@z.org").role == "viewer"


# ---- who may do what --------------------------------------------------------------------------------------

def act(store, manager, action, run_id, principal):
    if action == "cancel":
        return manager.cancel(run_id, principal=principal)
    if action == "annotate":
        return store.annotate_run(run_id, name="renamed", principal=principal)
    if action == "delete":
        return store.delete_run(run_id, principal=principal)
    return store.check_export([run_id], principal=principal)


def state(store, run_id):
    return store.sql("SELECT status, name FROM runs WHERE id = ?", [run_id])


@pytest.mark.parametrize("action", ["cancel", "annotate", "delete", "export"])
@pytest.mark.parametrize("role, email", [("admin", ADA), ("member", BOB), ("viewer", CAT)])
@pytest.mark.parametrize("whose", ["own", "other"])
def test_each_role_on_its_own_and_others_runs(lab, action, role, email, whose):
    store, manager = lab
    owner = email if whose == "own" else DAN
    if owner == CAT:  # a viewer launches nothing: a run of theirs from before they were made a viewer
        run_id = store.create_run(config().model_dump(mode="json"), name="r", owner=CAT)
    else:
        run_id = manager.submit(config(), principal=who(store, owner))
    assert store.sql("SELECT owner FROM runs WHERE id = ?", [run_id]) == [(owner,)]
    allowed = role == "admin" or (role == "member" and whose == "own")
    before = state(store, run_id)
    if allowed:
        act(store, manager, action, run_id, who(store, email))
        after = {"cancel": [("cancelled", "r")], "annotate": [("queued", "renamed")], "delete": [],
                 "export": [("queued", "r")]}[action]
        assert state(store, run_id) == after
        rows = audit_rows(store, run_id=run_id, action=action)
        assert rows[["who", "role", "allowed"]].values.tolist() == [[email, role, True]]
    else:
        reason = "a viewer may only read" if role == "viewer" else f"it is {DAN}'s; a member may"
        with pytest.raises(AccessDenied, match=re.escape(f"{email} ({role}) may not ") + ".*" +
                           re.escape(f" run {run_id}: {reason}")):
            act(store, manager, action, run_id, who(store, email))
        assert state(store, run_id) == before  # nothing changed
        refused = audit_rows(store, run_id=run_id, allowed=False)
        assert refused[["who", "action"]].values.tolist() == [[email, action]] and reason in refused.detail[0]


def test_launching_by_role_and_the_owner_is_who_launches(lab):
    store, manager = lab
    for email in (ADA, BOB, DAN):
        run_id = manager.submit(config("mine"), principal=who(store, email))
        assert store.sql("SELECT owner, status FROM runs WHERE id = ?", [run_id]) == [(email, "queued")]
        assert audit_rows(store, run_id=run_id)[["who", "action", "detail"]].values.tolist() == [[email, "launch", "queued 'mine'"]]
    runs = store.sql("SELECT count(*) FROM runs")[0][0]
    with pytest.raises(AccessDenied, match=re.escape(f"{CAT} (viewer) may not launch runs: a viewer may only read")):
        manager.submit(config(), principal=who(store, CAT))
    with pytest.raises(AccessDenied, match="may not launch runs: a run's owner is who launches it, not ada@lab.org"):
        manager.submit(config(), owner=ADA, principal=who(store, BOB))
    assert store.sql("SELECT count(*) FROM runs")[0][0] == runs


def test_a_hosted_lab_takes_no_action_from_nobody_nor_a_forged_or_unlisted_principal(lab):
    store, manager = lab
    ada_run = manager.submit(config(), principal=who(store, ADA))
    runs = store.sql("SELECT count(*) FROM runs")[0][0]
    for principal in (None, local_principal()):  # no default in a hosted lab
        with pytest.raises(AccessDenied, match="an anonymous visitor may not launch runs: nobody is logged in"):
            manager.submit(config(), principal=principal)
        with pytest.raises(AccessDenied, match="an anonymous visitor may not delete: nobody is logged in"):
            store.delete_run(ada_run, principal=principal)
        with pytest.raises(AccessDenied, match="an anonymous visitor may not cancel"):
            manager.cancel(ada_run, principal=principal)
    # the role comes from the policy, not from the object a caller made
    with pytest.raises(AccessDenied, match=re.escape(f"{BOB} (member) may not delete run {ada_run}")):
        store.delete_run(ada_run, principal=Principal(BOB, "admin"))
    with pytest.raises(AccessDenied, match="mallory@evil.org is not allowed in this lab"):
        manager.cancel(ada_run, principal=Principal("mallory@evil.org", "admin"))
    assert store.sql("SELECT count(*) FROM runs")[0][0] == runs and state(store, ada_run) == [("queued", "r")]
    refused = audit_rows(store, allowed=False, limit=20)
    assert {"", "mallory@evil.org", BOB} <= set(refused.who)
    with pytest.raises(AttributeError):
        store.access = None  # a hosted store stays hosted


def test_sweeps_launch_and_cancel_by_role(lab):
    store, manager = lab
    spec = {"name": "g", "base": TINY, "seeds": [0, 1]}
    sweeps = store.sql("SELECT count(*) FROM sweeps")[0][0]
    with pytest.raises(AccessDenied, match="viewer"):
        launch_sweep(manager, parse_sweep(spec), principal=who(store, CAT))
    assert store.sql("SELECT count(*) FROM sweeps")[0][0] == sweeps
    sweep_id = launch_sweep(manager, parse_sweep(spec), principal=who(store, BOB))
    assert store.sql("SELECT owner FROM sweeps WHERE id = ?", [sweep_id]) == [(BOB,)]
    assert store.sql("SELECT DISTINCT owner, status FROM runs WHERE sweep_id = ?", [sweep_id]) == [(BOB, "queued")]
    # a sweep's later runs (search trials, a test phase) are queued for its owner as the policy has them now
    assert store.sweep_principal(sweep_id) == who(store, BOB)
    gone = store.create_sweep("old", "grid", {}, owner="gone@lab.org")
    with pytest.raises(AccessDenied, match="gone@lab.org is not allowed in this lab"):
        store.sweep_principal(gone)
    with pytest.raises(AccessDenied, match=re.escape(f"{DAN} (member) may not cancel sweep {sweep_id}: it is {BOB}'s")):
        cancel_sweep(manager, sweep_id, principal=who(store, DAN))
    assert store.sql("SELECT count(*) FROM runs WHERE sweep_id = ? AND status = 'queued'", [sweep_id]) == [(2,)]
    assert cancel_sweep(manager, sweep_id, principal=who(store, BOB)) == 2
    rows = store.sql("SELECT who, action, allowed, detail FROM audit WHERE sweep_id = ? ORDER BY id", [sweep_id])
    assert rows[0] == (BOB, "launch", True, "grid sweep 'g': 2 runs")
    assert rows[1][:3] == (DAN, "cancel", False) and rows[2] == (BOB, "cancel", True, "cancelled 2 runs of the sweep")


# ---- quotas --------------------------------------------------------------------------------------------------

def test_quotas_refuse_a_launch_with_the_figure_and_the_limit(lab):
    store, manager = lab
    eve = who(store, "eve@lab.org")
    first = [manager.submit(config(), principal=eve) for _ in range(2)]
    with pytest.raises(QuotaExceeded, match=re.escape("eve@lab.org (member) may not launch runs: 2 runs queued and 1 "
                                                      "more make 3, over the quota of 2 runs queued (runs_queued)")):
        manager.submit(config(), principal=eve)
    assert store.sql("SELECT count(*) FROM runs WHERE owner = 'eve@lab.org'") == [(2,)]
    manager.cancel(first[0], principal=eve)  # a queued run ended: room for one
    manager.submit(config(), principal=eve)
    with pytest.raises(QuotaExceeded, match=re.escape("the sweep plans 4 runs, over the quota of 3 runs a sweep "
                                                      "(largest_sweep)")):
        launch_sweep(manager, parse_sweep({"name": "big", "base": TINY, "seeds": [0, 1, 2, 3]}), principal=eve)
    assert store.sql("SELECT count(*) FROM sweeps WHERE owner = 'eve@lab.org'") == [(0,)]
    refused = audit_rows(store, who="eve@lab.org", action="launch", allowed=False).detail.tolist()
    assert len(refused) == 2 and "runs_queued" in refused[1] and "largest_sweep" in refused[0]


def test_the_weights_quota_counts_a_users_queued_runs(tmp_path):
    from engine.training.cost import estimate, human_bytes

    small, large = config(), small_config("naive", train={"weights": "every"})
    need = [estimate(c).weights_disk + estimate(c).checkpoint_disk for c in (small, large)]
    quota = (need[0] + need[1] - 1) / 1e9  # one of each would not fit, either alone would
    access = load_access(access_file(tmp_path, f'[users]\n"f@lab.org" = {{ role = "member", weights_gb = {quota!r} }}'))
    with a_lab(tmp_path, access) as (store, manager):
        fay = access.principal("f@lab.org")
        manager.submit(small, principal=fay)
        with pytest.raises(QuotaExceeded, match=re.escape(
                f"weights: {human_bytes(need[0])} of yours on disk or to come and {human_bytes(need[1])} more make "
                f"{human_bytes(sum(need))}, over the quota of {quota:g} GB (weights_gb)")):
            manager.submit(large, principal=fay)
        assert store.sql("SELECT count(*) FROM runs") == [(1,)]


def test_two_launches_at_once_cannot_both_pass_a_quota(tmp_path):
    access = load_access(access_file(tmp_path, '[users]\n"q@lab.org" = { role = "member", runs_queued = 1 }'))
    with a_lab(tmp_path, access) as (store, manager):
        outcomes = []

        def launch():
            try:
                outcomes.append(manager.submit(config(), principal=access.principal("q@lab.org")))
            except QuotaExceeded as err:
                outcomes.append(err)
        threads = [threading.Thread(target=launch) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(isinstance(o, int) for o in outcomes) == 1 and len(outcomes) == 4
        assert store.sql("SELECT count(*) FROM runs") == [(1,)]


# ---- the queue takes turns between owners ------------------------------------------------------------------

def started_order(store, ids):
    marks = ", ".join("?" for _ in ids)
    return [r[0] for r in store.sql(f"SELECT id FROM runs WHERE id IN ({marks}) ORDER BY started_at", list(ids))]


def test_the_queue_takes_turns_between_owners(tmp_path):
    """A local lab (owners given as before): one place, a user's 4 runs queued before two others' one run
    each; the others do not wait for the 4 to end."""
    with a_lab(tmp_path, None, warm_workers=1) as (store, manager):
        tiny = small_config("naive", train={"weights": "none"}, eval={"every": 50})
        a = [manager.submit(tiny, owner="a") for _ in range(4)]
        b = manager.submit(tiny, owner="b")
        c = manager.submit(tiny, owner="c")
        manager.resume()
        for run_id in (*a, b, c):
            assert manager.wait(run_id, timeout=180) == "finished"
        assert started_order(store, [*a, b, c]) == [a[0], b, c, a[1], a[2], a[3]]


def test_runs_at_once_holds_a_users_next_run_while_another_user_trains(tmp_path):
    access = load_access(access_file(tmp_path, '[users]\n"a@lab.org" = { role = "member", runs_at_once = 1 }\n'
                                               '"b@lab.org" = "member"'))
    with a_lab(tmp_path, access, max_parallel=2, warm_workers=2) as (store, manager):
        # a's runs train long enough (seconds) that b, queued after both, starts while a's first trains;
        # comparing b's start with a's second start instead raced: started_at is stamped by the worker
        longer = small_config("naive", train={"weights": "none", "epochs_per_task": 30}, eval={"every": 50})
        tiny = small_config("naive", train={"weights": "none", "epochs_per_task": 3}, eval={"every": 50})
        a = [manager.submit(longer, principal=access.principal("a@lab.org")) for _ in range(2)]
        b = manager.submit(tiny, principal=access.principal("b@lab.org"))
        # both places ready first: on a loaded machine a's first run could end before a second worker had
        # imported torch, and b would then wait for a free place, not for its turn (a CI failure)
        deadline = time.monotonic() + 120
        while manager.counts()["idle"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert manager.counts()["idle"] == 2
        manager.resume()
        for run_id in (*a, b):
            assert manager.wait(run_id, timeout=180) == "finished"
        times = {r[0]: r[1:] for r in store.sql("SELECT id, started_at, finished_at FROM runs")}
        assert times[a[1]][0] >= times[a[0]][1]  # a's second run waited for a's first, though 2 places were free
        assert times[b][0] < times[a[0]][1]  # b took the second place while a's first trained


def test_resume_by_role_on_a_real_cancelled_run(tmp_path):
    access = load_access(access_file(tmp_path))
    with a_lab(tmp_path, access, warm_workers=1, paused=False) as (store, manager):
        bob = access.principal(BOB)
        run_id = manager.submit(small_config("naive", n_tasks=3, train={"epochs_per_task": 20, "weights": "none"}),
                                principal=bob)
        path = artifacts.checkpoint_path(store.artifacts_dir(run_id))
        deadline = time.monotonic() + 120
        while not (path.exists() and checkpoints.read_header(path)["experiences_done"] >= 1):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        manager.cancel(run_id, principal=bob)
        assert manager.wait(run_id, timeout=120) == "cancelled"
        for email, reason in ((CAT, "a viewer may only read"), (DAN, f"it is {BOB}'s")):
            with pytest.raises(AccessDenied, match=re.escape(f"may not resume run {run_id}: {reason}")):
                manager.resume_run(run_id, principal=access.principal(email))
            assert state(store, run_id)[0][0] == "cancelled"
        header = manager.resume_run(run_id, principal=bob)
        assert state(store, run_id)[0][0] in ("queued", "running")
        assert manager.wait(run_id, timeout=120) == "finished"
        assert audit_rows(store, run_id=run_id, action="resume", allowed=True).detail.tolist() == [
            f"from task {header['task'] + 1} at step {header['step']}"]


# ---- a local lab is as before; pages cannot reach the raw writers -------------------------------------------

def test_a_local_lab_needs_no_principal_and_keeps_its_owner(tmp_path):
    with a_lab(tmp_path, None) as (store, manager):
        assert store.access is None and principal_for(None, "whoever@x.org") == local_principal()
        assert store.sweep_principal(store.create_sweep("s", "grid", {}, owner="x")) is None  # the manager's default
        assert principal_for(load_access(access_file(tmp_path)), "CAT@lab.org").role == "viewer"
        run_id = manager.submit(config())
        named = manager.submit(config(), owner="tester")
        assert store.sql("SELECT owner FROM runs ORDER BY id") == [(default_owner(),), ("tester",)]
        assert store.annotate_run(named, name="renamed") and manager.cancel(named)
        store.delete_run(run_id)
        assert store.sql("SELECT id, name, status FROM runs") == [(named, "renamed", "cancelled")]
        rows = audit_rows(store)
        assert set(rows.action) == {"launch", "annotate", "cancel", "delete"} and rows.allowed.all()
        assert set(rows.role) == {"admin"} and set(rows.who) == {default_owner()}


def test_pages_change_runs_only_through_the_guarded_actions():
    """The raw writers take no principal, and the store's ``annotate_run`` not the lab's limits: pages must
    not call them (they would get around the checks)."""
    raw = re.compile(r"\b(store|the_lab\.store|lab\.store)\.(write|call|set_status|create_run|update_run|rewind_run|"
                     r"create_sweep|audit|annotate_run)\(")  # annotate_run: engine.annotations checks the lab's limits
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in [ROOT / "app.py", *(ROOT / "pages").rglob("*.py")]
                 for n, line in enumerate(path.read_text().splitlines(), 1) if raw.search(line)]
    assert offenders == []
