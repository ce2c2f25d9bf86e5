"""The README's hosting recipe: its access-file example and deploy/'s files are valid, and
`python -m engine backup` copies a database that another process holds (as a running lab does)."""

import re
import subprocess
import sys
import tomllib

import duckdb
import pytest

from engine.__main__ import main
from engine.access import AccessDenied, load_access, parse_access
from store import Store

from conftest import ROOT

AUTH_KEYS = {"redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url"}


def hosting_blocks(lang: str) -> list[str]:
    """The README's ```lang blocks in its Hosting section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Hosting\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, flags=re.S)


def test_the_readme_access_file_example_parses_and_means_what_it_says():
    [example] = [block for block in hosting_blocks("toml") if "[users]" in block]
    access = parse_access(tomllib.loads(example), "README")
    ada, bob = access.principal("Ada@Example.org"), access.principal("bob@example.org")
    assert (ada.role, ada.quotas.runs_at_once, ada.quotas.weights_gb) == ("admin", 2, 10.0)
    assert (bob.role, bob.quotas.runs_at_once, bob.quotas.runs_queued) == ("member", 4, 100)
    anyone = access.principal("zoe@example.org")
    assert (anyone.role, anyone.email, anyone.quotas.largest_sweep) == ("viewer", "zoe@example.org", 100)
    for outsider in ("zoe@sub.example.org", "ada@example.com"):
        with pytest.raises(AccessDenied, match="not allowed in this lab"):
            access.principal(outsider)


def test_deploy_access_file_is_valid_and_the_readme_example_is_part_of_it():
    access = load_access(ROOT / "deploy" / "access.toml")
    [example] = [block for block in hosting_blocks("toml") if "[users]" in block]
    documented = parse_access(tomllib.loads(example))
    for email in ("ada@example.org", "bob@example.org", "zoe@example.org"):
        assert access.principal(email) == documented.principal(email)
    assert access.principal("carol@example.org").role == "member"


def test_the_secrets_examples_have_streamlits_auth_keys():
    [readme_auth] = [block for block in hosting_blocks("toml") if "[auth]" in block]
    for text in (readme_auth, (ROOT / "deploy" / "secrets.example.toml").read_text(encoding="utf-8")):
        auth = tomllib.loads(text)["auth"]
        assert set(auth) == AUTH_KEYS
        assert auth["redirect_uri"] == "https://lab.example.org/oauth2callback"  # nginx.conf's server_name


def test_nginx_conf_passes_the_websocket_to_the_lab_on_localhost():
    conf = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    assert "server_name lab.example.org;" in conf
    stream = conf.split("location /_stcore/stream {", 1)[1].split("}", 1)[0]
    for line in ("proxy_pass http://127.0.0.1:8501;", "proxy_http_version 1.1;", "proxy_set_header Host $host;",
                 "proxy_set_header Upgrade $http_upgrade;", "proxy_set_header Connection $connection_upgrade;",
                 "proxy_read_timeout 1d;"):
        assert line in stream, line


HOLD = """
import sys
from store import Store
store = Store(sys.argv[1])  # holds the file and serves snapshots, as a running lab does
run_id = store.create_run({"note": "held"}, name="held-run", owner="bob@example.org", status="running")
store.add_metrics({"run_id": [run_id] * 3, "step": [0, 1, 2], "task": [1, 1, 1], "metric": ["acc"] * 3,
                   "value": [0.1, 0.5, 0.9]})
store.flush()
print("held", flush=True)
sys.stdin.readline()
store.close()
print("closed", flush=True)
"""


def runs_in(path):
    with duckdb.connect(str(path), read_only=True) as con:
        return (con.sql("SELECT id, name, owner FROM runs ORDER BY id").fetchall(),
                con.sql("SELECT count(*), max(value) FROM metrics").fetchall()[0])


def test_backup_while_another_process_holds_the_database_and_when_none_does(tmp_path, capsys):
    db, copy, offline = tmp_path / "lab.duckdb", tmp_path / "backups" / "lab-1.duckdb", tmp_path / "lab-2.duckdb"
    copy.parent.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["backup", str(copy), "--db", str(db)]) == 0
        assert "written by the process that holds it" in capsys.readouterr().out
        assert runs_in(copy) == ([(1, "held-run", "bob@example.org")], (3, 0.9))  # the restore: open the copy
        assert main(["backup", str(copy), "--db", str(db)]) == 2  # never over an existing file
        assert "must be a new file" in capsys.readouterr().err
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "closed"
    finally:
        holder.kill()
        holder.wait()
    assert main(["backup", str(offline), "--db", str(db)]) == 0  # nobody holds it: this process copies
    assert runs_in(offline) == runs_in(copy)
    with Store(db, serve=False):  # the original is untouched and opens as before
        pass
    assert main(["backup", str(tmp_path / "x.duckdb"), "--db", str(tmp_path / "none.duckdb")]) == 2
    assert "there is no database there" in capsys.readouterr().err
    assert not (tmp_path / "none.duckdb").exists() and not (tmp_path / "x.duckdb").exists()
