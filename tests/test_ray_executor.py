"""The Ray executor on a real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head
that trains nothing and two one-CPU nodes): a sweep launched from the Launch page trains on it, and its
runs' metrics equal the local executor's row by row; cancel reaches the task within a second; a node removed mid-run fails its run with Ray's reason
and resume finishes it on another node; a lab SIGKILLed while its runs train leaves nothing training and
reopens clean; without Ray or without a cluster, one line. About 2 minutes on 2 cores."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from engine.runs.manager import RunManager
from store import Store
from tests.conftest import ROOT, small_config
from tests.test_browser import CHROMIUM, page  # noqa: F401 - the fixture

ray = pytest.importorskip("ray")  # requirements-ray.txt (in requirements-dev.txt): CI has it
from ray.cluster_utils import Cluster  # noqa: E402

pytestmark = pytest.mark.ray

METRIC_COLUMNS = "step, task, metric, value"


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.fixture
def ray_env(cluster):
    """The environment of a CLI command that trains on the cluster."""
    return {**os.environ, "CL_LAB_RAY_ADDRESS": cluster.address, "CL_LAB_THREADS": "1"}


def metric_rows(db, run_id):
    with Store(db, read_only=True) as store:
        return store.sql(f"SELECT {METRIC_COLUMNS} FROM metrics WHERE run_id = ? ORDER BY {METRIC_COLUMNS}", [run_id])


def run_row(store, run_id):
    return store.sql("SELECT status, error, node, last_step, total_steps FROM runs WHERE id = ?", [run_id])[0]


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (value := condition()):
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what}")


def cli(args, env, timeout=240):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def ray_lab(cluster, tmp_path):
    store = Store(tmp_path / "lab.duckdb")
    manager = RunManager(store, executor="ray", executor_options={"address": cluster.address}, warm_workers=0)
    yield manager, store
    manager.shutdown()
    store.close()


def long_config(name="long", epochs=60):
    return small_config(n_tasks=2, name=name, train={"epochs_per_task": epochs})


def test_cancel_reaches_the_task_within_a_second(ray_lab):
    manager, store = ray_lab
    assert manager.max_parallel == 2  # the cluster's two CPUs (this machine's count is not asked)
    run_id = manager.submit(long_config())
    wait_for(lambda: run_row(store, run_id)[3] and run_row(store, run_id)[3] > 5, 60, "the run trains")
    asked = time.monotonic()
    assert manager.cancel(run_id)
    assert manager.wait(run_id, timeout=30) == "cancelled"
    took = time.monotonic() - asked
    assert took < 2.0, took  # the flag is polled every 0.2 s; the rest is the end's messages
    status, error, node, last_step, total = run_row(store, run_id)
    assert node and 0 < last_step < total


def test_a_message_the_lab_cannot_take_fails_its_run_and_the_reader_serves_the_others(ray_lab):
    manager, store = ray_lab
    bad, good = manager.submit(long_config("bad")), manager.submit(small_config(name="good"))
    wait_for(lambda: run_row(store, bad)[3], 60, "the run trains")
    manager.executor.messages.put(("metrics", {"run_id": bad, "batch": {"no": "steps"}}))  # as a broken node would
    assert manager.wait(bad, timeout=30) == "failed"
    assert "a 'metrics' message of its task could not be taken at step" in run_row(store, bad)[1]
    assert manager.wait(good, timeout=120) == "finished"


def test_a_node_removed_mid_run_fails_its_run_with_the_reason_and_resume_finishes_it_elsewhere(ray_lab, cluster):
    manager, store = ray_lab
    # the second task trains long enough (seconds) to be mid-run when the node goes, on a loaded machine too
    run_id = manager.submit(long_config("doomed", epochs=250))
    checkpoint = store.artifacts_dir(run_id) / "resume.pt"
    wait_for(checkpoint.exists, 120, "the first task's checkpoint came back to the lab")
    node_id = run_row(store, run_id)[2].split()[1]
    [node] = [n for n in cluster.list_all_nodes() if n.node_id.startswith(node_id)]
    cluster.remove_node(node, allow_graceful=False)
    removed = time.monotonic()
    try:
        assert manager.wait(run_id, timeout=60) == "failed"
        assert time.monotonic() - removed < 20
        status, error, _, last_step, total = run_row(store, run_id)
        assert "NodeDiedError" in error and f"at step {last_step}" in error, error
        header = manager.resume_run(run_id)
        assert 0 < header["step"] <= last_step < total  # from the end of its first task, whose checkpoint came back
        assert manager.wait(run_id, timeout=180) == "finished"
        status, error, node_after, last_step, total = run_row(store, run_id)
        assert status == "finished" and last_step == total and not node_after.split()[1] == node_id
        steps = [r[0] for r in store.sql("SELECT DISTINCT step FROM metrics WHERE run_id = ? AND metric = 'train_loss' "
                                         "ORDER BY step", [run_id])]
        assert steps == list(range(1, total + 1))  # every step once: nothing lost, nothing twice
    finally:
        cluster.add_node(num_cpus=1)  # the next test's cluster has two again
        cluster.wait_for_nodes()


def test_a_lab_sigkilled_while_its_runs_train_leaves_nothing_training_and_reopens_clean(tmp_path, ray_env, cluster):
    config = tmp_path / "long.yaml"
    config.write_text("name: killed\nscenario: {dataset: digits, n_tasks: 2}\nmodel: {hidden: [64]}\n"
                      "train: {epochs_per_task: 400}\neval: {every: 5}\n")
    db = tmp_path / "lab.duckdb"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", str(config), "--db", str(db), "--executor", "ray"],
                            cwd=ROOT, env=ray_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        training = re.compile(r"running\s+step [1-9]")
        wait_for(lambda: training.search(proc.stdout.readline()), 120, "the run trains on the cluster")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
    try:  # the task died with its owner: the cluster's CPUs are free again
        wait_for(lambda: ray.available_resources().get("CPU", 0) == 2, 30, "the cluster's CPUs are free")
    finally:
        ray.shutdown()
    with Store(db) as store:
        manager = RunManager(store, executor="ray", executor_options={"address": cluster.address}, warm_workers=0)
        try:
            assert run_row(store, 1)[:2] == ("failed", "the lab process stopped while this run was training")
            again = manager.submit(small_config())  # the restarted lab trains on the cluster as before
            assert manager.wait(again, timeout=120) == "finished"
        finally:
            manager.shutdown()


def test_without_ray_or_without_a_cluster_the_command_says_so_in_one_line(tmp_path, ray_env):
    config = tmp_path / "run.yaml"
    config.write_text("name: nowhere\n")
    no_ray = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['ray'] = None; from engine.cli.main import main; "
         f"sys.exit(main(['run', {str(config)!r}, '--db', {str(tmp_path / 'a.duckdb')!r}, '--executor', 'ray']))"],
        cwd=ROOT, env=ray_env, capture_output=True, text=True, timeout=120)
    assert no_ray.returncode == 2 and no_ray.stderr.strip().splitlines() == [
        'error: executor kind "ray" needs Ray, which is not installed: pip install -r requirements-ray.txt']
    no_cluster = cli(["run", str(config), "--db", str(tmp_path / "b.duckdb"), "--executor", "ray"],
                     {**ray_env, "CL_LAB_RAY_ADDRESS": "127.0.0.1:9"}, timeout=180)
    lines = no_cluster.stderr.strip().splitlines()
    assert no_cluster.returncode == 2 and len(lines) == 1 and lines[0].startswith(
        "error: no Ray cluster could be reached at 127.0.0.1:9"), no_cluster.stderr[-2000:]
    assert not (tmp_path / "a.duckdb").exists() and not (tmp_path / "b.duckdb").exists()  # nothing written


def test_python_m_engine_cluster_shows_the_nodes_and_the_runs_on_each(cluster, ray_env, tmp_path):
    out = cli(["cluster", "--db", str(tmp_path / "none.duckdb")], ray_env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    # the head and two nodes alive (a node another test removed is listed dead)
    assert re.fullmatch(rf"Ray cluster at {cluster.address}: 3 of \d+ node\(s\) alive, 2 CPUs, 0 GPUs, 0 run\(s\) "
                        "training", lines[0]), lines[0]
    assert lines[1].split() == ["node", "state", "CPUs", "GPUs", "memory", "(GB)", "runs", "training"]
    alive = sorted(n.node_id[:12] for n in cluster.list_all_nodes())
    assert sorted(line.split()[1] for line in lines[2:] if line.split()[2] == "alive") == alive
    assert sorted(line.split()[3] for line in lines[2:] if line.split()[2] == "alive") == ["0", "1", "1"]


@pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"), reason="Debian's chromium is not installed")
def test_a_sweep_launched_from_the_launch_page_trains_on_the_cluster_and_home_shows_it(cluster, tmp_path,
                                                                                       monkeypatch, page):
    from playwright.sync_api import expect

    from tests.test_browser import streamlit_server
    from tests.test_launch_page import choose, open_a_small_sweep

    settings = tmp_path / "lab.toml"
    settings.write_text('[executor]\nkind = "ray"\n')
    monkeypatch.setenv("CL_LAB_SETTINGS", str(settings))
    monkeypatch.setenv("CL_LAB_RAY_ADDRESS", cluster.address)
    monkeypatch.setenv("CL_LAB_THREADS", "1")
    db = tmp_path / "lab.duckdb"
    with streamlit_server(db, tmp_path / "streamlit.log") as url:
        page.goto(url, wait_until="networkidle")
        expect(page.get_by_text(re.compile(rf"Ray cluster at {cluster.address}: 3 of \d+ node\(s\) alive, 2 CPUs"))
               ).to_be_visible(timeout=90_000)
        open_a_small_sweep(page, url)
        choose(page, "Strategies", "DER++")
        page.get_by_role("button", name="Launch the sweep").click()
        page.wait_for_url("**/compare*", timeout=60_000)
        page.goto(f"{url}/runs", wait_until="networkidle")
        expect(page.get_by_text("finished").nth(1)).to_be_attached(timeout=180_000)
    with Store(db, read_only=True) as store:
        rows = store.sql("SELECT id, status, node, config FROM runs ORDER BY id")
    worker_ids = {n.node_id[:12] for n in cluster.list_all_nodes() if n is not cluster.head_node}
    assert len(rows) == 2 and all(s == "finished" and n.split()[1] in worker_ids for _, s, n, _ in rows), rows
    # the same configs on the local executor (worker processes, one thread each): the same metrics, row by row
    from engine.config import stored_config

    with Store(tmp_path / "local.duckdb") as local:
        manager = RunManager(local, max_parallel=1)
        try:
            local_ids = [manager.submit(stored_config(json.loads(config))) for *_, config in rows]
            assert [manager.wait(i, timeout=120) for i in local_ids] == ["finished", "finished"]
        finally:
            manager.shutdown()
    for (ray_id, *_), local_id in zip(rows, local_ids):
        on_ray = metric_rows(db, ray_id)
        assert len(on_ray) > 50 and on_ray == metric_rows(tmp_path / "local.duckdb", local_id)
