"""Who may change what, as the store sees it: it is handed an access policy and enforces it.

The store knows no roles and reads no access file: ``engine.core.access.Access`` (a hosted lab's access
file) implements ``AccessPolicy``, and the lab hands it to ``Store(access=...)`` when it opens the
file. A store without a policy is a local lab's: its one user (``LocalUser``, the OS user, an admin)
may do everything, and is who acts when a caller names nobody.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from typing import Any, Protocol

# the actions the store checks and writes to the ``audit`` table
ACTIONS = ("launch", "cancel", "resume", "annotate", "delete", "export")


class Principal(Protocol):
    """Someone acting on the lab, as the audit table records them."""
    email: str
    role: str
    local: bool  # the one user of a local lab: never accepted by a policy


class AccessPolicy(Protocol):
    """A hosted lab's rules. Each refusal is a ``PermissionError`` of the policy's own, with one line."""

    def principal(self, email: Any) -> Principal:
        """Who ``email`` is now (their role as the policy has it), or raise if they may not come in."""

    def refusal(self, who: Principal, action: str, owner: str | None) -> str | None:
        """Why ``who`` may not take ``action`` (one of ``ACTIONS``) on a run or sweep of ``owner``
        (None: a launch, or one that is not there; "": one with no owner), or None if they may."""

    def denial(self, who: Principal | str, action: str, reason: str, run_id: int | None = None,
               sweep_id: int | None = None) -> PermissionError:
        """The error that refuses ``action`` to ``who`` (on the run or sweep) for ``reason``."""


def os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "local"


@dataclass(frozen=True)
class LocalUser:
    """A local lab's one user: the OS user (the owner of the runs), an admin."""
    email: str = field(default_factory=os_user)
    role: str = "admin"
    local: bool = True

    def __str__(self) -> str:
        return f"{self.email} ({self.role})"
