"""The in-process executor: runs train in this process, each in a thread (``start``), or in the calling
thread (``train_here``: ``run_in_process`` for notebooks, tests and benchmarks)."""

from __future__ import annotations

import platform
import threading

from engine.runs.events import RunEvents
from engine.runs.executors.base import Executor, Job


def train_here(job: Job, events: RunEvents, should_stop=None, device: str | None = None, scenario=None,
               config=None):
    """Train ``job`` in this thread, reporting through ``events``; returns train_run's result. ``device``:
    None trains on the config's own. ``scenario``: tasks in memory (train_run's) instead of the
    config's dataset; ``config``: the job's ``RunConfig`` where the caller holds it already (else read
    from ``job.config``). An exception is the run's failure, and is raised again."""
    # torch and Lightning load here, not when the lab imports its executors: the lab starts without them
    import lightning
    import torch

    from engine import code_version
    from engine.config import stored_config
    from engine.core.devices import device_label
    from engine.evaluation import BufferedSink
    from engine.training.train import train_run

    class EventSink(BufferedSink):
        def emit(self, batch):
            events.metrics(batch)

        def task_start(self, task, step):
            super().task_start(task, step)
            events.task_start(self.run_id, task, step)

        def task_end(self, task, step):
            super().task_end(task, step)
            events.task_end(self.run_id, task, step)

    run_id = job.run_id
    if config is None:  # the lab checked the machine when it was queued: the config's shape alone
        config = stored_config(job.config)
    versions = {"python_version": platform.python_version(), "torch_version": torch.__version__,
                "lightning_version": lightning.__version__, "lab_version": code_version()}
    label = device or device_label(config.train.device)
    sink = EventSink(run_id)
    try:
        result = train_run(
            config, sink, should_stop=should_stop, device=device, scenario=scenario,
            on_start=lambda total: events.started(run_id, total_steps=total, device=label, **versions),
            weights_dir=job.run_dir, checkpoint=job.checkpoint, resume=job.resume,
            # the metrics before a checkpoint go first; it is the run's once they are committed
            on_checkpoint=lambda: (sink.flush(), events.checkpoint(run_id)))
    except Exception as err:
        sink.flush()
        events.ended(run_id, "failed", str(err), None)
        raise
    events.ended(run_id, result.status, result.error, result.step, sink.rows_sent)
    return result


class InProcessExecutor(Executor):
    """Each run in a thread of this process (no warm-up: torch loads with the first run)."""

    name = "in-process"

    def __init__(self, events: RunEvents, gpus: tuple[int, ...] = ()):
        super().__init__(events, gpus)
        self._lock = threading.Lock()
        self._stops: dict[int, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._closing = False

    def idle(self, place):
        return not self._closing

    def start(self, job: Job) -> None:
        stop = threading.Event()
        with self._lock:
            self._stops[job.run_id] = stop
        thread = threading.Thread(target=self._train, args=(job, stop), daemon=True, name=f"run-{job.run_id}")
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _train(self, job: Job, stop: threading.Event) -> None:
        device = "cpu" if job.place is None else f"cuda:{job.place}"
        try:
            train_here(job, self.events, should_stop=stop.is_set, device=device)
        except Exception:  # already the run's failure (train_here wrote it)
            pass
        finally:
            with self._lock:
                self._stops.pop(job.run_id, None)
            self.events.ready()

    def cancel(self, run_id: int) -> None:
        with self._lock:
            stop = self._stops.get(run_id)
        if stop is not None:
            stop.set()

    def counts(self):
        with self._lock:
            return {"workers": len(self._stops), "idle": 0}

    def shutdown(self, timeout: float) -> None:
        """Stop every run after its current step (a thread cannot be killed): they end as cancelled."""
        with self._lock:
            self._closing = True
            stops = list(self._stops.values())
        for stop in stops:
            stop.set()
        for thread in self._threads:
            thread.join(timeout)
