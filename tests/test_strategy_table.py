"""bench/strategy_table.py, run as a user runs it: every cell says n finished of n launched and names
the diverged seeds, Joint gets its own epochs, task-incremental rows follow a task-incremental naive."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _row(text: str, code: str) -> list[str]:
    return [row for row in text.splitlines() if f"(`{code}`)" in row]


@pytest.mark.timeout(900)  # four real runs and a diverging one, on a machine that may be shared
def test_table_counts_seeds_flags_divergence_and_gives_task_il_its_own_baseline(tmp_path):
    out = tmp_path / "strategies.md"
    proc = subprocess.run(
        [sys.executable, "bench/strategy_table.py", "--seeds", "1", "--epochs", "1", "--joint-epochs", "3",
         "--strategies", "naive,mas,packnet", "--scenarios", "digits", "--hparam", "mas.mas_lambda=1e5",
         "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    header = [c.strip() for c in text.splitlines()[[i for i, r in enumerate(text.splitlines()) if r.startswith("| Method")][0]].split("|")]
    seeds = header.index("Seeds")
    mas = _row(text, "mas")[0].split("|")
    assert mas[seeds].strip().startswith("0/1 (diverged: seed 0 at step "), mas  # not dropped silently
    assert mas[header.index("ACC")].strip() == "-"
    naive_rows = _row(text, "naive")
    assert len(naive_rows) == 2  # class-incremental, and the task-incremental baseline
    assert all(r.split("|")[seeds].strip() == "1/1" for r in naive_rows)
    lines = text.splitlines()
    task_naive = lines.index(naive_rows[1])
    assert "task-incremental (the baseline of the rows below)" in naive_rows[1]
    assert "(`packnet`)" in lines[task_naive + 1]  # the task-incremental method right after its baseline
    acc = header.index("ACC")
    class_acc, task_acc = (float(r.split("|")[acc].split("±")[0]) for r in naive_rows)
    assert task_acc > class_acc + 0.2  # a different floor: comparing PackNet with the class-IL naive misleads
    assert "Joint, the upper reference, trains 3 epochs over all tasks' data" in text


def test_joint_gets_its_own_epochs_to_convergence():
    import importlib.util

    from engine.scenarios import build_scenario
    from engine.strategies import STRATEGIES

    spec = importlib.util.spec_from_file_location("strategy_table", ROOT / "bench" / "strategy_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    config = table.make_config("joint", "digits", 0, 5, joint_epochs=50)
    joint = STRATEGIES["joint"](**config.strategy_hparams)
    experiences = joint.experiences(build_scenario(config.scenario))
    assert joint.epochs_per_experience(config.train) == 50  # not the 5 a task of the others
    assert joint.planned_steps(experiences, config.train) == 50 * -(-len(experiences[0]) // 32)
    assert table.make_config("naive", "digits", 0, 5, joint_epochs=50).strategy_hparams.get("epochs") is None


def test_bad_hparam_argument_is_one_line():
    proc = subprocess.run([sys.executable, "bench/strategy_table.py", "--hparam", "nosuch.x=1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "STRATEGY.KEY=VALUE" in proc.stderr and "Traceback" not in proc.stderr
