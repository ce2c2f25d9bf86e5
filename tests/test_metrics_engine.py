"""Metrics over runs the engine trained: the references found in the store, and the CLI."""

import json
import subprocess
import sys

import numpy as np

from engine.runs.manager import run_in_process
from store.metrics.summary import summaries, summary
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
    from store.metrics.summary import load_run

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


def test_a_class_il_run_records_mammoths_task_il_accuracy_at_test_time_only(store):
    """Mammoth's Task-IL column (Buzzega et al. 2020): the class-IL model's logits masked to each test
    sample's task at test time. Per task it is at least the plain accuracy, and it is what the stored
    weights give by hand; the CLI and the run report show it; a task-IL run has no such rows."""
    import torch

    from engine.models import build_model
    from engine.report.content import run_report
    from engine.report.document import Table
    from engine.scenarios import build_scenario

    config = small_config("naive", n_tasks=3)
    run_id = run_in_process(store, config)
    s = summary(store, run_id)
    plain, masked = np.array(s["accuracy_matrix"], float), np.array(s["task_il_matrix"], float)
    assert masked.shape == plain.shape == (4, 3)
    assert (masked >= plain - 1e-12).all()
    assert (masked[3, :2] > plain[3, :2]).any()  # naive forgets the old tasks' classes, not within a task
    assert abs(s["task_il_acc"] - masked[3].mean()) < 1e-12 and s["task_il_acc"] > s["acc"]
    assert summaries(store, [run_id])[0]["task_il_matrix"] == s["task_il_matrix"]  # the uncached path agrees

    scenario = build_scenario(config.scenario)
    net = build_model(config.model, scenario.input_shape, scenario.n_classes)
    net.load_state_dict(torch.load(store.artifacts_dir(run_id) / "after-task-3.pt"))
    net.eval()
    with torch.no_grad():
        for j, task in enumerate(scenario.tasks):
            logits = net(task.test_x)
            keep = torch.full_like(logits, float("-inf"))
            keep[:, task.classes] = 0.0
            by_hand = ((logits + keep).argmax(1) == task.test_y).double().mean().item()
            assert abs(by_hand - masked[3, j]) < 1e-12

    rows = next(t for t in run_report(store, run_id).blocks if isinstance(t, Table) and t.columns[:2] == ["Metric", "Value"]).rows
    assert any(r[0].endswith("[task_il_acc]") and r[1] == f"{s['task_il_acc']:.3f}" for r in rows)
    db = store.path
    task_il = run_in_process(store, small_config("naive", scenario={"setting": "task"}))
    t = summary(store, task_il)
    assert t["task_il_acc"] is None and "class-incremental runs only" in t["unavailable"]["task_il_acc"]
    assert t["task_il_matrix"] is None
    assert store.sql("SELECT count(*) FROM metrics WHERE run_id = ? AND metric = 'boundary_masked_acc'",
                     [task_il])[0][0] == 0
    store.close()
    text = subprocess.run([sys.executable, "-m", "engine", "metrics", str(run_id), "--db", str(db)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if "Task-IL accuracy" in x)
    assert f"{s['task_il_acc']:8.4f}" in line

    from store import Store

    again = Store(db)
    try:  # a run stored before the masked rows existed still loads, the figure unavailable with its reason
        again.write("DELETE FROM metrics WHERE run_id = ? AND metric = 'boundary_masked_acc'", [run_id])
        old = summary(again, run_id)
    finally:
        again.close()
    assert old["acc"] == s["acc"] and old["task_il_acc"] is None and old["task_il_matrix"] is None
    assert "trained before CL Lab recorded them" in old["unavailable"]["task_il_acc"]
