"""The README's hosting recipe: its access-file and secrets examples and deploy/'s files are valid
(`python -m engine backup` is tested in tests/test_backup.py)."""

import re
import tomllib

import pytest

from conftest import ROOT
from engine.core.access import AccessDenied, load_access, parse_access

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

