"""What an executor reports of a run it trains, and the one place those reports become the run's rows:
its status and versions, metric batches, task boundaries, its resume checkpoint and its outcome.

Every executor (worker processes, this process, and any added to ``engine.runs.executors``) reports
through a ``RunEvents``; the run manager's own adds its queue's bookkeeping on top.
"""

from __future__ import annotations

from engine.runs.artifacts import discard, pending_path, promote, run_checkpoint

# what a run's start may set on its row
STARTED_FIELDS = frozenset({"total_steps", "device", "node", "python_version", "torch_version", "lightning_version",
                            "lab_version"})


def every_row_committed(store, run_id: int, status: str, error: str | None, sent: int | None,
                        committed_before: int = 0) -> tuple[str, str | None]:
    """A run's (status, error) at its end: as the training gave them if every metric row it ``sent`` (this
    attempt) is committed, else failed with the reason (the writer's lost batches: a full disk), so it is
    never "finished" with rows missing, and resumes from its last checkpoint."""
    store.flush()  # what was sent before the end is committed, or lost
    committed = store.rows_committed.get(run_id, 0) - committed_before
    if sent is None or committed >= sent:
        return status, error
    why = store.lost_because.get(run_id) or "the store did not commit them"
    return "failed", f"{why}: {committed:,} of the {sent:,} metric rows it sent are in the file"


class RunEvents:
    """The reports of the runs an executor trains, written to ``store`` (the lab's, in this process).
    Each call names its run; an executor may call from any thread."""

    def __init__(self, store):
        self.store = store
        self.outcomes: dict[int, tuple[str, str | None]] = {}  # run id -> (status, error) its end gave
        self._committed_before: dict[int, int] = {}

    def begin(self, run_id: int) -> None:
        """Called before a run is handed to an executor: its rows committed by earlier attempts (a resumed
        run's) do not count for this one."""
        self._committed_before[run_id] = self.store.rows_committed.get(run_id, 0)

    def started(self, run_id: int, **info) -> None:
        """The run began training: ``info`` is its total_steps, device, node (on a cluster) and the versions
        it runs on. Only those: the names become the row's columns, and a message from a node is not trusted."""
        unknown = set(info) - STARTED_FIELDS
        if unknown:
            raise ValueError(f"run {run_id}: a start names unknown fields {sorted(unknown)[:5]}")
        self.store.update_run(run_id, **info)
        self.store.set_status(run_id, "running", only_if=("queued",))

    def metrics(self, batch) -> None:
        """A batch of metric rows (``BufferedSink.batch``: it names its run)."""
        self.store.add_metrics(batch)

    def task_start(self, run_id: int, task: int, step: int) -> None:  # ordered by the writer; nobody waits on it
        self.store.start_task(run_id, task, step, wait=False)

    def task_end(self, run_id: int, task: int, step: int) -> None:
        self.store.end_task(run_id, task, step, wait=False)

    def checkpoint(self, run_id: int) -> None:
        """The run wrote its pending checkpoint (after its metrics so far): the run's once they are committed."""
        final = run_checkpoint(self.store, run_id)
        promote(self.store, run_id, pending_path(final), final)

    def ended(self, run_id: int, status: str, error: str | None, step: int | None, rows: int | None = None) -> None:
        """The training ended as ``status`` at ``step`` having sent ``rows`` metric rows (None: not counted)."""
        status, error = every_row_committed(self.store, run_id, status, error, rows,
                                            self._committed_before.pop(run_id, 0))
        self.outcomes[run_id] = (status, error)  # also when the disk takes no status now
        self.store.set_status(run_id, status, error=error, error_step=None if status == "finished" else step)
        if status in ("finished", "diverged"):  # nothing left to resume
            discard(run_checkpoint(self.store, run_id))

    def lost(self, run_id: int, reason: str, step: int | None) -> None:
        """The executor lost the run before it reported its end (a worker died, the lab shut down)."""
        self._committed_before.pop(run_id, None)
        self.store.set_status(run_id, "failed", error=reason, error_step=step, only_if=("queued", "running"))

    def ready(self) -> None:
        """The executor can take other runs than before (a worker became idle, or died): schedule again."""

    def handle(self, kind: str, payload: dict) -> None:
        """One message of a run's training (``engine.runs.worker.train_job``'s ``send``: metrics, task_start,
        task_end, checkpoint, started, end) as the event it names: what an executor whose runs train in
        another process or on another machine does with what they send."""
        if kind == "metrics":
            self.metrics(payload["batch"])
        elif kind == "task_start":
            self.task_start(payload["run_id"], payload["task"], payload["step"])
        elif kind == "task_end":
            self.task_end(payload["run_id"], payload["task"], payload["step"])
        elif kind == "checkpoint":
            self.checkpoint(payload["run_id"])
        elif kind == "started":
            info = dict(payload)
            self.started(info.pop("run_id"), **info)
        elif kind == "end":
            self.ended(payload["run_id"], payload["status"], payload["error"], payload["step"], payload.get("rows"))
        else:
            raise ValueError(f"unknown run message {kind!r}")
