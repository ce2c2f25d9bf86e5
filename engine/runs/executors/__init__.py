"""The executor registry. Adding an executor means adding its file and one line here."""

from __future__ import annotations

from engine.runs.executors.base import Executor, ExecutorUnavailable, Job
from engine.runs.executors.in_process import InProcessExecutor
from engine.runs.executors.ray_cluster import RayExecutor
from engine.runs.executors.worker_process import WorkerExecutor

# one line an executor; the run manager's default first
EXECUTORS: dict[str, type[Executor]] = {e.name: e for e in (
    WorkerExecutor,
    InProcessExecutor,
    RayExecutor,  # Ray imported when it is built: the optional extra requirements-ray.txt
)}

__all__ = ["EXECUTORS", "Executor", "ExecutorUnavailable", "Job"]
