"""What is done to any sweep, through its kind (``engine.sweeps.SWEEP_KINDS``): parse a sweep file,
expand it, launch it, move it on, follow its progress, cancel it, and its outcome."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from engine.config import ConfigError, RunConfig, read_yaml
from engine.core.inputs import check_document, cut
from engine.sweeps import SWEEP_KINDS
from engine.sweeps.outcome import Outcome
from engine.sweeps.spec import SweepSpec, raise_problems, sweep_base, unknown_fields
from store.schema import FINAL_STATUSES, RUN_STATUSES
from store.sweeps import first_active_run, status_counts, sweep_ids, sweep_row

DEFAULT_KIND = "grid"  # a file with no kind's section: the base config times the seeds


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))


def parse_sweep(data: Any, default_name: str = "sweep") -> SweepSpec:
    """Validate a sweep mapping (a parsed YAML file); raise ``ConfigError`` with one line per problem."""
    if not isinstance(data, dict):
        raise ConfigError([f"sweep: must be a mapping with name, base, seeds and one of {', '.join(SWEEP_KINDS)}"])
    check_document(data, "sweep")
    problems: list[str] = []
    unknown_fields(data, ("name", "base", *SWEEP_KINDS, "seeds"), "", problems)
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip() or len(name) > 100 or "/" in name:
        problems.append(f"name = {cut(name)}: must be a non-empty text of at most 100 characters without '/'")
        name = default_name
    base = sweep_base(data, problems)
    kinds = [k for k in SWEEP_KINDS if k in data]
    if len(kinds) > 1:
        problems.append(f"{', '.join(kinds)}: give one of {', '.join(SWEEP_KINDS)}, not several")
    spec = SWEEP_KINDS[kinds[0] if kinds else DEFAULT_KIND].parse(data, base, name, problems)
    raise_problems(problems)
    spec.raw = _jsonable(data)
    return spec


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file (YAML); the name defaults to the file's stem."""
    return parse_sweep(read_yaml(path), default_name=Path(path).stem)


def _spec(spec: SweepSpec | Mapping) -> SweepSpec:
    return spec if isinstance(spec, SweepSpec) else parse_sweep(spec)


def expand(spec: SweepSpec | Mapping) -> list[RunConfig]:
    """Every run config a sweep queues at launch (a reality check: its tune phase), in order. Pure and
    deterministic. A search is not expanded ahead (``ValueError``): its trials are asked from Optuna
    as runs end."""
    spec = _spec(spec)
    return SWEEP_KINDS[spec.kind].configs(spec)


def planned_runs(spec: SweepSpec | Mapping) -> int:
    """The runs a sweep will have in all (grid points x seeds, samples x seeds, trials; a reality
    check's both phases)."""
    spec = _spec(spec)
    return SWEEP_KINDS[spec.kind].planned_runs(spec)


# ---- launching, progress, cancelling ----------------------------------------------------------------

def launch_sweep(manager, spec: SweepSpec | Mapping, owner: str | None = None, principal=None) -> int:
    """Create the sweep row and queue its runs as one group (a search: start its driver thread; a
    reality check: queue its tune phase), for ``principal`` (``RunManager.admit``: who may launch,
    the cost, and their quotas for the whole sweep, before any row is written). Returns the sweep id."""
    spec = _spec(spec)
    return SWEEP_KINDS[spec.kind].launch(manager, spec, owner, principal)


def sweep_progress(store, sweep_id: int) -> dict:
    """Counts by status (and by phase), runs planned, ended, and the fraction done."""
    name, kind, raw = sweep_row(store, sweep_id)
    counts = {s: 0 for s in RUN_STATUSES}
    phases: dict[str, dict[str, int]] = {}
    for phase, status, n in status_counts(store, sweep_id):
        counts[status] = counts.get(status, 0) + n
        phases.setdefault(phase, {s: 0 for s in RUN_STATUSES})[status] = n
    created = {p: sum(c.values()) for p, c in phases.items()}
    total = SWEEP_KINDS[kind].expected_runs(raw, created)
    ended = sum(counts[s] for s in FINAL_STATUSES)
    return {"sweep_id": sweep_id, "name": name, "kind": kind, "total": total, "created": sum(created.values()),
            "ended": ended, "active": counts["queued"] + counts["running"], "counts": counts,
            "done_fraction": ended / total if total else 1.0,
            "phases": {p: c for p, c in phases.items() if p}}


def format_progress(p: Mapping) -> str:
    c = p["counts"]
    ended = ", ".join(f"{s} {c[s]}" for s in FINAL_STATUSES if c.get(s))
    line = (f"sweep {p['sweep_id']} {p['name']}: {p['ended']}/{p['total']} ended"
            + (f" ({ended})" if ended else "") + f", {c['running']} running, {c['queued']} queued, "
            f"{100 * p['done_fraction']:5.1f}%")
    if p.get("phases"):
        line += " [" + ", ".join(f"{ph} {sum(v for s, v in pc.items() if s in FINAL_STATUSES)}/{sum(pc.values())}"
                                 for ph, pc in p["phases"].items()) + "]"
    return line


_advance_lock = threading.Lock()


def advance(manager, sweep_id: int) -> str:
    """Move a sweep on and say where it is: 'running', 'tuning', 'testing', 'done' or 'cancelled'.
    Safe to call again at any time: a reality check queues its test phase once its tune phase has
    ended; a search whose driver is not running in this process (after a restart) is resumed."""
    with _advance_lock:
        return SWEEP_KINDS[sweep_row(manager.store, sweep_id)[1]].advance(manager, sweep_id)


def cancel_sweep(manager, sweep_id: int, principal=None) -> int:
    """Cancel a sweep as a group: stop what its kind runs in this process (a search's drivers: no new
    trials) and cancel every queued or running run (``RunManager.cancel_sweep``). Returns how many runs
    were cancelled. ``AccessDenied``, before anything stops, for a principal who may not."""
    manager.store.authorize(principal, "cancel", sweep_id=sweep_id)
    stop_sweeps(sweep_id)
    return manager.cancel_sweep(sweep_id, principal=principal)


def stop_sweeps(sweep_id: int | None = None, join: bool = False) -> None:
    """Stop what every kind runs in this process for a sweep (None: for every sweep)."""
    for kind in SWEEP_KINDS.values():
        kind.stop(sweep_id, join=join)


def wait_sweep(manager, sweep_id: int, timeout: float | None = None, poll: float = 0.5,
               on_progress: Callable[[dict], None] | None = None) -> str:
    """Advance the sweep until it is 'done' or 'cancelled' (or the timeout passes); returns the state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = advance(manager, sweep_id)
        if on_progress is not None:
            on_progress(sweep_progress(manager.store, sweep_id))
        if state in ("done", "cancelled") or (deadline is not None and time.monotonic() >= deadline):
            return state
        active = first_active_run(manager.store, sweep_id)
        if active is not None:
            manager.wait(active, timeout=poll)
        else:
            time.sleep(min(poll, 0.1))


def sweep_outcome(store, sweep_id: int, where: str) -> Outcome | None:
    """The table a sweep ends with, if its kind shows it ``where`` (one of ``outcome.WHERE``: cli, page,
    report) and has one yet."""
    kind = SWEEP_KINDS[sweep_row(store, sweep_id)[1]]
    return kind.outcome(store, sweep_id) if where in kind.shown_in else None


class SweepKeeper(threading.Thread):
    """Moves a long-lived lab's sweeps on in the background: a reality check's test phase is queued
    when its tune phase ends, and a search's trials keep coming (or resume after a restart). At start
    it watches every sweep with runs still to come; ``watch`` adds one launched later."""

    def __init__(self, manager, interval: float = 1.0):
        super().__init__(daemon=True, name="sweep-keeper")
        self.manager, self.interval = manager, interval
        self._watched: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        for sweep_id in sweep_ids(manager.store):
            p = sweep_progress(manager.store, sweep_id)
            if p["ended"] < p["total"] and not p["counts"]["cancelled"]:
                self._watched.add(sweep_id)

    def watch(self, sweep_id: int) -> None:
        with self._lock:
            self._watched.add(sweep_id)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                watched = sorted(self._watched)
            for sweep_id in watched:
                try:
                    state = advance(self.manager, sweep_id)
                except Exception as err:  # one broken sweep must not stop the others
                    print(f"sweep {sweep_id}: {err}", file=sys.stderr)
                    state = "done"
                if state in ("done", "cancelled"):
                    with self._lock:
                        self._watched.discard(sweep_id)

