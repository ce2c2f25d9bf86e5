"""The store enforces the access policy it is handed (store/policy.py) and imports nothing of the engine:
a policy of the test's own, not ``engine.core.access.Access``, decides here."""

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from store import Store
from store.audit import audit_rows

ROOT = Path(__file__).resolve().parent.parent


class NotYours(PermissionError):
    pass


@dataclass(frozen=True)
class Person:
    email: str
    role: str = "owner-only"
    local: bool = False


class OwnersOnly:
    """Anyone @ok.org comes in; each may act on their own runs only."""

    def principal(self, email):
        if not str(email).endswith("@ok.org"):
            raise NotYours(f"{email}: only @ok.org may come in")
        return Person(email)

    def refusal(self, who, action, owner):
        return None if owner in (None, who.email) else f"{action} is for {owner} alone"

    def denial(self, who, action, reason, run_id=None, sweep_id=None):
        return NotYours(f"{who} may not {action}" + (f" run {run_id}" if run_id is not None else "") + f": {reason}")


def test_the_store_refuses_what_its_policy_refuses_and_audits_it(tmp_path):
    with Store(tmp_path / "lab.duckdb", serve=False, access=OwnersOnly()) as store:
        run = store.create_run({}, name="r", owner="ann@ok.org")
        with pytest.raises(NotYours, match=r"may not delete run \d+: delete is for ann@ok.org alone"):
            store.delete_run(run, principal=Person("bob@ok.org", role="admin"))  # the role is the policy's
        with pytest.raises(NotYours, match="an anonymous visitor may not annotate: nobody is logged in"):
            store.annotate_run(run, name="x")
        with pytest.raises(NotYours, match="eve@bad.org: only @ok.org may come in"):
            store.check_export([run], principal=Person("eve@bad.org"))
        assert store.sql("SELECT name FROM runs") == [("r",)]  # nothing changed
        refused = audit_rows(store, allowed=False)
        assert refused[["who", "action"]].values.tolist() == [["eve@bad.org", "export"], ["", "annotate"],
                                                              ["bob@ok.org", "delete"]]
        assert store.annotate_run(run, name="mine", principal=Person("ann@ok.org"))
        sweep = store.create_sweep("s", "grid", {}, owner="ann@ok.org")
        assert store.sweep_principal(sweep) == Person("ann@ok.org")
        store.delete_run(run, principal=Person("ann@ok.org"))
        assert store.sql("SELECT count(*) FROM runs") == [(0,)]
        assert audit_rows(store, allowed=True)[["who", "role", "action"]].values.tolist() == [
            ["ann@ok.org", "owner-only", "delete"], ["ann@ok.org", "owner-only", "annotate"]]


def test_the_store_works_without_the_engine(tmp_path):
    """A local lab's store (no policy) acts for its one user and loads no engine module doing it."""
    script = f"""
import json, sys
from store import Store
from store.audit import audit_rows
from store.queries import runs_table
from store.tradeoffs import tradeoff_rows
with Store({str(tmp_path / "lab.duckdb")!r}, serve=False) as store:
    run = store.create_run({{}}, name="r", owner="me")
    store.annotate_run(run, name="renamed", tags=["a"], notes="n")
    store.check_export([run])
    found = runs_table(store, search="RENAMED")["id"].tolist()
    rows = len(tradeoff_rows(store, run))
    store.delete_run(run)
    audit = audit_rows(store)[["role", "action"]].values.tolist()
print(json.dumps([found, rows, audit, sorted(m for m in sys.modules if m.split(".")[0] == "engine")]))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    found, rows, audit, engine = json.loads(out.stdout)
    assert (found, rows, engine) == ([1], 0, [])
    assert audit == [["admin", "delete"], ["admin", "export"], ["admin", "annotate"]]


def test_the_engines_access_rules_name_the_actions_the_store_checks():
    # engine/core imports nothing of the store: its access rules spell the store's actions themselves
    from engine.core.access import ACTIONS, default_owner
    from store.policy import ACTIONS as STORE_ACTIONS, LocalUser

    assert tuple(ACTIONS) == STORE_ACTIONS
    assert default_owner() == LocalUser().email  # the local lab's owner, as both see it
