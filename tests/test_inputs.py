"""No input takes the lab down (issue 8): the guarded entry (engine/core/inputs.py), the bounds of configs
and sweeps, the run cap of every sweep kind, and a --db that is not a DuckDB database. Each
reproducer of the issue goes through the real command line: exit 2, one clear line, no traceback,
and no database file written."""

import subprocess
import sys

import pytest

from engine.cli.main import main
from engine.config import MAX_LR, MAX_SEED, ConfigError, load_config, parse_config
from engine.core.inputs import MAX_INT_CHARS, MAX_LINE_CHARS, cut, load_yaml, read_yaml
from engine.core.limits import limits
from engine.sweeps.sweep import load_sweep, parse_sweep, planned_runs
from store import NotADatabase, Store
from tests.conftest import ROOT


def alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


# (file content, a text the one problem line must hold)
CONFIG_REPRODUCERS = {
    "name-list": (b"strategy: {name: [replay]}\n", "strategy.name = ['replay']: must be one of"),
    "name-mapping": (b"strategy: {name: {}}\n", "strategy.name = {}: must be one of"),
    "deep-brackets": (b"[" * 1000, "nested deeper than 32 levels"),
    "not-utf8": (b"name: caf\xe9\n", "byte 0xe9 at line 1, column 10 (offset 9) is not UTF-8"),
    "huge-int": (("seed: " + "9" * 5000 + "\n").encode(), f"(seed): an integer of 5,000 characters: at most {MAX_INT_CHARS}"),
    "lr-inf": (b"train: {lr: .inf}\n", "train.lr = inf: must be a finite number"),
    "lr-1e400": (b"train: {lr: 1e400}\n", "train.lr = inf: must be a finite number"),
    "lr-nan": (b"train: {lr: .nan}\n", "train.lr = nan: must be a finite number"),
    "lr-too-high": (b"train: {lr: 50}\n", f"train.lr = 50: must be less than or equal to {MAX_LR:g}"),
    "seed-2**32": (b"seed: 4294967296\n", f"seed = 4294967296: must be less than or equal to {MAX_SEED}"),
    "scenario-seed": (b"scenario: {seed: -1}\n", "scenario.seed = -1: must be greater than or equal to 0"),
    "class-seed": (b"scenario: {class_seed: 99999999999}\n", "scenario.class_seed = 99999999999: must be less than"),
    "epochs-true": (b"train: {epochs_per_task: true}\n", "train.epochs_per_task = True: must be a valid integer"),
    "hparam-true": (b"strategy: {name: replay, buffer_size: true}\n", "strategy.buffer_size = True: must be a valid integer"),
    "bool-as-1": (b"train: {save_weights: 1}\n", "train.save_weights = 1: must be a valid boolean"),
    "alias-bomb": (alias_bomb(10).encode(), "aliases (&/*) are not allowed"),
    "too-large": (b"# " + b"x" * (256 * 1024) + b"\n", "is larger than 262,144 bytes"),
    "timestamp-tag": (b"name: !!timestamp 99999-1-1\n", "a value cannot be read (AttributeError"),
    "bad-date": (b"name: 2001-13-45\n", "a value cannot be read (ValueError: month must be in 1..12)"),
    "python-tag": (b"name: !!python/object/apply:os.system [ls]\n", "is not valid YAML (could not determine a constructor"),
}


def run_cli(*argv, capsys):
    """The real command line in this process: (exit code, stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


SWEEP_REPRODUCERS = {
    "base-strategy-list": (b"base: {strategy: [1]}\ngrid: {train.lr: [0.1]}\n",
                           "base.strategy = [1]: must be a mapping with a name"),
    "alias-bomb": (alias_bomb(9).encode(), "aliases (&/*) are not allowed"),
    "random-10**6": (b"random: {samples: 1000, seed: 0, space: {train.lr: {uniform: [0.01, 0.1]}}}\nseeds: ["
                     + ", ".join(map(str, range(1000))).encode() + b"]\n",
                     "sweep: 1000 samples x 1000 seeds = 1,000,000 runs: at most 10,000 runs a sweep "
                     "(lab.toml [limits] max_runs)"),
}
REPRODUCERS = {**{("run", k): v for k, v in CONFIG_REPRODUCERS.items()},
               **{("sweep", k): v for k, v in SWEEP_REPRODUCERS.items()}}


@pytest.mark.parametrize("command, case", REPRODUCERS, ids=[f"{c}-{k}" for c, k in REPRODUCERS])
def test_each_reproducer_is_one_line_exit_2_and_nothing_written(command, case, tmp_path, capsys):
    content, expected = REPRODUCERS[command, case]
    path, db = tmp_path / "input.yaml", tmp_path / "lab.duckdb"
    path.write_bytes(content)
    code, err = run_cli(command, path, "--db", db, capsys=capsys)
    lines = err.strip().splitlines()
    assert code == 2
    assert "1 problem(s)" in lines[0] and len(lines) == 2, err
    assert expected in lines[1], err
    assert len(lines[1]) < 300
    assert not db.exists()


def test_reproducers_through_a_real_process_end_without_a_traceback(tmp_path):
    """The same through ``python -m engine`` in subprocesses (started together: each pays the imports)."""
    runs = []
    for i, case in enumerate(("alias-bomb",)):  # each process costs seconds of imports: the rest run in-process above
        path = tmp_path / f"c{i}.yaml"
        path.write_bytes(CONFIG_REPRODUCERS[case][0])
        runs.append((["run", path, "--db", tmp_path / f"c{i}.duckdb"], CONFIG_REPRODUCERS[case][1]))
    path = tmp_path / "s.yaml"
    path.write_bytes(SWEEP_REPRODUCERS["base-strategy-list"][0])
    runs.append((["sweep", path, "--db", tmp_path / "s.duckdb"], SWEEP_REPRODUCERS["base-strategy-list"][1]))
    not_db = tmp_path / "notes.txt"
    not_db.write_text("not a database\n")
    runs.append((["runs", "--db", not_db], f"error: --db {not_db}: is not a DuckDB database"))
    procs = [subprocess.Popen([sys.executable, "-m", "engine", *map(str, argv)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv, _ in runs]
    for (argv, expected), proc in zip(runs, procs):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, (argv, err)
        assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2, err
    assert not any(p.suffix == ".duckdb" for p in tmp_path.iterdir())
    assert not_db.read_text() == "not a database\n"


@pytest.mark.parametrize("kind", ["text", "directory", "missing-folder"])
def test_a_db_that_is_not_a_duckdb_database_is_one_line_and_exit_2(kind, tmp_path, capsys):
    path = {"text": tmp_path / "notes.txt", "directory": tmp_path, "missing-folder": tmp_path / "no" / "lab.duckdb"}[kind]
    if kind == "text":
        path.write_text("hello\n")
    what = {"text": "is not a DuckDB database", "directory": "is a directory",
            "missing-folder": "cannot be opened (No such file or directory)"}[kind]
    with pytest.raises(NotADatabase) as err:
        Store(path)
    assert str(err.value) == f"{path}: {what}; expected the lab's DuckDB database file, or the name of a new one"
    code, out = run_cli("runs", "--db", path, capsys=capsys)
    # `runs` only reads: a path with no file is refused before anything tries to create it
    line = (f"{path}: there is no such file; expected the lab's DuckDB database file" if kind == "missing-folder"
            else err.value)
    assert code == 2 and out.strip() == f"error: --db {line}"


def test_the_lab_page_says_when_its_db_is_not_a_duckdb_database(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    monkeypatch.setenv("CL_LAB_DB", str(notes))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert [e.value for e in at.error] == [f"{notes}: is not a DuckDB database; expected the lab's DuckDB database "
                                           "file, or the name of a new one"]
    assert not at.exception and notes.read_text() == "hello\n"


# ---- the guarded entry -----------------------------------------------------------------------------

def test_yaml_guards_name_the_line_the_field_and_the_limit():
    with pytest.raises(ConfigError) as err:
        load_yaml("a: 1\nb: {c: [1, *x]}\n", "f.yaml")
    assert err.value.problems == ["f.yaml: line 2, column 12 (b.c[1]): aliases (&/*) are not allowed: write the value out"]
    with pytest.raises(ConfigError) as err:
        load_yaml("k: " + "{a: " * 40 + "1" + "}" * 40, "f.yaml")
    depth = limits().max_yaml_depth
    assert err.value.problems[0].endswith(f"nested deeper than {depth} levels: at most {depth} "
                                          "(lab.toml [limits] max_yaml_depth)")
    assert "(k" + ".a" * (depth - 2) + ")" in err.value.problems[0]  # the open mappings: the root, k, then a's
    with pytest.raises(ConfigError) as err:
        load_yaml("[" + ", ".join(["1"] * (limits().max_yaml_nodes + 5)) + "]", "f.yaml")
    assert "more than 50,000 values" in err.value.problems[0]
    with pytest.raises(ConfigError) as err:
        load_yaml("x: &a 1", "f.yaml")  # an anchor alone is refused too
    assert "aliases (&/*) are not allowed" in err.value.problems[0]


def test_yaml_reads_numbers_as_a_user_means_them():
    assert load_yaml("lr: 1e-3\nb: 5E4\nc: .5e1\nd: 0.05\ne: 12\nf: '1e-3'\ng: 100_000") == {
        "lr": 0.001, "b": 50000.0, "c": 5.0, "d": 0.05, "e": 12, "f": "1e-3", "g": 100000}
    assert load_yaml("x: " + "9" * MAX_INT_CHARS) == {"x": int("9" * MAX_INT_CHARS)}
    assert load_yaml(b"\xef\xbb\xbfname: caf\xc3\xa9") == {"name": "café"}  # a BOM is fine


def test_a_file_is_read_no_further_than_the_limit(tmp_path):
    path = tmp_path / "big.yaml"
    most = limits().max_input_bytes
    path.write_bytes(b"a: 1\n" + b"#" * most)
    with pytest.raises(ConfigError, match=f"is larger than {most:,} bytes"):
        read_yaml(path)
    path.write_bytes(b"a: 1\n" + b"#" * (most - 6) + b"\n")
    assert read_yaml(path) == {"a": 1}
    with pytest.raises(ConfigError, match="cannot be read"):
        read_yaml(tmp_path)


def test_cut_quotes_any_value_in_a_bounded_line():
    n = limits().max_message_chars
    nested: list = []
    for _ in range(5000):  # deeper than Python's repr can go
        nested = [nested]
    for value in ("x" * 10**6, list(range(10**5)), {str(i): i for i in range(10**4)}, 10**5000, 2**100_000, nested,
                  b"\xff" * 10**5, {1, 2, 3}):
        text = cut(value)
        assert 0 < len(text) <= n
    assert cut(2**100_000) == "<an integer of about 30103 digits>"
    assert cut("abc") == "'abc'" and cut([1, 2]) == "[1, 2]"


def test_a_problem_list_is_bounded():
    err = ConfigError([f"p{i}: bad" for i in range(100)] + ["x" * 10_000])
    most = limits().max_problems
    assert len(err.problems) == most and err.problems[-1] == f"... and {101 - most + 1} more problem(s)"
    err = ConfigError(["x" * 10_000 + "\nsecond"])
    assert len(err.problems[0]) == MAX_LINE_CHARS and "\n" not in err.problems[0]


def test_a_list_of_many_wrong_items_says_how_many_more():
    with pytest.raises(ConfigError) as err:
        parse_config({"scenario": {"tasks": ["x"] * 10_000}})
    most = limits().max_problems
    assert len(err.value.problems) == most and err.value.problems[0] == "scenario.tasks.0 = 'x': must be a valid integer"
    assert err.value.problems[-1] == f"config: ... and {10_000 - most + 1} more problem(s)"


# ---- configs and sweeps --------------------------------------------------------------------------------

def test_ints_are_still_floats_and_the_bounds_hold_at_their_edges():
    cfg = parse_config({"seed": MAX_SEED, "scenario": {"seed": 0, "class_seed": MAX_SEED},
                        "train": {"lr": 1, "momentum": 0}, "strategy": {"name": "ewc", "ewc_lambda": 5}})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float) and cfg.strategy["ewc_lambda"] == 5.0
    parse_config({"train": {"lr": MAX_LR}})
    for bad in ({"train": {"lr": "0.1"}}, {"train": {"lr": 0}}, {"train": {"weight_decay": float("inf")}},
                {"train": {"batch_size": 32.0}}, {"strategy": {"name": "lwf", "temperature": float("nan")}},
                {"strategy": {"name": "ewc", "ewc_lambda": True}}, {"scenario": {"n_tasks": "5"}}):
        with pytest.raises(ConfigError):
            parse_config(bad)


@pytest.mark.parametrize("sweep, expected", [
    ({"grid": {"strategy.name": [["replay"]]}}, "grid.strategy.name = ['replay']: must be one of"),
    ({"grid": {"strategy.name": [{}]}}, "grid.strategy.name = {}: must be one of"),
    ({"base": {"strategy": {"name": [1]}}}, "base.strategy.name = [1]: must be one of"),
    ({"random": {"samples": 2, "space": {"strategy.name": {"choice": [[1]]}}}}, "random.space.strategy.name = [1]"),
    ({"search": {"trials": 2, "space": {"strategy.name": {"choice": [{}]}}}}, "search.space.strategy.name = {}"),
    ({"search": {"trials": 2, "objectives": [[1]], "space": {"train.lr": {"uniform": [0.01, 0.1]}}}},
     "search.objectives = [1]: must be a metric key"),
    ({"seeds": [0, 2**32]}, "seeds = 4294967296: every seed must be from 0 to 4294967295"),
    ({"random": {"samples": 2, "seed": -1, "space": {"train.lr": {"uniform": [0.01, 0.1]}}}},
     "random.seed = -1: must be an integer from 0 to 4294967295"),
    ({"search": {"trials": 10_001, "space": {"train.lr": {"uniform": [0.01, 0.1]}}}},
     "search.trials = 10001: must be an integer from 1 to 10000"),
    ({"grid": {"train.lr": [0.1] * 10_001}}, "grid.train.lr: 10,001 values: at most 10,000"),
    ({"seeds": list(range(10_001))}, "seeds: 10,001 seeds: at most 10,000"),
    ({"grid": {"train.lr": [0.01, 0.1] * 50, "train.batch_size": list(range(1, 101))}, "seeds": [0, 1]},
     "sweep: 100 x 100 points x 2 seeds = 20,000 runs: at most 10,000"),
    ({"reality_check": {"strategies": ["naive", "replay"], "tune": {
        "scenario": {"dataset": "digits"}, "random": {"samples": 5000, "space": {"train.lr": {"uniform": [0.01, 0.1]}}},
        "seeds": [0]}, "test": {"scenario": {"dataset": "mnist1d"}, "seeds": [7, 8]}}},
     "reality_check: tune (5000 samples x 1 seeds) x 2 strategies + test 2 strategies x 2 seeds = 10,004 runs"),
    ({"reality_check": {"strategies": [["naive"]], "metric": {}, "tune": {}, "test": {}}},
     "reality_check.metric = {}: must be a metric key"),
])
def test_a_hostile_sweep_is_refused_with_its_line(sweep, expected):
    with pytest.raises(ConfigError) as err:
        parse_sweep(sweep)
    assert any(expected in line for line in err.value.problems), err.value.problems


def test_the_run_cap_is_the_limit_in_lab_toml(tmp_path, monkeypatch):
    import engine.core.limits as lim

    settings = tmp_path / "lab.toml"
    settings.write_text("[limits]\nmax_runs = 3\n")
    monkeypatch.setenv("CL_LAB_SETTINGS", str(settings))
    monkeypatch.setattr(lim, "_cached", None)
    try:
        with pytest.raises(ConfigError, match=r"2 points x 2 seeds = 4 runs: at most 3 runs a sweep"):
            parse_sweep({"grid": {"train.lr": [0.01, 0.05]}, "seeds": [0, 1]})
        assert len(planned_runs(parse_sweep({"grid": {"train.lr": [0.01, 0.05]}})) * [0]) == 2
    finally:
        monkeypatch.setattr(lim, "_cached", None)


@pytest.mark.parametrize("line, expected", [
    ("live_refresh_s = 0.1", "limits.live_refresh_s = 0.1: must be from 0.5 to 3600"),
    ("worker_nice = 40", "limits.worker_nice = 40: must be from 1 to 19"),
    ("live_refresh_s = true", "limits.live_refresh_s = 'True': must be a positive finite number"),
    ("max_memory_fraction = inf", "limits.max_memory_fraction = 'inf': must be a positive finite number"),
    ("weights_budget_gb = nan", "limits.weights_budget_gb = 'nan': must be a positive finite number"),
    ("refresh = 2", "limits.refresh: is not a known limit"),
])
def test_a_limit_out_of_its_bounds_is_refused_with_its_line(tmp_path, line, expected):
    from engine.core.limits import SettingsError, load_limits

    settings = tmp_path / "lab.toml"
    settings.write_text(f"[limits]\n{line}\n")
    with pytest.raises(SettingsError) as err:
        load_limits(settings)
    assert str(err.value).startswith(expected)
    settings.write_text("[limits]\nlive_refresh_s = 5\nworker_nice = 19\n")
    assert (load_limits(settings).live_refresh_s, load_limits(settings).worker_nice) == (5, 19)


def test_the_guarded_entry_is_the_one_config_and_sweep_files_come_through(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("name: a\nseed: &s 1\n")
    for load in (load_config, load_sweep):
        with pytest.raises(ConfigError, match="aliases"):
            load(path)
