"""Runs: the queue and its fair order (``manager``), what a launch must pass (``admission``), a run's
files (``artifacts``), what a run's end writes (``events``) and the executors that train runs
(``executors``). This package file imports nothing, so a worker (``python -m engine.runs.worker``)
keeps its small import set."""
