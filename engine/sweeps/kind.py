"""The ``SweepKind`` interface: what one kind of sweep (grid, random, search, reality check) does, from
its section of the sweep file to its outcome. The defaults are those of a kind that queues every run
at launch (grid, random): a new kind of that sort only parses its section.

Adding a kind: a file with a subclass, and one line in ``engine/sweeps/__init__.py``'s registry.
"""

from __future__ import annotations

from typing import Any, Mapping

from engine.config import RunConfig
from engine.sweeps.outcome import Outcome
from engine.sweeps.results import results_outcome
from engine.sweeps.spec import SweepSpec, expand_points, raise_problems, sweep_base
from store.schema import RUN_STATUSES
from store.sweeps import status_counts


class SweepKind:
    name: str = ""                   # the sweep file's key (grid: ...) and the sweeps.kind column
    summary: str = ""                # a few words for the CLI's help
    shown_in: tuple[str, ...] = ("cli",)   # where its outcome is shown (of outcome.WHERE)

    def parse(self, data: Mapping[str, Any], base: dict, name: str, problems: list[str]) -> SweepSpec:
        """The sweep file ``data`` (its top level checked, ``base`` and ``name`` parsed) as a spec of this
        kind; one line in ``problems`` for each thing wrong (they are raised together after)."""
        raise NotImplementedError

    def stored_spec(self, raw: Mapping[str, Any], name: str) -> SweepSpec:
        """A stored sweep's spec again (its file passed every check at launch)."""
        problems: list[str] = []
        spec = self.parse(raw, sweep_base(raw, problems), name, problems)
        raise_problems(problems)
        spec.raw = dict(raw)
        return spec

    def configs(self, spec: SweepSpec) -> list[RunConfig]:
        """Every run config it queues at launch, in order."""
        return expand_points(spec)

    def planned_runs(self, spec: SweepSpec) -> int:
        """The runs a parsed sweep will have in all (what the Launch page and the CLI announce)."""
        return len(self.configs(spec))

    def expected_runs(self, raw: Mapping[str, Any], created: Mapping[str, int]) -> int:
        """The runs a stored sweep will have in all, given the runs it has by phase (its progress)."""
        return sum(created.values())

    def launch(self, manager, spec: SweepSpec, owner: str | None, principal) -> int:
        """Create the sweep row and queue its runs as one group, for ``principal`` (``RunManager.admit``:
        who may launch, the cost, and their quotas for the whole sweep, before any row is written)."""
        from engine.runs.admission import QUEUE_LOCK

        configs = self.configs(spec)
        with QUEUE_LOCK:  # every run's cost, the weights budget and the quotas, before any row is written
            who, owner = manager.admit(principal, owner, configs, sweep_runs=len(configs))
            sweep_id = manager.store.create_sweep(spec.name, self.name, spec.raw, owner=owner)
            for config in configs:
                manager.submit(config, owner=owner, sweep_id=sweep_id, check_cost=False, principal=principal)
        manager.store.audit(who, None, "launch", sweep_id=sweep_id,
                            detail=f"{self.name} sweep {spec.name!r}: {len(configs)} runs")
        return sweep_id

    def advance(self, manager, sweep_id: int) -> str:
        """Move the sweep on and say where it is ('running', 'done', 'cancelled'; a kind of several
        phases may name its own, as 'tuning'). Safe to call again at any time."""
        counts = {s: 0 for s in RUN_STATUSES}
        for _, status, n in status_counts(manager.store, sweep_id):
            counts[status] += n
        if counts["queued"] + counts["running"]:
            return "running"
        return "cancelled" if counts["cancelled"] else "done"

    def stop(self, sweep_id: int | None, join: bool = False) -> None:
        """Stop what it runs in this process besides queued runs (None: every sweep of this kind)."""

    def outcome(self, store, sweep_id: int) -> Outcome | None:
        """The table the sweep ends with (None while there is none yet): its configs ranked by acc."""
        return results_outcome(store, sweep_id, "acc")

