"""Metrics over runs the engine trained: the references found in the store, and the CLI."""

import json
import subprocess
import sys

import numpy as np

from engine.manager import run_in_process
from store.metrics import summary
from tests.conftest import ROOT, small_config


def test_joint_reference_and_single_task_experts_make_intransigence_and_l2m_computable(store):
    run_id = run_in_process(store, small_config("naive"))
    alone = summary(store, run_id)
    assert alone["intransigence"] is None and "Joint" in alone["unavailable"]["intransigence"]
    assert alone["relative_performance"] is None and "expert" in alone["unavailable"]["relative_performance"]

    joint = run_in_process(store, small_config("joint", strategy={"name": "joint", "mode": "cumulative"}))
    experts = [run_in_process(store, small_config("naive", scenario={"tasks": [j]})) for j in (1, 2)]
    s = summary(store, run_id)
    assert s["references"]["joint"] == joint
    assert s["references"]["experts"] == {1: experts[0], 2: experts[1]}
    # I_k = a*_k - R[k][k] with a*_k the Joint run's R[k][k]; averaged over k
    R, R_joint = s["accuracy_matrix"], summary(store, joint)["accuracy_matrix"]
    expected = ((R_joint[1][0] - R[1][0]) + (R_joint[2][1] - R[2][1])) / 2
    assert abs(s["intransigence"] - expected) < 1e-12
    assert s["relative_performance"] is not None and s["relative_performance"] > 0
    assert s["sample_efficiency"] is not None


def test_metrics_cli_prints_json_with_nulls_and_reasons(store, tmp_path):
    run_id = run_in_process(store, small_config("replay"))
    db = store.path
    store.close()
    proc = subprocess.run([sys.executable, "-m", "engine", "metrics", str(run_id), "--db", str(db), "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    for key in ("acc", "bwt", "fwt", "forgetting", "learning_accuracy", "min_acc", "wc_acc", "wf10", "wp10"):
        assert key in data
    assert isinstance(data["acc"], float) and 0 <= data["acc"] <= 1
    assert len(data["accuracy_matrix"]) == 3 and len(data["accuracy_matrix"][0]) == 2  # row 0 before training
    assert data["intransigence"] is None and data["unavailable"]["intransigence"]
    text = subprocess.run([sys.executable, "-m", "engine", "metrics", str(run_id), "--db", str(db)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "Average accuracy (ACC)" in text.stdout and f"{data['acc']:8.4f}" in text.stdout
    missing = subprocess.run([sys.executable, "-m", "engine", "metrics", "999", "--db", str(db)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "there is no run 999" in missing.stderr


def test_with_an_eval_subset_the_series_ends_each_task_on_its_own_samples(store):
    """eval.every (7) does not divide a task's length: the series still holds each task's last step, so
    no task's worst case since it was learned (min-ACC's terms) lies above its value at the run's end."""
    from store.metrics import load_run

    run_id = run_in_process(store, small_config("naive", n_tasks=4, eval={"every": 7, "subset": 100}))
    run = load_run(store, run_id)
    ends = [end for _, end in run.spans.values()]
    assert any(end % 7 for end in ends)  # the case: a task ends between two periodic evaluations
    measured = {int(s) for s, row in zip(run.steps, run.A) if np.isfinite(row).all()}
    assert set(ends) <= measured
    final = run.A[list(run.steps).index(ends[-1])]
    s = summary(store, run_id)
    for i, (_, end) in list(run.spans.items())[:-1]:
        after = run.A[run.steps > end, i - 1]
        assert np.nanmin(after) <= final[i - 1] + 1e-12
    assert s["min_acc"] <= np.mean(final[:-1]) + 1e-12
