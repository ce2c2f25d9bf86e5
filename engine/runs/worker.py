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


def main() -> None:
    # below the lab's pages (engine/core/limits.py, worker_nice): a page read must not wait for training
    os.nice(min(19, max(0, int(os.environ.get("CL_LAB_WORKER_NICE") or 0))))
    watch_owner(int(os.environ.get("CL_LAB_OWNER_PID") or os.getppid()))
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, never into the message stream
    cancel = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: cancel.set())

    import lightning
    import torch

    from engine import code_version
    from engine.config import stored_config
    from engine.core.devices import device_label
    from engine.evaluation import BufferedSink
    from engine.training.train import train_run
    from store.disk import disk_full_message

    torch.set_num_threads(int(os.environ.get("CL_LAB_THREADS", "1")))
    _warm_up()
    versions = {"python_version": platform.python_version(), "torch_version": torch.__version__,
                "lightning_version": lightning.__version__, "lab_version": code_version()}

    class PipeSink(BufferedSink):
        def emit(self, batch):
            protocol.send(out, "metrics", run_id=self.run_id, batch=batch)

        def task_start(self, task, step):
            super().task_start(task, step)
            protocol.send(out, "task_start", run_id=self.run_id, task=task, step=step)

        def task_end(self, task, step):
            super().task_end(task, step)
            protocol.send(out, "task_end", run_id=self.run_id, task=task, step=step)

    protocol.send(out, "ready", pid=os.getpid())
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        run_id = job["run_id"]
        cancel.clear()
        sink = PipeSink(run_id)
        try:
            # the lab checked the machine (this process may see only its own GPU): the config's shape alone
            config = stored_config(job["config"])
            device = job.get("device")  # cpu, or cuda:0 behind CUDA_VISIBLE_DEVICES; None: the config's
            label = job.get("device_label") or device_label(config.train.device)
            result = train_run(
                config, sink, should_stop=cancel.is_set, device=device,
                on_start=lambda total: protocol.send(out, "started", run_id=run_id, total_steps=total, device=label,
                                                     **versions),
                weights_dir=Path(job["weights_dir"]) if job.get("weights_dir") else None,
                checkpoint=Path(job["checkpoint"]) if job.get("checkpoint") else None,
                resume=Path(job["resume"]) if job.get("resume") else None,
                # the metrics before a checkpoint go first; the owner promotes it once they are committed
                on_checkpoint=lambda: (sink.flush(), protocol.send(out, "checkpoint", run_id=run_id)),
            )
            protocol.send(out, "end", run_id=run_id, status=result.status, error=result.error, step=result.step,
                          rows=sink.rows_sent)
        except Exception as err:  # the run fails; the worker stays for the next one
            sink.flush()
            # a save on a full disk: the line names the disk (torch's own says only "file write failed")
            detail = disk_full_message(job.get("weights_dir") or ".", err) \
                or "".join(traceback.format_exception_only(err)).strip()
            traceback.print_exc()
            protocol.send(out, "end", run_id=run_id, status="failed", error=detail, step=None, rows=sink.rows_sent)
        protocol.send(out, "ready", pid=os.getpid())


if __name__ == "__main__":
    main()
