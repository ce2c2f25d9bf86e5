"""The lifelong-learning metrics of the DARPA L2M framework (lifelong-learning-systems/l2metrics):
performance maintenance and transfer over the accuracy matrix, terminal performance over each task's
learning curve, and performance and sample efficiency relative to single-task experts. Pure functions,
and one registry entry (``Metric``) each computing them over a run view."""

from __future__ import annotations

import math

import numpy as np

from store.metrics.base import Spans, Value, average, finite, listed, mean, missing_cells, setup_matrix
from store.metrics.continual import step_or_last
from store.metrics.loader import RunData
from store.metrics.metric import Metric, MetricsView

TERMINAL_FRACTION = 0.1      # L2M terminal performance: last 10% of a training block


def performance_maintenance_per_task(R, k: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """L2M performance maintenance (l2metrics' default 'mrlep'), per task j < k: the mean over later
    evaluations i = j+1..k of (TP of evaluation i - TP of the evaluation right after j was learned);
    an evaluation block's TP is its accuracy, so PM_j = mean_{i>j} (R[i][j] - R[j][j])."""
    M, k, why = setup_matrix(R, k, 2)
    if why:
        return None, why
    why = missing_cells(M, [(i, j) for j in range(1, k) for i in range(j, k + 1)])
    if why:
        return None, why
    return np.array([(M[j + 1:k + 1, j] - M[j, j]).mean() for j in range(1, k)]), None


def performance_maintenance(R, k: int | None = None) -> Value:
    """L2M performance maintenance: the mean over tasks of ``performance_maintenance_per_task``.
    Negative means forgetting."""
    return average(performance_maintenance_per_task(R, k))


def transfer(R, direction: str = "forward", kind: str = "ratio", k: int | None = None) -> Value:
    """L2M transfer between task pairs (l2metrics ``Transfer``): training task i changes task j's
    evaluation from tp1 = R[i-1][j] to tp2 = R[i][j]. Ratio tp2/tp1, or contrast
    (tp2 - tp1)/(tp1 + tp2). Forward: j not yet trained (1 <= i <= k, i < j <= T); backward: j already
    trained (j < i <= k). The mean over valid pairs; pairs with a missing cell or a zero denominator
    are skipped (l2metrics skips tp1 = 0 for the ratio)."""
    if direction not in ("forward", "backward") or kind not in ("ratio", "contrast"):
        raise ValueError("direction is forward|backward, kind is ratio|contrast")
    M, k, why = setup_matrix(R, k)
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
    return mean(vals), None


def learning_curve(steps, A, spans: Spans, task: int, t: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A task's learning curve while it trains: (steps since start_task, A(task, n)) for the
    evaluations n in (start, end] (to t while training)."""
    steps, A = np.asarray(steps), np.asarray(A, dtype=float)
    if task not in spans or A.shape[0] == 0:
        return np.array([], dtype=np.int64), np.array([])
    s, e = spans[task]
    hi = step_or_last(steps, t) if e is None else e
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
    return mean(v[-max(1, math.ceil(frac * v.size)):]), None


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


def _expert_curve(e: RunData, task: int):
    j = task if task in e.spans else (min(e.spans) if e.spans else None)
    if j is None:
        return np.array([], dtype=np.int64), np.array([])
    return learning_curve(e.steps, e.A, e.spans, j)


# ---- the registry entries ------------------------------------------------------------------------

def _maintenance(v: MetricsView):
    return v.shared("performance_maintenance", lambda: performance_maintenance_per_task(v.R, v.k))


def _curves(v: MetricsView) -> dict:
    """The learning curve of each finished task, kept by the cache once its rows are settled."""
    def compute():
        sp, T = v.spans, v.T
        finished = [j for j in range(1, T + 1) if j in sp and sp[j][1] is not None]
        if v.cache is None:
            return {j: learning_curve(v.steps, v.A, sp, j) for j in finished}
        return {j: v.cache.memo(("curve", j, sp[j]), sp[j][1], lambda j=j: learning_curve(v.steps, v.A, sp, j))
                for j in finished}
    return v.shared("learning curves", compute)


def _terminal(v: MetricsView) -> dict:
    return v.shared("terminal performance", lambda: {j: terminal_performance(c[1]) for j, c in _curves(v).items()})


def _terminal_mean(v: MetricsView) -> Value:
    measured = [x for x, _ in _terminal(v).values() if x is not None]
    if not measured:
        return None, "no finished task with continual evaluation during its training"
    return mean(measured), None


def _against_experts(v: MetricsView) -> tuple[dict, dict, list]:
    """({task: relative performance}, {task: sample efficiency}, [finished tasks without an expert])."""
    def compute():
        rp, se, missing = {}, {}, []
        for j, curve in _curves(v).items():
            if j not in v.experts:
                missing.append(j)
                continue
            ec = _expert_curve(v.experts[j], j)
            rp[j], se[j] = relative_performance(curve, ec), sample_efficiency(curve, ec)
        return rp, se, missing
    return v.shared("against experts", compute)


def _expert_mean(v: MetricsView, which: int) -> Value:
    """The mean over tasks of relative performance (which 0) or sample efficiency (1)."""
    per, missing = _against_experts(v)[which], _against_experts(v)[2]
    values = [x for x, _ in per.values() if x is not None]
    if values:
        return mean(values), None
    if per:
        return None, "; ".join(f"task {j}: {r}" for j, (_, r) in per.items())
    return None, ("no single-task expert found" + (f" for tasks {missing}" if missing else " (no finished task yet)")
                  + ": an expert is a finished run with scenario.tasks = [j] and otherwise the same scenario; "
                  "or pass experts={task: run_id}")


def _per_task(results: dict) -> dict:
    return {j: finite(x) for j, (x, _) in results.items()}


TERMINAL_PERFORMANCE = Metric(
    "terminal_performance", "Terminal performance (L2M)",
    r"\mathrm{TP}_j = \operatorname{mean}\big(\text{last }10\%\text{ of } A(j,n),\ \mathrm{start}_j < n \le \mathrm{end}_j\big)",
    "New et al., L2M (2023); l2metrics", True,
    "Plasticity: where each task's learning curve ends.", "l2m",
    "continual evaluation (acc rows)",
    compute=_terminal_mean, per_task=lambda v: _per_task(_terminal(v)),
    costly="learning curves")

PERFORMANCE_MAINTENANCE = Metric(
    "performance_maintenance", "Performance maintenance (L2M)",
    r"\mathrm{PM} = \frac{1}{k-1}\sum_{j=1}^{k-1}\frac{1}{k-j}\sum_{i=j+1}^{k}\left(R_{i,j} - R_{j,j}\right)",
    "New et al., L2M (2023); l2metrics (mrlep)", True,
    "Stability: average change of each task after it was learned; negative is forgetting.",
    "l2m",
    compute=lambda v: average(_maintenance(v)),
    per_task=lambda v: listed(_maintenance(v)))

FORWARD_TRANSFER_RATIO = Metric(
    "forward_transfer_ratio", "Forward transfer ratio (L2M)",
    r"\mathrm{FTR} = \operatorname*{mean}_{i<j}\frac{R_{i,j}}{R_{i-1,j}}",
    "New et al., L2M (2023); l2metrics", True,
    "How training a task changes a not-yet-trained task (>1 helps).", "l2m",
    compute=lambda v: transfer(v.R, "forward", "ratio", v.k))

BACKWARD_TRANSFER_RATIO = Metric(
    "backward_transfer_ratio", "Backward transfer ratio (L2M)",
    r"\mathrm{BTR} = \operatorname*{mean}_{j<i}\frac{R_{i,j}}{R_{i-1,j}}",
    "New et al., L2M (2023); l2metrics", True,
    "How training a task changes an already-trained task (<1 is forgetting).", "l2m",
    compute=lambda v: transfer(v.R, "backward", "ratio", v.k))

FORWARD_TRANSFER_CONTRAST = Metric(
    "forward_transfer_contrast", "Forward transfer contrast (L2M)",
    r"\mathrm{FTC} = \operatorname*{mean}_{i<j}\frac{R_{i,j} - R_{i-1,j}}{R_{i,j} + R_{i-1,j}}",
    "New et al., L2M (2023); l2metrics", True,
    "Forward transfer as a bounded contrast in [-1, 1].", "l2m",
    compute=lambda v: transfer(v.R, "forward", "contrast", v.k))

BACKWARD_TRANSFER_CONTRAST = Metric(
    "backward_transfer_contrast", "Backward transfer contrast (L2M)",
    r"\mathrm{BTC} = \operatorname*{mean}_{j<i}\frac{R_{i,j} - R_{i-1,j}}{R_{i,j} + R_{i-1,j}}",
    "New et al., L2M (2023); l2metrics", True,
    "Backward transfer as a bounded contrast in [-1, 1].", "l2m",
    compute=lambda v: transfer(v.R, "backward", "contrast", v.k))

RELATIVE_PERFORMANCE = Metric(
    "relative_performance", "Performance relative to single-task experts (L2M)",
    r"\mathrm{RP}_j = \frac{\sum_{n \le L} A(j,n)}{\sum_{n \le L} A^{\mathrm{STE}}_j(n)}",
    "New et al., L2M (2023); l2metrics", True,
    "Plasticity against a learner that only ever saw this task.", "l2m",
    "single-task expert runs",
    compute=lambda v: _expert_mean(v, 0),
    per_task=lambda v: _per_task(_against_experts(v)[0]), costly="learning curves")

SAMPLE_EFFICIENCY = Metric(
    "sample_efficiency", "Sample efficiency (L2M)",
    r"\mathrm{SE}_j = \frac{s_j}{s^{\mathrm{STE}}_j}\cdot\frac{e^{\mathrm{STE}}_j}{e_j}",
    "New et al., L2M (2023); l2metrics 3.1 (s: max of the centred moving average; e: 0-based index "
    "of the evaluation where it is first reached; tasks with e = 0 left out)", True,
    "Plasticity: how high and how fast each task saturates against its expert.", "l2m",
    "single-task expert runs",
    compute=lambda v: _expert_mean(v, 1),
    per_task=lambda v: _per_task(_against_experts(v)[1]), costly="learning curves")
