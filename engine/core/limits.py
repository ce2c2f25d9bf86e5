"""What a valid input may cost, set in one place.

Every limit has a default here; an operator changes them in the ``[limits]`` table of the lab's
settings file (``lab.toml`` beside the app, or the file named by ``$CL_LAB_SETTINGS``), e.g.::

    [limits]
    max_runs = 20000           # runs one sweep may queue, of any kind (grid, random, search, reality check)
    weights_budget_gb = 50     # disk the saved weights of all runs may take

Unknown keys and values of the wrong type are refused with one line each when the lab starts.
"""

from __future__ import annotations

import dataclasses
import math
import os
import resource
import tomllib
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Limits:
    # what the lab reads: config and sweep files, pasted YAML, form text
    max_input_bytes: int = 256 * 1024       # a config or sweep file, or a paste
    max_yaml_depth: int = 32                # nesting of mappings and lists
    max_yaml_nodes: int = 50_000            # scalars, mappings and lists in one document
    max_message_chars: int = 80             # a value quoted in an error line is cut to this
    max_problems: int = 30                  # problem lines reported for one input
    # what one run may cost
    max_model_params: int = 200_000_000     # parameters of one model
    max_memory_fraction: float = 0.5        # of the machine's memory, for a run's estimated peak
    max_steps_per_run: int = 50_000_000     # training steps of one run
    max_metric_rows_per_run: int = 200_000_000
    # what a sweep may cost
    max_runs: int = 10_000                  # runs one sweep may queue, whatever its kind
    # disk
    weights_budget_gb: float = 20.0         # saved weights of all runs in one lab
    disk_wait_s: float = 60.0               # a write that finds the disk full is tried again this long, then
                                            # its runs fail (resumable) with the disk's name
    # the Launch page's sweep check, in a child process (engine/check_sweep.py)
    sweep_check_seconds: float = 60.0       # time to parse, validate and expand a pasted sweep
    sweep_check_memory_mb: int = 1024       # memory it may take beyond the interpreter and its imports
    # what a user writes on a run (the Runs page; engine/annotations.py)
    max_run_name_chars: int = 200
    max_notes_chars: int = 10_000
    max_tags: int = 20                      # tags on one run
    max_tag_chars: int = 40
    max_search_chars: int = 200             # the Runs page's search text
    # what training may take from the pages: the workers run at this nice level (1-19, os.nice), so
    # a page read gets a core at once and training has every cycle the pages leave
    worker_nice: int = 10
    # how often a live page (Run, Runs, Compare) is redrawn: each redraw of a live Run page costs its
    # browser about a tenth of a CPU-second, and the server a script run
    live_refresh_s: float = 2.0
    # ... and longer with many browser sessions open: this many seconds a session (pages.ui.lab.live_refresh)
    live_refresh_per_session_s: float = 0.25


# the limits with bounds besides "positive" (inclusive)
BOUNDS = {"worker_nice": (1, 19), "live_refresh_s": (0.5, 3600), "live_refresh_per_session_s": (0.01, 60)}


class SettingsError(ValueError):
    """The settings file has problems; one line each."""


def settings_path() -> Path:
    return Path(os.environ.get("CL_LAB_SETTINGS") or PROJECT_ROOT / "lab.toml")


def read_settings(path: Path | None = None) -> dict:
    """The settings file as a mapping ({} when there is none)."""
    path = path or settings_path()
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise SettingsError(f"{path}: cannot be read as TOML ({err})") from None


def load_limits(path: Path | None = None) -> Limits:
    table = read_settings(path).get("limits", {})
    fields = {f.name: f for f in dataclasses.fields(Limits)}
    problems, values = [], {}
    if not isinstance(table, dict):
        raise SettingsError("limits: must be a table of settings")
    for key, value in table.items():
        if key not in fields:
            problems.append(f"limits.{key}: is not a known limit (known: {', '.join(fields)})")
            continue
        kind = fields[key].type
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
              and (kind != "int" or isinstance(value, int)))  # TOML allows inf and nan
        low, high = BOUNDS.get(key, (None, None))
        if not ok:
            problems.append(f"limits.{key} = {str(value)[:40]!r}: must be a positive {'integer' if kind == 'int' else 'finite number'}")
        elif low is not None and not low <= value <= high:
            problems.append(f"limits.{key} = {value!r}: must be from {low} to {high}")
        else:
            values[key] = value
    if problems:
        raise SettingsError("\n".join(problems))
    return Limits(**values)


_cached: Limits | None = None


def limits() -> Limits:
    """The limits in force in this process (read once)."""
    global _cached
    if _cached is None:
        _cached = load_limits()
    return _cached


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's (/proc/meminfo), or its container's limit
    (cgroup v2 memory.max) or its address-space limit (``ulimit -v``, RLIMIT_AS) where that is lower."""
    total = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if not total:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 8 * 1024 ** 3  # unknown: a small machine's
    try:
        cap = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cap.isdigit():
            total = min(total, int(cap))
    except OSError:
        pass
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        total = min(total, soft)
    return total


def memory_allowance() -> int:
    """Bytes one run (and the dataset it reads) may take: ``max_memory_fraction`` of ``machine_memory()``."""
    return int(limits().max_memory_fraction * machine_memory())
