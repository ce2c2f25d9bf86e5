"""Every metric of store/metrics/ pinned on small examples worked by hand (in the comments), then
summary()/summaries() end to end through a real DuckDB file written with the Store API.

Matrices are (T+1) x T: row i = after training task i (row 0 = before training), column j-1 = task j.
Below, R[i][j] uses 1-based task numbers like metrics.md.
"""

import json
import math

import numpy as np
import pytest

from store import Store
from store.metrics import METRICS
from store.metrics import continual, gap, l2m, matrix, references
from store.metrics.base import tasks_done
from store.metrics.summary import load_run, summaries, summary
from tests.conftest import ROOT

NAN = float("nan")

# The worked example used throughout (T = 3):
#            task1  task2  task3
#   row 0:   0.10   0.20   0.00     b, before training
#   row 1:   0.90   0.30   0.10
#   row 2:   0.95   0.80   0.20     task 1 peaks AFTER it was trained (0.95 > 0.90)
#   row 3:   0.50   0.70   0.90
R3 = np.array([
    [0.10, 0.20, 0.00],
    [0.90, 0.30, 0.10],
    [0.95, 0.80, 0.20],
    [0.50, 0.70, 0.90],
])
REF_DIAG = [0.95, 0.90, 0.92]  # a Joint-cumulative reference's R*[k][k]


def approx(x):
    return pytest.approx(x, abs=1e-9)


def ref_matrix(diag, fill=0.5):
    R = np.full((len(diag) + 1, len(diag)), fill)
    for i, v in enumerate(diag, start=1):
        R[i, i - 1] = v
    return R


# ---- accuracy-matrix metrics ---------------------------------------------------------------------

def test_acc_bwt_fwt_worked_example():
    # ACC = (0.5 + 0.7 + 0.9) / 3 = 0.7
    assert matrix.acc(R3) == (approx(0.7), None)
    # BWT = ((R31 - R11) + (R32 - R22)) / 2 = ((0.5 - 0.9) + (0.7 - 0.8)) / 2 = -0.25  (over tasks, not pairs)
    assert matrix.bwt(R3) == (approx(-0.25), None)
    # FWT = ((R12 - b2) + (R23 - b3)) / 2 = ((0.3 - 0.2) + (0.2 - 0.0)) / 2 = 0.15
    assert matrix.fwt(R3) == (approx(0.15), None)


def test_forgetting_chaudhry_and_avalanche_differ():
    # Chaudhry: f31 = max(R11, R21) - R31 = 0.95 - 0.5 = 0.45; f32 = max(R12, R22) - R32 = 0.8 - 0.7 = 0.1
    f, why = matrix.forgetting_per_task(R3)
    assert why is None and f.tolist() == [approx(0.45), approx(0.1)]
    assert matrix.forgetting(R3) == (approx(0.275), None)          # (0.45 + 0.1) / 2
    # Avalanche: (R11 - R31) + (R22 - R32) = 0.4 + 0.1 -> 0.25, which is -BWT
    assert matrix.forgetting_avalanche(R3) == (approx(0.25), None)
    assert matrix.forgetting_avalanche(R3)[0] == approx(-matrix.bwt(R3)[0])


def test_forgetting_max_runs_over_every_earlier_row_as_metrics_md_writes_it():
    # Domain-incremental-like: task 2 already scores 0.85 after task 1, above its 0.8 after learning.
    R = R3.copy()
    R[1, 1] = 0.85
    # f32 = max(R12 = 0.85, R22 = 0.8) - R32 = 0.85 - 0.7 = 0.15 ; f31 = 0.45 -> F = 0.3
    assert matrix.forgetting(R) == (approx(0.3), None)
    # Avalanche ignores row 1 for task 2: (0.4 + 0.1) / 2 = 0.25
    assert matrix.forgetting_avalanche(R) == (approx(0.25), None)


def test_ties_in_forgetting_max_and_no_forgetting_is_zero_not_missing():
    # Every earlier task holds its accuracy exactly: the max ties with the last row -> 0.0, available.
    R = np.array([[0.1, 0.1], [0.8, 0.2], [0.8, 0.9]])
    assert matrix.forgetting(R) == (0.0, None)
    assert matrix.bwt(R) == (0.0, None)


def test_learning_accuracy_and_average_incremental_accuracy():
    # LA = (0.9 + 0.8 + 0.9) / 3 = 0.866667
    assert matrix.learning_accuracy(R3) == (approx(2.6 / 3), None)
    # ACC_1 = 0.9 ; ACC_2 = (0.95 + 0.8) / 2 = 0.875 ; ACC_3 = 0.7 -> AIA = 2.475 / 3 = 0.825
    c, _ = matrix.acc_curve(R3)
    assert c.tolist() == [approx(0.9), approx(0.875), approx(0.7)]
    assert matrix.avg_incremental_acc(R3) == (approx(0.825), None)


def test_intransigence_needs_a_joint_reference():
    # I_k = a*_k - R_kk = (0.95 - 0.9, 0.9 - 0.8, 0.92 - 0.9) = (0.05, 0.1, 0.02) -> mean 0.056667
    v, why = matrix.intransigence_per_task(R3, ref_matrix(REF_DIAG))
    assert why is None and v.tolist() == [approx(0.05), approx(0.1), approx(0.02)]
    assert matrix.intransigence(R3, ref_matrix(REF_DIAG)) == (approx(0.17 / 3), None)
    value, why = matrix.intransigence(R3, None)
    assert value is None and "Joint" in why
    # a reference that has finished only task 1: a*_2 is missing -> unavailable, naming the cell
    short = ref_matrix(REF_DIAG)
    short[2:] = NAN
    value, why = matrix.intransigence(R3, short)
    assert value is None and "R[2][2]" in why and "Joint reference" in why


def test_performance_maintenance():
    # PM_1 = mean(R21 - R11, R31 - R11) = mean(0.05, -0.4) = -0.175 ; PM_2 = R32 - R22 = -0.1
    v, _ = l2m.performance_maintenance_per_task(R3)
    assert v.tolist() == [approx(-0.175), approx(-0.1)]
    assert l2m.performance_maintenance(R3) == (approx(-0.1375), None)


def test_transfer_ratios_and_contrasts():
    # forward pairs (i<j): (1,2) 0.3/0.2 = 1.5 ; (1,3) 0.1/0.0 skipped ; (2,3) 0.2/0.1 = 2.0 -> 1.75
    assert l2m.transfer(R3, "forward", "ratio") == (approx(1.75), None)
    # contrast: (0.3-0.2)/0.5 = 0.2 ; (0.1-0)/0.1 = 1.0 ; (0.2-0.1)/0.3 = 1/3 -> (0.2 + 1 + 1/3) / 3
    assert l2m.transfer(R3, "forward", "contrast") == (approx((0.2 + 1 + 1 / 3) / 3), None)
    # backward pairs (j<i): (2,1) 0.95/0.9 ; (3,1) 0.5/0.95 ; (3,2) 0.7/0.8
    assert l2m.transfer(R3, "backward", "ratio") == (approx((0.95 / 0.9 + 0.5 / 0.95 + 0.875) / 3), None)
    # contrasts: 0.05/1.85 ; -0.45/1.45 ; -0.1/1.5
    assert l2m.transfer(R3, "backward", "contrast") == (approx((0.05 / 1.85 - 0.45 / 1.45 - 0.1 / 1.5) / 3), None)


def test_transfer_all_denominators_zero_is_unavailable_not_zero():
    R = np.array([[0.0, 0.0], [0.9, 0.0], [0.5, 0.8]])  # the only forward pair (1,2): 0.0/0.0
    value, why = l2m.transfer(R, "forward", "ratio")
    assert value is None and "skipped" in why


def test_one_task():
    R = np.array([[0.1], [0.9]])
    assert matrix.acc(R) == (approx(0.9), None)
    assert matrix.learning_accuracy(R) == (approx(0.9), None)
    assert matrix.avg_incremental_acc(R) == (approx(0.9), None)
    for fn in (matrix.bwt, matrix.fwt, matrix.forgetting, matrix.forgetting_avalanche, l2m.performance_maintenance):
        value, why = fn(R)
        assert value is None and "at least 2" in why, fn.__name__
    assert l2m.transfer(R, "forward")[0] is None and l2m.transfer(R, "backward")[0] is None


def test_running_run_uses_the_tasks_done_so_far():
    R = R3.copy()
    R[3] = NAN                          # task 3 still training: rows 0..2 only
    assert tasks_done(R) == 2
    # ACC_2 = (0.95 + 0.8) / 2 (task 3's column is not averaged in: unseen) ; BWT = 0.95 - 0.9
    assert matrix.acc(R) == (approx(0.875), None)
    assert matrix.bwt(R) == (approx(0.05), None)
    assert matrix.fwt(R) == (approx(0.1), None)              # R12 - b2 only
    # forgetting after task 2: max(R11) - R21 = 0.9 - 0.95 = -0.05 (negative: it improved)
    assert matrix.forgetting(R) == (approx(-0.05), None)
    assert matrix.learning_accuracy(R) == (approx(0.85), None)
    # forward pairs still reach the unseen task 3: (1,2) 1.5, (1,3) skipped, (2,3) 2.0
    assert l2m.transfer(R, "forward") == (approx(1.75), None)


def test_unseen_task_columns_do_not_enter_acc():
    R = R3.copy()
    R[3] = NAN
    R2 = R.copy()
    R2[2, 2] = 0.77                     # a different score on not-yet-trained task 3
    assert matrix.acc(R2) == matrix.acc(R)


def test_no_task_finished():
    R = np.full((3, 2), NAN)
    R[0] = [0.1, 0.1]
    assert tasks_done(R) == 0
    value, why = matrix.acc(R)
    assert value is None and "no task finished" in why


def test_missing_initial_evaluation():
    R = R3.copy()
    R[0] = NAN
    value, why = matrix.fwt(R)
    assert value is None and "before training" in why and "R[0][2]" in why
    assert matrix.acc(R) == (approx(0.7), None)
    # forward ratio keeps only (2,3): 0.2/0.1 = 2.0 ; contrast only (2,3): 1/3
    assert l2m.transfer(R, "forward", "ratio") == (approx(2.0), None)
    assert l2m.transfer(R, "forward", "contrast") == (approx(1 / 3), None)


def test_joint_all_has_rows_0_and_T_only():
    R = R3.copy()
    R[1:3] = NAN
    assert matrix.acc(R) == (approx(0.7), None)
    for fn in (matrix.bwt, matrix.forgetting, matrix.learning_accuracy, matrix.avg_incremental_acc):
        value, why = fn(R)
        assert value is None and "end of task 1" in why, fn.__name__


def test_bad_matrix_shape_raises():
    with pytest.raises(ValueError):
        matrix.acc(np.zeros((3, 3)))


# ---- continual-evaluation metrics ---------------------------------------------------------------

# Two tasks, spans (0,4] and (4,8], evaluated every 2 steps:
#   step     0    2    4    6    8
#   task 1  0.0  0.6  0.9  0.3  0.7
#   task 2  0.0  0.0  0.1  0.6  0.8
SERIES = {1: [(0, 0.0), (2, 0.6), (4, 0.9), (6, 0.3), (8, 0.7)],
          2: [(0, 0.0), (2, 0.0), (4, 0.1), (6, 0.6), (8, 0.8)]}
SPANS = {1: (0, 4), 2: (4, 8)}


def test_min_acc_and_wc_acc():
    steps, A = continual.series_from_pairs(SERIES)
    # t = 8, k = 2: min over (4, 8] of task 1 = min(0.3, 0.7) = 0.3
    assert continual.min_acc(steps, A, SPANS) == (approx(0.3), None)
    # WC-ACC = 1/2 * A(2, 8) + 1/2 * 0.3 = 0.4 + 0.15
    assert continual.wc_acc(steps, A, SPANS) == (approx(0.55), None)


def test_first_task_wc_acc_is_its_accuracy_and_min_acc_unavailable():
    steps, A = continual.series_from_pairs(SERIES)
    # at t = 2 task 1 trains: WC-ACC = A(1, 2) = 0.6 ; no earlier task for min-ACC
    assert continual.wc_acc(steps, A, SPANS, t=2) == (approx(0.6), None)
    value, why = continual.min_acc(steps, A, SPANS, t=2)
    assert value is None and "no earlier task" in why


def test_no_continual_evaluation():
    steps, A = np.array([], dtype=np.int64), np.zeros((0, 2))
    for value, why in (continual.min_acc(steps, A, SPANS), continual.wc_acc(steps, A, SPANS),
                       continual.windowed_forgetting(steps, A, SPANS, 10)):
        assert value is None and "no continual evaluation" in why


def test_windowed_forgetting_and_plasticity_worked_example():
    steps, A = continual.series_from_pairs(SERIES)
    # task 1 from step 0: [0, .6, .9, .3, .7] largest drop 0.9 - 0.3 = 0.6 ; task 2 from its start (4):
    # [.1, .6, .8] never drops -> 0 ; WF10 = 0.3
    assert continual.windowed_forgetting(steps, A, SPANS, 10) == (approx(0.3), None)
    # rises: task 1 0.9 - 0.0 = 0.9 ; task 2 0.8 - 0.1 = 0.7 -> WP10 = 0.8
    assert continual.windowed_plasticity(steps, A, SPANS, 10) == (approx(0.8), None)


def test_window_length_counts_evaluations():
    spans = {1: (0, 100)}
    steps, A = continual.series_from_pairs({1: [(1, 0.9), (2, 0.7), (3, 0.5), (4, 0.6)]})
    # w = 2: adjacent pairs only: drops 0.2, 0.2, -0.1 -> 0.2 ; w = 3 also (1,3): 0.9 - 0.5 = 0.4
    assert continual.windowed_forgetting(steps, A, spans, 2) == (approx(0.2), None)
    assert continual.windowed_forgetting(steps, A, spans, 3) == (approx(0.4), None)
    steps, A = continual.series_from_pairs({1: [(1, 0.1), (2, 0.3), (3, 0.6), (4, 0.5)]})
    # w = 2: largest adjacent rise 0.3 ; w = 3: 0.6 - 0.1 = 0.5
    assert continual.windowed_plasticity(steps, A, spans, 2) == (approx(0.3), None)
    assert continual.windowed_plasticity(steps, A, spans, 3) == (approx(0.5), None)


def test_windowed_ties_flat_series_is_zero_and_single_evaluation_unavailable():
    spans = {1: (0, 100)}
    steps, A = continual.series_from_pairs({1: [(1, 0.5), (2, 0.5), (3, 0.5)]})
    assert continual.windowed_forgetting(steps, A, spans, 10) == (0.0, None)
    assert continual.windowed_plasticity(steps, A, spans, 10) == (0.0, None)
    steps, A = continual.series_from_pairs({1: [(1, 0.5)]})
    value, why = continual.windowed_forgetting(steps, A, spans, 10)
    assert value is None and "fewer than two" in why


def test_windowed_history_starts_at_the_task_start():
    # Task 2 falls from 0.5 to 0.1 BEFORE it is trained (steps 2 -> 4); its history starts at 4.
    series = {1: [(2, 0.5), (4, 0.9), (6, 0.9)], 2: [(2, 0.5), (4, 0.1), (6, 0.6)]}
    steps, A = continual.series_from_pairs(series)
    per, _ = continual.windowed_per_task(steps, A, SPANS, 10)
    # task 1: 0.9 -> 0.9 no drop = 0 ; task 2 from step 4: [0.1, 0.6] no drop = 0 (the 0.4 drop excluded)
    assert per == {1: 0.0, 2: 0.0}


def test_stability_gap_depth_and_recovery():
    steps, A = continual.series_from_pairs(SERIES)
    # switch at step 4 (task 1 -> 2): before = A(1, 4) = 0.9 ; min over (4, 8] = 0.3 at step 6 ; depth 0.6
    [rec] = gap.stability_gaps(steps, A, SPANS, tolerance=0.05)
    [item] = rec["tasks"]
    assert (rec["switch_step"], rec["from_task"], rec["to_task"]) == (4, 1, 2)
    assert item["before"] == approx(0.9) and item["min"] == approx(0.3) and item["min_step"] == 6
    assert item["depth"] == approx(0.6) and rec["depth"] == approx(0.6)
    # tolerance 0.05: needs >= 0.85 again; 0.7 at step 8 is not -> never recovered, with a reason
    assert item["recovery_steps"] is None and "end of task 2" in item["reason"]
    value, why = gap.recovery_time([rec])
    assert value is None and "1 of 1" in why
    assert gap.stability_gap([rec]) == (approx(0.6), None)
    # tolerance 0.25: needs >= 0.65 ; 0.7 at step 8 -> 8 - 4 = 4 steps after the switch
    [rec] = gap.stability_gaps(steps, A, SPANS, tolerance=0.25)
    assert rec["tasks"][0]["recovery_steps"] == 4 and rec["tasks"][0]["recovered_step"] == 8
    assert gap.recovery_time([rec]) == (approx(4.0), None)


def test_stability_gap_ties_no_drop_and_improvement():
    spans = {1: (0, 2), 2: (2, 10)}
    # task 1 before the switch (step 2) = 0.8 ; after: 0.5, 0.5, 0.9, 0.9 -> min 0.5 first at step 4 (tie)
    steps, A = continual.series_from_pairs({1: [(2, 0.8), (4, 0.5), (6, 0.5), (8, 0.9), (10, 0.9)],
                                    2: [(2, 0.0), (4, 0.2), (6, 0.4), (8, 0.6), (10, 0.8)]})
    item = gap.stability_gaps(steps, A, spans)[0]["tasks"][0]
    assert item["min_step"] == 4 and item["depth"] == approx(0.3)
    assert item["recovered_step"] == 8 and item["recovery_steps"] == 6     # 8 - 2
    # never leaves the 0.05 band: 0.8 -> 0.78 -> depth 0.02, recovery 0 steps
    steps, A = continual.series_from_pairs({1: [(2, 0.8), (4, 0.78), (6, 0.8)], 2: [(2, 0.0), (4, 0.5), (6, 0.6)]})
    item = gap.stability_gaps(steps, A, spans)[0]["tasks"][0]
    assert item["depth"] == approx(0.02) and item["recovery_steps"] == 0
    # improves after the switch: no dip, depth 0 (a gap is a drop; a rise is not a negative gap)
    steps, A = continual.series_from_pairs({1: [(2, 0.5), (4, 0.6), (6, 0.7)], 2: [(2, 0.0), (4, 0.5), (6, 0.6)]})
    item = gap.stability_gaps(steps, A, spans)[0]["tasks"][0]
    assert item["depth"] == 0 and item["reason"].startswith("no dip") and item["recovery_steps"] == 0


def test_running_run_series():
    spans = {1: (0, 4), 2: (4, None)}   # task 2 still training, last evaluation at step 6
    steps, A = continual.series_from_pairs({1: [(0, 0.0), (2, 0.6), (4, 0.9), (6, 0.3)],
                                    2: [(0, 0.0), (2, 0.0), (4, 0.1), (6, 0.6)]})
    assert continual.current_task(spans, 6) == 2
    assert continual.min_acc(steps, A, spans) == (approx(0.3), None)
    assert continual.wc_acc(steps, A, spans) == (approx(0.5 * 0.6 + 0.5 * 0.3), None)
    item = gap.stability_gaps(steps, A, spans)[0]["tasks"][0]
    assert item["depth"] == approx(0.6) and "still training" in item["reason"]


def test_joint_all_series_has_no_switch_and_no_min_acc():
    spans = {2: (0, 8)}                 # Joint "all": one boundary row, task T = 2, covering everything
    steps, A = continual.series_from_pairs(SERIES)
    value, why = continual.min_acc(steps, A, spans)
    assert value is None and "no end step of its own" in why
    assert gap.stability_gaps(steps, A, spans) == []
    value, why = gap.stability_gap([])
    assert value is None and "no task switch" in why
    # both tasks start at 0 here: task 1 drop 0.6, task 2 [0, 0, .1, .6, .8] no drop -> 0.3
    assert continual.windowed_forgetting(steps, A, spans, 10) == (approx(0.3), None)


# ---- L2M over learning curves -------------------------------------------------------------------

LEARNER = (np.array([2, 4, 6, 8]), np.array([0.2, 0.4, 0.6, 0.6]))   # (steps since task start, acc)
EXPERT = (np.array([2, 4, 6]), np.array([0.4, 0.8, 0.8]))


def test_relative_performance():
    # same experiences: L = min(8, 6) = 6 -> learner (0.2 + 0.4 + 0.6) / (expert 0.4 + 0.8 + 0.8) = 0.6
    assert l2m.relative_performance(LEARNER, EXPERT) == (approx(0.6), None)
    value, why = l2m.relative_performance(LEARNER, (np.array([]), np.array([])))
    assert value is None and "expert" in why


def test_sample_efficiency_follows_l2metrics():
    # under 3 points of window: no smoothing. Learner max 0.6 first at index 2 (tie with 3: the first);
    # expert 0.8 first at index 1 -> SE = (0.6 / 0.8) * (1 / 2) = 0.375
    assert l2m.saturation(LEARNER, window=1) == (approx(0.6), 2)
    assert l2m.sample_efficiency(LEARNER, EXPERT, window=1) == (approx(0.375), None)
    # a flat window of 3 over reflected ends, cut as l2metrics' smooth() cuts it:
    # y = [1, 0, 0, 3, 0] padded [y2, y1 | y | y3, y2] = [0, 0, 1, 0, 0, 3, 0, 3, 0]; the valid means of 3
    # are [1/3, 1/3, 1/3, 1, 1, 2, 1], of which l2metrics keeps [floor(3/2 - 1) : -ceil(3/2)] = [0:-2]
    y = np.array([1.0, 0, 0, 3, 0])
    assert l2m.l2m_smooth(y, 3) == approx([1 / 3, 1 / 3, 1 / 3, 1, 1])
    assert l2m.saturation((np.arange(5), y), window=3) == (approx(1.0), 3)
    # the default window is min(int(0.2 n), 100): 20 points -> 4; padded [3, 2, 1 | y | 18, 17, 16],
    # kept from 1: output k is the mean of padded[k+1 .. k+4] = y[k-2 .. k+1]
    z = np.arange(20.0)
    sm = l2m.l2m_smooth(z)
    assert len(sm) == 20 and sm[5] == approx((3 + 4 + 5 + 6) / 4)
    # a task saturating at its first point (learner or expert) has no value, as l2metrics leaves it out
    flat = (np.array([1, 2, 3]), np.array([0.9, 0.5, 0.4]))
    value, why = l2m.sample_efficiency(flat, EXPERT, window=1)
    assert value is None and "first evaluation of the learner" in why
    value, why = l2m.sample_efficiency(LEARNER, flat, window=1)
    assert value is None and "of the expert" in why


def test_sample_efficiency_steps_convention():
    # CL Lab's earlier convention: a trailing mean and steps since the task began
    assert l2m.saturation(LEARNER, window=1, convention="steps") == (approx(0.6), 6)
    assert l2m.sample_efficiency(LEARNER, EXPERT, window=1, convention="steps") == (approx(0.5), None)
    # trailing mean over 2 points: learner [.2, .3, .5, .6] -> 0.6 at 8 ; expert [.4, .6, .8] -> 0.8 at 6
    assert l2m.sample_efficiency(LEARNER, EXPERT, window=2, convention="steps") == (approx(0.5625), None)


def test_terminal_performance():
    # last 10% of 4 points rounds up to 1 point: 0.6 ; of 20 points: the last 2
    assert l2m.terminal_performance(LEARNER[1]) == (approx(0.6), None)
    assert l2m.terminal_performance(np.arange(20) / 100) == (approx(0.185), None)
    assert l2m.terminal_performance([])[0] is None


# ---- the registry --------------------------------------------------------------------------------

def test_registry_describes_every_summary_metric():
    required = {"acc", "bwt", "fwt", "forgetting", "learning_accuracy", "min_acc", "wc_acc",
                "wf10", "wp10", "wf100", "wp100"}
    assert required <= set(METRICS)
    for key, info in METRICS.items():
        assert info.key == key and info.latex and info.source and info.title and info.tells
        assert info.group in ("matrix", "continual", "l2m")
    assert "100" in METRICS["wf100"].latex


# ---- end to end through a DuckDB file ------------------------------------------------------------

SCENARIO = {"dataset": "digits", "setting": "class", "n_tasks": 3, "class_seed": None, "seed": 0,
            "test_size": 0.25}

# The continual series of the worked example, every 2 steps, equal to R3's rows at steps 4, 8, 12
# (eval.subset null: the same samples as the boundary evaluations, and step 0 joins from R3 row 0):
#   step    2     4     6     8     10    12
#   task1  0.5   0.9   0.4   0.95  0.3   0.5
#   task2  0.25  0.3   0.6   0.8   0.5   0.7
#   task3  0.05  0.1   0.1   0.2   0.6   0.9
CONT = {2: [0.5, 0.25, 0.05], 4: [0.9, 0.3, 0.1], 6: [0.4, 0.6, 0.1], 8: [0.95, 0.8, 0.2],
        10: [0.3, 0.5, 0.6], 12: [0.5, 0.7, 0.9]}


def config(strategy=None, seed=0, subset=None, scenario=None):
    return {"name": "t", "seed": seed, "scenario": scenario or SCENARIO,
            "strategy": strategy or {"name": "naive"}, "eval": {"every": 2, "subset": subset}}


def write_run(store, cfg, *, boundary, cont, spans, status="finished", name="run"):
    """boundary / cont: {step: [acc of task 1, 2, ...]} ; spans: {task: (start, end or None)}."""
    rid = store.create_run(cfg, name=name, status="running")
    rows = []
    for metric, data in (("boundary_acc", boundary), ("acc", cont)):
        for step, values in data.items():
            for j, v in enumerate(values, start=1):
                rows.append((rid, step, j, metric, v))
                rows.append((rid, step, j, "loss", 1.0 - v))     # noise the summary must ignore
    if rows:
        store.add_metrics(dict(zip(("run_id", "step", "task", "metric", "value"), map(list, zip(*rows)))))
    for task, (start, end) in spans.items():
        store.start_task(rid, task, start)
        if end is not None:
            store.end_task(rid, task, end)
    store.set_status(rid, status)
    store.flush()
    return rid


BOUNDARY = {0: R3[0].tolist(), 4: R3[1].tolist(), 8: R3[2].tolist(), 12: R3[3].tolist()}
SPANS3 = {1: (0, 4), 2: (4, 8), 3: (8, 12)}


@pytest.fixture
def lab(tmp_path):
    s = Store(tmp_path / "metrics.duckdb")
    yield s
    s.close()


def test_summary_end_to_end(lab):
    rid = write_run(lab, config(), boundary=BOUNDARY, cont=CONT, spans=SPANS3)
    s = summary(lab, rid)
    json.dumps(s)                                   # JSON-able as it is
    assert s["status"] == "finished" and s["partial"] is False and s["tasks_done"] == 3
    assert s["accuracy_matrix"] == [[approx(x) for x in row] for row in R3.tolist()]
    # the matrix metrics, as worked out above
    expect = {"acc": 0.7, "bwt": -0.25, "fwt": 0.15, "forgetting": 0.275, "forgetting_avalanche": 0.25,
              "learning_accuracy": 2.6 / 3, "avg_incremental_acc": 0.825, "performance_maintenance": -0.1375,
              "forward_transfer_ratio": 1.75}
    for key, value in expect.items():
        assert s[key] == approx(value), key
    # continual metrics at t = 12, k = 3:
    # min-ACC: task 1 over (4,12]: min(.4,.95,.3,.5) = .3 ; task 2 over (8,12]: min(.5,.7) = .5 -> 0.4
    assert s["min_acc"] == approx(0.4)
    # WC-ACC = 1/3 * A(3,12) + 2/3 * 0.4 = 0.3 + 0.266667
    assert s["wc_acc"] == approx(0.9 / 3 + 0.8 / 3)
    # WF: task 1 from step 0 [.1,.5,.9,.4,.95,.3,.5] -> .95-.3 = .65 ; task 2 from 4 [.3,.6,.8,.5,.7] -> .3 ;
    # task 3 from 8 [.2,.6,.9] -> 0 ; all within 10 evaluations -> (0.65 + 0.3 + 0) / 3
    assert s["wf10"] == approx(0.95 / 3) and s["wf100"] == approx(0.95 / 3)
    # WP: task 1 .95 - .1 = .85 ; task 2 .8 - .3 = .5 ; task 3 .9 - .2 = .7 -> 2.05 / 3
    assert s["wp10"] == approx(2.05 / 3) and s["wp100"] == approx(2.05 / 3)
    # gaps: switch 4: task 1 .9 -> min .4 at 6 (depth .5), back >= .85 at 8 -> 4 steps ;
    # switch 8: task 1 .95 -> .3 (depth .65) and task 2 .8 -> .5 (depth .3), neither recovers by 12
    g1, g2 = s["stability_gaps"]
    assert (g1["switch_step"], g1["depth"], g1["recovery_steps"]) == (4, approx(0.5), approx(4.0))
    assert g2["switch_step"] == 8 and [x["depth"] for x in g2["tasks"]] == [approx(0.65), approx(0.3)]
    assert g2["recovery_steps"] is None and g2["reason"] == "2 of 2 earlier tasks not recovered"
    assert s["stability_gap"] == approx(1.45 / 3)
    assert s["recovery_steps"] is None and "2 of 3" in s["unavailable"]["recovery_steps"]
    # TP per task = last point of its curve: .9, .8, .9
    assert s["terminal_performance"] == approx(2.6 / 3)
    # no Joint reference and no experts in this file: unavailable, with reasons, never 0
    for key in ("intransigence", "relative_performance", "sample_efficiency"):
        assert s[key] is None and key in s["unavailable"]
    assert "joint" in s["unavailable"]["intransigence"].lower()
    available = {k for k in METRICS if s[k] is not None}
    assert available.isdisjoint(s["unavailable"]) and available | set(s["unavailable"]) == set(METRICS)


def test_intransigence_finds_the_joint_cumulative_run_of_same_scenario_and_seed(lab):
    rid = write_run(lab, config(), boundary=BOUNDARY, cont=CONT, spans=SPANS3)
    ref_rows = {0: [0.1] * 3, 4: [0.95, 0.1, 0.1], 8: [0.9, 0.9, 0.1], 12: [0.9, 0.9, 0.92]}
    joint = write_run(lab, config({"name": "joint", "mode": "cumulative"}), boundary=ref_rows, cont={},
                      spans=SPANS3)
    # decoys, newer: another seed, and a Joint in mode "all"
    write_run(lab, config({"name": "joint", "mode": "cumulative"}, seed=1),
              boundary={0: [0.1] * 3, 4: [1.0] * 3, 8: [1.0] * 3, 12: [1.0] * 3}, cont={}, spans=SPANS3)
    write_run(lab, config({"name": "joint", "mode": "all"}), boundary={0: [0.1] * 3, 12: [1.0] * 3},
              cont={}, spans={3: (0, 12)})
    s = summary(lab, rid)
    assert s["references"]["joint"] == joint == references.find_joint_reference(lab, rid)
    # (0.95 - 0.9 + 0.9 - 0.8 + 0.92 - 0.9) / 3
    assert s["intransigence"] == approx(0.17 / 3)
    assert s["per_task"]["intransigence"] == [approx(0.05), approx(0.1), approx(0.02)]


def test_a_joint_reference_stored_before_a_scenario_setting_existed_still_counts(lab):
    # a run stored with today's config carries scenario.normalize: true; a Joint stored before the
    # setting existed has no such key and is the same scenario; one with normalize false is not
    rid = write_run(lab, config(scenario={**SCENARIO, "normalize": True}), boundary=BOUNDARY, cont=CONT, spans=SPANS3)
    old_joint = write_run(lab, config({"name": "joint", "mode": "cumulative"}), boundary=BOUNDARY, cont={}, spans=SPANS3)
    write_run(lab, config({"name": "joint", "mode": "cumulative"}, scenario={**SCENARIO, "normalize": False}),
              boundary=BOUNDARY, cont={}, spans=SPANS3)
    assert references.find_joint_reference(lab, rid) == old_joint
    raw = write_run(lab, config(scenario={**SCENARIO, "normalize": False}), boundary=BOUNDARY, cont=CONT, spans=SPANS3)
    assert references.find_joint_reference(lab, raw) == old_joint + 1


def test_joint_all_run_summary(lab):
    rid = write_run(lab, config({"name": "joint", "mode": "all"}), boundary={0: R3[0].tolist(), 12: R3[3].tolist()},
                    cont=CONT, spans={3: (0, 12)})
    s = summary(lab, rid)
    assert s["acc"] == approx(0.7)
    assert s["accuracy_matrix"][1] == [None, None, None]
    assert s["bwt"] is None and "end of task 1" in s["unavailable"]["bwt"]
    assert s["min_acc"] is None and s["stability_gaps"] == []


def test_running_run_summary_is_partial(lab):
    boundary = {k: v for k, v in BOUNDARY.items() if k < 12}
    cont = {k: v for k, v in CONT.items() if k <= 10}
    rid = write_run(lab, config(), boundary=boundary, cont=cont, spans={1: (0, 4), 2: (4, 8), 3: (8, None)},
                    status="running")
    s = summary(lab.cursor(), rid)                # a plain DuckDB cursor works too
    assert s["partial"] is True and s["tasks_done"] == 2 and s["current_task"] == 3 and s["eval_step"] == 10
    assert s["accuracy_matrix"][3] == [None, None, None]
    assert s["acc"] == approx(0.875) and s["bwt"] == approx(0.05) and s["forgetting"] == approx(-0.05)
    # t = 10, k = 3: task 1 over (4,10]: .3 ; task 2 over (8,10]: .5 -> 0.4 ; WC = .6/3 + 2/3 * .4
    assert s["min_acc"] == approx(0.4)
    assert s["wc_acc"] == approx(0.6 / 3 + 0.8 / 3)
    assert "still training" in s["stability_gaps"][1]["tasks"][0]["reason"]


def test_missing_initial_evaluation_end_to_end(lab):
    boundary = {k: v for k, v in BOUNDARY.items() if k > 0}
    rid = write_run(lab, config(), boundary=boundary, cont=CONT, spans=SPANS3)
    s = summary(lab, rid)
    assert s["accuracy_matrix"][0] == [None, None, None]
    assert s["fwt"] is None and "before training" in s["unavailable"]["fwt"]
    assert s["acc"] == approx(0.7)


def test_boundary_evaluations_join_the_series_only_without_a_subset(lab):
    a = write_run(lab, config(), boundary=BOUNDARY, cont=CONT, spans=SPANS3)
    b = write_run(lab, config(subset=100), boundary=BOUNDARY, cont=CONT, spans=SPANS3)
    assert load_run(lab, a).steps.tolist() == [0, 2, 4, 6, 8, 10, 12]
    assert load_run(lab, b).steps.tolist() == [2, 4, 6, 8, 10, 12]
    # with a subset task 1's history lacks step 0 (0.1): [.5,.9,.4,.95,.3,.5] largest rise .95 - .4 = .55
    # -> WP10 = (.55 + .5 + .7) / 3 instead of (.85 + .5 + .7) / 3
    assert summary(lab, b)["wp10"] == approx(1.75 / 3)
    assert summary(lab, a)["wp10"] == approx(2.05 / 3)


def test_single_task_experts_found_by_rule_and_given_explicitly(lab):
    rid = write_run(lab, config(), boundary=BOUNDARY, cont=CONT, spans=SPANS3)
    # expert for task 1 numbers its task 1; for task 2 it keeps the number 2. Curves (steps since start):
    #   expert 1: (2, .6), (4, .9) ; expert 2: (2, .4), (4, 1.0)
    e1 = write_run(lab, config(scenario={**SCENARIO, "tasks": [1]}), boundary={}, cont={},
                   spans={1: (0, 4)})
    lab.add_metrics({"run_id": [e1, e1], "step": [2, 4], "task": [1, 1], "metric": ["acc"] * 2, "value": [0.6, 0.9]})
    e2 = write_run(lab, config(scenario={**SCENARIO, "tasks": [2]}), boundary={}, cont={},
                   spans={2: (0, 4)})
    lab.add_metrics({"run_id": [e2, e2], "step": [2, 4], "task": [2, 2], "metric": ["acc"] * 2, "value": [0.4, 1.0]})
    # an unfinished would-be expert is not taken
    write_run(lab, config(scenario={**SCENARIO, "tasks": [3]}), boundary={}, cont={}, spans={3: (0, 4)},
              status="running")
    lab.flush()
    s = summary(lab, rid)
    assert s["references"]["experts"] == {1: e1, 2: e2} == references.find_experts(lab, rid)
    # learner task 1: (2, .5), (4, .9) -> RP_1 = .7 / .75 ; task 2: (2, .6), (4, .8) -> RP_2 = .7 / .7
    assert s["per_task"]["relative_performance"] == {1: approx(0.7 / 0.75), 2: approx(1.0)}
    assert s["relative_performance"] == approx((0.7 / 0.75 + 1.0) / 2)
    # SE (2 points: no smoothing): task 1 (.9/.9)*(4/4) = 1 ; task 2 (.8/1.0)*(4/4) = .8 -> 0.9
    assert s["sample_efficiency"] == approx(0.9)
    # explicit: only task 2's expert
    s2 = summary(lab, rid, experts={2: e2})
    assert s2["relative_performance"] == approx(1.0) and s2["references"]["experts"] == {2: e2}


def test_summaries_many_runs_match_summary(lab):
    a = write_run(lab, config(), boundary=BOUNDARY, cont=CONT, spans=SPANS3)
    b = write_run(lab, config(), boundary={k: v for k, v in BOUNDARY.items() if k > 0}, cont=CONT, spans=SPANS3)
    c = write_run(lab, config(), boundary={0: BOUNDARY[0]}, cont={}, spans={1: (0, None)}, status="queued")
    many = summaries(lab.cursor(), [b, a, c])
    assert [x["run_id"] for x in many] == [b, a, c]
    for x in many:
        one = summary(lab, x["run_id"])
        assert json.dumps(one, sort_keys=True) == json.dumps(x, sort_keys=True)
    assert many[2]["acc"] is None and "no task finished" in many[2]["unavailable"]["acc"]
    assert all(v is None or math.isfinite(v) for v in (many[2][k] for k in METRICS))
    with pytest.raises(KeyError):
        summary(lab, 999)


def test_a_config_without_scenario_is_summarised_from_its_data(lab):
    # a user's own Trainer (README): config {"note": ...}, one task, T taken from the data
    rid = write_run(lab, {"note": "my own trainer"}, boundary={0: [0.1], 3: [0.8]}, cont={2: [0.6], 3: [0.8]},
                    spans={1: (0, 3)})
    s = summary(lab, rid)
    assert s["n_tasks"] == 1 and s["acc"] == approx(0.8) and s["wc_acc"] == approx(0.8)
    assert s["bwt"] is None and "at least 2" in s["unavailable"]["bwt"]


def test_docs_metrics_md_is_written_from_the_definitions():
    """The repository's metric definitions are the code's: every metric, its formula and source."""
    from store.metric_docs import markdown

    text = (ROOT / "docs" / "metrics.md").read_text()
    assert text == markdown(), "docs/metrics.md is stale: python -m store.metric_docs > docs/metrics.md"
    for m in METRICS.values():
        assert f"(`{m.key}`)" in text and m.latex in text and m.source in text
