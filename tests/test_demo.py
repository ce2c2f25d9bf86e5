"""The Home demo shows the stability gap: the earlier tasks' accuracy falls sharply right after each
task switch and recovers during the new task (issue: the stability gap on the first click)."""

import numpy as np
import pytest

from engine.config import load_config
from engine.runs.manager import run_in_process
from store.metrics.summary import load_run
from store.metrics.gap import switch_dips
from tests.conftest import ROOT

DEMO = ROOT / "configs" / "replay-demo.yaml"


def dips_of(store, seed: int) -> list[dict]:
    run_id = run_in_process(store, load_config(DEMO).model_copy(update={"seed": seed}))
    run = load_run(store, run_id)
    return switch_dips(run.steps, run.A, run.spans)


def test_the_demo_is_replay_evaluated_every_step():
    config = load_config(DEMO)
    assert "demo" in DEMO.name and config.strategy["name"] == "replay" and config.eval.every == 1
    assert config.scenario.dataset == "digits"  # embedded: no data directory needed


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_demo_shows_a_stability_gap_that_recovers(store, seed):
    dips = dips_of(store, seed)
    assert [d["to_task"] for d in dips] == [2, 3, 4, 5]
    fall = np.mean([d["fall"] for d in dips])
    recovered = np.mean([d["end"] - d["lowest"] for d in dips])
    assert fall >= 0.10, dips                      # a sharp drop within the first quarter of the new task
    assert recovered >= 0.5 * fall, dips           # at least half of it won back by the task's end


def test_switch_dips_on_a_worked_example():
    # two tasks; task 2 trains over steps (2, 6]; task 1's accuracy 0.9 at the switch, 0.5 at step 3
    # (within the first quarter: ceil(0.25 * 4) = 1 step), back to 0.8 at the end
    steps = np.array([0, 1, 2, 3, 4, 5, 6])
    A = np.array([[0.1, 0.1], [0.6, 0.1], [0.9, 0.1], [0.5, 0.3], [0.6, 0.5], [0.7, 0.7], [0.8, 0.9]])
    spans = {1: (0, 2), 2: (2, 6)}
    (d,) = switch_dips(steps, A, spans)
    assert d["to_task"] == 2 and d["before"] == pytest.approx(0.9) and d["lowest"] == pytest.approx(0.5)
    assert d["fall"] == pytest.approx(0.4) and d["end"] == pytest.approx(0.8)
    assert d["recovered"] == pytest.approx(0.75)
