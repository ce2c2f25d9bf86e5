"""The metrics over the accuracy matrix R (task boundaries): ACC, Task-IL ACC, BWT, FWT, forgetting,
learning accuracy, intransigence, average incremental accuracy. Each is a pure function over R (the
formula and source in its docstring) and one registry entry (``Metric``) computing it over a run view."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from store.metrics.base import Value, average, listed, mean, missing_cells, padded, setup_matrix
from store.metrics.metric import Metric, MetricsView


def acc(R, k: int | None = None) -> Value:
    """Average accuracy, GEM (Lopez-Paz & Ranzato 2017): ACC = 1/T sum_j R[T][j].
    After k < T finished tasks: 1/k sum_{j<=k} R[k][j]."""
    M, k, why = setup_matrix(R, k)
    cells = [(k, j) for j in range(1, k + 1)]
    why = why or missing_cells(M, cells)
    return (None, why) if why else (mean([M[c] for c in cells]), None)


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
    M, k, why = setup_matrix(R, k, 2)
    if why:
        return None, why
    cells = [(k, i) for i in range(1, k)] + [(i, i) for i in range(1, k)]
    why = missing_cells(M, cells)
    return (None, why) if why else (mean([M[k, i] - M[i, i] for i in range(1, k)]), None)


def fwt(R, k: int | None = None) -> Value:
    """Forward transfer, GEM: FWT = 1/(T-1) sum_{i=2..T} (R[i-1][i] - b[i]), b = R[0] (the
    evaluation at initialisation). Without a step-0 evaluation it is unavailable, never 0."""
    M, k, why = setup_matrix(R, k, 2)
    if why:
        return None, why
    cells = [(i - 1, i) for i in range(2, k + 1)] + [(0, i) for i in range(2, k + 1)]
    why = missing_cells(M, cells)
    return (None, why) if why else (mean([M[i - 1, i] - M[0, i] for i in range(2, k + 1)]), None)


def forgetting_per_task(R, k: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """Chaudhry et al. 2018 (RWalk): f[k][j] = max_{l in 1..k-1} R[l][j] - R[k][j] for j < k.
    As metrics.md writes it, the max runs over all rows 1..k-1, including rows before j was
    trained (they matter only where an unseen task already scores above its learned level)."""
    M, k, why = setup_matrix(R, k, 2)
    if why:
        return None, why
    why = missing_cells(M, [(l, j) for j in range(1, k) for l in range(1, k + 1)])
    if why:
        return None, why
    return np.array([M[1:k, j].max() - M[k, j] for j in range(1, k)]), None


def forgetting(R, k: int | None = None) -> Value:
    """Average forgetting (Chaudhry et al. 2018): F_k = 1/(k-1) sum_{j<k} f[k][j]
    (see ``forgetting_per_task``)."""
    return average(forgetting_per_task(R, k))


def forgetting_avalanche(R, k: int | None = None) -> Value:
    """Avalanche's forgetting: 1/(k-1) sum_{j<k} (R[j][j] - R[k][j]), accuracy right after training
    task j minus now. Equal to -BWT by construction; differs from Chaudhry's when a task's best
    accuracy came after it was trained."""
    M, k, why = setup_matrix(R, k, 2)
    if why:
        return None, why
    why = missing_cells(M, [(j, j) for j in range(1, k)] + [(k, j) for j in range(1, k)])
    return (None, why) if why else (mean([M[j, j] - M[k, j] for j in range(1, k)]), None)


def learning_accuracy(R, k: int | None = None) -> Value:
    """Learning accuracy (Riemer et al. 2019): LA = 1/T sum_i R[i][i]."""
    M, k, why = setup_matrix(R, k)
    cells = [(i, i) for i in range(1, k + 1)]
    why = why or missing_cells(M, cells)
    return (None, why) if why else (mean([M[c] for c in cells]), None)


def intransigence_per_task(R, R_ref, k: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """Chaudhry et al. 2018: I_i = a*_i - R[i][i] for i = 1..k, with a*_i = R_ref[i][i], the accuracy
    on task i of a Joint run (mode "cumulative", same scenario and seed) after training on 1..i."""
    M, k, why = setup_matrix(R, k)
    if why:
        return None, why
    if R_ref is None:
        return None, ("no Joint reference: needs a run with strategy joint, mode 'cumulative', "
                      "of the same scenario and seed")
    Mref, Tref = padded(R_ref)
    if Tref != M.shape[1] - 1:
        return None, f"the Joint reference has {Tref} tasks, this run {M.shape[1] - 1}"
    why = missing_cells(M, [(i, i) for i in range(1, k + 1)]) or missing_cells(
        Mref, [(i, i) for i in range(1, k + 1)], "the Joint reference's accuracy matrix")
    if why:
        return None, why
    return np.array([Mref[i, i] - M[i, i] for i in range(1, k + 1)]), None


def intransigence(R, R_ref, k: int | None = None) -> Value:
    """Average intransigence 1/k sum_{i<=k} I_i (see ``intransigence_per_task``). Lower is better."""
    return average(intransigence_per_task(R, R_ref, k))


def acc_curve(R, k: int | None = None) -> tuple[np.ndarray | None, str | None]:
    """ACC_i = 1/i sum_{j<=i} R[i][j] for i = 1..k: the accuracy on all tasks seen after each task."""
    M, k, why = setup_matrix(R, k)
    why = why or missing_cells(M, [(i, j) for i in range(1, k + 1) for j in range(1, i + 1)])
    if why:
        return None, why
    return np.array([M[i, 1:i + 1].mean() for i in range(1, k + 1)]), None


def avg_incremental_acc(R, k: int | None = None) -> Value:
    """Average incremental accuracy (iCaRL; PyCIL): the mean over k of the accuracy on all classes
    seen up to k. CL Lab records per-task accuracies, so the accuracy on the classes seen up to i
    is taken as 1/i sum_{j<=i} R[i][j], exact when tasks have equally many test samples (as in the
    Split benchmarks); AIA = 1/k sum_{i<=k} ACC_i (see ``acc_curve``)."""
    return average(acc_curve(R, k))


# ---- the registry entries ------------------------------------------------------------------------

def _forgetting(v: MetricsView):
    return v.shared("forgetting", lambda: forgetting_per_task(v.R, v.k))


def _intransigence(v: MetricsView):
    return v.shared("intransigence", lambda: intransigence_per_task(v.R, None if v.ref is None else v.ref.R, v.k))


def _acc_curve(v: MetricsView):
    return v.shared("acc_curve", lambda: acc_curve(v.R, v.k))


ACC = Metric(
    "acc", "Average accuracy (ACC)",
    r"\mathrm{ACC} = \frac{1}{T}\sum_{j=1}^{T} R_{T,j}",
    "Lopez-Paz & Ranzato, GEM, NeurIPS 2017", True,
    "Overall end result: stability and plasticity together.", "matrix",
    compute=lambda v: acc(v.R, v.k), compare_table=True, figure="ACC", figure_at=1)

TASK_IL_ACC = Metric(
    "task_il_acc", "Task-IL accuracy (Mammoth: masked at test time)",
    r"\mathrm{ACC}^{\mathrm{Task\text{-}IL}} = \frac{1}{T}\sum_{j=1}^{T} \tilde{R}_{T,j}",
    "Buzzega et al., DER, NeurIPS 2020 (Mammoth's Task-IL column of a class-IL run)", True,
    "The class-incremental model's accuracy when told each test sample's task: its logits masked to "
    "that task's classes at test time only (training stays class-incremental). R~ is the accuracy "
    "matrix of these masked evaluations. Not the task-incremental setting, which masks in training "
    "too.", "matrix", "a class-incremental run (its boundary_masked_acc rows)",
    compute=lambda v: task_il_acc(v.run.R_masked, v.k, v.run.config),
    figure="Task-IL (masked)", figure_at=7, settings=("class",))

BWT = Metric(
    "bwt", "Backward transfer (BWT)",
    r"\mathrm{BWT} = \frac{1}{T-1}\sum_{i=1}^{T-1}\left(R_{T,i} - R_{i,i}\right)",
    "Lopez-Paz & Ranzato, GEM, NeurIPS 2017", True,
    "Stability: negative means forgetting of earlier tasks.", "matrix",
    compute=lambda v: bwt(v.R, v.k), compare_table=True, figure="BWT", figure_at=2)

FWT = Metric(
    "fwt", "Forward transfer (FWT)",
    r"\mathrm{FWT} = \frac{1}{T-1}\sum_{i=2}^{T}\left(R_{i-1,i} - b_i\right)",
    "Lopez-Paz & Ranzato, GEM, NeurIPS 2017", True,
    "Zero-shot gain on the next task from learning earlier ones, against initialisation.",
    "matrix", "an evaluation before training (step 0)",
    compute=lambda v: fwt(v.R, v.k))

FORGETTING = Metric(
    "forgetting", "Average forgetting (Chaudhry)",
    r"F_T = \frac{1}{T-1}\sum_{j=1}^{T-1}\Big(\max_{l \in \{1,\dots,T-1\}} R_{l,j} - R_{T,j}\Big)",
    "Chaudhry et al., Riemannian Walk, ECCV 2018", False,
    "Stability: how far each earlier task fell from its best earlier accuracy.", "matrix",
    compute=lambda v: average(_forgetting(v)), per_task=lambda v: listed(_forgetting(v)),
    compare_table=True, figure="Forgetting", figure_at=3)

FORGETTING_AVALANCHE = Metric(
    "forgetting_avalanche", "Average forgetting (Avalanche)",
    r"F^{\mathrm{AVL}}_T = \frac{1}{T-1}\sum_{j=1}^{T-1}\left(R_{j,j} - R_{T,j}\right)",
    "Avalanche (ContinualAI) forgetting: accuracy right after training minus now", False,
    "Stability, from the accuracy right after learning each task (equals -BWT).", "matrix",
    compute=lambda v: forgetting_avalanche(v.R, v.k))

LEARNING_ACCURACY = Metric(
    "learning_accuracy", "Learning accuracy (LA)",
    r"\mathrm{LA} = \frac{1}{T}\sum_{i=1}^{T} R_{i,i}",
    "Riemer et al., MER, ICLR 2019", True,
    "Plasticity: accuracy on each task right after learning it.", "matrix",
    compute=lambda v: learning_accuracy(v.R, v.k), compare_table=True,
    figure="Plasticity (LA)", figure_at=6)

INTRANSIGENCE = Metric(
    "intransigence", "Intransigence",
    r"I = \frac{1}{T}\sum_{k=1}^{T}\left(a^{*}_{k} - R_{k,k}\right),\quad a^{*}_{k} = R^{\mathrm{joint}}_{k,k}",
    "Chaudhry et al., Riemannian Walk, ECCV 2018", False,
    "Plasticity lost: how much worse each new task is learned than by joint training.",
    "matrix", "a Joint run in mode 'cumulative' of the same scenario and seed",
    compute=lambda v: average(_intransigence(v)),
    per_task=lambda v: listed(_intransigence(v)))

AVG_INCREMENTAL_ACC = Metric(
    "avg_incremental_acc", "Average incremental accuracy",
    r"\bar{A} = \frac{1}{T}\sum_{k=1}^{T}\frac{1}{k}\sum_{j=1}^{k} R_{k,j}",
    "Rebuffi et al., iCaRL, CVPR 2017 (as in PyCIL)", True,
    "The accuracy on everything seen so far, averaged over the whole sequence.", "matrix",
    compute=lambda v: average(_acc_curve(v)),
    per_task=lambda v: listed(_acc_curve(v)), per_task_key="acc_curve")
