"""Who may do what in a hosted lab: the operator's access file, principals, roles and quotas.

A lab is hosted when Streamlit's secrets (``.streamlit/secrets.toml``, or ``--secrets.files``) have an
``[auth]`` section (Streamlit's login; ``pages.ui.lab.hosted_mode`` reads them). Then the
access file says who may come in and what each may do. Its path: ``$CL_LAB_ACCESS``, else ``file`` in the
``[access]`` table of lab.toml (relative to lab.toml). Without ``[auth]`` the lab is local: one local
admin (the OS user, as run owner), no quotas, nothing refused, exactly as before. The file::

    [quotas]                      # every user's, unless their entry says otherwise; absent: no limit
    runs_at_once = 2              # of a user's runs training at the same time (more wait in the queue)
    runs_queued = 100             # runs waiting, counting every run a sweep being launched plans
    largest_sweep = 100           # runs one sweep may plan
    weights_gb = 10               # disk for the weights and checkpoints of a user's runs

    [users]
    "ada@example.org" = "admin"                                  # a role
    "bob@example.org" = { role = "member", runs_at_once = 4 }    # a role and quotas of their own

    [domains]                     # anyone whose address is @example.org (not its subdomains)
    "example.org" = "viewer"      # or { role = "member", runs_queued = 20 }

Roles: ``admin`` everything; ``member`` launches runs and sweeps, and cancels, resumes, renames,
annotates, deletes and exports their own runs; ``viewer`` reads only. A user's own entry wins over their
domain's. The file is hostile input: every problem is one line (``AccessFileError``) and a hosted lab does
not start with a broken file. It is read once, when the lab starts.

Enforcement is below the pages: ``RunManager`` and ``Store`` take a ``principal`` on every action and
refuse with ``AccessDenied`` (``QuotaExceeded`` for a quota), writing the refusal to the audit table.
``Access`` is the policy the store is handed (``store.policy.AccessPolicy``): the store imports nothing
of this module.
"""

from __future__ import annotations

import getpass
import os
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from engine.core.inputs import ConfigError, cut, cut_text, decode, read_bytes
from engine.core.limits import read_settings, settings_path

ROLES = ("admin", "member", "viewer")
# the actions a principal takes on the lab, and the words a refusal uses for them: the same actions the
# store checks and audits (store.policy.ACTIONS; tests/test_store_policy.py keeps the two the same)
ACTIONS = {"launch": "launch runs", "cancel": "cancel", "resume": "resume", "annotate": "rename or annotate",
           "delete": "delete", "export": "export"}
QUOTA_KEYS = ("runs_at_once", "runs_queued", "largest_sweep", "weights_gb")
EMAIL = re.compile(r"[^@\s]+@([^@\s]+)")
DOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")


class AccessDenied(PermissionError):
    """An action refused: who, what, on which run, why (one line). Nothing was changed."""


class QuotaExceeded(AccessDenied):
    """A launch refused by a quota; the message has the figure and the limit."""


class AccessFileError(ConfigError):
    """The access file has problems; one line each (at most ``max_problems``)."""


@dataclass(frozen=True)
class Quotas:
    """A user's limits; None: no limit."""
    runs_at_once: int | None = None
    runs_queued: int | None = None
    largest_sweep: int | None = None
    weights_gb: float | None = None


@dataclass(frozen=True)
class Principal:
    """Someone acting on the lab: their email (the owner of the runs they launch), role and quotas.
    ``local``: the one user of a local lab."""
    email: str
    role: str
    quotas: Quotas = field(default_factory=Quotas)
    local: bool = False

    def __str__(self) -> str:
        return f"{self.email} ({self.role})"


def default_owner() -> str:
    """The OS user: the owner of the runs of a local lab (the store's ``LocalUser`` is the same one)."""
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "local"


def local_principal() -> Principal:
    """The local lab's user: the OS user (the owner runs had before), an admin with no quotas."""
    return Principal(default_owner(), "admin", Quotas(), local=True)


def principal_for(access: "Access | None", email: Any = None, verified: bool | None = None) -> Principal:
    """The principal of a session: the local admin in a local lab (``access`` None), else the policy's
    for the logged-in address (``AccessDenied`` when it is not allowed in)."""
    return local_principal() if access is None else access.principal(email, verified)


def refusal(who: Principal, action: str, owner: str | None) -> str | None:
    """Why ``who`` may not take ``action`` on a run (or sweep) owned by ``owner`` (None: a launch, or a
    run that is not there; "": a run with no owner), or None if they may."""
    if who.role == "admin":
        return None
    if who.role == "viewer":
        return "a viewer may only read"
    if who.role != "member":
        return f"role {who.role!r} is not one of {', '.join(ROLES)}"
    if action == "launch" or owner is None or owner == who.email:
        return None
    whose = f"it is {owner}'s" if owner else "it has no owner"
    return f"{whose}; a member may {ACTIONS[action]} only their own runs"


def denied(who: Principal | str, action: str, reason: str, run_id: int | None = None,
           sweep_id: int | None = None) -> str:
    what = ACTIONS.get(action, action)
    target = f" run {run_id}" if run_id is not None else f" sweep {sweep_id}" if sweep_id is not None else ""
    return f"{who} may not {what}{target}: {reason}"


def normal_email(email: Any) -> str:
    """An address as the lab keys it (trimmed, lower case); ``AccessDenied`` for anything else."""
    if not isinstance(email, str) or not email.strip():
        raise AccessDenied(f"the login gave no email address ({cut(email)}): this lab needs one to know who you are")
    text = email.strip().lower()
    if (len(text) > 254 or not EMAIL.fullmatch(text)
            or any(unicodedata.category(ch)[0] == "C" for ch in text)):
        raise AccessDenied(f"email {cut(email)}: not an address this lab accepts (name@domain, at most 254 characters)")
    return text


@dataclass(frozen=True)
class Access:
    """The parsed access file: entries by email and by domain, each (role, quotas). The policy a hosted
    lab's store enforces (``store.policy.AccessPolicy``)."""
    users: Mapping[str, Principal]
    domains: Mapping[str, Principal]  # email "" : the domain's role and quotas
    defaults: Quotas = field(default_factory=Quotas)
    source: str = "the access file"

    def principal(self, email: Any, verified: bool | None = None) -> Principal:
        """The principal for a logged-in address, or ``AccessDenied`` saying why not. ``verified``:
        the login's ``email_verified`` claim; False is refused (anyone could claim an address)."""
        address = normal_email(email)
        if verified is False:
            raise AccessDenied(f"{address}: the login says this address is not verified; verify it with your identity provider")
        if address in self.users:
            return self.users[address]
        domain = address.rsplit("@", 1)[1]
        if domain in self.domains:
            return replace(self.domains[domain], email=address)
        raise AccessDenied(f"{address} is not allowed in this lab: neither the address nor @{domain} is listed "
                           "in its access file; ask the lab's operator")  # no path: a visitor may read this

    def refusal(self, who: Principal, action: str, owner: str | None) -> str | None:
        return refusal(who, action, owner)

    def denial(self, who: Principal | str, action: str, reason: str, run_id: int | None = None,
               sweep_id: int | None = None) -> AccessDenied:
        return AccessDenied(denied(who, action, reason, run_id, sweep_id))

    def quotas_of(self, owner: str | None) -> Quotas:
        """The quotas of a run owner (the defaults for one no longer listed)."""
        try:
            return self.principal(owner).quotas
        except AccessDenied:
            return self.defaults


# ---- reading the file (hostile input) ---------------------------------------------------------------

def _quota(key: str, value: Any, where: str, problems: list[str]) -> Any:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key == "weights_gb":
        if number and 0 < value < float("inf"):
            return float(value)
        problems.append(f"{where}.{key} = {cut(value)}: must be a positive number of GB")
    elif number and isinstance(value, int) and value > 0:
        return value
    else:
        problems.append(f"{where}.{key} = {cut(value)}: must be a positive whole number")
    return None


def _quotas(table: Mapping, where: str, problems: list[str], base: Quotas, allowed=QUOTA_KEYS) -> Quotas:
    values = {}
    for key, value in table.items():
        if key not in allowed:
            problems.append(f"{where}.{cut_text(key)}: is not a known setting (known: {', '.join(allowed)})")
        elif key != "role" and (checked := _quota(key, value, where, problems)) is not None:
            values[key] = checked
    return replace(base, **values)


def _entry(name: str, value: Any, where: str, defaults: Quotas, problems: list[str]) -> Principal | None:
    """One user's or domain's entry: a role, or a table with ``role`` and quotas."""
    if isinstance(value, dict):
        role = value.get("role")
        quotas = _quotas(value, where, problems, defaults, ("role", *QUOTA_KEYS))
        if "role" not in value:
            problems.append(f"{where}: has no role (one of {', '.join(ROLES)})")
            return None
    else:
        role, quotas = value, defaults
    if role not in ROLES:
        problems.append(f"{where}{'.role' if isinstance(value, dict) else ''} = {cut(role)}: "
                        f"the role must be one of {', '.join(ROLES)}")
        return None
    return Principal(name, role, quotas)


def parse_access(data: Any, source: str = "the access file") -> Access:
    """An ``Access`` from the file's parsed TOML, or ``AccessFileError`` with every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise AccessFileError([f"{source}: must be a TOML document of tables"])
    for key in data:
        if key not in ("quotas", "users", "domains"):
            problems.append(f"{source}: {cut_text(key)}: is not a known table (known: quotas, users, domains)")
    tables = {}
    for key in ("quotas", "users", "domains"):
        tables[key] = data.get(key, {})
        if not isinstance(tables[key], dict):
            problems.append(f"{key} = {cut(tables[key])}: must be a table")
            tables[key] = {}
    defaults = _quotas(tables["quotas"], "quotas", problems, Quotas())
    users: dict[str, Principal] = {}
    for raw, value in tables["users"].items():
        where = f"users.{cut(raw)}"
        try:
            email = normal_email(raw)
        except AccessDenied:
            problems.append(f"{where}: not an email address (name@domain, at most 254 characters)")
            continue
        if email in users:
            problems.append(f"{where}: listed twice ({email}; addresses are compared in lower case)")
            continue
        if (entry := _entry(email, value, where, defaults, problems)) is not None:
            users[email] = entry
    domains: dict[str, Principal] = {}
    for raw, value in tables["domains"].items():
        where = f"domains.{cut(raw)}"
        name = raw.strip().lower() if isinstance(raw, str) else ""
        if not DOMAIN.fullmatch(name):
            hint = " (without the @)" if name.startswith("@") else ""
            problems.append(f"{where}: not a domain name such as example.org{hint}")
            continue
        if name in domains:
            problems.append(f"{where}: listed twice ({name})")
            continue
        if (entry := _entry("", value, where, defaults, problems)) is not None:
            domains[name] = entry
    if not users and not domains and not problems:
        problems.append(f"{source}: lists no users and no domains, so nobody could use the lab "
                        "(add a [users] or [domains] table)")
    if problems:
        raise AccessFileError(problems)
    return Access(users, domains, defaults, source)


def load_access(path: str | os.PathLike) -> Access:
    """Read and check the access file at ``path`` (``AccessFileError`` with every problem)."""
    try:  # the guards every file the lab reads goes through: its size, then UTF-8
        text = decode(read_bytes(path), cut_text(path))
    except ConfigError as err:
        raise AccessFileError(err.problems) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise AccessFileError([f"{path}: is not valid TOML ({err})"]) from None
    return parse_access(data, str(path))


def access_path() -> Path | None:
    """``$CL_LAB_ACCESS``, else lab.toml's ``[access] file`` (relative to lab.toml), else None."""
    if os.environ.get("CL_LAB_ACCESS"):
        return Path(os.environ["CL_LAB_ACCESS"])
    settings = settings_path()
    table = read_settings(settings).get("access", {})
    if not isinstance(table, dict) or set(table) - {"file"} or not isinstance(table.get("file", ""), str):
        raise AccessFileError([f"{settings}: [access] must be a table with one key, file = \"PATH\""])
    return settings.parent / table["file"] if table.get("file") else None


def lab_access(is_hosted: bool) -> Access | None:
    """The policy a lab runs under: None for a local lab; for a hosted one (Streamlit's secrets have an
    ``[auth]`` section: ``pages.ui.lab.hosted_mode``), the access file read and checked
    (``AccessFileError`` when there is none or it has problems: a hosted lab must not start)."""
    if not is_hosted:
        return None
    path = access_path()
    if path is None:
        raise AccessFileError(["this lab is hosted ([auth] in its Streamlit secrets) but has no access file: "
                               "set $CL_LAB_ACCESS or file = \"PATH\" in lab.toml's [access] table"])
    return load_access(path)
