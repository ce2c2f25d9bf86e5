"""The executor interface: what trains the runs the manager hands out, wherever it trains them.

The manager owns the queue, the fair order and the places (the CPU, each GPU: how many runs at once on
each); an executor owns where and how a run trains. The manager asks ``idle(place)`` before it hands a
run over with ``start(job)``, and ``prepare(wanted)`` lets an executor get ready ahead of need (warm
workers). An executor reports everything through the ``RunEvents`` it was built with (started, metrics,
task start/end, checkpoint, ended or lost, ready); it never reads the manager's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from engine.runs.events import RunEvents


@dataclass(frozen=True)
class Job:
    """One run to train: its stored config, where (``place``: None the CPU, else a GPU index of this
    machine), its folder, the path its checkpoint is written to first, and the checkpoint it resumes
    from (None: from the start) at ``last_step``."""
    run_id: int
    config: dict
    place: int | None
    run_dir: Path
    checkpoint: Path
    resume: Path | None = None
    last_step: int = 0
    gpu_share: float = 1.0  # a GPU run's part of its GPU (1 / the lab's runs_per_gpu)


class ExecutorUnavailable(ValueError):
    """The executor cannot start here (its library is not installed, its cluster cannot be reached): one line."""


class Executor:
    """Trains the runs handed to it and reports them through ``events``."""

    name: ClassVar[str]  # its key in ``engine.runs.executors.EXECUTORS``
    warm_workers: ClassVar[bool] = False  # whether ``prepare`` starts workers a command may wait for

    def __init__(self, events: RunEvents, gpus: tuple[int, ...] = ()):
        self.events = events
        self.gpus = gpus

    def max_parallel(self) -> int | None:
        """How many CPU runs at once it can take when the lab sets no number (None: one per CPU core here)."""
        return None

    def gpu_places(self) -> tuple[int, ...] | None:
        """The GPU places it trains on, if not this machine's GPUs (a cluster's: 0..n-1 of its n GPUs)."""
        return None

    def nodes(self) -> list[dict] | None:
        """The machines it trains on, one dict each (``engine.runs.cluster``), if it trains beyond this one."""
        return None

    def prepare(self, wanted: dict[int | None, int]) -> None:
        """Get ready for up to ``wanted[place]`` runs at once at each place (default: nothing to prepare)."""

    def idle(self, place: int | None) -> bool:
        """Whether a run handed over now for ``place`` starts at once."""
        raise NotImplementedError

    def start(self, job: Job) -> None:
        """Begin training ``job`` (returns at once); its reports go to ``events``."""
        raise NotImplementedError

    def cancel(self, run_id: int) -> None:
        """Stop the run after its current step (it ends as cancelled); nothing if it is not here."""
        raise NotImplementedError

    def counts(self) -> dict[str, int]:
        """{"workers": started and alive, "idle": ready for a run} (what ``RunManager.counts`` shows)."""
        return {"workers": 0, "idle": 0}

    def shutdown(self, timeout: float) -> None:
        """Stop; a run still training is reported lost ("the lab was shut down")."""
        raise NotImplementedError

