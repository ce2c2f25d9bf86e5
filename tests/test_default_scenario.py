"""The default 5-task class-incremental Split-Digits reproduces the known ordering of strategies
(metrics.md: naive about 0.20, replay about 0.90, joint about 0.98)."""

import numpy as np

from engine.config import parse_config
from engine.runs.manager import run_in_process
from store.metrics.summary import load_run

DEFAULT = {"scenario": {"dataset": "digits", "setting": "class", "n_tasks": 5}, "model": {"name": "mlp", "hidden": [256, 256]},
           "train": {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "epochs_per_task": 5}, "eval": {"every": 10}}


def final_accuracies(store, strategy):
    run_id = run_in_process(store, parse_config({**DEFAULT, "strategy": strategy}))
    return load_run(store, run_id).R[-1]


def test_replay_and_joint_end_well_above_naive_which_keeps_only_the_last_task(store):
    naive = final_accuracies(store, {"name": "naive"})
    replay = final_accuracies(store, {"name": "replay", "buffer_size": 200})
    joint = final_accuracies(store, {"name": "joint"})
    assert naive[-1] > 0.9  # it learns the last task...
    assert naive[:-1].max() < 0.1  # ...and forgets every earlier one
    assert naive.mean() < 0.25
    assert replay.mean() > naive.mean() + 0.5
    assert joint.mean() > naive.mean() + 0.6
    assert np.all(replay[:-1] > 0.5)  # replay keeps every earlier task
