"""Continual-learning metrics: their definitions as data, pure functions, and the store queries.

Each metric is defined once: a small pure function over the accuracy matrix or over the
continual-evaluation series, with its formula and source in the docstring; ``METRICS`` holds the same
facts as data for the app (``st.latex``) and ``docs/metrics.md`` (written by ``store/metric_docs.py``).

Data model (what the SQL layer fetches; tests build the same by hand):

- ``R``, the accuracy matrix: a ``(T+1) x T`` float array, ``R[i, j-1]`` = accuracy on task ``j``
  after training task ``i`` (row 0 = before training, ``b``), NaN where not measured. Built from the
  ``boundary_acc`` rows at step 0 and at each task's ``end_step``. In docstrings ``R[i][j]`` uses
  1-based task numbers.
- the continual-evaluation series: ``steps`` (n,) increasing global steps and ``A`` (n, T) with
  ``A[m, j-1]`` = accuracy ``A(j, steps[m])`` (metric ``acc``), NaN where missing.
  ``series_from_pairs`` builds both from per-task ``[(step, acc), ...]`` lists. The store's series
  is the ``acc`` rows plus, when ``eval.subset`` is null (the periodic and the boundary evaluations
  then use the same samples), the ``boundary_acc`` rows at step 0 and at task ends, so that the level
  just before a task switch is measured at the switch itself.
- ``spans``: ``{task: (start_step, end_step or None)}`` from ``task_boundaries``; task i trained over
  ``(start_i, end_i]``, ``end`` None while training.

Conventions (where the published definitions leave room):

- Every function returns ``(value, reason)``: ``value`` None exactly when the metric cannot be
  computed and ``reason`` says why. Nothing unavailable is ever reported as 0.
- A run still running (or stopped early) is summarised over what it has done: boundary metrics use
  ``k`` = the last task with an end-of-task evaluation, i.e. the formula with ``T := k`` (ACC averages
  R[k][j] over j <= k, BWT over i < k, FWT over i = 2..k, ...). Continual-evaluation metrics are
  taken at ``t`` = the last evaluated step, with ``k`` = the task being trained at ``t``.
- A matrix metric needs every cell its formula reads; a missing cell (e.g. no step-0 evaluation, or a
  Joint run in mode "all" with rows 0 and T only) makes it unavailable, naming the cells.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Value = tuple[float | None, str | None]
Spans = Mapping[int, tuple[int, int | None]]

WINDOWS = (10, 100)          # WF^w / WP^w windows, in evaluations (De Lange et al. report 10 and 100)
DEFAULT_TOLERANCE = 0.05     # stability-gap recovery: back within 0.05 absolute accuracy
TERMINAL_FRACTION = 0.1      # L2M terminal performance: last 10% of a training block
JOINT_STRATEGY = "joint"     # config.strategy.name of the Joint baseline (case-insensitive)
JOINT_CUMULATIVE = "cumulative"  # config.strategy.mode of the Joint reference for intransigence


# ---- the registry ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricInfo:
    key: str                 # the key in summary()
    title: str
    latex: str               # for st.latex
    source: str
    higher_is_better: bool | None
    tells: str               # what it says about stability / plasticity
    group: str               # "matrix" (task boundaries), "continual" (per-step), "l2m"
    needs: str = ""          # data it needs beyond the run's own accuracy matrix


_M: list[MetricInfo] = [
    MetricInfo("acc", "Average accuracy (ACC)",
               r"\mathrm{ACC} = \frac{1}{T}\sum_{j=1}^{T} R_{T,j}",
               "Lopez-Paz & Ranzato, GEM, NeurIPS 2017", True,
               "Overall end result: stability and plasticity together.", "matrix"),
    MetricInfo("task_il_acc", "Task-IL accuracy (Mammoth: masked at test time)",
               r"\mathrm{ACC}^{\mathrm{Task\text{-}IL}} = \frac{1}{T}\sum_{j=1}^{T} \tilde{R}_{T,j}",
               "Buzzega et al., DER, NeurIPS 2020 (Mammoth's Task-IL column of a class-IL run)", True,
               "The class-incremental model's accuracy when told each test sample's task: its logits masked to "
               "that task's classes at test time only (training stays class-incremental). R~ is the accuracy "
               "matrix of these masked evaluations. Not the task-incremental setting, which masks in training "
               "too.", "matrix", "a class-incremental run (its boundary_masked_acc rows)"),
    MetricInfo("bwt", "Backward transfer (BWT)",
               r"\mathrm{BWT} = \frac{1}{T-1}\sum_{i=1}^{T-1}\left(R_{T,i} - R_{i,i}\right)",
               "Lopez-Paz & Ranzato, GEM, NeurIPS 2017", True,
               "Stability: negative means forgetting of earlier tasks.", "matrix"),
    MetricInfo("fwt", "Forward transfer (FWT)",
               r"\mathrm{FWT} = \frac{1}{T-1}\sum_{i=2}^{T}\left(R_{i-1,i} - b_i\right)",
               "Lopez-Paz & Ranzato, GEM, NeurIPS 2017", True,
               "Zero-shot gain on the next task from learning earlier ones, against initialisation.",
               "matrix", "an evaluation before training (step 0)"),
    MetricInfo("forgetting", "Average forgetting (Chaudhry)",
               r"F_T = \frac{1}{T-1}\sum_{j=1}^{T-1}\Big(\max_{l \in \{1,\dots,T-1\}} R_{l,j} - R_{T,j}\Big)",
               "Chaudhry et al., Riemannian Walk, ECCV 2018", False,
               "Stability: how far each earlier task fell from its best earlier accuracy.", "matrix"),
    MetricInfo("forgetting_avalanche", "Average forgetting (Avalanche)",
               r"F^{\mathrm{AVL}}_T = \frac{1}{T-1}\sum_{j=1}^{T-1}\left(R_{j,j} - R_{T,j}\right)",
               "Avalanche (ContinualAI) forgetting: accuracy right after training minus now", False,
               "Stability, from the accuracy right after learning each task (equals -BWT).", "matrix"),
    MetricInfo("learning_accuracy", "Learning accuracy (LA)",
               r"\mathrm{LA} = \frac{1}{T}\sum_{i=1}^{T} R_{i,i}",
               "Riemer et al., MER, ICLR 2019", True,
               "Plasticity: accuracy on each task right after learning it.", "matrix"),
    MetricInfo("intransigence", "Intransigence",
               r"I = \frac{1}{T}\sum_{k=1}^{T}\left(a^{*}_{k} - R_{k,k}\right),\quad a^{*}_{k} = R^{\mathrm{joint}}_{k,k}",
               "Chaudhry et al., Riemannian Walk, ECCV 2018", False,
               "Plasticity lost: how much worse each new task is learned than by joint training.",
               "matrix", "a Joint run in mode 'cumulative' of the same scenario and seed"),
    MetricInfo("avg_incremental_acc", "Average incremental accuracy",
               r"\bar{A} = \frac{1}{T}\sum_{k=1}^{T}\frac{1}{k}\sum_{j=1}^{k} R_{k,j}",
               "Rebuffi et al., iCaRL, CVPR 2017 (as in PyCIL)", True,
               "The accuracy on everything seen so far, averaged over the whole sequence.", "matrix"),
    MetricInfo("min_acc", "Average minimum accuracy (min-ACC)",
               r"\min\text{-}\mathrm{ACC}_t = \frac{1}{k-1}\sum_{i=1}^{k-1}\min_{\mathrm{end}_i < n \le t} A(i, n)",
               "De Lange, van de Ven & Tuytelaars, ICLR 2023", True,
               "Worst-case stability: the lowest each earlier task fell to, exposing the stability gap.",
               "continual", "continual evaluation (acc rows)"),
    MetricInfo("wc_acc", "Worst-case accuracy (WC-ACC)",
               r"\mathrm{WC\text{-}ACC}_t = \frac{1}{k}A(k, t) + \Big(1 - \frac{1}{k}\Big)\min\text{-}\mathrm{ACC}_t",
               "De Lange, van de Ven & Tuytelaars, ICLR 2023", True,
               "Trade-off: current task accuracy with the worst case of earlier tasks.",
               "continual", "continual evaluation (acc rows)"),
    *[MetricInfo(f"wf{w}", f"Windowed forgetting WF^{w}",
                 r"\mathrm{WF}^{" + str(w) + r"} = \frac{1}{k}\sum_{j=1}^{k}\max\Big(0, \max_{m<n,\ n-m<" + str(w)
                 + r"} A(j,m) - A(j,n)\Big)",
                 "De Lange, van de Ven & Tuytelaars, ICLR 2023", False,
                 f"Stability: the largest drop of a task within {w} evaluations (transient forgetting).",
                 "continual", "continual evaluation (acc rows)") for w in WINDOWS],
    *[MetricInfo(f"wp{w}", f"Windowed plasticity WP^{w}",
                 r"\mathrm{WP}^{" + str(w) + r"} = \frac{1}{k}\sum_{j=1}^{k}\max\Big(0, \max_{m<n,\ n-m<" + str(w)
                 + r"} A(j,n) - A(j,m)\Big)",
                 "De Lange, van de Ven & Tuytelaars, ICLR 2023", True,
                 f"Plasticity: the largest gain of a task within {w} evaluations.",
                 "continual", "continual evaluation (acc rows)") for w in WINDOWS],
    MetricInfo("stability_gap", "Stability gap depth",
               r"\mathrm{gap}_{s,i} = \max\Big(0, A(i, n_s) - \min_{s < n \le \mathrm{end}_{k}} A(i, n)\Big)",
               "De Lange, van de Ven & Tuytelaars, ICLR 2023 (per-switch figure, CL Lab)", False,
               "Stability right after a task switch: the transient drop of earlier tasks. 0 (\"no dip\") where "
               "an earlier task never fell below its accuracy at the switch: a gap is a drop, so a rise counts "
               "as none and never offsets another task's dip in the mean.",
               "continual", "continual evaluation around a task switch"),
    MetricInfo("recovery_steps", "Stability gap recovery time",
               r"\rho_{s,i} = \min\{n \ge n^{\min}_{s,i} : A(i,n) \ge A(i,n_s) - \tau\} - s",
               "De Lange, van de Ven & Tuytelaars, ICLR 2023 (per-switch figure, CL Lab)", False,
               "How many steps earlier tasks take to climb back after a switch.",
               "continual", "continual evaluation around a task switch"),
    MetricInfo("terminal_performance", "Terminal performance (L2M)",
               r"\mathrm{TP}_j = \operatorname{mean}\big(\text{last }10\%\text{ of } A(j,n),\ \mathrm{start}_j < n \le \mathrm{end}_j\big)",
               "New et al., L2M (2023); l2metrics", True,
               "Plasticity: where each task's learning curve ends.", "l2m",
               "continual evaluation (acc rows)"),
    MetricInfo("performance_maintenance", "Performance maintenance (L2M)",
               r"\mathrm{PM} = \frac{1}{k-1}\sum_{j=1}^{k-1}\frac{1}{k-j}\sum_{i=j+1}^{k}\left(R_{i,j} - R_{j,j}\right)",
               "New et al., L2M (2023); l2metrics (mrlep)", True,
               "Stability: average change of each task after it was learned; negative is forgetting.",
               "l2m"),
    MetricInfo("forward_transfer_ratio", "Forward transfer ratio (L2M)",
               r"\mathrm{FTR} = \operatorname*{mean}_{i<j}\frac{R_{i,j}}{R_{i-1,j}}",
               "New et al., L2M (2023); l2metrics", True,
               "How training a task changes a not-yet-trained task (>1 helps).", "l2m"),
    MetricInfo("backward_transfer_ratio", "Backward transfer ratio (L2M)",
               r"\mathrm{BTR} = \operatorname*{mean}_{j<i}\frac{R_{i,j}}{R_{i-1,j}}",
               "New et al., L2M (2023); l2metrics", True,
               "How training a task changes an already-trained task (<1 is forgetting).", "l2m"),
    MetricInfo("forward_transfer_contrast", "Forward transfer contrast (L2M)",
               r"\mathrm{FTC} = \operatorname*{mean}_{i<j}\frac{R_{i,j} - R_{i-1,j}}{R_{i,j} + R_{i-1,j}}",
               "New et al., L2M (2023); l2metrics", True,
               "Forward transfer as a bounded contrast in [-1, 1].", "l2m"),
    MetricInfo("backward_transfer_contrast", "Backward transfer contrast (L2M)",
               r"\mathrm{BTC} = \operatorname*{mean}_{j<i}\frac{R_{i,j} - R_{i-1,j}}{R_{i,j} + R_{i-1,j}}",
               "New et al., L2M (2023); l2metrics", True,
               "Backward transfer as a bounded contrast in [-1, 1].", "l2m"),
    MetricInfo("relative_performance", "Performance relative to single-task experts (L2M)",
               r"\mathrm{RP}_j = \frac{\sum_{n \le L} A(j,n)}{\sum_{n \le L} A^{\mathrm{STE}}_j(n)}",
               "New et al., L2M (2023); l2metrics", True,
               "Plasticity against a learner that only ever saw this task.", "l2m",
               "single-task expert runs"),
    MetricInfo("sample_efficiency", "Sample efficiency (L2M)",
               r"\mathrm{SE}_j = \frac{s_j}{s^{\mathrm{STE}}_j}\cdot\frac{e^{\mathrm{STE}}_j}{e_j}",
               "New et al., L2M (2023); l2metrics 3.1 (s: max of the centred moving average; e: 0-based index "
               "of the evaluation where it is first reached; tasks with e = 0 left out)", True,
               "Plasticity: how high and how fast each task saturates against its expert.", "l2m",
               "single-task expert runs"),
]
METRICS: dict[str, MetricInfo] = {m.key: m for m in _M}


# ---- helpers ---------------------------------------------------------------------------------------

def _pad(R) -> tuple[np.ndarray, int]:
    """R as a (T+1) x (T+1) array M with M[i, j] = R[i][j] for 1-based j (column 0 unused)."""
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] + 1:
        raise ValueError(f"the accuracy matrix must be (T+1) x T, got {R.shape}")
    T = R.shape[1]
    M = np.full((T + 1, T + 1), np.nan)
    M[:, 1:] = R
    return M, T


def tasks_done(R) -> int:
    """The last row i >= 1 of R with a measurement: the tasks finished so far (0 if none)."""
    R = np.asarray(R, dtype=float)
    rows = np.flatnonzero(np.isfinite(R[1:]).any(axis=1))
    return int(rows[-1]) + 1 if rows.size else 0


def _setup(R, k: int | None, at_least: int = 1) -> tuple[np.ndarray, int, str | None]:
    M, T = _pad(R)
    k = tasks_done(R) if k is None else int(k)
    if k > T:
        raise ValueError(f"k={k} > T={T}")
    if k < at_least:
        if k == 0:
            return M, k, "no task finished yet (no evaluation at the end of a task)"
        return M, k, f"needs at least {at_least} finished tasks (this run has {k})"
    return M, k, None


def _need(M: np.ndarray, cells: Iterable[tuple[int, int]], what: str = "accuracy matrix") -> str | None:
    """None if every cell is measured, else a reason naming the missing cells and why."""
    missing = [(i, j) for i, j in cells if not math.isfinite(M[i, j])]
    if not missing:
        return None
    rows = sorted({i for i, _ in missing})
    why = "; ".join("no evaluation before training (step 0)" if i == 0
                    else f"no full evaluation at the end of task {i}" for i in rows)
    shown = ", ".join(f"R[{i}][{j}]" for i, j in missing[:6]) + (", ..." if len(missing) > 6 else "")
    return f"{what} lacks {shown} ({why})"


def _avg(res: tuple) -> Value:
    """The mean of a per-task result (array or {task: value}), keeping its reason."""
    per, why = res
    if per is None:
        return None, why
    vals = list(per.values()) if isinstance(per, dict) else per
    return _mean(vals), None


def _mean(xs) -> float:
    if isinstance(xs, np.ndarray):
        return float(xs.mean())
    xs = list(xs)
    return float(sum(xs)) / len(xs)


# ---- metrics over the accuracy matrix -------------------------------------------------------------

def acc(R, k: int | None = None) -> Value:
    """Average accuracy, GEM (Lopez-Paz & Ranzato 2017): ACC = 1/T sum_j R[T][j].
    After k < T finished tasks: 1/k sum_{j<=k} R[k][j]."""
    M, k, why = _setup(R, k)
    cells = [(k, j) for j in range(1, k + 1)]
    why = why or _need(M, cells)
    return (None, why) if why else (_mean([M[c] for c in cells]), None)


def task_il_acc(R_masked, k: int | None = None, config: Mapping | None = None) -> Value:
    """Mammoth's Task-IL figure of a class-incremental run (Buzzega et al. 2020): ACC over the accuracy
    matrix of the evaluations with each sample's logits masked to its task's classes at test time
    (``boundary_masked_acc``). ``k``: the tasks finished (of the unmasked matrix)."""
    if R_masked is None:
        setting = ((config or {}).get("scenario") or {}).get("setting", "class")
        if setting != "class":
            own = "its acc is already masked to each task" if setting == "task" else "its tasks share every output"
            return None, f"recorded for class-incremental runs only (this run is {setting}-incremental: {own})"
        return None, "no task-masked evaluation recorded (the run was trained before CL Lab recorded them)"
    return acc(R_masked, k)


def bwt(R, k: int | None = None) -> Value:
    """Backward transfer, GEM: BWT = 1/(T-1) sum_{i<T} (R[T][i] - R[i][i]); averaged over tasks,
    not over pairs. Negative means forgetting."""
    M, k, why = _setup(R, k, 2)
    if why:
        return None, why
    cells = [(k, i) for i in range(1, k)] + [(i, i) for i in range(1, k)]
    why = _need(M, cells)
    return (None, why) if why else (_mean([M[k, i] - M[i, i] for i in range(1, k)]), None)


def fwt(R, k: int | None = None) -> Value:
    """Forward transfer, GEM: FWT = 1/(T-1) sum_{i=2..T} (R[i-1][i] - b[i]), b = R[0] (the
    evaluation at initialisation). Without a step-0 evaluation it is unavailable, never 0."""
    M, k, why = _setup(R, k, 2)
    if why:
        return None, why
    cells = [(i - 1, i) for i in range(2, k + 1)] + [(0, i) for i in range(2, k + 1)]
    why = _need(M, cells)
    return (None, why) if why else (_mean([M[i - 1, i] - M[0, i] for i in range(2, k + 1)]), None)


def forgetting_per_task(R, k: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """Chaudhry et al. 2018 (RWalk): f[k][j] = max_{l in 1..k-1} R[l][j] - R[k][j] for j < k.
    As metrics.md writes it, the max runs over all rows 1..k-1, including rows before j was
    trained (they matter only where an unseen task already scores above its learned level)."""
    M, k, why = _setup(R, k, 2)
    if why:
        return None, why
    why = _need(M, [(l, j) for j in range(1, k) for l in range(1, k + 1)])
    if why:
        return None, why
    return np.array([M[1:k, j].max() - M[k, j] for j in range(1, k)]), None


def forgetting(R, k: int | None = None) -> Value:
    """Average forgetting (Chaudhry et al. 2018): F_k = 1/(k-1) sum_{j<k} f[k][j]
    (see ``forgetting_per_task``)."""
    return _avg(forgetting_per_task(R, k))


def forgetting_avalanche(R, k: int | None = None) -> Value:
    """Avalanche's forgetting: 1/(k-1) sum_{j<k} (R[j][j] - R[k][j]), accuracy right after training
    task j minus now. Equal to -BWT by construction; differs from Chaudhry's when a task's best
    accuracy came after it was trained."""
    M, k, why = _setup(R, k, 2)
    if why:
        return None, why
    why = _need(M, [(j, j) for j in range(1, k)] + [(k, j) for j in range(1, k)])
    return (None, why) if why else (_mean([M[j, j] - M[k, j] for j in range(1, k)]), None)


def learning_accuracy(R, k: int | None = None) -> Value:
    """Learning accuracy (Riemer et al. 2019): LA = 1/T sum_i R[i][i]."""
    M, k, why = _setup(R, k)
    cells = [(i, i) for i in range(1, k + 1)]
    why = why or _need(M, cells)
    return (None, why) if why else (_mean([M[c] for c in cells]), None)


def intransigence_per_task(R, R_ref, k: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """Chaudhry et al. 2018: I_i = a*_i - R[i][i] for i = 1..k, with a*_i = R_ref[i][i], the accuracy
    on task i of a Joint run (mode "cumulative", same scenario and seed) after training on 1..i."""
    M, k, why = _setup(R, k)
    if why:
        return None, why
    if R_ref is None:
        return None, ("no Joint reference: needs a run with strategy joint, mode 'cumulative', "
                      "of the same scenario and seed")
    Mref, Tref = _pad(R_ref)
    if Tref != M.shape[1] - 1:
        return None, f"the Joint reference has {Tref} tasks, this run {M.shape[1] - 1}"
    why = _need(M, [(i, i) for i in range(1, k + 1)]) or _need(
        Mref, [(i, i) for i in range(1, k + 1)], "the Joint reference's accuracy matrix")
    if why:
        return None, why
    return np.array([Mref[i, i] - M[i, i] for i in range(1, k + 1)]), None


def intransigence(R, R_ref, k: int | None = None) -> Value:
    """Average intransigence 1/k sum_{i<=k} I_i (see ``intransigence_per_task``). Lower is better."""
    return _avg(intransigence_per_task(R, R_ref, k))


def acc_curve(R, k: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """ACC_i = 1/i sum_{j<=i} R[i][j] for i = 1..k: the accuracy on all tasks seen after each task."""
    M, k, why = _setup(R, k)
    why = why or _need(M, [(i, j) for i in range(1, k + 1) for j in range(1, i + 1)])
    if why:
        return None, why
    return np.array([M[i, 1:i + 1].mean() for i in range(1, k + 1)]), None


def avg_incremental_acc(R, k: int | None = None) -> Value:
    """Average incremental accuracy (iCaRL; PyCIL): the mean over k of the accuracy on all classes
    seen up to k. CL Lab records per-task accuracies, so the accuracy on the classes seen up to i
    is taken as 1/i sum_{j<=i} R[i][j], exact when tasks have equally many test samples (as in the
    Split benchmarks); AIA = 1/k sum_{i<=k} ACC_i (see ``acc_curve``)."""
    return _avg(acc_curve(R, k))


def performance_maintenance_per_task(R, k: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """L2M performance maintenance (l2metrics' default 'mrlep'), per task j < k: the mean over later
    evaluations i = j+1..k of (TP of evaluation i - TP of the evaluation right after j was learned);
    an evaluation block's TP is its accuracy, so PM_j = mean_{i>j} (R[i][j] - R[j][j])."""
    M, k, why = _setup(R, k, 2)
    if why:
        return None, why
    why = _need(M, [(i, j) for j in range(1, k) for i in range(j, k + 1)])
    if why:
        return None, why
    return np.array([(M[j + 1:k + 1, j] - M[j, j]).mean() for j in range(1, k)]), None


def performance_maintenance(R, k: int | None = None) -> Value:
    """L2M performance maintenance: the mean over tasks of ``performance_maintenance_per_task``.
    Negative means forgetting."""
    return _avg(performance_maintenance_per_task(R, k))


def transfer(R, direction: str = "forward", kind: str = "ratio", k: int | None = None) -> Value:
    """L2M transfer between task pairs (l2metrics ``Transfer``): training task i changes task j's
    evaluation from tp1 = R[i-1][j] to tp2 = R[i][j]. Ratio tp2/tp1, or contrast
    (tp2 - tp1)/(tp1 + tp2). Forward: j not yet trained (1 <= i <= k, i < j <= T); backward: j already
    trained (j < i <= k). The mean over valid pairs; pairs with a missing cell or a zero denominator
    are skipped (l2metrics skips tp1 = 0 for the ratio)."""
    if direction not in ("forward", "backward") or kind not in ("ratio", "contrast"):
        raise ValueError("direction is forward|backward, kind is ratio|contrast")
    M, k, why = _setup(R, k)
    if why:
        return None, why
    T = M.shape[1] - 1
    if direction == "forward":
        pairs = [(i, j) for i in range(1, k + 1) for j in range(i + 1, T + 1)]
    else:
        pairs = [(i, j) for i in range(2, k + 1) for j in range(1, i)]
    if not pairs:
        return None, (f"no {direction} task pair: needs a task trained "
                      + ("before another task" if direction == "forward" else "after another task"))
    vals = []
    for i, j in pairs:
        tp1, tp2 = M[i - 1, j], M[i, j]
        den = tp1 if kind == "ratio" else tp1 + tp2
        if math.isfinite(tp1) and math.isfinite(tp2) and den != 0:
            vals.append(tp2 / tp1 if kind == "ratio" else (tp2 - tp1) / den)
    if not vals:
        return None, f"all {len(pairs)} {direction} pairs skipped (missing cells or zero denominators)"
    return _mean(vals), None


# ---- metrics over the continual-evaluation series ------------------------------------------------

def series_from_pairs(per_task: Mapping[int, Sequence[tuple[int, float]]],
                      n_tasks: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``{task: [(step, acc), ...]}`` -> (steps, A) with A[m, j-1] = acc of task j at steps[m]."""
    T = n_tasks or max(per_task, default=0)
    steps = np.array(sorted({s for pts in per_task.values() for s, _ in pts}), dtype=np.int64)
    A = np.full((steps.size, T), np.nan)
    for j, pts in per_task.items():
        for s, v in pts:
            A[np.searchsorted(steps, s), j - 1] = v
    return steps, A


def _t(steps: np.ndarray, t: int | None) -> int | None:
    if t is not None:
        return int(t)
    return int(steps[-1]) if len(steps) else None


def current_task(spans: Spans, t: int) -> int | None:
    """The task being trained at step t: the one with start < t <= end (end None: still training);
    after the last end, the last task; None before any training."""
    inside = [j for j, (s, e) in spans.items() if s < t and (e is None or t <= e)]
    if inside:
        return max(inside)
    started = [j for j, (s, _) in spans.items() if s < t]
    return max(started) if started else None


def _task_starts(spans: Spans, T: int) -> np.ndarray:
    """Start step of each task 1..T: its own boundary, else that of the next boundary row above it
    (a Joint run in mode "all" has one row, task T, whose span covers every task). NaN if none."""
    starts = np.full(T, np.nan)
    for j in range(1, T + 1):
        above = [s for task, (s, _) in spans.items() if task >= j]
        if j in spans:
            starts[j - 1] = spans[j][0]
        elif above:
            starts[j - 1] = min(above)
    return starts


def _at(steps, A, t) -> tuple[int | None, str | None]:
    if A.shape[0] == 0:
        return None, "no continual evaluation recorded (no 'acc' rows; set eval.every)"
    m = int(np.searchsorted(steps, t, side="right")) - 1
    return (m, None) if m >= 0 else (None, f"no continual evaluation at or before step {t}")


def _where(steps, A, spans: Spans, t: int | None):
    """The common start of the metrics at a step t (default: the last evaluation): the arrays, t, the
    row m of the last evaluation at or before t, the task k trained at t; or the reason there is none."""
    steps, A = np.asarray(steps), np.asarray(A, dtype=float)
    t = _t(steps, t)
    m, why = _at(steps, A, t if t is not None else 0)
    if why:
        return None, why
    k = current_task(spans, t)
    if k is None:
        return None, "training has not started at the last evaluation"
    return (steps, A, t, m, k), None


def min_acc_per_task(steps, A, spans: Spans, t: int | None = None, cache=None) -> tuple[dict | None, str | None]:
    """De Lange et al. 2023: for each earlier task i < k (k = task trained at t),
    min_{end_i < n <= t} A(i, n), the lowest it has fallen to since it was learned. ``cache``
    (``store.run_cache``, t the last evaluation only): the minima kept from the last refresh."""
    if cache is not None and t is not None:
        raise ValueError("the cache holds the minima up to the last evaluation only")
    where, why = _where(steps, A, spans, t)
    if where is None:
        return None, why
    steps, A, t, m, k = where
    if k < 2:
        return None, "no earlier task yet (task 1 is training)"
    out = {}
    for i in range(1, k):
        end = spans.get(i, (None, None))[1]
        if end is None:
            return None, f"task {i} has no end step of its own (trained jointly with later tasks)"
        if cache is not None:
            low, count = cache.min_after(i, end)
        else:
            low, count = _min_after(steps, A[:, i - 1], end, m + 1)
        if count == 0:
            return None, f"no evaluation of task {i} after its end (step {end})"
        out[i] = low
    return out, None


def _min_after(steps, column, end: int, stop: int, lo: int = 0) -> tuple[float, int]:
    """(the minimum, the number) of the measured values of ``column`` at rows lo..stop-1 whose step
    is after ``end`` (steps increase); (inf, 0) if none."""
    vals = column[max(lo, int(np.searchsorted(steps, end, side="right"))):stop]
    vals = vals[np.isfinite(vals)]
    return (float(vals.min()), int(vals.size)) if vals.size else (math.inf, 0)


def min_acc(steps, A, spans: Spans, t: int | None = None) -> Value:
    """min-ACC_t = 1/(k-1) sum_{i<k} min_{end_i < n <= t} A(i, n) (De Lange et al. 2023)."""
    return _avg(min_acc_per_task(steps, A, spans, t))


def wc_acc(steps, A, spans: Spans, t: int | None = None, min_acc_t: Value | None = None) -> Value:
    """WC-ACC_t = 1/k A(k, t) + (1 - 1/k) min-ACC_t (De Lange et al. 2023). For k = 1 the min-ACC term
    has weight 0, so WC-ACC = A(1, t). ``min_acc_t``: min-ACC at t if already computed."""
    where, why = _where(steps, A, spans, t)
    if where is None:
        return None, why
    steps, A, t, m, k = where
    if steps[m] != t or not math.isfinite(A[m, k - 1]):
        return None, f"no evaluation of the current task {k} at step {t}"
    cur = float(A[m, k - 1])
    if k == 1:
        return cur, None
    mn, why = min_acc(steps, A, spans, t) if min_acc_t is None else min_acc_t
    return (None, why) if mn is None else (cur / k + (1 - 1 / k) * mn, None)


def _sliding_max(P: np.ndarray, L: int) -> np.ndarray:
    """out[i] = max(P[i:i+L]) along axis 0, in O(n log L): maxima over doubling spans, then two
    overlapping spans of length p (the largest power of 2 <= L) cover each window."""
    M, p = P, 1
    while 2 * p <= L:
        M = np.maximum(M[:-p], M[p:])       # M[i] = max(P[i:i+2p])
        p *= 2
    n = P.shape[0] - L + 1
    return np.maximum(M[:n], M[L - p:L - p + n])


def _window_drops(V: np.ndarray, w: int, lo: int = 0) -> np.ndarray:
    """For each row n >= lo of V (evaluations x tasks, NaN where not measured): the largest
    V[m] - V[n] over the measured m with n - w < m < n; NaN or -inf where there is no such pair.
    Rows before lo serve only as the window of the rows after them."""
    X = np.where(np.isnan(V), -np.inf, V)
    if X.shape[0] <= w:                     # every pair is inside the window: a running maximum
        prev = np.concatenate([np.full((1, X.shape[1]), -np.inf), np.maximum.accumulate(X, axis=0)[:-1]])
    else:                                   # the maximum of the w-1 evaluations before each one
        P = np.concatenate([np.full((w - 1, X.shape[1]), -np.inf), X])[:-1]
        prev = _sliding_max(P, w - 1)
    with np.errstate(invalid="ignore"):
        return prev[lo:] - V[lo:]


def windowed_per_task(steps, A, spans: Spans, w: int, t: int | None = None,
                      increase: bool = False, cache=None) -> tuple[dict | None, str | None]:
    """Per task j <= k (the tasks whose training has started by t): the largest drop
    max_{m<n, n-m<w} (A(j,m) - A(j,n)) (or, with ``increase``, the largest rise A(j,n) - A(j,m)) over
    its evaluation history from the start of its training (the evaluation at start_j, the model
    before training j, included) to t; m, n count evaluations. Floored at 0, as the reference code
    initialises the maximum to 0. A task with fewer than two evaluations has no pair and is left out.
    ``cache`` (``store.run_cache``, t the last evaluation only): the drops kept from the last refresh."""
    if w < 2:
        raise ValueError("the window must span at least 2 evaluations")
    if cache is not None and t is not None:
        raise ValueError("the cache holds the drops up to the last evaluation only")
    where, why = _where(steps, A, spans, t)
    if where is None:
        return None, why
    steps, A, t, m, k = where
    starts = _task_starts(spans, A.shape[1])[:k]
    if cache is not None:                   # the largest drops kept from the last refresh
        found = [cache.largest_drop(j + 1, starts[j], w, increase) for j in range(k)]
        best, ok = np.array([b for b, _ in found]), np.array([[a for _, a in found]])
    else:
        V = A[: m + 1, :k].copy()
        V[steps[: m + 1, None] < starts[None, :]] = np.nan
        drops = _window_drops(-V if increase else V, w)
        ok = np.isfinite(drops)
        best = np.where(ok, drops, -np.inf).max(axis=0)
    out = {j + 1: max(0.0, float(best[j])) for j in range(k) if ok[:, j].any()}
    if not out:
        return None, "fewer than two evaluations of any trained task"
    return out, None


def windowed_forgetting(steps, A, spans: Spans, w: int, t: int | None = None) -> Value:
    """WF^w (De Lange et al. 2023): the mean over tasks of the largest accuracy drop within w
    evaluations (see ``windowed_per_task``)."""
    return _avg(windowed_per_task(steps, A, spans, w, t))


def windowed_plasticity(steps, A, spans: Spans, w: int, t: int | None = None) -> Value:
    """WP^w (De Lange et al. 2023): the same with the largest increase A(j,n) - A(j,m)."""
    return _avg(windowed_per_task(steps, A, spans, w, t, increase=True))


def stability_gaps(steps, A, spans: Spans, tolerance: float = DEFAULT_TOLERANCE,
                   t: int | None = None, cache=None) -> list[dict]:
    """Per task switch s = start_k (k >= 2) and per earlier task i < k:

    - before = A(i, n_s), the last evaluation at or before the switch;
    - min, min_step over the evaluations in (s, min(end_k, t)] (task k's span, so far if training);
    - depth = max(0, before - min): the drop, as De Lange et al. (2023) define the gap. When the task
      never fell below ``before`` (it held or improved) depth is 0 and ``reason`` says "no dip": a
      rise is not a negative gap, and must not offset another task's dip in the means;
    - recovery_steps = (first evaluation step >= min_step with A(i, n) >= before - tolerance) - s,
      0 if the accuracy never left the band; None with ``reason`` if not back within the span.

    Each record: {switch_step, from_task, to_task, depth (mean over old tasks), recovery_steps (mean,
    None unless all recovered), tasks: [{task, before, min, min_step, depth, recovered_step,
    recovery_steps, reason}], reason}. ``cache`` (``store.run_cache``): the records of the switches
    whose task has ended, kept from the last refresh."""
    steps, A = np.asarray(steps), np.asarray(A, dtype=float)
    t = _t(steps, t)
    records: list[dict] = []
    if t is None:
        return records
    for k in sorted(spans):
        if k < 2 or (k - 1) not in spans or spans[k - 1][1] is None:
            continue
        s, end_k = spans[k]
        if s >= t:
            continue
        if cache is not None and end_k is not None and end_k <= t:  # final once task k has ended
            records.append(cache.memo(("gap", k, s, end_k, tolerance), end_k,
                                      lambda: _switch_gap(steps, A, k, s, end_k, t, tolerance)))
        else:
            records.append(_switch_gap(steps, A, k, s, end_k, t, tolerance))
    return records


def _switch_gap(steps, A, k: int, s: int, end_k: int | None, t: int, tolerance: float) -> dict:
    """The record of ``stability_gaps`` for the switch to task k at step s."""
    hi = t if end_k is None else min(end_k, t)
    rec: dict[str, Any] = {"switch_step": int(s), "from_task": k - 1, "to_task": k,
                           "depth": None, "recovery_steps": None, "tasks": [], "reason": None}
    lo, up = int(np.searchsorted(steps, s, side="right")), int(np.searchsorted(steps, hi, side="right"))
    pre = lo - 1  # the last evaluation at or before the switch
    if pre < 0:
        rec["reason"] = f"no evaluation at or before the switch (step {s})"
        return rec
    if up == lo:
        rec["reason"] = f"no evaluation after the switch (step {s}) yet"
        return rec
    still = end_k is None or t < end_k
    for i in range(1, k):
        before = A[pre, i - 1]
        vals = A[lo:up, i - 1]                   # the evaluations in (s, hi]: steps increase
        ok = np.isfinite(vals)
        item: dict[str, Any] = {"task": i, "before": None, "min": None, "min_step": None,
                                "depth": None, "recovered_step": None, "recovery_steps": None,
                                "reason": None}
        rec["tasks"].append(item)
        if not math.isfinite(before) or not ok.any():
            item["reason"] = f"task {i} not evaluated around the switch"
            continue
        v = np.where(ok, vals, np.inf)
        a = int(v.argmin())                       # first minimum (ties: earliest)
        thr = before - tolerance
        item.update(before=float(before), min=float(v[a]), min_step=int(steps[lo + a]),
                    depth=max(0.0, float(before - v[a])))
        if v[a] >= before:
            item.update(recovered_step=int(s), recovery_steps=0,
                        reason=f"no dip: never below {before:.3f}, its accuracy at the switch")
            continue
        if v[a] >= thr:
            item.update(recovered_step=int(s), recovery_steps=0)
            continue
        back = np.flatnonzero(ok[a:] & (vals[a:] >= thr))
        if back.size:
            n = int(steps[lo + a + back[0]])
            item.update(recovered_step=n, recovery_steps=n - int(s))
        else:
            item["reason"] = (f"task {i} not back within {tolerance:g} of {before:.3f} by step "
                              f"{int(steps[up - 1])}" + (f" (task {k} still training)" if still
                                                          else f" (end of task {k})"))
    depths = [x["depth"] for x in rec["tasks"] if x["depth"] is not None]
    rec["depth"] = _mean(depths) if depths else None
    recs = [x["recovery_steps"] for x in rec["tasks"]]
    if recs and all(r is not None for r in recs):
        rec["recovery_steps"] = _mean(recs)
    elif not depths:
        rec["reason"] = "no earlier task evaluated around the switch"
    else:
        rec["reason"] = f"{sum(r is None for r in recs)} of {len(recs)} earlier tasks not recovered"
    return rec


def switch_dips(steps, A, spans: Spans, early: float = 0.25) -> list[dict]:
    """The stability gap of the earlier tasks taken together, one record a task switch (to task k >= 2):
    ``before``, the mean accuracy of tasks 1..k-1 at the switch; ``lowest``, its minimum over the first
    ``early`` share of task k's steps; ``end``, its value when task k ends; ``fall`` = before - lowest;
    ``recovered`` = (end - lowest) / fall, the share of the fall won back (None without a fall).
    The demo's workload is chosen so that the falls average at least 0.10 and half is recovered."""
    curves = continual_curves(steps, A, spans)
    st, old = curves["step"], curves["stability"]
    out = []
    for k in sorted(spans):
        s, e = spans[k]
        if k < 2 or e is None:
            continue
        at_or_before = np.flatnonzero((st <= s) & np.isfinite(A[:, :k - 1]).all(1))
        window = (st > s) & (st <= s + max(1, math.ceil(early * (e - s))))
        at_end = np.flatnonzero(st == e)
        if not at_or_before.size or not window.any() or not at_end.size:
            continue
        before = float(np.nanmean(A[at_or_before[-1], :k - 1]))
        lowest, end = float(np.nanmin(old[window])), float(old[at_end[0]])
        fall = before - lowest
        out.append({"to_task": k, "switch_step": int(s), "before": before, "lowest": lowest, "end": end,
                    "fall": fall, "recovered": (end - lowest) / fall if fall > 0 else None})
    return out


def stability_gap(records: Sequence[dict]) -> Value:
    """Mean gap depth over every (switch, earlier task) pair of ``stability_gaps``."""
    depths = [x["depth"] for r in records for x in r["tasks"] if x["depth"] is not None]
    if not depths:
        return None, ("no task switch with continual evaluation around it" if not records
                      else "; ".join(r["reason"] or "" for r in records))
    return _mean(depths), None


def recovery_time(records: Sequence[dict]) -> Value:
    """Mean recovery_steps over every (switch, earlier task) pair of ``stability_gaps``; None (with the
    count) when any pair did not recover, since a mean over the recovered ones would flatter."""
    items = [x for r in records for x in r["tasks"] if x["depth"] is not None]
    if not items:
        return None, stability_gap(records)[1]
    bad = [x for x in items if x["recovery_steps"] is None]
    if bad:
        return None, f"{len(bad)} of {len(items)} (switch, task) pairs never recovered: {bad[0]['reason']}"
    return _mean([x["recovery_steps"] for x in items]), None


# ---- L2M over learning curves --------------------------------------------------------------------

def learning_curve(steps, A, spans: Spans, task: int, t: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A task's learning curve while it trains: (steps since start_task, A(task, n)) for the
    evaluations n in (start, end] (to t while training)."""
    steps, A = np.asarray(steps), np.asarray(A, dtype=float)
    if task not in spans or A.shape[0] == 0:
        return np.array([], dtype=np.int64), np.array([])
    s, e = spans[task]
    hi = _t(steps, t) if e is None else e
    sel = slice(np.searchsorted(steps, s, side="right"), np.searchsorted(steps, hi, side="right"))  # steps increase
    v = A[sel, task - 1]
    ok = np.isfinite(v)
    return (steps[sel] - s)[ok], v[ok]


def terminal_performance(values, frac: float = TERMINAL_FRACTION) -> Value:
    """L2M terminal performance of a training block: the mean of its last ``frac`` (10%) of points,
    at least one."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return None, "no evaluation during the training block"
    return _mean(v[-max(1, math.ceil(frac * v.size)):]), None


def relative_performance(curve, expert) -> Value:
    """L2M performance relative to a single-task expert (STE): the learner's summed performance over
    the STE's, over the same experiences. An experience here is a training step, so both curves
    (steps since task start, acc) are cut to L = the shorter one's last step and compared as means
    (equal to the sum ratio when both evaluate every k steps)."""
    xs, ys = np.asarray(curve[0]), np.asarray(curve[1], dtype=float)
    xe, ye = np.asarray(expert[0]), np.asarray(expert[1], dtype=float)
    if xs.size == 0 or xe.size == 0:
        return None, "no learning curve" if xs.size == 0 else "the expert has no learning curve"
    L = min(xs[-1], xe[-1])
    num, den = ys[xs <= L].mean(), ye[xe <= L].mean()
    if den == 0:
        return None, "the expert's performance is 0"
    return float(num / den), None


SATURATION_CONVENTIONS = ("l2metrics", "steps")


def l2m_smooth(y, window: int | None = None) -> np.ndarray:
    """l2metrics' moving average: a flat centred window of ``window`` points (by default, or when
    the curve is shorter, min(int(0.2 n), 100)) over the curve with reflected ends, the output as
    long as the input; no smoothing under 3 points."""
    y = np.asarray(y, dtype=float)
    n = y.size
    w = int(window) if window is not None and n >= window else min(int(0.2 * n), 100)
    if w < 3:
        return y
    padded = np.r_[y[w - 1:0:-1], y, y[-2:-w - 1:-1]]
    out = np.convolve(np.ones(w) / w, padded, mode="valid")
    return out[int(np.floor(w / 2 - 1)): -int(np.ceil(w / 2))]


def saturation(curve, window: int | None = None, convention: str = "l2metrics") -> tuple[float, int]:
    """(saturation value, experiences to saturation) of a learning curve (steps since task start, acc).

    ``l2metrics`` (the default, as l2metrics 3.1's ``get_block_saturation_perf``): the maximum of
    ``l2m_smooth(acc)``, and the 0-based index of the first evaluation that reaches it (an experience
    is one evaluation of the curve). ``steps`` (CL Lab's earlier convention, departing from l2metrics):
    a trailing moving average over ``window`` points (default as above), and the training steps since
    the task began at the first maximum, which keeps it causal and in the unit of the x axis."""
    x, y = np.asarray(curve[0]), np.asarray(curve[1], dtype=float)
    if convention == "l2metrics":
        smoothed = l2m_smooth(y, window)
        a = int(np.argmax(smoothed))                    # ties: the first
        return float(smoothed[a]), a
    n = y.size
    w = min(int(0.2 * n), 100) if window is None else int(window)
    if w >= 2:
        c = np.concatenate([[0.0], np.cumsum(y)])
        idx = np.arange(n)
        lo = np.maximum(0, idx - w + 1)
        y = (c[idx + 1] - c[lo]) / (idx + 1 - lo)
    a = int(np.argmax(y))
    return float(y[a]), int(x[a])


def sample_efficiency(curve, expert, window: int | None = None, convention: str = "l2metrics") -> Value:
    """L2M sample efficiency: (s / s_STE) x (e_STE / e), s the saturation value and e the experiences
    to saturation of the learner's and the expert's learning curves (``saturation``). As l2metrics,
    a task whose learner or expert saturates at its first point (e = 0) has no value and is left out
    of the mean."""
    if len(curve[1]) == 0 or len(expert[1]) == 0:
        return None, "no learning curve" if len(curve[1]) == 0 else "the expert has no learning curve"
    s, e = saturation(curve, window, convention)
    se, ee = saturation(expert, window, convention)
    if e == 0 or ee == 0:
        return None, ("saturation at the first evaluation " + ("of the expert" if ee == 0 else "of the learner")
                      + " (l2metrics leaves such a task out)")
    if se == 0:
        return None, "the expert's saturation value is 0"
    return float(s / se * (ee / e)), None


# ---- the store: loading runs set-based ----------------------------------------------------------

@dataclass
class RunData:
    id: int
    name: str
    status: str
    config: dict
    n_tasks: int
    R: np.ndarray            # (T+1) x T
    steps: np.ndarray        # (n,)
    A: np.ndarray            # (n, T)
    spans: dict[int, tuple[int, int | None]]
    last_step: int | None
    R_masked: np.ndarray | None = None  # (T+1) x T from boundary_masked_acc rows; None: none recorded


_IDS = "SELECT unnest(?::INTEGER[])"


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _is_joint_cumulative(cfg: dict) -> bool:
    st = cfg.get("strategy") or {}
    return (str(st.get("name", "")).lower() == JOINT_STRATEGY
            and str(st.get("mode", "")).lower() == JOINT_CUMULATIVE)


def _expert_task(cfg: dict) -> int | None:
    tasks = (cfg.get("scenario") or {}).get("tasks")
    return int(tasks[0]) if isinstance(tasks, list) and len(tasks) == 1 else None


# Scenario settings added after runs were first stored, with the value every earlier run had: a
# run stored without one and a run stored with its old value describe the same scenario. (A new
# scenario setting whose default keeps the old behaviour gets a line here.)
SCENARIO_KEYS_ADDED = {"normalize": True}


def _scenario_key(cfg: dict, drop: tuple[str, ...] = ()) -> str:
    """The scenario object as a reference lookup compares it (``drop``: keys ignored on both sides)."""
    sc = {k: v for k, v in (cfg.get("scenario") or {}).items() if k not in drop}
    for key, old_value in SCENARIO_KEYS_ADDED.items():
        if key in sc and sc[key] == old_value:
            del sc[key]
    return _canon(sc)


def _scenario_sans_tasks(cfg: dict) -> str:
    return _scenario_key(cfg, drop=("tasks",))


def _cur(obj):
    import duckdb
    if isinstance(obj, duckdb.DuckDBPyConnection):
        return obj, False
    return obj.cursor(), True


def _load(cur, ids: Sequence[int], meta: Mapping[int, tuple]) -> dict[int, RunData]:
    """Accuracy matrices, continual series and spans of many runs: two set-based queries."""
    ids = sorted({int(i) for i in ids})
    spans: dict[int, dict[int, tuple[int, int | None]]] = {i: {} for i in ids}
    for rid, task, s, e in cur.execute(
            f"SELECT run_id, task, start_step, end_step FROM task_boundaries WHERE run_id IN ({_IDS})",
            [ids]).fetchall():
        spans[rid][int(task)] = (int(s), None if e is None else int(e))
    d = cur.execute(
        f"""SELECT run_id, metric = 'acc' AS cont, step, task, coalesce(value, 'NaN'::DOUBLE) AS value
            FROM metrics WHERE metric IN ('acc', 'boundary_acc') AND task IS NOT NULL
              AND run_id IN ({_IDS})
            ORDER BY run_id, cont, step, task""", [ids]).fetchnumpy()
    masked: dict[int, list[tuple]] = {}  # run -> [(step, task, value)] of its boundary_masked_acc rows
    for rid, s, t, v in cur.execute(
            f"""SELECT run_id, step, task, coalesce(value, 'NaN'::DOUBLE) FROM metrics
                WHERE metric = 'boundary_masked_acc' AND task IS NOT NULL AND run_id IN ({_IDS})""",
            [ids]).fetchall():
        masked.setdefault(rid, []).append((s, t, v))
    rid_a = np.asarray(d["run_id"])
    uniq, first = np.unique(rid_a, return_index=True)
    bounds = dict(zip(uniq.tolist(), zip(first.tolist(), [*first[1:].tolist(), rid_a.size])))
    out = {}
    for rid in ids:
        name, status, cfg, last_step = meta[rid]
        lo, hi = bounds.get(rid, (0, 0))
        cont, step = d["cont"][lo:hi], d["step"][lo:hi]
        task, val = d["task"][lo:hi].astype(np.int64), d["value"][lo:hi]
        sp = spans[rid]
        T = _n_tasks(cfg, sp, task)
        ok = (task >= 1) & (task <= T)
        nb = int(np.searchsorted(cont, True))            # boundary rows first (cont False)
        bs, bt, bv = step[:nb][ok[:nb]], task[:nb][ok[:nb]], val[:nb][ok[:nb]]
        R = _matrix(bs, bt, bv, sp, T)
        steps, A = _series(step[nb:][ok[nb:]], task[nb:][ok[nb:]], val[nb:][ok[nb:]], bs, bt, bv, T,
                           (cfg.get("eval") or {}).get("subset") is None)
        out[rid] = RunData(rid, name, status, cfg, T, R, steps, A, sp, last_step,
                           masked_matrix(masked.get(rid, []), sp, T))
    return out


def _matrix(bs, bt, bv, spans: Spans, T: int) -> np.ndarray:
    """The accuracy matrix from a run's boundary_acc rows (step, task in 1..T, value)."""
    R = np.full((T + 1, T), np.nan)
    for r, e in [(0, 0)] + [(j, e) for j, (_, e) in spans.items() if e is not None]:
        sel = bs == e
        R[r, bt[sel] - 1] = bv[sel]
    return R


def masked_matrix(rows, spans: Spans, T: int) -> np.ndarray | None:
    """The task-masked accuracy matrix from (step, task, value) boundary_masked_acc rows; None without any."""
    if len(rows) == 0:
        return None
    s, t, v = (np.asarray(c) for c in zip(*rows))
    ok = (t >= 1) & (t <= T)
    return _matrix(s[ok], t[ok].astype(np.int64), v[ok], spans, T)


def _series(cs, ct, cv, bs, bt, bv, T: int, same_samples: bool) -> tuple[np.ndarray, np.ndarray]:
    """(steps, A) from acc rows (cs, ct, cv) and boundary_acc rows (bs, bt, bv), tasks in 1..T.
    With ``same_samples`` (eval.subset null: periodic and boundary evaluations use the same samples)
    the boundary ones (step 0, task ends) join the series where no periodic evaluation has that step."""
    if cs.size > 1 and (cs[1:] < cs[:-1]).any():  # rows come in step order as a rule: no sort then
        order = np.argsort(cs, kind="stable")
        cs, ct, cv = cs[order], ct[order], cv[order]
    first = np.r_[True, cs[1:] != cs[:-1]] if cs.size else np.zeros(0, dtype=bool)
    periodic = cs[first]
    extra = np.zeros(bs.size, dtype=bool)
    if same_samples:  # the boundary rows at steps without a periodic evaluation
        at = np.minimum(np.searchsorted(periodic, bs), max(periodic.size - 1, 0))
        extra = ~(periodic[at] == bs) if periodic.size else ~extra
    bs, bt, bv = bs[extra], bt[extra], bv[extra]
    only = np.unique(bs)  # boundary-only steps: none of them is periodic
    steps = np.insert(periodic, np.searchsorted(periodic, only), only) if only.size else periodic
    A = np.full((steps.size, T), np.nan)
    # a periodic row's place: the periodic steps up to it, plus the boundary-only steps before it
    A[np.cumsum(first) - 1 + np.searchsorted(only, cs), ct - 1] = cv
    A[np.searchsorted(steps, bs), bt - 1] = bv
    return steps, A


def _meta(cur, ids: Sequence[int]) -> dict[int, tuple]:
    """{id: (name, status, config, last_step)} of the runs asked for and of every candidate
    reference run (Joint cumulative runs, single-task experts), in one query."""
    rows = cur.execute(
        f"""SELECT id, name, status, config, last_step FROM runs
            WHERE id IN ({_IDS})
               OR (lower(config->'strategy'->>'name') = ? AND lower(config->'strategy'->>'mode') = ?)
               OR json_array_length(config->'scenario'->'tasks') = 1""",
        [list(ids), JOINT_STRATEGY, JOINT_CUMULATIVE]).fetchall()
    return {rid: (name, status, _config(cfg), last) for rid, name, status, cfg, last in rows}


def _config(cfg) -> dict:
    """A run's config as a dict whose scenario, strategy and eval sections are dicts (tolerating odd
    configs: a user's own runs)."""
    cfg = json.loads(cfg) if isinstance(cfg, str) else cfg
    cfg = cfg if isinstance(cfg, dict) else {}
    for section in ("scenario", "strategy", "eval"):
        if not isinstance(cfg.get(section), dict):
            cfg = {**cfg, section: {}}
    return cfg


def _n_tasks(cfg: dict, spans: Spans, tasks) -> int:
    """T: the config's n_tasks, or more where the boundaries or the evaluated tasks say so."""
    T = int((cfg.get("scenario") or {}).get("n_tasks") or 0)
    return max(T, max(spans, default=0), int(tasks.max()) if tasks.size else 0)


def _pick(cands: list[tuple], prefer_seed=None) -> int | None:
    """Finished first, then (for experts) the same seed, then the newest."""
    if not cands:
        return None
    return max(cands, key=lambda c: (c[1] == "finished", c[2] == prefer_seed, c[0]))[0]


class References:
    """The candidate reference runs of a store, indexed once (``_meta`` fetched them all)."""

    def __init__(self, meta: Mapping[int, tuple]):
        self.meta = meta
        self.joint: dict[tuple, list] = {}
        self.experts: dict[tuple, list] = {}
        for rid, (_, status, cfg, _) in meta.items():
            if _is_joint_cumulative(cfg):
                key = (_scenario_key(cfg), _canon(cfg.get("seed")))
                self.joint.setdefault(key, []).append((rid, status, None))
            j = _expert_task(cfg)
            if j is not None and status == "finished":
                self.experts.setdefault((_scenario_sans_tasks(cfg), j), []).append((rid, status, cfg.get("seed")))
        self.expert_tasks: dict[str, set[int]] = {}
        for sc, j in self.experts:
            self.expert_tasks.setdefault(sc, set()).add(j)

    def joint_for(self, run_id: int) -> int | None:
        """The Joint reference for intransigence, by rule: a run whose config has strategy.name
        "joint" and strategy.mode "cumulative", with the same scenario object and the same seed; a
        finished one first, then the newest. (A reference run is its own: intransigence 0.)"""
        cfg = self.meta[run_id][2]
        return _pick(self.joint.get((_scenario_key(cfg), _canon(cfg.get("seed"))), []))

    def experts_for(self, run_id: int) -> dict[int, int]:
        """Single-task experts, by rule: for task j, a FINISHED run (not this one) whose config has
        ``scenario.tasks == [j]`` and otherwise the same scenario object (key ``tasks`` ignored on
        both sides); the same seed first, then the newest. Its curve is its accuracy on its one
        trained task (the task of its boundary row: the engine may number it j or 1)."""
        cfg = self.meta[run_id][2]
        sc = _scenario_sans_tasks(cfg)
        out = {}
        for j in sorted(self.expert_tasks.get(sc, ())):
            rid = _pick([c for c in self.experts[(sc, j)] if c[0] != run_id], cfg.get("seed"))
            if rid is not None:
                out[j] = rid
        return out


def find_joint_reference(cursor_or_store, run_id: int) -> int | None:
    """The id of the run's Joint-cumulative reference by the rule of ``References.joint_for``."""
    cur, own = _cur(cursor_or_store)
    try:
        return References(_meta(cur, [run_id])).joint_for(run_id)
    finally:
        if own:
            cur.close()


def find_experts(cursor_or_store, run_id: int) -> dict[int, int]:
    """{task: run id} of the run's single-task experts by the rule of ``References.experts_for``."""
    cur, own = _cur(cursor_or_store)
    try:
        return References(_meta(cur, [run_id])).experts_for(run_id)
    finally:
        if own:
            cur.close()


def _expert_curve(e: RunData, task: int):
    j = task if task in e.spans else (min(e.spans) if e.spans else None)
    if j is None:
        return np.array([], dtype=np.int64), np.array([])
    return learning_curve(e.steps, e.A, e.spans, j)


# ---- summaries -------------------------------------------------------------------------------------

def _num(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _summarize(run: RunData, ref: RunData | None, experts: Mapping[int, RunData],
               tolerance: float, only: set[str] | None = None, cache=None) -> dict:
    out: dict[str, Any] = {}
    why: dict[str, str] = {}

    def need(*keys: str) -> bool:  # the costly groups are computed only when asked for
        return only is None or any(key in only for key in keys)

    def put(key, res):
        v, reason = res
        out[key] = _num(v)
        if out[key] is None:
            why[key] = reason or "not computable"

    R, T = run.R, run.n_tasks
    k = tasks_done(R)
    f_t = forgetting_per_task(R, k)
    i_t = intransigence_per_task(R, None if ref is None else ref.R, k)
    pm_t = performance_maintenance_per_task(R, k)
    ac = acc_curve(R, k)
    put("acc", acc(R, k))
    put("task_il_acc", task_il_acc(run.R_masked, k, run.config))
    put("bwt", bwt(R, k))
    put("fwt", fwt(R, k))
    put("forgetting", _avg(f_t))
    put("forgetting_avalanche", forgetting_avalanche(R, k))
    put("learning_accuracy", learning_accuracy(R, k))
    put("intransigence", _avg(i_t))
    put("avg_incremental_acc", _avg(ac))

    st, A, sp = run.steps, run.A, run.spans
    t = _t(st, None)
    mn = min_acc_per_task(st, A, sp, cache=cache)
    put("min_acc", _avg(mn))
    put("wc_acc", wc_acc(st, A, sp, min_acc_t=_avg(mn)))
    wins = {}
    for w in WINDOWS:
        if need(f"wf{w}", f"wp{w}"):
            wins[f"wf{w}"] = windowed_per_task(st, A, sp, w, cache=cache)
            wins[f"wp{w}"] = windowed_per_task(st, A, sp, w, increase=True, cache=cache)
            put(f"wf{w}", _avg(wins[f"wf{w}"]))
            put(f"wp{w}", _avg(wins[f"wp{w}"]))
    gaps = stability_gaps(st, A, sp, tolerance, cache=cache) if need("stability_gap", "recovery_steps") else []
    if need("stability_gap", "recovery_steps"):
        put("stability_gap", stability_gap(gaps))
        put("recovery_steps", recovery_time(gaps))

    l2m = ("terminal_performance", "relative_performance", "sample_efficiency")
    finished = [j for j in range(1, T + 1) if j in sp and sp[j][1] is not None] if need(*l2m) else []
    curves = {j: cache.memo(("curve", j, sp[j]), sp[j][1], lambda j=j: learning_curve(st, A, sp, j))
              if cache is not None else learning_curve(st, A, sp, j) for j in finished}
    tps = {j: terminal_performance(c[1]) for j, c in curves.items()}
    tp_ok = [v for v, _ in tps.values() if v is not None]
    if need(*l2m):
        put("terminal_performance", (_mean(tp_ok), None) if tp_ok else
            (None, "no finished task with continual evaluation during its training"))
    put("performance_maintenance", _avg(pm_t))
    for d in ("forward", "backward"):
        for kind in ("ratio", "contrast"):
            put(f"{d}_transfer_{kind}", transfer(R, d, kind, k))
    rp, se, missing = {}, {}, []
    for j in finished:
        if j not in experts:
            missing.append(j)
            continue
        ec = _expert_curve(experts[j], j)
        rp[j], se[j] = relative_performance(curves[j], ec), sample_efficiency(curves[j], ec)
    for key, per in (("relative_performance", rp), ("sample_efficiency", se)):
        if not need(*l2m):
            break
        vals = [v for v, _ in per.values() if v is not None]
        if vals:
            put(key, (_mean(vals), None))
        elif per:
            put(key, (None, "; ".join(f"task {j}: {r}" for j, (_, r) in per.items())))
        else:
            put(key, (None, "no single-task expert found" + (f" for tasks {missing}" if missing else
                     " (no finished task yet)") + ": an expert is a finished run with scenario.tasks = [j]"
                     " and otherwise the same scenario; or pass experts={task: run_id}"))

    def listed(res):
        return None if res[0] is None else [_num(x) for x in res[0]]

    eval_cfg = run.config.get("eval") or {}
    total = {
        "run_id": run.id, "name": run.name, "status": run.status, "n_tasks": T, "tasks_done": k,
        "current_task": current_task(sp, t) if t is not None else None, "eval_step": t,
        "last_step": run.last_step, "eval_every": eval_cfg.get("every"),
        "partial": run.status != "finished" or k < T,
        **out,
        "accuracy_matrix": [[_num(x) for x in row] for row in R],
        "task_il_matrix": None if run.R_masked is None else [[_num(x) for x in row] for row in run.R_masked],
        "stability_gaps": gaps,
        "per_task": {
            "acc_curve": listed(ac),
            "forgetting": listed(f_t),
            "intransigence": listed(i_t),
            "performance_maintenance": listed(pm_t),
            "min_acc": mn[0],
            **{key: res[0] for key, res in wins.items()},
            "terminal_performance": {j: _num(v) for j, (v, _) in tps.items()},
            "relative_performance": {j: _num(v) for j, (v, _) in rp.items()},
            "sample_efficiency": {j: _num(v) for j, (v, _) in se.items()},
        },
        "references": {"joint": None if ref is None else ref.id,
                       "experts": {j: e.id for j, e in experts.items()}},
        "tolerance": tolerance,
        "unavailable": why,
    }
    return total


def summaries(cursor_or_store, run_ids: Iterable[int], *, tolerance: float = DEFAULT_TOLERANCE,
              references: Mapping[int, int] | None = None,
              experts: Mapping[int, Mapping[int, int]] | None = None,
              only: Iterable[str] | None = None) -> list[dict]:
    """Summaries of many runs (in the order given) from three set-based queries: the runs with the
    candidate reference runs, their boundaries, and their boundary_acc + acc rows.
    ``references`` {run_id: joint_run_id} and ``experts`` {run_id: {task: expert_run_id}} override
    the automatic lookups (``find_joint_reference``, ``find_experts``). ``only``: the metric keys
    wanted; the costly groups (windowed, stability gaps, L2M) are skipped unless asked for, and
    their keys are then absent."""
    only = None if only is None else set(only)
    ids = [int(i) for i in run_ids]
    if not ids:
        return []
    cur, own = _cur(cursor_or_store)
    try:
        explicit = set((references or {}).values())
        for m in (experts or {}).values():
            explicit |= set(m.values())
        meta = _meta(cur, sorted(set(ids) | explicit))
        missing = [i for i in ids if i not in meta]
        if missing:
            raise KeyError(f"no run with id {missing[0]}")
        index = References(meta)
        refs, exps = {}, {}
        for rid in ids:
            refs[rid] = (references or {}).get(rid) or index.joint_for(rid)
            exps[rid] = dict((experts or {}).get(rid) or index.experts_for(rid))
        need = set(ids) | {r for r in refs.values() if r} | {e for m in exps.values() for e in m.values()}
        data = _load(cur, sorted(need & set(meta)), meta)
    finally:
        if own:
            cur.close()
    return [_summarize(data[rid], data.get(refs[rid]),
                       {j: data[e] for j, e in exps[rid].items() if e in data}, tolerance, only)
            for rid in ids]


def samples_used(config: Mapping) -> str:
    """Which test samples the figures of a run with ``config`` were measured on, in one sentence for the
    pages and reports: the accuracy matrix's on every test sample, the continual-evaluation series' on
    ``eval.subset`` of them per task when it is set."""
    subset = ((config or {}).get("eval") or {}).get("subset")
    if subset is None:
        return "Every figure uses each task's whole test set."
    return (f"Accuracy-matrix figures use each task's whole test set; the curves, min-ACC, WC-ACC, the "
            f"stability gap and windowed figures use the same fixed {subset} test samples per task "
            f"(eval.subset), measured at every evaluation and at each task's last step.")


def summary(cursor_or_store, run_id: int, *, tolerance: float = DEFAULT_TOLERANCE,
            reference_run_id: int | None = None, experts: Mapping[int, int] | None = None) -> dict:
    """Every summary metric of one run, finished or still running (see the module docstring), as a
    JSON-able dict: the metric keys of ``METRICS`` (None when unavailable), ``accuracy_matrix``
    (rows 0..T, None where missing), ``stability_gaps``, ``per_task``, ``references`` and
    ``unavailable`` {metric: reason}. ``reference_run_id`` and ``experts`` {task: run_id} override
    the automatic lookups.

    The same as ``summaries`` of this one run, from the series held between calls
    (``store.run_cache``): a run whose data and references have not changed gets its summary again,
    and a live run's refresh reads and computes only the steps since the last one."""
    import copy

    from store import run_cache

    run_id = int(run_id)
    cur, own = _cur(cursor_or_store)
    try:
        with run_cache.LOCK:
            explicit = ({reference_run_id} if reference_run_id else set()) | set((experts or {}).values())
            meta = _meta(cur, sorted({run_id} | explicit))
            if run_id not in meta:
                raise KeyError(f"no run with id {run_id}")
            index = References(meta)
            ref = reference_run_id or index.joint_for(run_id)
            exps = dict(experts or index.experts_for(run_id))
            states = {}
            for rid in sorted(({run_id, ref} | set(exps.values())) & set(meta)):
                if (found := run_cache.state(cur, rid)) is not None:
                    states[rid] = found
            if run_id not in states:
                raise KeyError(f"no run with id {run_id}")
            own_state = states[run_id]
            key = (tolerance, ref, tuple(sorted(exps.items())), tuple((r, s.version) for r, s in states.items()))
            hit = own_state.results.get("summary")
            if hit is None or hit[0] != key:
                data = {rid: s.data() for rid, s in states.items()}
                result = _summarize(data[run_id], data.get(ref), {j: data[e] for j, e in exps.items() if e in data},
                                    tolerance, cache=own_state)
                hit = own_state.results["summary"] = (key, result)
            return copy.deepcopy(hit[1])
    finally:
        if own:
            cur.close()


def load_run(cursor_or_store, run_id: int) -> RunData:
    """One run's accuracy matrix, continual series and spans (for pages that plot them)."""
    cur, own = _cur(cursor_or_store)
    try:
        meta = _meta(cur, [run_id])
        if run_id not in meta:
            raise KeyError(f"no run with id {run_id}")
        return _load(cur, [run_id], meta)[run_id]
    finally:
        if own:
            cur.close()


__all__ = [
    "DEFAULT_TOLERANCE",
    "METRICS",
    "WINDOWS",
    "MetricInfo",
    "References",
    "RunData",
    "acc",
    "acc_curve",
    "avg_incremental_acc",
    "bwt",
    "current_task",
    "find_experts",
    "find_joint_reference",
    "forgetting",
    "forgetting_avalanche",
    "forgetting_per_task",
    "fwt",
    "intransigence",
    "intransigence_per_task",
    "learning_accuracy",
    "learning_curve",
    "load_run",
    "min_acc",
    "min_acc_per_task",
    "performance_maintenance",
    "performance_maintenance_per_task",
    "recovery_time",
    "relative_performance",
    "sample_efficiency",
    "saturation",
    "series_from_pairs",
    "stability_gap",
    "stability_gaps",
    "summaries",
    "summary",
    "task_il_acc",
    "tasks_done",
    "terminal_performance",
    "transfer",
    "wc_acc",
    "windowed_forgetting",
    "windowed_per_task",
    "windowed_plasticity",
]


# ---- the same continual-evaluation metrics as curves over every evaluation step ---------------------

# The continual series of a run in SQL: the ``acc`` rows, plus the boundary evaluations (step 0, task
# ends) where no periodic one has that step when both use the same samples (``eval.subset`` null):
# the same series ``_load`` builds for the scalar metrics above.
CONTINUAL_SERIES_SQL = """
full_eval AS (SELECT (config->'eval'->>'subset') IS NULL AS same FROM runs WHERE id = $run),
periodic AS (SELECT step, task, value FROM metrics WHERE run_id = $run AND metric = 'acc'),
e AS (
    SELECT * FROM periodic
    UNION ALL
    SELECT step, task, value FROM metrics
    WHERE run_id = $run AND metric = 'boundary_acc' AND (SELECT same FROM full_eval)
      AND step NOT IN (SELECT step FROM periodic)
)"""


def continual_curves(steps, A, spans: Spans, seed_min=None) -> dict[str, np.ndarray]:
    """The continual-evaluation metrics as curves over every evaluation step t, k(t) the task being
    trained at t (``current_task``; NaN before training), vectorised (De Lange et al., ICLR 2023):

    - plasticity A(k, t), the accuracy on the task being learned;
    - stability, the mean of A(i, t) over the earlier tasks i < k;
    - min_acc, min-ACC_t exactly as ``min_acc`` defines it, at every t;
    - wc_acc, WC-ACC_t exactly as ``wc_acc`` defines it (A(1, t) while k = 1).

    NaN where a value is not defined (no earlier task yet, a task without an end of its own).
    Tests pin every point against ``min_acc`` and ``wc_acc``. ``seed_min`` (T,): the lowest accuracy
    of each task after its end in the rows before these (inf where none), when the curves of a
    series are computed a piece at a time (``store.run_cache``)."""
    steps, A = np.asarray(steps), np.asarray(A, dtype=float)
    n, T = A.shape
    k = np.full(n, np.nan)
    if spans:
        last = max(spans)
        k[steps > spans[last][0]] = last  # after the last end: the last task
        for j in sorted(spans):  # inside a span: that task (the later one where spans touch)
            s, e = spans[j]
            k[(steps > s) & (steps <= (np.inf if e is None else e))] = j
    running_min = np.full((n, T), np.nan)
    for j, (_, e) in spans.items():
        if e is None or not 1 <= j <= T:
            continue
        after = steps > e
        column = np.where(after & np.isfinite(A[:, j - 1]), A[:, j - 1], np.inf)
        lowest = np.minimum.accumulate(column)
        if seed_min is not None:
            lowest = np.minimum(lowest, seed_min[j - 1])
        running_min[:, j - 1] = np.where(after, lowest, np.nan)
    running_min[np.isinf(running_min)] = np.nan
    rows = np.arange(n)
    trained = np.isfinite(k)
    kk = np.where(trained, k, 1).astype(int)
    earlier = np.arange(1, T + 1)[None, :] < kk[:, None]  # task i < k(t)
    plasticity = np.where(trained, A[rows, np.clip(kk - 1, 0, T - 1)], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        count = earlier.sum(1)
        stability = np.where(count > 0, np.where(earlier, A, 0).sum(1) / np.maximum(count, 1), np.nan)
        complete = ~(earlier & np.isnan(running_min)).any(1)  # every earlier task has its minimum
        min_acc_t = np.where((count > 0) & complete, np.where(earlier, running_min, 0).sum(1) / np.maximum(count, 1), np.nan)
        wc = np.where(kk == 1, plasticity, plasticity / kk + (1 - 1 / kk) * min_acc_t)
    return {"step": steps, "task": k, "plasticity": plasticity, "stability": stability,
            "min_acc": min_acc_t, "wc_acc": np.where(trained, wc, np.nan)}
