"""Property tests (hypothesis) of the guarded entry and the config and sweep checks: whatever the
document or text, they raise nothing but ConfigError, every problem line is short, and what is
accepted is within the limits. A larger seeded run is bench/fuzz_inputs.py."""

import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.config import ConfigError, parse_config
from engine.core.inputs import MAX_LINE_CHARS, load_yaml
from engine.core.limits import limits
from engine.sweeps.sweep import parse_sweep, planned_runs

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)

# values a field should refuse, or take, without harm
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, 1, -1, 5, 32, 0.05, 2**32, 2**32 - 1]),
    st.text(max_size=20), st.text(min_size=1000, max_size=3000),
    st.sampled_from(["naive", "replay", "ewc", "lwf", "joint", "digits", "mnist1d", "class", "task", "domain",
                     "sgd", "adam", "acc", "tpe", "nsga2", "train.lr", "strategy.name", "strategy.buffer_size"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=6), st.sampled_from(
        ["name", "seed", "lr", "choice", "uniform", "int", "space", "samples"])), inner, max_size=4)), max_leaves=12)
deep = st.integers(min_value=1, max_value=3000).map(lambda n: [[[]]] if n < 3 else _nest(n))


def _nest(n: int):
    value: list = []
    for _ in range(n):
        value = [value]
    return value


FIELDS = {
    "scenario": ["dataset", "setting", "n_tasks", "class_seed", "seed", "test_size", "tasks"],
    "model": ["name", "hidden"], "strategy": ["name", "buffer_size", "replay_batch_size", "ewc_lambda", "mode",
                                                "alpha", "temperature", "decay", "fisher_batch"],
    "train": ["optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs_per_task", "weights", "save_weights"],
    "eval": ["every", "subset"],
}


def section(name: str):
    return st.dictionaries(st.sampled_from(FIELDS[name] + ["bogus"]), st.one_of(values, deep), max_size=5)


configs = st.fixed_dictionaries({}, optional={
    "name": values, "seed": values, "scenario": st.one_of(section("scenario"), values),
    "model": st.one_of(section("model"), values), "strategy": st.one_of(section("strategy"), values),
    "train": st.one_of(section("train"), values), "eval": st.one_of(section("eval"), values), "extra": values})

keys = st.sampled_from(["train.lr", "strategy.name", "strategy.buffer_size", "model.hidden", "scenario.n_tasks",
                        "seed", "bogus.x", "train.nope"])
space = st.dictionaries(keys, st.one_of(
    st.fixed_dictionaries({"choice": st.lists(values, max_size=4)}),
    st.dictionaries(st.sampled_from(["uniform", "log_uniform", "int", "log_int"]), st.lists(scalars, max_size=3),
                    min_size=1, max_size=1),
    st.dictionaries(st.sampled_from(["uniform", "log_uniform", "int", "log_int", "choice"]), values, max_size=2),
    values), max_size=3)
bodies = {
    "grid": st.one_of(st.dictionaries(keys, st.one_of(st.lists(values, max_size=4), values), max_size=3), values),
    "random": st.one_of(st.fixed_dictionaries({"samples": st.one_of(st.integers(-2, 20), values),
                                               "space": space}, optional={"seed": values}), values),
    "search": st.one_of(st.fixed_dictionaries({"trials": st.one_of(st.integers(-2, 20), values), "space": space},
                                              optional={"objectives": values, "sampler": values, "seed": values}),
                        values),
    "reality_check": st.one_of(st.fixed_dictionaries({}, optional={
        "metric": values, "strategies": st.one_of(st.lists(values, max_size=3), values),
        "tune": st.fixed_dictionaries({}, optional={"scenario": st.one_of(section("scenario"), values),
                                                     "grid": values, "seeds": values}),
        "test": st.fixed_dictionaries({}, optional={"scenario": st.one_of(section("scenario"), values),
                                                     "seeds": values})}), values),
}
sweeps = st.one_of(*(st.fixed_dictionaries({mode: body}, optional={
    "name": values, "base": st.one_of(configs, values), "seeds": st.one_of(st.lists(values, max_size=4), values)})
    for mode, body in bodies.items()))


def assert_refusal_is_short(err: ConfigError) -> None:
    assert 1 <= len(err.problems) <= limits().max_problems
    for line in err.problems:
        # below the last guard's length: every value was cut where it was quoted
        assert 0 < len(line) < MAX_LINE_CHARS and "\n" not in line, line


@FUZZ
@given(configs)
@example({"model": {"name": [[[]]]}})  # found by hypothesis: a list as the model's name was a TypeError
@example({"strategy": {"name": {"a": 1}}, "model": {"name": ["mlp"]}})
def test_parse_config_raises_only_config_error_with_short_lines(data):
    try:
        cfg = parse_config(data)
    except ConfigError as err:
        assert_refusal_is_short(err)
    else:  # what is accepted is what the engine can run
        assert math.isfinite(cfg.train.lr) and 0 < cfg.train.lr <= 10
        assert 0 <= cfg.seed <= 2**32 - 1 and 0 <= cfg.scenario.seed <= 2**32 - 1
        assert type(cfg.train.epochs_per_task) is int and cfg.train.weights in ("none", "last", "every")


@FUZZ
@given(sweeps)
def test_parse_sweep_raises_only_config_error_with_short_lines(data):
    try:
        spec = parse_sweep(data)
    except ConfigError as err:
        assert_refusal_is_short(err)
    else:
        assert planned_runs(spec) <= limits().max_runs


def alias_bomb(levels: int, width: int) -> str:
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines)


texts = st.one_of(
    st.binary(max_size=200),
    st.text(alphabet=st.sampled_from(list("[]{}:,-&*!|>'\"#?\n\t 0123456789abe.x") + ["\x00", "\u00e9", "\ufeff"]),
            max_size=300),
    st.builds(alias_bomb, st.integers(1, 12), st.integers(1, 10)),
    st.integers(30, 20_000).map(lambda n: "[" * n),
    st.integers(30, 5_000).map(lambda n: "a: " + "{b: " * n),
    st.integers(90, 20_000).map(lambda n: "seed: " + "9" * n),
    st.integers(1, 20).map(lambda n: "x: 0x" + "f" * (n * 10)),
    st.builds(lambda tag, text: f"x: !!{tag} {text}", st.sampled_from(["timestamp", "binary", "set", "float", "int",
                                                                     "bool", "omap", "pairs", "python/name:os.system"]),
              st.text(alphabet="09-:.xT ", max_size=12)),
    st.builds(lambda head, junk: head + junk, st.sampled_from([b"name: ", b"a: [1, ", b"\xef\xbb\xbf"]),
              st.binary(min_size=1, max_size=20)),
)


def depth_and_count(value, depth: int = 0) -> tuple[int, int]:
    if isinstance(value, dict):
        items = [depth_and_count(v, depth + 1) for kv in value.items() for v in kv]
    elif isinstance(value, list):
        items = [depth_and_count(v, depth + 1) for v in value]
    else:
        return depth, 1
    return max([depth + 1] + [d for d, _ in items]), 1 + sum(n for _, n in items)


@FUZZ
@given(texts)
def test_the_guarded_entry_raises_only_config_error_and_stays_within_its_limits(text):
    try:
        data = load_yaml(text, "fuzz.yaml")
    except ConfigError as err:
        assert_refusal_is_short(err)
        return
    depth, count = depth_and_count(data)
    assert depth <= limits().max_yaml_depth and count <= limits().max_yaml_nodes
    for target in (parse_config, parse_sweep):
        try:
            target(data)
        except ConfigError as err:
            assert_refusal_is_short(err)
