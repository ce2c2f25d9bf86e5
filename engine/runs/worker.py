"""A training worker: ``python -m engine.runs.worker`` (its executor: engine/runs/executors/worker_process.py).

Started ahead of need by the run manager, it imports torch and Lightning and warms up the optimizer
machinery before any run is launched (5-8 s here), then takes runs one at a time from stdin (one JSON
line each) and reports metric batches, task boundaries and the outcome over stdout. SIGUSR1 cancels
the current run after its current step. A worker serves runs until stdin closes, and ends within a
fraction of a second of its owner's death, even mid-run (``watch_owner``). A worker for GPU runs is
started with ``CUDA_VISIBLE_DEVICES`` naming its one GPU (so its runs train on cuda:0); a worker for CPU
runs sees no GPU.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from engine import protocol


def _warm_up() -> None:
    # The first optimizer step imports torch._dynamo lazily (about 1.3 s): pay for it before a run.
    import torch

    layer = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.zeros(1, 2)).sum().backward()
    opt.step()


def watch_owner(owner_pid: int, every: float = 0.02) -> None:
    """Exit at once when the owner dies (SIGKILL included), so no orphan trains on: a thread polls
    the parent pid, which changes when the parent dies. Not PR_SET_PDEATHSIG, which fires when the
    parent *thread* that started the worker ends, not the process."""

    def watch() -> None:
        while os.getppid() == owner_pid:
            time.sleep(every)
        os._exit(1)  # no clean-up to do: the owner that would take our messages is gone

    threading.Thread(target=watch, daemon=True, name="owner-watch").start()


def threads_per_run() -> int:
    """CPU threads a run takes (and the CPUs a Ray task asks for): ``$CL_LAB_THREADS``, default 1."""
    try:
        return max(1, int(os.environ.get("CL_LAB_THREADS") or 1))
    except ValueError:
        return 1


def versions() -> dict:
    """The versions a run trains on, as its row records them."""
    import lightning
    import torch

    from engine import code_version

    return {"python_version": platform.python_version(), "torch_version": torch.__version__,
            "lightning_version": lightning.__version__, "lab_version": code_version()}


def train_job(job: dict, send, should_stop, versions: dict) -> None:
    """Train one run handed over as ``job`` (run_id, config, weights_dir, checkpoint, resume, device,
    device_label; ``node``: where it trains, for its row) and report it as ``send(kind, **payload)``
    messages (``RunEvents.handle`` turns them into events): started, metrics, task_start, task_end,
    checkpoint and, always last, end. The worker process's and the Ray task's one body."""
    from engine.config import stored_config
    from engine.core.devices import device_label
    from engine.evaluation import BufferedSink
    from engine.training.train import train_run
    from store.disk import disk_full_message

    class SendSink(BufferedSink):
        def emit(self, batch):
            send("metrics", run_id=self.run_id, batch=batch)

        def task_start(self, task, step):
            super().task_start(task, step)
            send("task_start", run_id=self.run_id, task=task, step=step)

        def task_end(self, task, step):
            super().task_end(task, step)
            send("task_end", run_id=self.run_id, task=task, step=step)

    run_id = job["run_id"]
    sink = SendSink(run_id)
    where = {"node": job["node"]} if job.get("node") else {}
    try:
        # the lab checked the machine (this process may see only its own GPU): the config's shape alone
        config = stored_config(job["config"])
        device = job.get("device")  # cpu, or cuda:0 behind CUDA_VISIBLE_DEVICES; None: the config's
        label = job.get("device_label") or device_label(config.train.device)
        result = train_run(
            config, sink, should_stop=should_stop, device=device,
            on_start=lambda total: send("started", run_id=run_id, total_steps=total, device=label, **where,
                                        **versions),
            weights_dir=Path(job["weights_dir"]) if job.get("weights_dir") else None,
            checkpoint=Path(job["checkpoint"]) if job.get("checkpoint") else None,
            resume=Path(job["resume"]) if job.get("resume") else None,
            # the metrics before a checkpoint go first; the owner promotes it once they are committed
            on_checkpoint=lambda: (sink.flush(), send("checkpoint", run_id=run_id)),
        )
        send("end", run_id=run_id, status=result.status, error=result.error, step=result.step, rows=sink.rows_sent)
    except Exception as err:  # the run fails; the worker stays for the next one
        sink.flush()
        # a save on a full disk: the line names the disk (torch's own says only "file write failed")
        detail = disk_full_message(job.get("weights_dir") or ".", err) \
            or "".join(traceback.format_exception_only(err)).strip()
        traceback.print_exc()
        send("end", run_id=run_id, status="failed", error=detail, step=None, rows=sink.rows_sent)


def main() -> None:
    # below the lab's pages (engine/core/limits.py, worker_nice): a page read must not wait for training
    os.nice(min(19, max(0, int(os.environ.get("CL_LAB_WORKER_NICE") or 0))))
    watch_owner(int(os.environ.get("CL_LAB_OWNER_PID") or os.getppid()))
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, never into the message stream
    cancel = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: cancel.set())

    import torch

    torch.set_num_threads(threads_per_run())
    _warm_up()
    these_versions = versions()

    def send(kind, **payload):
        protocol.send(out, kind, **payload)

    send("ready", pid=os.getpid())
    for line in sys.stdin:
        if not line.strip():
            continue
        cancel.clear()
        train_job(json.loads(line), send, cancel.is_set, these_versions)
        send("ready", pid=os.getpid())


if __name__ == "__main__":
    main()
