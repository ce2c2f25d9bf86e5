"""Trade-off models without retraining: interpolate a finished run's weights between two task
boundaries and evaluate every task on each interpolated model.

After IBCL (Lu et al., "Zero-shot model generation for task trade-offs"): for a task switch k
(task k - 1 ended, task k learned next), theta(alpha) = (1 - alpha) theta_{k-1} + alpha theta_k,
with theta_j the network's weights saved by training after task j (``train.weights: every``,
``<db>.artifacts/run-<id>/after-task-<j>.pt``). alpha 0 is the model at the end of task k - 1,
alpha 1 the model at the end of task k; in between lie models that trade the new task's accuracy
(plasticity) for the earlier tasks' (stability) at no training cost.

Each model is evaluated the way training evaluated it at task ends: one forward pass over every
task's full held-out set (``ContinualEvaluation.evaluate(full=True)``), the task-incremental mask
applied, on the scenario rebuilt from the run's config. The end points therefore reproduce the run's
stored ``boundary_acc`` rows exactly (tests/test_interpolate.py). Rows go to the ``tradeoffs``
table (``from_task`` = k - 1) through the store's writer, replacing earlier rows of that run and
switch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from store.queries import run_row
from store.tradeoffs import tradeoff_rows, write_tradeoffs

ALPHAS = tuple(i / 10 for i in range(11))  # 0.0, 0.1, ..., 1.0


class MissingWeights(FileNotFoundError):
    """The run has no saved weights for the task switch asked for (one line says which and why)."""


class _Collect:
    """A metric sink that keeps nothing: ``evaluate`` returns the values itself."""

    def add(self, step, tasks, metric, values) -> None:
        pass

    def flush(self) -> None:
        pass


def _weights_file(weights_dir: Path, task: int) -> Path:
    return weights_dir / f"after-task-{task}.pt"


def _run_config(store, run_id: int):
    from engine.config import stored_config

    row = run_row(store, run_id)
    if row is None:
        raise KeyError(f"there is no run {run_id} in {store.path}")
    try:
        return stored_config(row["config"])
    except Exception as err:  # a user's own run (README): not a config the engine can rebuild
        raise ValueError(f"run {run_id}'s config is not a CL Lab run config, its scenario cannot be rebuilt: "
                         f"{str(err).splitlines()[0]}") from None


def available_switches(store, run_id: int) -> list[int]:
    """The task switches k (new task k) for which the weights after task k - 1 and k are both saved."""
    d = store.artifacts_dir(run_id)
    saved = {int(p.stem.rsplit("-", 1)[1]) for p in d.glob("after-task-*.pt")} if d.is_dir() else set()
    return sorted(k for k in saved if k >= 2 and k - 1 in saved)


def _switches(store, run_id: int, config, task: int | None) -> list[int]:
    d = store.artifacts_dir(run_id)
    n = len(config.scenario.tasks or range(config.scenario.n_tasks))
    if task is not None:
        if not 2 <= task <= n:
            raise ValueError(f"--task must be a task switch from 2 to {n} (the new task k; the weights after "
                             f"tasks k-1 and k are interpolated), got {task}")
        wanted = [task]
    else:
        wanted = list(range(2, n + 1))
        if n < 2:
            raise ValueError(f"run {run_id} has {n} task: no task switch to interpolate across")
    if config.train.weights != "every":
        raise MissingWeights(f"run {run_id} was trained with train.weights {config.train.weights}: trade-off curves "
                             f"need the weights after every task; train it again with train.weights every")
    if not d.is_dir():
        raise MissingWeights(f"run {run_id} has no saved weights: the folder {d} is missing")
    missing = [_weights_file(d, j) for k in wanted for j in (k - 1, k) if not _weights_file(d, j).is_file()]
    if task is not None and missing:
        raise MissingWeights(f"run {run_id}: the weights for task switch {task} are missing: "
                             + ", ".join(str(p) for p in dict.fromkeys(missing)))
    ok = [k for k in wanted if _weights_file(d, k - 1).is_file() and _weights_file(d, k).is_file()]
    if not ok:
        raise MissingWeights(f"run {run_id}: no task switch has both weight files in {d} (missing: "
                             + ", ".join(p.name for p in dict.fromkeys(missing)) + ")")
    return ok


def interpolate_state(a: dict, b: dict, alpha: float) -> dict:
    """(1 - alpha) a + alpha b for every floating tensor (``torch.lerp``: exactly a at 0 and b at 1);
    other tensors are taken from the nearer end."""
    import torch

    out = {}
    for key, ta in a.items():
        tb = b[key]
        if torch.is_floating_point(ta):
            out[key] = torch.lerp(ta, tb.to(ta.dtype), float(alpha))
        else:
            out[key] = ta if alpha < 0.5 else tb
    return out


def compute_tradeoffs(store, run_id: int, task: int | None = None, alphas: Sequence[float] = ALPHAS,
                      write: bool = True) -> pd.DataFrame:
    """Interpolate run ``run_id`` across each task switch k (or only ``task`` = k) at ``alphas`` and
    evaluate every task; returns the long rows (run_id, from_task = k - 1, alpha, task, acc, loss)
    and, with ``write``, stores them in ``tradeoffs`` (replacing the run's rows for those switches).

    Raises ``KeyError`` (no such run), ``MissingWeights`` (weights not saved or files missing, named),
    ``ValueError`` (a task switch out of range, a config the engine cannot rebuild)."""
    import torch

    from engine.evaluation import ContinualEvaluation
    from engine.models import build_model
    from engine.scenarios import build_scenario

    config = _run_config(store, run_id)
    switches = _switches(store, run_id, config, task)
    scenario = build_scenario(config.scenario)
    evaluation = ContinualEvaluation([(t.test_x, t.test_y) for t in scenario.tasks], _Collect(), every=1,
                                     subset=None, class_mask=scenario.class_mask)
    net = build_model(config.model, scenario.input_shape, scenario.n_classes)
    d = store.artifacts_dir(run_id)
    weights = {j: torch.load(_weights_file(d, j), map_location="cpu", weights_only=True)
               for j in sorted({j for k in switches for j in (k - 1, k)})}
    rows: dict[str, list] = {"run_id": [], "from_task": [], "alpha": [], "task": [], "acc": [], "loss": []}
    tasks = list(range(1, scenario.n_tasks + 1))
    for k in switches:
        for alpha in alphas:
            net.load_state_dict(interpolate_state(weights[k - 1], weights[k], alpha))
            acc, loss = evaluation.evaluate(net, full=True)
            n = len(tasks)
            rows["run_id"] += [run_id] * n
            rows["from_task"] += [k - 1] * n
            rows["alpha"] += [float(alpha)] * n
            rows["task"] += tasks
            rows["acc"] += acc
            rows["loss"] += loss
    df = pd.DataFrame(rows)
    if write:
        write_tradeoffs(store, run_id, [k - 1 for k in switches], df)
    return df


def tradeoff_table(source, run_id: int) -> pd.DataFrame:
    """A run's stored trade-off curves, one row per (from_task, alpha): ``run_id``, ``from_task``,
    ``to_task`` (= from_task + 1, the new task k), ``alpha``, ``plasticity`` (accuracy on task k),
    ``stability`` (mean accuracy on the tasks before k), ``seen_acc`` (mean over tasks 1..k),
    ``acc`` (mean over every task) and ``task 1``, ``task 2``, ... (each task's accuracy).
    Empty (with these columns but the task ones) when the run has none."""
    long = tradeoff_rows(source, run_id)
    base = ["run_id", "from_task", "to_task", "alpha", "plasticity", "stability", "seen_acc", "acc"]
    if long.empty:
        return pd.DataFrame(columns=base)
    wide = long.pivot_table(index=["from_task", "alpha"], columns="task", values="acc", aggfunc="first")
    tasks = [int(t) for t in wide.columns]
    A = wide.to_numpy(dtype=float)
    out = wide.index.to_frame(index=False)
    out["from_task"] = out["from_task"].astype(int)
    k = out["from_task"].to_numpy() + 1
    t = np.asarray(tasks)[None, :]
    col = {tk: i for i, tk in enumerate(tasks)}
    out.insert(0, "run_id", int(run_id))
    out.insert(2, "to_task", k)
    out["plasticity"] = [A[r, col[kk]] if kk in col else np.nan for r, kk in enumerate(k)]
    with np.errstate(invalid="ignore"):
        earlier, seen = t < k[:, None], t <= k[:, None]
        out["stability"] = np.where(earlier.any(1), np.nansum(np.where(earlier, A, 0), 1) / np.maximum(earlier.sum(1), 1),
                                    np.nan)
        out["seen_acc"] = np.nansum(np.where(seen, A, 0), 1) / np.maximum(seen.sum(1), 1)
    out["acc"] = np.nanmean(A, 1)
    for i, tk in enumerate(tasks):
        out[f"task {tk}"] = A[:, i]
    return out


def tradeoff_curve(store, run_id: int, task: int | None = None, alphas: Sequence[float] = ALPHAS) -> pd.DataFrame:
    """Compute and store the run's trade-off curves (``compute_tradeoffs``), then return its
    ``tradeoff_table`` (restricted to the switch ``task`` when given)."""
    compute_tradeoffs(store, run_id, task, alphas)
    table = tradeoff_table(store, run_id)
    return table if task is None else table[table["to_task"] == task].reset_index(drop=True)


__all__ = ["ALPHAS", "MissingWeights", "available_switches", "compute_tradeoffs", "interpolate_state",
           "tradeoff_curve", "tradeoff_table"]
