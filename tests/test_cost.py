"""Cost estimates and refusals before anything is queued, the weights policy and budget, the clean-up
of orphan weights, the sweep check in a child process, and the server bound to localhost."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time

import pytest

import engine.core.limits
from engine.config import ConfigError, parse_config
from engine.training.cost import estimate, human_bytes
from engine.core.limits import machine_memory
from engine.runs.admission import check_queue, run_problems
from engine.core.limits import Limits
from engine.runs.manager import run_in_process
from engine.scenarios import build_scenario
from engine.strategies import STRATEGIES
from tests.conftest import ROOT, small_config

HUGE = {"model": {"name": "mlp", "hidden": [16384] * 16}}


@pytest.fixture
def limits_set(monkeypatch):
    """Set limits for this test, as lab.toml [limits] would."""
    def set_limits(**values):
        monkeypatch.setattr(engine.core.limits, "_cached", dataclasses.replace(Limits(), **values))
    return set_limits


def test_the_estimate_counts_the_mlp_parameters_steps_rows_and_weights_exactly():
    config = small_config("naive", n_tasks=2, model={"name": "mlp", "hidden": [64, 32]},
                          train={"weights": "every", "epochs_per_task": 3})
    cost = estimate(config)
    assert cost.params == (64 * 64 + 64) + (64 * 32 + 32) + (32 * 10 + 10)
    assert cost.memory["weights"] == cost.memory["gradients"] == 4 * cost.params
    assert cost.memory["optimizer"] == 0  # SGD without momentum keeps nothing
    # Split-Digits in 2 tasks: the steps the trained run reports
    from store import Store
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"{tmp}/lab.duckdb")
        run_id = run_in_process(store, config)
        total, rows = store.sql("SELECT total_steps, (SELECT count(*) FROM metrics WHERE run_id = ?) FROM runs "
                                "WHERE id = ?", [run_id, run_id])[0]
        files = sorted(p.name for p in store.artifacts_dir(run_id).iterdir())
        on_disk = sum(p.stat().st_size for p in store.artifacts_dir(run_id).iterdir())
        store.close()
    # class sizes differ a little from the mean: at most a batch per task and epoch
    assert abs(cost.steps - total) <= 2 * 3, (cost.steps, total)
    assert abs(cost.metric_rows - rows) <= 0.05 * rows, (cost.metric_rows, rows)
    assert files == ["after-task-0.pt", "after-task-1.pt", "after-task-2.pt"] and cost.weight_files == 3
    assert 0.9 < cost.weights_disk / on_disk < 1.5
    assert "parameters" in cost.summary() and f"{cost.steps:,} steps" in cost.summary()


def test_optimizer_and_strategy_state_count_in_the_memory():
    sgd = estimate(small_config("naive"))
    adam = estimate(small_config("naive", train={"optimizer": "adam"}))
    assert adam.memory["optimizer"] == 2 * sgd.memory["weights"]
    replay = estimate(small_config("replay", strategy={"name": "replay", "buffer_size": 1000}))
    assert replay.memory["strategy"] == 1000 * (64 * 4 + 16)  # the buffer: 1,000 digits of 64 floats
    lwf = estimate(small_config("lwf"))
    assert lwf.memory["strategy"] == lwf.memory["weights"]  # the teacher
    cumulative = estimate(small_config("joint", strategy={"name": "joint", "mode": "cumulative"}))
    assert cumulative.steps > sgd.steps  # task 2 trains on tasks 1 and 2


def test_a_memory_per_class_counts_every_class_of_every_task():
    digit = 64 * 4 + 16
    per_class = {"name": "replay", "policy": "per_class", "memory_per_class": 50}
    assert estimate(small_config("replay", strategy=per_class)).memory["strategy"] == 50 * 10 * digit
    domain = small_config("replay", n_tasks=3, strategy=per_class, scenario={"setting": "domain"})
    assert estimate(domain).memory["strategy"] == 50 * 10 * 3 * digit  # each task's classes their own sets
    fixed = estimate(small_config("replay", strategy={**per_class, "policy": "class_balanced", "buffer_size": 300}))
    assert fixed.memory["strategy"] == 300 * digit  # a fixed total ignores memory_per_class
    scenario = build_scenario(domain.scenario)  # what the run holds after its last task
    replay = STRATEGIES["replay"](**domain.strategy_hparams)
    for experience in replay.experiences(scenario):
        replay.after_task(None, experience)
    assert replay.replay_buffer.x.numel() * 4 + 16 * len(replay.replay_buffer) == estimate(domain).memory["strategy"]


def test_a_model_too_big_for_the_machine_is_refused_with_the_figures(limits_set):
    config = parse_config(HUGE)
    lines = run_problems(config)
    machine = machine_memory()
    assert lines[0] == ("model: mlp hidden [16384 x 16] has 4,028,006,410 parameters: at most 200,000,000 "
                        "(limits.max_model_params)")
    assert lines[1] == (f"model: mlp hidden [16384 x 16] needs about 16.1 GB for the weights alone; this machine "
                        f"allows {human_bytes(machine / 2)} (50% of {human_bytes(machine)})")
    limits_set(max_steps_per_run=100, max_metric_rows_per_run=1000)
    lines = run_problems(parse_config({"train": {"epochs_per_task": 50}}))
    assert lines[0].startswith("train.epochs_per_task = 50: the run would train about 2,250 steps (batch_size 32); "
                               "at most 100 (limits.max_steps_per_run)")
    assert lines[1].startswith("eval.every = 10: the run would write about ")
    assert lines[1].endswith("; at most 1,000 (limits.max_metric_rows_per_run)")


def test_the_cli_refuses_a_costly_run_with_exit_2_and_writes_nothing(tmp_path):
    config = tmp_path / "huge.yaml"
    config.write_text(json.dumps(HUGE))
    db = tmp_path / "lab.duckdb"
    out = subprocess.run([sys.executable, "-m", "engine", "run", str(config), "--db", str(db)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "needs about 16.1 GB for the weights alone" in out.stderr and "Traceback" not in out.stderr
    assert not db.exists()


def test_submit_and_launch_sweep_refuse_before_any_row_is_written(store, limits_set):
    from engine.runs.manager import RunManager
    from engine.sweeps.sweep import launch_sweep

    manager = RunManager(store, max_parallel=1, warm_workers=0, paused=True)
    try:
        with pytest.raises(ConfigError, match="for the weights alone"):
            manager.submit(parse_config(HUGE))
        spec = {"name": "s", "base": {"model": {"hidden": [32]}}, "grid": {"model.hidden": [[32], [16384] * 16]},
                "seeds": [0, 1]}
        with pytest.raises(ConfigError) as err:
            launch_sweep(manager, spec)
        line = err.value.problems[1]
        assert "for the weights alone; this machine allows" in line
        assert "(2 of the 4 runs, e.g. 's/naive hidden=[16384,16384," in line
        assert store.sql("SELECT count(*) FROM runs")[0][0] == 0
        assert store.sql("SELECT count(*) FROM sweeps")[0][0] == 0
        # the weights budget: what is on disk, what queued runs will write, and the new runs
        one = estimate(small_config("naive"))
        per_run = one.weights_disk + one.checkpoint_disk
        limits_set(weights_budget_gb=2.6 * per_run / 1e9)
        manager.submit(small_config("naive"))
        manager.submit(small_config("naive", seed=1))
        with pytest.raises(ConfigError) as err:
            manager.submit(small_config("naive", seed=2))
        line = err.value.problems[0]
        assert line.startswith(f"train.weights: this run would keep about {human_bytes(per_run)} of weights and "
                               f"checkpoints; with 0 B already beside the database and {human_bytes(2 * per_run)} "
                               "to come from queued and running runs")
        assert "over the weights budget" in line and "python -m engine gc" in line
        manager.submit(small_config("naive", seed=2, train={"weights": "none"}))  # keeps only its checkpoint
        sweep = {"name": "b", "base": {"model": {"hidden": [64]}, "train": {"epochs_per_task": 1}}, "seeds": [5, 6]}
        with pytest.raises(ConfigError, match="these 2 runs would keep"):
            launch_sweep(manager, sweep)
        assert store.sql("SELECT count(*) FROM runs")[0][0] == 3
        assert store.sql("SELECT count(*) FROM sweeps")[0][0] == 0
    finally:
        manager.shutdown()


def test_weights_policy_keeps_every_last_or_no_file(store):
    kept = {}
    for policy in ("every", "last", "none"):
        run_id = run_in_process(store, small_config("naive", n_tasks=3, train={"weights": policy}))
        d = store.artifacts_dir(run_id)
        kept[policy] = sorted(p.name for p in d.iterdir()) if d.exists() else []
    assert kept == {"every": ["after-task-0.pt", "after-task-1.pt", "after-task-2.pt", "after-task-3.pt"],
                    "last": ["after-task-3.pt"], "none": []}
    old = small_config("naive", train={"save_weights": True})  # a config from before train.weights
    assert old.train.weights == "every" and "save_weights" not in old.model_dump()["train"]


def test_deleted_runs_lose_their_weights_and_gc_removes_orphans(store, tmp_path, capsys):
    from engine.cli.main import main
    from engine.runs.artifacts import disk_usage, remove_orphans

    kept = run_in_process(store, small_config("naive", train={"weights": "every"}))
    deleted = run_in_process(store, small_config("naive", train={"weights": "every"}))
    store.delete_run(deleted)
    assert not store.artifacts_dir(deleted).exists()
    orphan = store.artifacts_dir(999)  # a run deleted by hand or by an older version
    orphan.mkdir(parents=True)
    (orphan / "after-task-1.pt").write_bytes(b"x" * 5000)
    before = disk_usage(store.path)
    assert set(before["runs"]) == {kept, 999} and before["runs"][999] == 5000
    db = store.path
    store.close()
    assert main(["gc", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("freed 5 kB in 1 folder(s) of runs that no longer exist: run-999")
    assert not orphan.exists() and store.artifacts_dir(kept).exists()
    from store import Store
    with Store(db) as again:
        assert remove_orphans(again) == ([], 0)


def test_a_pasted_sweep_is_checked_in_a_child_process_with_limits(tmp_path, monkeypatch):
    from engine.sweeps.check import check_sweep_text

    good = check_sweep_text("name: s\nbase: {model: {hidden: [32]}}\ngrid: {train.lr: [0.01, 0.05]}\nseeds: [0, 1]\n")
    assert good.ok and good.runs == 4 and good.kind == "grid" and good.sweep["grid"] == {"train.lr": [0.01, 0.05]}
    bad = check_sweep_text("name: bad\ngrid: {train.lr: [-1]}\nseeds: [0]\n")
    assert not bad.ok and bad.problems == ["grid.train.lr = -1: must be greater than 0"]
    # a bomb of YAML aliases is refused where it enters, in one line (the child never expands it)
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "name: *i\n"
    started = time.monotonic()
    refused = check_sweep_text(bomb)
    assert not refused.ok and time.monotonic() - started < 60
    assert refused.problems == ["sweep: line 1, column 4 (a): aliases (&/*) are not allowed: write the value out"]
    # a check that takes longer than its limit is stopped, the limit named (the child reads lab.toml too):
    # 0.2 s is less than the child takes to start, whatever the sweep. (A bomb timed against 3 s passed here
    # only while the child's imports took longer than 3 s.)
    settings = tmp_path / "lab.toml"
    settings.write_text("[limits]\nsweep_check_seconds = 0.2\n")
    monkeypatch.setenv("CL_LAB_SETTINGS", str(settings))
    monkeypatch.setattr(engine.core.limits, "_cached", None)
    slow = check_sweep_text("name: s\ngrid: {train.lr: [0.01]}\nseeds: [0]\n")
    assert not slow.ok and slow.problems == [
        "sweep: checking it took more than 0.2 s (limits.sweep_check_seconds); make it smaller"], slow.problems


def _listening(port: int) -> set[str]:
    """The local addresses with a socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, p = local.rsplit(":", 1)
            if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_the_server_listens_on_localhost_only(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--",
                             "--db", str(tmp_path / "lab.duckdb")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while not _listening(port) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert _listening(port) == {"0100007F"}  # 127.0.0.1, and no 0.0.0.0 or :: socket
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode()
    assert "Network URL" not in out


@pytest.mark.parametrize("name", ["agem", "icarl"])
def test_agem_and_icarl_with_a_memory_per_class_are_estimated_as_they_hold(name):
    """The estimate equals what the memory holds after the last task (iCaRL: and its teacher)."""
    from engine.models.mlp import MLP
    from engine.module import ContinualModule

    digit = 64 * 4 + 16
    config = small_config(name, n_tasks=3, strategy={"name": name, "policy": "per_class", "memory_per_class": 30})
    fixed = small_config(name, n_tasks=3, strategy={"name": name, "memory_size" if name == "icarl" else "buffer_size": 300})
    scenario = build_scenario(config.scenario)
    strategy = STRATEGIES[name](**config.strategy_hparams)
    net = MLP((64,), 10, hidden=[64])
    module = ContinualModule(net, strategy, config.train, scenario.class_mask, scenario.n_classes)
    strategy.setup(module, scenario)
    for experience in strategy.experiences(scenario):
        strategy.before_task(module, experience)
        strategy.after_task(module, experience)
    held = len(strategy.memory_y if name == "icarl" else strategy.memory) * digit
    teacher = estimate(config).memory["weights"] if name == "icarl" else 0
    assert held == 30 * 10 * digit and estimate(config).memory["strategy"] == held + teacher
    assert estimate(fixed).memory["strategy"] == 300 * digit + teacher  # a fixed total: the old estimate, iCaRL's now counted
