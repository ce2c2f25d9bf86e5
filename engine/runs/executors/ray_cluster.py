"""The Ray executor: each run a Ray task on a cluster (lab.toml ``[executor] kind = "ray"``; the optional
extra ``requirements-ray.txt``). Ray places the tasks; the lab keeps its queue, fair order, quotas and
budgets, and hands a run over only when its turn comes, as to the local executor.

The lab stays the only writer of its database; nodes never open it:
- A task sends everything it has to say (the worker's messages: ``engine.runs.worker.train_job``) into one
  bounded Ray queue held on the lab's node; a full queue blocks the task (backpressure). One reader
  thread here turns them into the run's events, in the order sent.
- A task trains in a temporary folder on its node and ships the files it wrote (the ``after-task-<k>.pt``
  weights, the pending resume checkpoint) as bytes before the checkpoint or end message they belong to;
  the lab writes each whole and renames it into the run's folder. A resumed run gets its checkpoint's
  bytes with the task, so it resumes on any node.
- Cancel: a flag actor on the lab's node, which a task polls every 0.2 s (the run stops after its current
  step and ends cancelled); a task that has not stopped ``CANCEL_GRACE_S`` later is killed.
- A task whose node dies, or which Ray loses, ends its run failed with Ray's reason within seconds
  (``ray.wait`` on every task; the note goes through the same queue, after what the task sent), and the
  run resumes from its last checkpoint. Tasks are owned by the lab's process: when it dies, Ray ends
  them with it, and the restarted lab fails the runs they left "running" (resumable).

Ray is imported only when this executor is built: the lab and the local executor run without it.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from pathlib import Path

from engine.runs.events import RunEvents
from engine.runs.executors.base import Executor, ExecutorUnavailable, Job
from engine.runs.worker import threads_per_run
from store.disk import disk_full_message

PROJECT_ROOT = Path(__file__).resolve().parents[3]
SHUT_DOWN = "the lab was shut down while this run was training on the cluster"
CANCEL_GRACE_S = 30.0
QUEUE_SIZE = 256  # messages in flight from every task together before a task waits (backpressure)
POLL_S = 0.2
_WEIGHTS_FILE = re.compile(r"^after-task-\d{1,6}\.pt$")  # the only names a node may write into a run's folder


def _write_whole(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as a whole: a temporary name first, then a rename."""
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)


def import_ray():
    """Ray, or ``ExecutorUnavailable`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ExecutorUnavailable('executor kind "ray" needs Ray, which is not installed: '
                                  "pip install -r requirements-ray.txt") from None
    return ray


def connect(address: str, ship_code: bool = True):
    """Connect this process to the cluster at ``address`` ("auto" or HOST:PORT); returns Ray.
    ``ExecutorUnavailable`` in one line when Ray is missing or no cluster answers there. ``ship_code``:
    the lab's own packages go to the nodes with each task (a node needs only the requirements)."""
    ray = import_ray()
    _check_reachable(address)
    env = {"py_modules": [str(PROJECT_ROOT / "engine"), str(PROJECT_ROOT / "store")]} if ship_code else None
    try:
        ray.init(address=address, namespace="cl-lab", log_to_driver=False, logging_level="ERROR", runtime_env=env)
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExecutorUnavailable(f"no Ray cluster could be reached at {address}: {first[:200]} "
                                  "(start one with `ray start --head`; see the README)") from None
    return ray


# ---- what runs on a node -----------------------------------------------------------------------------------

def train_on_node(job: dict, checkpoint: bytes | None, messages, flags, lab_versions: dict, threads: int) -> None:
    """The Ray task's body: train ``job`` in a temporary folder, sending its messages (and its files'
    bytes) to ``messages``, until it ends or ``flags`` says it is cancelled."""
    import ray
    import torch

    from engine.runs.cluster import node_label
    from engine.runs.worker import train_job, versions

    torch.set_num_threads(threads)
    run_id = job["run_id"]
    node = node_label(ray.util.get_node_ip_address(), ray.get_runtime_context().get_node_id())
    stop, done = threading.Event(), threading.Event()

    def poll() -> None:
        while not done.wait(POLL_S):
            try:
                if ray.get(flags.is_cancelled.remote(run_id), timeout=10):
                    stop.set()
                    return
            except Exception:  # noqa: BLE001 - the lab's actor is gone: the lab is; nobody takes the messages
                stop.set()
                return

    with tempfile.TemporaryDirectory(prefix=f"cl-lab-run-{run_id}-") as tmp:
        weights, pending = Path(tmp) / "weights", Path(tmp) / "resume.pt.pending"
        weights.mkdir()
        if checkpoint is not None:
            (Path(tmp) / "resume.pt").write_bytes(checkpoint)
        job = {**job, "weights_dir": str(weights), "checkpoint": str(pending),
               "resume": str(Path(tmp) / "resume.pt") if checkpoint is not None else None, "node": node}
        shipped: dict[str, tuple[int, int]] = {}

        def send(kind: str, **payload) -> None:
            if kind in ("checkpoint", "end"):  # the files first: a checkpoint is promoted only after its weights
                files = {}
                present = sorted(p.name for p in weights.glob("after-task-*.pt"))
                for name in present:
                    stat = (weights / name).stat()
                    if shipped.get(name) != (stat.st_mtime_ns, stat.st_size):
                        files[name] = (weights / name).read_bytes()
                        shipped[name] = (stat.st_mtime_ns, stat.st_size)
                if kind == "checkpoint" and pending.exists():
                    files["resume.pt.pending"] = pending.read_bytes()
                messages.put(("files", {"run_id": run_id, "files": files, "present": present}))
            messages.put((kind, payload))

        threading.Thread(target=poll, daemon=True, name="cancel-poll").start()
        try:
            train_job(job, send, stop.is_set, {**versions(), "lab_version": lab_versions["lab_version"]})
        finally:
            done.set()


def _remote_parts(ray):
    """The Ray task and the cancel-flag actor (defined once Ray is imported)."""

    @ray.remote(num_cpus=0)
    class CancelFlags:
        def __init__(self):
            self.cancelled: set[int] = set()

        def cancel(self, run_id: int) -> None:
            self.cancelled.add(run_id)

        def forget(self, run_id: int) -> None:
            self.cancelled.discard(run_id)

        def is_cancelled(self, run_id: int) -> bool:
            return run_id in self.cancelled

    # a lost task is the run's failure, resumed by the user from its checkpoint: Ray must not retry it
    task = ray.remote(max_retries=0)(train_on_node)
    return task, CancelFlags


# ---- the lab's side --------------------------------------------------------------------------------------

class _Run:
    def __init__(self, job: Job, ref):
        self.job, self.ref = job, ref
        self.last_step = job.last_step
        self.ended = False
        self.cancel_at: float | None = None  # when a cancel was asked (killed CANCEL_GRACE_S later)
        self.killed = False


class RayExecutor(Executor):
    """Each run a Ray task on the cluster at ``address`` ("auto": the one this machine belongs to)."""

    name = "ray"

    def __init__(self, events: RunEvents, gpus: tuple[int, ...] = (), address: str = "auto"):
        super().__init__(events, gpus)
        self.address = address
        ray = import_ray()
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray = ray
        self.threads = threads_per_run()
        self._own_connection = not ray.is_initialized()
        if self._own_connection:
            connect(address)
        from engine import code_version

        self.lab_versions = {"lab_version": code_version()}
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.task, flags = _remote_parts(ray)
        # both on the lab's node: a worker node that dies takes no message and no cancel with it
        self.messages = Queue(maxsize=QUEUE_SIZE, actor_options={"num_cpus": 0, "scheduling_strategy": here})
        self.flags = flags.options(scheduling_strategy=here).remote()
        self.lock = threading.Lock()  # the runs; never held while an event is reported
        self.runs: dict[int, _Run] = {}
        self.closing = False
        self._threads = [threading.Thread(target=self._read, daemon=True, name="ray-messages"),
                         threading.Thread(target=self._watch, daemon=True, name="ray-tasks")]
        for thread in self._threads:
            thread.start()

    # ---- the executor interface ------------------------------------------------------------------
    def max_parallel(self) -> int | None:
        cpus = self.ray.cluster_resources().get("CPU", 0)
        return max(1, int(cpus // self.threads))

    def gpu_places(self) -> tuple[int, ...] | None:
        return tuple(range(int(self.ray.cluster_resources().get("GPU", 0))))

    def idle(self, place):
        return not self.closing

    def nodes(self) -> list[dict]:
        """The cluster's nodes (``engine.runs.cluster.node_rows``)."""
        from engine.runs.cluster import node_rows

        return node_rows(self.ray.nodes())

    def start(self, job: Job) -> None:
        checkpoint = job.resume.read_bytes() if job.resume is not None else None
        message = {"run_id": job.run_id, "config": job.config,
                   "device": "cpu" if job.place is None else "cuda:0",  # Ray sets the task's CUDA_VISIBLE_DEVICES
                   "device_label": "cpu" if job.place is None else "cuda"}
        options = {"num_cpus": self.threads}
        if job.place is not None:
            options["num_gpus"] = job.gpu_share
            options["runtime_env"] = {"env_vars": {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}}  # train.deterministic
        ref = self.task.options(**options).remote(message, checkpoint, self.messages, self.flags,
                                                  self.lab_versions, self.threads)
        with self.lock:
            self.runs[job.run_id] = _Run(job, ref)

    def cancel(self, run_id: int) -> None:
        with self.lock:
            run = self.runs.get(run_id)
            if run is None or run.cancel_at is not None:
                return
            run.cancel_at = time.monotonic()
        self.flags.cancel.remote(run_id)

    def counts(self):
        with self.lock:
            return {"workers": len(self.runs), "idle": 0}

    def shutdown(self, timeout: float) -> None:
        """Kill the tasks still training (their runs fail: the lab was shut down, resumable) after taking
        every message they sent; disconnect from the cluster."""
        with self.lock:
            self.closing = True
            runs = [r for r in self.runs.values() if not r.ended]
        for run in runs:
            self.ray.cancel(run.ref, force=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(t.is_alive() for t in self._threads):
            time.sleep(0.05)
        self._drain()
        for run in runs:
            if not run.ended:
                run.ended = True
                self.events.lost(run.job.run_id, SHUT_DOWN, run.last_step)
        if self._own_connection:
            self.ray.shutdown()

    # ---- the threads -------------------------------------------------------------------------------
    def _read(self) -> None:
        """Every message the tasks sent, in order, as the run's events."""
        from ray.util.queue import Empty

        while not self.closing:
            try:
                kind, payload = self.messages.get(timeout=POLL_S)
            except Empty:
                self._kill_the_late()
                continue
            except Exception:  # noqa: BLE001 - the queue's actor is gone (the lab disconnects)
                return
            self._take(kind, payload)

    def _take(self, kind: str, payload: dict) -> None:
        """``_handle``, never ending the reader: a message the lab cannot take (malformed, or a write past the
        disk's wait) fails its run with the reason, and the others go on."""
        try:
            self._handle(kind, payload)
        except Exception as err:  # noqa: BLE001 - one run's message; the reader serves every run
            run_id = payload.get("run_id") if isinstance(payload, dict) else None
            with self.lock:
                run = self.runs.get(run_id)
            if run is None or run.ended:
                return
            run.ended = True
            self.ray.cancel(run.ref, force=True)
            reason = disk_full_message(self.events.store.path, err) or f"{type(err).__name__}: {err}"
            self.events.lost(run.job.run_id, f"a {kind!r} message of its task could not be taken at step "
                             f"{run.last_step}: {reason[:300]}", run.last_step)
            self._forget(run)

    def _drain(self) -> None:
        from ray.util.queue import Empty

        while True:
            try:
                kind, payload = self.messages.get_nowait()
            except (Empty, Exception):  # noqa: BLE001 - nothing left, or the queue is gone
                return
            self._take(kind, payload)

    def _handle(self, kind: str, payload: dict) -> None:
        run_id = payload.get("run_id") if isinstance(payload, dict) else None
        with self.lock:
            run = self.runs.get(run_id)
        if run is None or run.ended:  # not a run handed to a task here, or one already ended
            return
        if kind == "files":
            self._write_files(run, payload)
        elif kind == "gone":
            self._gone(run, payload.get("reason"))
        else:
            if kind == "metrics" and len(payload["batch"]["step"]):
                run.last_step = max(run.last_step, int(payload["batch"]["step"].max()))
            if kind == "end":
                run.ended = True
            self.events.handle(kind, payload)
            if kind == "end":
                self._forget(run)

    def _write_files(self, run: _Run, payload: dict) -> None:
        """A task's files, written whole into the run's folder; weights it removed (``train.weights: last``) go."""
        folder = run.job.run_dir
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in payload["files"].items():
            if name == "resume.pt.pending":
                _write_whole(run.job.checkpoint, data)
            elif _WEIGHTS_FILE.fullmatch(name):
                _write_whole(folder / name, data)
        present = {n for n in payload["present"] if _WEIGHTS_FILE.fullmatch(n)}
        for old in folder.glob("after-task-*.pt"):
            if old.name not in present:
                old.unlink(missing_ok=True)

    def _gone(self, run: _Run, reason: str | None) -> None:
        """The task ended; a run that did not report its end is lost with Ray's reason (or cancelled, if killed
        for not stopping when cancelled)."""
        run.ended = True
        job = run.job
        if run.killed:
            self.events.ended(job.run_id, "cancelled", f"cancelled: the task did not stop within {CANCEL_GRACE_S:.0f} s "
                              "and was killed", run.last_step, None)
        else:
            self.events.lost(job.run_id, f"the Ray task was lost at step {run.last_step}: "
                             f"{reason or 'it ended without reporting its end'}", run.last_step)
        self._forget(run)

    def _forget(self, run: _Run) -> None:
        with self.lock:
            self.runs.pop(run.job.run_id, None)
        if run.cancel_at is not None:
            self.flags.forget.remote(run.job.run_id)
        self.events.ready()

    def _kill_the_late(self) -> None:
        now = time.monotonic()
        with self.lock:
            late = [r for r in self.runs.values()
                    if r.cancel_at is not None and not r.killed and now - r.cancel_at > CANCEL_GRACE_S]
            for run in late:
                run.killed = True
        for run in late:
            self.ray.cancel(run.ref, force=True)

    def _watch(self) -> None:
        """Notice each task's end: its note goes into the message queue after everything the task sent."""
        ray = self.ray
        noted: set = set()  # the tasks whose end is noted (their runs go when the reader takes the note)
        while not self.closing:
            with self.lock:
                refs = {r.ref: r for r in self.runs.values() if r.ref not in noted}
            noted &= {r.ref for r in self.runs.values()}
            if not refs:
                time.sleep(POLL_S)
                continue
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=POLL_S)
            for ref in ready:
                try:
                    ray.get(ref)
                    reason = None
                except Exception as err:  # noqa: BLE001 - Ray's reason the task ended: the run's error line
                    reason = _one_line(err)
                try:
                    self.messages.put(("gone", {"run_id": refs[ref].job.run_id, "reason": reason}))
                except Exception:  # noqa: BLE001 - the lab disconnects
                    return
                noted.add(ref)


def _check_reachable(address: str, seconds: float = 5.0) -> None:
    """A HOST:PORT that takes no connection: ``ExecutorUnavailable`` now (Ray itself retries for minutes)."""
    import socket

    if address == "auto":
        return
    host, port = address.removeprefix("ray://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as err:
        raise ExecutorUnavailable(f"no Ray cluster could be reached at {address}: {err.strerror or err} "
                                  "(start one with `ray start --head`; see the README)") from None


def _one_line(err: Exception) -> str:
    """Ray's reason a task ended, in one line: its first sentence and the node it names."""
    text = " ".join(str(err).split())
    node = re.search(r"Node IP: [0-9a-f.:]+", text)
    first = text.split(". ")[0][:240]
    return f"{type(err).__name__}: {first}" + (f" ({node.group(0)})" if node and node.group(0) not in first else "")
