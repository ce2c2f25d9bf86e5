"""Where the lab's runs train: the ``[executor]`` table of lab.toml, ``$CL_LAB_RAY_ADDRESS`` and the CLI's
``--executor``::

    [executor]
    kind = "ray"          # "local" (the default): worker processes on the lab's machine; "ray": a Ray cluster
    address = "auto"      # ray only: "auto" (the cluster this machine belongs to) or "HOST:PORT"

``$CL_LAB_RAY_ADDRESS`` overrides ``address``; a CLI command's ``--executor`` overrides ``kind``. A wrong
key or value is refused with one line each when the lab starts (``SettingsError``), before any run is
taken. Whether a kind's library is installed is the executor's to say (``engine.runs.executors``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.core.limits import SettingsError, read_settings

# the kinds lab.toml may name, and the executor (engine.runs.executors.EXECUTORS key) each one is
KINDS = ("local", "ray")
ADDRESS_ENV = "CL_LAB_RAY_ADDRESS"
_ADDRESS = re.compile(r"(auto|(ray://)?[A-Za-z0-9.\-]{1,253}:[0-9]{1,5})")


@dataclass(frozen=True)
class ExecutorSettings:
    kind: str = "local"
    address: str | None = None  # ray: "auto" or "HOST:PORT"; None for local


def check_address(address: str, where: str) -> str:
    """``address`` if it is "auto" or HOST:PORT (a port 1-65535), else ``SettingsError`` naming ``where``."""
    address = address.strip()
    if not _ADDRESS.fullmatch(address) or (address != "auto" and not 0 < int(address.rsplit(":", 1)[1]) < 65536):
        raise SettingsError(f"{where} = {address[:60]!r}: must be \"auto\" or HOST:PORT")
    return address


def executor_settings(kind: str | None = None, path: Path | None = None) -> ExecutorSettings:
    """The executor settings in force: lab.toml's ``[executor]``, ``$CL_LAB_RAY_ADDRESS``, and ``kind`` (a
    CLI's ``--executor``) over both."""
    table = read_settings(path).get("executor", {})
    if not isinstance(table, dict):
        raise SettingsError("executor: must be a table of settings (kind, address)")
    problems = [f"executor.{key}: is not a known setting (known: kind, address)"
                for key in table if key not in ("kind", "address")]
    if problems:
        raise SettingsError("\n".join(problems))
    chosen = kind if kind is not None else table.get("kind", "local")
    where = "--executor" if kind is not None else "executor.kind"
    if chosen not in KINDS:
        raise SettingsError(f"{where} = {str(chosen)[:40]!r}: must be one of {', '.join(KINDS)}")
    if chosen == "local":
        return ExecutorSettings()
    if ADDRESS_ENV in os.environ:
        address = check_address(os.environ[ADDRESS_ENV], f"${ADDRESS_ENV}")
    else:
        raw = table.get("address", "auto")
        if not isinstance(raw, str):
            raise SettingsError("executor.address: must be a string, \"auto\" or HOST:PORT")
        address = check_address(raw, "executor.address")
    return ExecutorSettings(chosen, address)
