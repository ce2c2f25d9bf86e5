"""Trade-off models by weight interpolation: the end points are the run's own models, exactly."""

import json
import shutil

import numpy as np
import pytest

from engine.interpolate import (ALPHAS, MissingWeights, available_switches, compute_tradeoffs, interpolate_state,
                                tradeoff_curve, tradeoff_table)
from engine.runs.manager import run_in_process
from tests.conftest import small_config


def _boundary_rows(store, run_id):
    """{task that ended: [acc on task 1, 2, ...]} from the stored full evaluations at task ends."""
    rows = store.sql("""SELECT b.task, m.task, m.value FROM task_boundaries b
                        JOIN metrics m ON m.run_id = b.run_id AND m.step = b.end_step AND m.metric = 'boundary_acc'
                        WHERE b.run_id = ? ORDER BY b.task, m.task""", [run_id])
    out = {}
    for ended, task, value in rows:
        out.setdefault(ended, []).append(value)
    return out


@pytest.mark.parametrize("setting", ["class", "task"])
def test_end_points_equal_the_runs_own_boundary_evaluations_exactly(store, setting):
    run_id = run_in_process(store, small_config("naive", n_tasks=3, scenario={"setting": setting}, train={"weights": "every"}))
    assert available_switches(store, run_id) == [2, 3]
    long = compute_tradeoffs(store, run_id)
    assert len(long) == 2 * len(ALPHAS) * 3                         # 2 switches x 11 alphas x 3 tasks
    assert store.sql("SELECT count(*) FROM tradeoffs WHERE run_id = ?", [run_id])[0][0] == len(long)
    ends = _boundary_rows(store, run_id)
    table = tradeoff_table(store, run_id)
    for k in (2, 3):
        at = table[table["to_task"] == k].set_index("alpha")
        assert at.index.tolist() == list(ALPHAS)
        tasks = [f"task {j}" for j in (1, 2, 3)]
        assert at.loc[0.0, tasks].tolist() == ends[k - 1]           # alpha 0: the model after task k-1
        assert at.loc[1.0, tasks].tolist() == ends[k]               # alpha 1: the model after task k
        # plasticity = accuracy on task k; stability = mean accuracy on the tasks before k
        assert (at["plasticity"] == at[f"task {k}"]).all()
        assert np.allclose(at["stability"], at[[f"task {j}" for j in range(1, k)]].mean(axis=1))
        assert np.allclose(at["seen_acc"], at[[f"task {j}" for j in range(1, k + 1)]].mean(axis=1))
    # the end of each curve is where the next begins
    assert table[(table["to_task"] == 2) & (table["alpha"] == 1.0)]["task 1"].item() == \
        table[(table["to_task"] == 3) & (table["alpha"] == 0.0)]["task 1"].item()


def test_one_switch_replaces_its_own_rows_and_keeps_the_others(store):
    run_id = run_in_process(store, small_config("naive", n_tasks=3, train={"weights": "every"}))
    compute_tradeoffs(store, run_id)
    before = store.sql("SELECT from_task, count(*) FROM tradeoffs WHERE run_id = ? GROUP BY ALL ORDER BY 1", [run_id])
    curve = tradeoff_curve(store, run_id, task=3, alphas=(0.0, 0.5, 1.0))
    assert curve["to_task"].unique().tolist() == [3] and curve["alpha"].tolist() == [0.0, 0.5, 1.0]
    after = store.sql("SELECT from_task, count(*) FROM tradeoffs WHERE run_id = ? GROUP BY ALL ORDER BY 1", [run_id])
    assert before == [(1, 33), (2, 33)] and after == [(1, 33), (2, 9)]


def test_interpolation_is_linear_in_the_weights_and_exact_at_the_ends():
    import torch

    a = {"w": torch.tensor([1.0, 2.0, -3.0]), "n": torch.tensor(1)}
    b = {"w": torch.tensor([3.0, 0.1, 5.0]), "n": torch.tensor(2)}
    assert torch.equal(interpolate_state(a, b, 0.0)["w"], a["w"])
    assert torch.equal(interpolate_state(a, b, 1.0)["w"], b["w"])
    assert torch.allclose(interpolate_state(a, b, 0.25)["w"], 0.75 * a["w"] + 0.25 * b["w"])
    assert interpolate_state(a, b, 0.3)["n"].item() == 1 and interpolate_state(a, b, 0.7)["n"].item() == 2


def test_a_run_without_weights_gets_an_error_naming_what_is_missing(store):
    for policy in ("none", "last"):
        unsaved = run_in_process(store, small_config("naive", train={"weights": policy}))
        with pytest.raises(MissingWeights, match=f"train.weights {policy}: .* need the weights after every task"):
            compute_tradeoffs(store, unsaved)
    saved = run_in_process(store, small_config("naive", train={"weights": "every"}))
    (store.artifacts_dir(saved) / "after-task-1.pt").unlink()
    with pytest.raises(MissingWeights, match=r"task switch 2 are missing: .*run-%d/after-task-1\.pt" % saved):
        compute_tradeoffs(store, saved, task=2)
    shutil.rmtree(store.artifacts_dir(saved))
    with pytest.raises(MissingWeights, match=r"no saved weights: the folder .*run-%d is missing" % saved):
        compute_tradeoffs(store, saved)
    with pytest.raises(ValueError, match="from 2 to 2"):
        compute_tradeoffs(store, saved, task=5)
    with pytest.raises(KeyError, match="no run 999"):
        compute_tradeoffs(store, 999)
    assert store.sql("SELECT count(*) FROM tradeoffs")[0][0] == 0


def test_tradeoff_cli_computes_stores_and_prints(store, capsys):
    from engine.cli.main import main

    run_id = run_in_process(store, small_config("replay", strategy={"name": "replay", "buffer_size": 50},
                                                train={"weights": "every"}))
    unsaved = run_in_process(store, small_config("naive", train={"save_weights": False}))  # the old name: none
    db = store.path
    store.close()
    assert main(["tradeoff", str(run_id), "--db", str(db), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["alpha"] for r in rows] == list(ALPHAS) and {r["to_task"] for r in rows} == {2}
    assert main(["tradeoff", str(run_id), "--task", "2", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "plasticity" in out and "1→2    1.00" in out
    assert main(["tradeoff", str(unsaved), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: run {unsaved} was trained with train.weights none") and err.count("\n") == 1
