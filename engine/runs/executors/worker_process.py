"""The worker-process executor: each run trains in a warm worker process (``python -m engine.runs.worker``,
never multiprocessing: see stack-facts.md), started ahead of need so a launched run does not wait for
torch and Lightning to import. Each worker has a reader thread that turns its messages into the
executor's ``RunEvents``; if a worker dies, its run is reported lost with the reason, and every metric
it sent before is kept.

A worker for GPU runs is started with ``CUDA_VISIBLE_DEVICES`` naming its one GPU (its runs train on
cuda:0); a worker for CPU runs sees no GPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

from engine import protocol
from engine.core.limits import limits
from engine.runs.events import RunEvents
from engine.runs.executors.base import Executor, Job
from store.disk import disk_full_message

PROJECT_ROOT = Path(__file__).resolve().parents[3]
SHUT_DOWN = "the lab was shut down while this run was training"


class _Worker:
    """One worker process, and the threads reading its messages and its stderr."""

    def __init__(self, executor: "WorkerExecutor", gpu: int | None = None):
        self.executor = executor
        self.gpu = gpu  # the machine's GPU index this worker trains on; None: a CPU worker
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "CL_LAB_OWNER_PID": str(os.getpid()),
               "CUDA_VISIBLE_DEVICES": "" if gpu is None else str(gpu),
               "CL_LAB_WORKER_NICE": str(limits().worker_nice)}
        if gpu is not None:
            env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # train.deterministic needs it before cuBLAS starts
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.runs.worker"], cwd=PROJECT_ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.ready = False
        self.alive = True
        self.run_id: int | None = None
        self.last_step = 0
        self.stderr_tail: deque[str] = deque(maxlen=40)
        threading.Thread(target=self._read_stderr, daemon=True, name="worker-stderr").start()
        self.reader = threading.Thread(target=self._read, daemon=True, name="worker-reader")
        self.reader.start()

    def assign(self, job: Job) -> None:
        self.run_id, self.ready, self.last_step = job.run_id, False, job.last_step
        message = {"run_id": job.run_id, "config": job.config, "weights_dir": str(job.run_dir),
                   "checkpoint": str(job.checkpoint), "resume": None if job.resume is None else str(job.resume),
                   "device": "cpu" if self.gpu is None else "cuda:0",  # its one visible GPU
                   "device_label": "cpu" if self.gpu is None else f"cuda:{self.gpu}"}
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the reader sees the worker's end and reports the run lost

    def cancel(self) -> None:
        try:
            self.proc.send_signal(signal.SIGUSR1)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_tail.append(line.decode(errors="replace").rstrip())

    def _read(self) -> None:
        events, lock = self.executor.events, self.executor.lock
        while (message := protocol.receive(self.proc.stdout)) is not None:
            kind, p = message
            if kind == "end":
                with lock:
                    self.run_id = None
            try:
                self._handle(kind, p)
            except Exception as err:  # a write that found the disk full past the store's wait: not recorded
                if (full := disk_full_message(events.store.path, err)) is None:
                    raise
                self.stderr_tail.append(f"{kind} of run {p.get('run_id')} not written: {full}")
        code = self.proc.wait()
        with lock:
            self.alive = False
            run_id, self.run_id = self.run_id, None
        if run_id is not None:
            events.lost(run_id, self._death_reason(code), self.last_step)
        events.ready()

    def _handle(self, kind: str, p: dict) -> None:
        """One message of the worker's, as an event."""
        if kind == "ready":
            with self.executor.lock:
                self.ready = True
            self.executor.events.ready()
            return
        if kind == "metrics" and len(p["batch"]["step"]):
            self.last_step = max(self.last_step, int(p["batch"]["step"].max()))
        self.executor.events.handle(kind, p)

    def _death_reason(self, code: int) -> str:
        if self.executor.closing:
            return SHUT_DOWN
        if code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        last = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        return f"the worker process {how} at step {self.last_step}" + (f": {last}" if last else "")


class WorkerExecutor(Executor):
    """Runs in warm worker processes, one run at a time each; as many workers at each place as ``prepare``
    asks for."""

    name = "local"
    warm_workers = True

    def __init__(self, events: RunEvents, gpus: tuple[int, ...] = ()):
        super().__init__(events, gpus)
        self.lock = threading.Lock()  # the workers' state; never held while an event is reported
        self.workers: list[_Worker] = []
        self.closing = False

    def prepare(self, wanted):
        with self.lock:
            if self.closing:
                return
            self.workers = [w for w in self.workers if w.alive]
            have = {place: sum(w.gpu == place for w in self.workers) for place in wanted}
        for place, n in wanted.items():
            for _ in range(n - have[place]):
                worker = _Worker(self, place)
                with self.lock:
                    self.workers.append(worker)

    def _idle(self, place) -> list[_Worker]:
        return [w for w in self.workers if w.gpu == place and w.alive and w.ready and w.run_id is None]

    def idle(self, place):
        with self.lock:
            return bool(self._idle(place))

    def start(self, job: Job) -> None:
        with self.lock:
            idle = self._idle(job.place)
            worker = idle[0] if idle else None
            if worker is not None:
                worker.run_id, worker.ready = job.run_id, False
        if worker is None:  # the idle worker died since ``idle`` was asked
            self.events.lost(job.run_id, "the worker process exited before the run started", job.last_step)
        else:
            worker.assign(job)

    def cancel(self, run_id: int) -> None:
        with self.lock:
            worker = next((w for w in self.workers if w.run_id == run_id), None)
        if worker is not None:
            worker.cancel()

    def counts(self):
        with self.lock:
            return {"workers": sum(w.alive for w in self.workers),
                    "idle": sum(w.alive and w.ready and w.run_id is None for w in self.workers)}

    def shutdown(self, timeout: float) -> None:
        with self.lock:
            self.closing = True
            workers = list(self.workers)
        for w in workers:
            if w.run_id is not None:
                w.proc.kill()
            w.stop()
        for w in workers:
            try:
                w.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                w.proc.kill()
        for w in workers:  # every message a worker sent is handed to the store before it closes
            w.reader.join(timeout)
