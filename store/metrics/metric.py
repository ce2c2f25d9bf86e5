"""A metric as one registry entry: what the pages, the docs and the reports say of it, and its compute
over a run view (``MetricsView``), returning ``(value, reason)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

from store.metrics.base import DEFAULT_TOLERANCE, Value, tasks_done
from store.metrics.loader import RunData


class MetricsView:
    """One run as the metrics read it: its stored rows (``RunData``), its reference runs (the Joint
    reference, the single-task experts), the tolerance of the stability gap, and the intermediate
    results several metrics share, each computed once (``shared``). ``cache`` (``store.metrics.run_cache``)
    keeps what a long run's earlier rows gave between refreshes."""

    def __init__(self, run: RunData, ref: RunData | None = None, experts: Mapping[int, RunData] | None = None,
                 tolerance: float = DEFAULT_TOLERANCE, cache=None):
        self.run, self.ref, self.experts = run, ref, dict(experts or {})
        self.tolerance, self.cache = tolerance, cache
        self.R, self.T, self.k = run.R, run.n_tasks, tasks_done(run.R)
        self.steps, self.A, self.spans = run.steps, run.A, run.spans
        self._shared: dict[str, Any] = {}

    def shared(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, once per view: a result several metrics (and their per-task values) read."""
        if name not in self._shared:
            self._shared[name] = compute()
        return self._shared[name]


@dataclass(frozen=True)
class Metric:
    key: str                 # the key in summary()
    title: str
    latex: str               # for st.latex
    source: str
    higher_is_better: bool | None
    tells: str               # what it says about stability / plasticity
    group: str               # its family: "matrix" (task boundaries), "continual" (per-step), "l2m"
    needs: str = ""          # data it needs beyond the run's own accuracy matrix
    _: KW_ONLY
    compute: Callable[[MetricsView], Value]           # (value, reason): value None exactly when unavailable
    per_task: Callable[[MetricsView], Any] | None = None  # its per-task values, in summary()["per_task"]
    per_task_key: str = ""   # their key there ("": the metric's key)
    costly: str = ""         # the costly computation it shares: summaries(only=...) skips its metrics unless
                             # one of them is asked for
    compare_table: bool = False  # a column of the Compare page's table and of comparison reports
    figure: str = ""         # its label among the Run page's headline figures ("": not one of them)
    figure_at: int = 0       # its place among them, left to right
    settings: tuple[str, ...] = ()  # the scenario settings the Run page shows it for (empty: every one)
