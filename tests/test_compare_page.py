"""The Compare page and store/compare.py: scenarios kept apart unless mixed on purpose, the
task-progress axis, curves bucketed in DuckDB, ended runs kept in memory, fresh data while a run is
live, group colours. Real DuckDB files, runs trained on Split-Digits or written through the Store,
the real page in AppTest."""

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from engine.runs.manager import run_in_process
from store.palette import TABLEAU10, group_styles
from store.compare import (clear_caches, group_curves, run_buckets, scenario_counts, scenario_key, select_runs)
from tests.conftest import ROOT, page_lab, small_config


def acc_value(run_id: int, step: int, task: int) -> float:
    """The accuracy a written run reports: distinct for every (run, step, task)."""
    return round(0.01 * task + step / 10_000 + run_id / 1000, 6)


def write_run(store, per_task: int, every: int, n_tasks: int = 2, strategy: str = "naive", seed: int = 0,
              status: str = "finished", scenario: dict | None = None, upto: int | None = None) -> int:
    """A run written through the Store as the engine writes one: tasks of ``per_task`` steps, the
    training loss every step, every task evaluated every ``every`` steps, a full evaluation at step 0
    and at each task's end; only up to step ``upto`` (a run still training) if given."""
    config = {"name": f"{strategy}-{seed}", "seed": seed, "strategy": {"name": strategy},
              "scenario": {"dataset": "digits", "setting": "class", "n_tasks": n_tasks, **(scenario or {})},
              "eval": {"every": every, "subset": None}}
    run_id = store.create_run(config, name=config["name"], status=status, total_steps=per_task * n_tasks)
    add_steps(store, run_id, per_task, every, n_tasks, 0, upto or per_task * n_tasks)
    return run_id


def add_steps(store, run_id: int, per_task: int, every: int, n_tasks: int, after: int, upto: int) -> None:
    rows = {"run_id": [], "step": [], "task": [], "metric": [], "value": []}

    def add(step, task, metric, value):
        for key, v in zip(rows, (run_id, step, task, metric, value)):
            rows[key].append(v)

    if after == 0:
        for t in range(1, n_tasks + 1):
            add(0, t, "boundary_acc", acc_value(run_id, 0, t))
    for step in range(after + 1, upto + 1):
        k = (step - 1) // per_task + 1
        if step == (k - 1) * per_task + 1:
            store.start_task(run_id, k, (k - 1) * per_task)
        add(step, k, "train_loss", 1.0 / step)
        for t in range(1, n_tasks + 1):
            if step % every == 0:
                add(step, t, "acc", acc_value(run_id, step, t))
            if step == k * per_task:
                add(step, t, "boundary_acc", acc_value(run_id, step, t))
        if step == k * per_task:
            store.end_task(run_id, k, step)
    store.add_metrics(rows)
    store.flush()
    store.update_run(run_id, last_step=upto)


def expected_points(run_id: int, per_task: int, every: int, n_tasks: int) -> list[tuple]:
    """(task, x, plasticity, stability, seen_acc) at every evaluation, from the definitions."""
    out = []
    for step in range(1, per_task * n_tasks + 1):
        k = (step - 1) // per_task + 1
        if step % every and step != k * per_task:
            continue
        accs = [acc_value(run_id, step, t) for t in range(1, n_tasks + 1)]
        x = (k - 1) + (step - (k - 1) * per_task) / per_task
        out.append((k, x, accs[k - 1], np.mean(accs[:k - 1]) if k > 1 else np.nan, np.mean(accs[:k])))
    return out


# ---- scenarios -----------------------------------------------------------------------------------
def test_scenario_key_keeps_apart_what_cannot_share_an_axis_and_not_what_one_averages_over():
    base = small_config("naive").model_dump(mode="json")
    same = [small_config("replay", seed=3).model_dump(mode="json"),
            small_config("naive", scenario={"seed": 7, "class_seed": 2}).model_dump(mode="json"),
            small_config("ewc", train={"lr": 0.01}).model_dump(mode="json")]
    assert {scenario_key(c) for c in same} == {scenario_key(base)}
    different = [small_config("naive", n_tasks=5), small_config("naive", scenario={"dataset": "mnist1d"}),
                 small_config("naive", scenario={"setting": "task"}),
                 small_config("naive", scenario={"setting": "domain"}),
                 small_config("naive", scenario={"tasks": [2]})]
    keys = [scenario_key(c.model_dump(mode="json")) for c in different]
    assert len(set(keys) | {scenario_key(base)}) == len(keys) + 1, keys
    # the two domain shifts of a domain-incremental run, and users' own data files, differ
    permuted = {"scenario": {"dataset": "mnist", "setting": "domain", "domain": "permuted", "n_tasks": 5}}
    rotated = {"scenario": {**permuted["scenario"], "domain": "rotated"}}
    assert scenario_key(permuted) != scenario_key(rotated)
    assert scenario_key({"scenario": {"dataset": "npz", "root": "/a.npz"}}) != scenario_key(
        {"scenario": {"dataset": "npz", "root": "/b.npz"}})
    assert "digits" in scenario_key(base) and "class-IL" in scenario_key(base) and "2 tasks" in scenario_key(base)


# ---- the curves ------------------------------------------------------------------------------------
def test_task_progress_puts_runs_of_different_lengths_on_one_grid_with_exact_values(store):
    short, long_ = write_run(store, per_task=10, every=2), write_run(store, per_task=32, every=4, seed=1)
    for run_id, per_task, every in ((short, 10, 2), (long_, 32, 4)):
        got = run_buckets(store, [run_id], x="progress")  # one evaluation a bucket: exact
        rows = got.dropna(subset=["plasticity"]).sort_values("x")
        expected = expected_points(run_id, per_task, every, 2)
        assert len(rows) == len(expected)
        for (k, x, p, s, seen), row in zip(expected, rows.itertuples()):
            assert row.task == k and row.x == pytest.approx(x)
            assert row.plasticity == pytest.approx(p) and row.seen_acc == pytest.approx(seen)
            assert (np.isnan(s) and np.isnan(row.stability)) or row.stability == pytest.approx(s)
        assert rows.groupby("task")["x"].max().tolist() == pytest.approx([1.0, 2.0])  # each switch at an integer
    # grouped (both naive): the buckets follow the sparser run (5 a task), so both runs are in each
    curves = group_curves(store, select_runs(store, run_ids=[short, long_]), "strategy", x="progress")
    measured = curves.dropna(subset=["plasticity_mean"])
    assert len(measured) == 10 and (measured["n"] == 2).all()
    assert measured.groupby("task")["x"].max().between([0.9, 1.9], [1.0, 2.0]).all()
    # against the global step, x is the step itself; the full evaluation at a task's end fills in where
    # no periodic evaluation fell (step 10 of a run evaluated every 4)
    odd = write_run(store, per_task=10, every=4, seed=2)
    steps = run_buckets(store, [odd], x="step").dropna(subset=["plasticity"])
    assert sorted(steps["x"]) == [4, 8, 10, 12, 16, 20]
    with pytest.raises(ValueError, match="x must be one of"):
        run_buckets(store, [short], x="epoch")


def test_a_long_run_is_bucketed_in_duckdb_to_bucket_means(store):
    run_id = write_run(store, per_task=3000, every=1)
    got = run_buckets(store, [run_id], x="progress", buckets=200)
    per = 64  # buckets a task: the power of two at most 200 / 2 tasks
    assert len(got) == 2 * per
    steps = np.arange(1, 3001)
    accs = np.array([acc_value(run_id, s, 1) for s in steps])
    bucket = np.minimum(np.floor((steps - 1) * per / 3000), per - 1)
    task1 = got[got["task"] == 1].sort_values("bucket")
    expected = [accs[bucket == b].mean() for b in range(per)]
    assert task1["plasticity"].to_numpy() == pytest.approx(expected)
    assert task1["x"].to_numpy() == pytest.approx([(steps[bucket == b] / 3000).mean() for b in range(per)])
    assert len(group_curves(store, select_runs(store), "strategy", rows=500)) <= 2 * 256


def test_an_ended_run_is_read_once_a_run_still_training_every_time(store):
    clear_caches()
    done = write_run(store, per_task=10, every=2)
    live = write_run(store, per_task=10, every=2, seed=1, status="running", upto=7)
    first = run_buckets(store, [done, live])
    assert first[first["run_id"] == live]["x"].max() == pytest.approx(0.7)
    add_steps(store, live, 10, 2, 2, 7, 15)  # the live run goes on into task 2
    store.write("DELETE FROM metrics WHERE run_id = ? AND step > 10", [done])  # an ended run cannot change...
    second = run_buckets(store, [done, live])
    assert second[second["run_id"] == live]["x"].max() == pytest.approx(1.5)
    assert second[second["run_id"] == done].equals(first[first["run_id"] == done].reset_index(drop=True))  # ...kept
    store.set_status(done, "running")  # resumed: read again when it ends again
    store.set_status(done, "finished")
    third = run_buckets(store, [done])
    assert third["x"].max() == pytest.approx(1.0)


def test_group_colours_differ_and_past_twenty_groups_the_dash_tells_them_apart():
    five = group_styles([f"g{i}" for i in range(5)])
    assert five["colors"] == TABLEAU10[:5]
    twenty = group_styles([f"g{i}" for i in range(20)])
    assert len(set(twenty["colors"])) == 20
    many = group_styles([f"g{i}" for i in range(45)])
    assert len({(c, tuple(d)) for c, d in zip(many["colors"], many["dashes"])}) == 45


def test_every_compare_panel_says_which_colour_is_which_group_and_its_hover_gives_each_groups_value(store):
    import vl_convert

    from engine.charts.panels import compare_panels
    from store.compare import COMPARE_SERIES

    ids = [write_run(store, per_task=10, every=2, seed=s) for s in (0, 1)]
    for run_id, epochs in zip(ids, (1, 2)):  # two groups by a dotted key, as the page groups them
        store.sql("UPDATE runs SET config = json_merge_patch(config, ?) WHERE id = ?",
                  [json.dumps({"train": {"epochs_per_task": epochs}}), run_id])
    runs = select_runs(store, run_ids=ids)
    curves = group_curves(store, runs, "train.epochs_per_task", x="progress")
    labels = sorted(curves["group"].unique())
    assert labels == ["epochs_per_task=1", "epochs_per_task=2"]
    chart = compare_panels(curves, COMPARE_SERIES, group_title="train.epochs_per_task", styles=group_styles(labels))
    spec = chart.to_dict()
    assert spec["resolve"]["legend"]["color"] == "independent"  # a legend on each panel
    for panel, name in zip(spec["vconcat"], COMPARE_SERIES):
        line = next(l for l in panel["layer"] if l["mark"]["type"] == "line")
        legend = line["encoding"]["color"]["legend"]
        assert legend["title"] == "train.epochs_per_task" and legend["labelLimit"] == 0  # never cut short
        # the hover's tooltip sits on the pointer layer (its voronoi is what the pointer is over)
        pointer = next(l for l in panel["layer"] if "_pointer" in l.get("name", ""))
        assert [t["title"] for t in pointer["encoding"]["tooltip"]][1:] == labels
        assert [t["field"] for t in pointer["encoding"]["tooltip"]][1:] == [f"g{i}_{name}" for i in range(2)]
    # as Vega draws it: four legends, each naming both groups, and a tooltip on each hover voronoi
    svg = vl_convert.vegalite_to_svg(spec)
    assert svg.count(">epochs_per_task=1<") == 4 and svg.count(">epochs_per_task=2<") == 4
    vega = vl_convert.vegalite_to_vega(spec)
    vega = json.loads(vega) if isinstance(vega, str) else vega
    voronoi = [m for panel in vega["marks"] for m in panel.get("marks", []) if m["name"].endswith("_voronoi")]
    assert len(voronoi) == 4 and all("g1_" in m["encode"]["update"]["tooltip"]["signal"] for m in voronoi)


# ---- the page --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from page_lab(tmp_path_factory, "compare")


def compare_page(ids: list[int]) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.switch_page("pages/compare.py").run()
    at.radio(key="compare_how").set_value("By hand").run()
    at.multiselect(key="compare_ids").set_value(ids).run()
    assert not at.exception
    return at


def curves_spec(at) -> dict:
    return json.loads(at.get("vega_lite_chart")[0].proto.spec)


def curve_groups(at) -> set:
    import pyarrow as pa

    chart = at.get("vega_lite_chart")[0].proto
    data = next(d for d in chart.datasets if d.name == "compare_curves")
    return set(pa.ipc.open_stream(data.data.data).read_all().column("group").to_pylist())


def test_the_page_shows_one_scenario_at_a_time_and_says_so_when_they_are_mixed(lab):
    digits = [run_in_process(lab.store, small_config(s, eval={"every": 4})) for s in ("naive", "replay")]
    three = run_in_process(lab.store, small_config("ewc", n_tasks=3, eval={"every": 4}))
    at = compare_page(digits + [three])
    scenarios = at.selectbox(key="compare_scenario")
    assert len(scenarios.options) == 2 and "(2 run(s))" in scenarios.options[0]
    assert scenarios.value == scenario_key(small_config("naive").model_dump(mode="json"))
    assert not at.warning
    table = at.dataframe[0].value
    assert sorted(table["group"]) == ["naive", "replay"] and table["runs"].sum() == 2
    assert curve_groups(at) == {"naive", "replay"}
    spec = curves_spec(at)
    assert spec["vconcat"][0]["layer"][0]["encoding"]["x"]["title"].startswith("task progress")  # the default x
    scale = spec["vconcat"][0]["layer"][1]["encoding"]["color"]["scale"]
    assert scale["domain"] == ["naive", "replay"] and len(set(scale["range"])) == 2
    # the frontier colours its points by the same groups with the same colours
    frontier = json.loads(at.get("vega_lite_chart")[1].proto.spec)
    points = next(l for l in frontier["layer"] if l["mark"]["type"] == "point")
    assert points["encoding"]["color"]["scale"] == scale

    at.selectbox(key="compare_scenario").set_value(scenarios.options[1]).run()
    assert at.dataframe[0].value["group"].tolist() == ["ewc"]

    at.checkbox(key="compare_mix").check().run()
    assert not at.exception
    assert any("MIX 2 scenarios" in w.value for w in at.warning)
    assert at.dataframe[0].value["runs"].sum() == 3 and curve_groups(at) == {"naive", "replay", "ewc"}

    at.radio(key="compare_x").set_value("step").run()
    assert curves_spec(at)["vconcat"][0]["layer"][0]["encoding"]["x"]["title"] == "global step"

    # Export report: the comparison of the selection as grouped on the page (engine/report)
    assert [d.proto.label for d in at.get("download_button")] == [
        "Report (HTML, offline)", "Report (PDF, A4)", "Report (PDF, US Letter)",
        "Report bundle (zip: HTML, PDF, config, data)"]
    from pages.ui.downloads import report_downloads

    html = report_downloads(lab.store, digits, group_by="strategy")[0].make().decode()
    assert html.startswith("<!DOCTYPE html") and "\"naive\"" in html and "\"replay\"" in html


def test_the_page_picks_up_new_rows_of_a_live_run_and_keeps_widgets_put(lab):
    finished = write_run(lab.store, per_task=20, every=2, strategy="lwf")
    live = write_run(lab.store, per_task=20, every=2, strategy="lwf", seed=1, status="running", upto=10)
    at = compare_page([finished, live])
    counts = scenario_counts(select_runs(lab.store, run_ids=[finished, live]))
    assert list(counts.values()) == [2]
    assert at.dataframe[0].value["runs"].tolist() == [2]
    before = at.get("vega_lite_chart")[0].proto.datasets
    add_steps(lab.store, live, 20, 2, 2, 10, 30)  # the run trains on into task 2
    at.run()  # what the fragment does every 2 s while a run is live
    assert not at.exception
    after = at.get("vega_lite_chart")[0].proto.datasets
    assert [d.data.data for d in before] != [d.data.data for d in after]
    spec = curves_spec(at)
    import pyarrow as pa
    data = pa.ipc.open_stream(next(d for d in after if d.name == "compare_curves").data.data).read_all().to_pandas()
    assert data["x"].max() == pytest.approx(2.0)
    both = data[(data["task"] == 2) & (data["n"] == 2)]
    assert both["x"].max() == pytest.approx(1.5)  # the live run's new rows, up to step 30 (x = 1.5)
    assert spec["vconcat"][0]["layer"][0]["encoding"]["x"]["title"].startswith("task progress")
    assert at.multiselect(key="compare_ids").value == [finished, live]  # the selection stays put
