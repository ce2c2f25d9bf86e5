"""Sweeps: a base config times a grid or a random sample of hyperparameters, times a list of seeds;
also the entry point of Optuna searches (``engine.search``) and reality checks (``engine.reality``).

A sweep file (YAML)::

    name: lr-by-strategy
    base: {scenario: {dataset: digits, n_tasks: 5}, strategy: {name: naive}, train: {lr: 0.05}}
    grid: {strategy.name: [naive, replay, ewc], train.lr: [0.01, 0.05]}      # or random: / search: /
    seeds: [0, 1, 2]                                                         # reality_check:

A grid may also be a list of grids, each expanded on its own and the runs joined (scikit-learn's
ParameterGrid convention): the way to give rows that each have their own settings, as a paper's table
does (``grid: [{strategy.name: [replay], train.lr: [0.01]}, {strategy.name: [gem], train.lr: [0.03]}]``).

Keys are dotted paths into the run config: ``section.field`` with section one of scenario, model,
strategy, train, eval (``train.lr``, ``strategy.buffer_size``, ``strategy.name``). The run seed comes
from ``seeds`` (default: ``base.seed``, else 0), never from a key.

The strategy rule: a key ``strategy.X`` (in the grid, the space, or ``base.strategy``) applies to the
configs whose strategy declares the hyperparameter X and is left out of the others; every such X must
be declared by at least one strategy of the sweep. A grid point that differs from another only in keys
left out (naive with buffer_size 100 and 500) is one run, not two.

The space of ``random`` and ``search`` maps each key to one of::

    {choice: [a, b, ...]}       one of the values (any YAML values, lists included)
    {uniform: [low, high]}      a float, low < high
    {log_uniform: [low, high]}  a float on a log scale, 0 < low < high
    {int: [low, high]}          an integer, low <= high (both included)
    {log_int: [low, high]}      an integer on a log scale, 1 <= low <= high

``random: {samples: N, seed: S, space: {...}}`` draws N points (a numpy Generator seeded with S; each
point draws every key in the order given, so adding a sample never changes the earlier ones; floats are
rounded to 6 significant digits). ``search: {...}`` is an Optuna study (``engine.search``).

Every expanded config is validated with ``parse_config`` and each bound of a space (or each choice) is
checked on its own; a bad sweep raises ``ConfigError`` with one line per problem, before anything is
written. The runs a sweep asks for (grid points x seeds, samples x seeds, trials; a reality check's
both phases) are counted from the sizes alone, before anything is expanded, and may not exceed
``limits().max_runs`` (lab.toml ``[limits] max_runs``); no list of seeds, values or choices may be
longer either. ``expand`` is pure and deterministic: grid points in the order of the keys (the last key
varies fastest), seeds innermost.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from engine.config import (MAX_SEED, MODEL_CONFIGS, ConfigError, EvalConfig, ModelConfig, RunConfig, ScenarioConfig,
                           TrainConfig,
                           parse_config, read_yaml)
from engine.inputs import check_document, cut, cut_text
from engine.limits import limits
from engine.presets import apply_preset
from engine.strategies import STRATEGIES
from store.schema import FINAL_STATUSES, RUN_STATUSES

SECTIONS = {"scenario": ScenarioConfig, "model": ModelConfig, "strategy": None, "train": TrainConfig,
            "eval": EvalConfig}
TOP_KEYS = ("name", "base", "grid", "random", "search", "reality_check", "seeds")
MODES = ("grid", "random", "search", "reality_check")
KINDS = {"grid": "grid", "random": "random", "search": "optuna", "reality_check": "reality-check"}
SPACE_KINDS = {
    "choice": "a non-empty list of values",
    "uniform": "[low, high], numbers with low < high",
    "log_uniform": "[low, high], numbers with 0 < low < high",
    "int": "[low, high], integers with low <= high",
    "log_int": "[low, high], integers with 1 <= low <= high",
}
DEFAULT_STRATEGY = "naive"


# ---- the spec ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dim:
    """One dimension of a random or search space."""

    key: str
    kind: str                 # a key of SPACE_KINDS
    values: tuple             # the choices, or (low, high)

    def sample(self, rng: np.random.Generator) -> Any:
        if self.kind == "choice":
            return copy.deepcopy(self.values[int(rng.integers(len(self.values)))])
        low, high = self.values
        if self.kind == "uniform":
            return min(max(_round(float(rng.uniform(low, high))), low), high)
        if self.kind == "log_uniform":
            return min(max(_round(math.exp(rng.uniform(math.log(low), math.log(high)))), low), high)
        if self.kind == "int":
            return int(rng.integers(low, high + 1))
        return min(int(math.exp(rng.uniform(math.log(low), math.log(high + 1)))), high)  # log_int

    def probes(self) -> list:
        """The values to validate: every choice, or both bounds."""
        return list(self.values)


@dataclass(frozen=True)
class RandomSpec:
    samples: int
    seed: int
    space: tuple[Dim, ...]


@dataclass(frozen=True)
class SearchSpec:
    trials: int
    objectives: tuple[str, ...]
    sampler: str              # tpe | nsga2 | random
    seed: int
    space: tuple[Dim, ...]
    population_size: int | None = None

    @property
    def directions(self) -> list[str]:
        from store.metrics import METRICS

        return ["maximize" if METRICS[k].higher_is_better else "minimize" for k in self.objectives]


@dataclass
class SweepSpec:
    """A parsed, validated sweep. ``kind`` is grid, random, optuna or reality-check (the ``sweeps.kind``
    column); ``raw`` is the file as given (stored in ``sweeps.spec``)."""

    name: str
    kind: str
    base: dict
    seeds: tuple[int, ...]
    grid: dict[str, tuple] | None = None
    grids: tuple[dict[str, tuple], ...] | None = None  # a list of grids: each one's points, joined; grid: their union
    random: RandomSpec | None = None
    search: SearchSpec | None = None
    reality: Any = None       # engine.reality.RealitySpec
    raw: dict = field(default_factory=dict)
    prefix: str = ""          # run names start with it (default: name)
    fixed_strategy: str | None = None  # reality check: every run uses this strategy

    @property
    def keys(self) -> list[str]:
        if self.grid is not None:
            return list(self.grid)
        space = (self.random or self.search).space if (self.random or self.search) else ()
        return [d.key for d in space]

    @property
    def planned_runs(self) -> int:
        if self.kind == "optuna":
            return self.search.trials
        if self.kind == "reality-check":
            return self.reality.planned_runs
        return len(expand(self))


# ---- parsing ----------------------------------------------------------------------------------------

def _round(x: float) -> float:
    return float(f"{x:.6g}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def known_strategy(name: Any) -> bool:
    """A strategy's name (a value of any type, from a file)."""
    return isinstance(name, str) and name in STRATEGIES


def declared(strategy: str | None) -> set[str]:
    """The hyperparameters a strategy declares (empty for an unknown one)."""
    cls = STRATEGIES.get(strategy) if isinstance(strategy, str) else None
    return set(cls.hparams) if cls else set()


def unknown_fields(body: Mapping, known: Iterable[str], where: str, problems: list[str]) -> None:
    """One line for each key of ``body`` that is not one of ``known``."""
    known = tuple(known)
    prefix = f"{where}." if where else ""
    problems += [f"{prefix}{cut_text(k)}: is not a known field (allowed: {', '.join(known)})" for k in body if k not in known]


def parse_dim(key: str, value: Any, where: str, problems: list[str]) -> Dim | None:
    """One space entry ``{kind: args}``; appends a problem line and returns None if it is bad."""
    allowed = "; ".join(f"{{{k}: {v}}}" for k, v in SPACE_KINDS.items())
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in SPACE_KINDS:
        problems.append(f"{where}.{cut_text(key)} = {cut(value)}: must be one of {allowed}")
        return None
    kind, args = next(iter(value.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            problems.append(f"{where}.{cut_text(key)} = {cut(value)}: choice must be {SPACE_KINDS['choice']}")
            return None
        if not _within_runs(args, f"{where}.{cut_text(key)}.choice", "choices", problems):
            return None
        return Dim(key, kind, tuple(args))
    ok = isinstance(args, list) and len(args) == 2
    if ok and kind in ("int", "log_int"):
        ok = all(_is_int(a) for a in args) and args[0] <= args[1] and (kind == "int" or args[0] >= 1)
    elif ok:
        ok = all(_is_num(a) for a in args) and args[0] < args[1] and (kind == "uniform" or args[0] > 0)
    if not ok:
        problems.append(f"{where}.{cut_text(key)} = {cut(value)}: {kind} must be {SPACE_KINDS[kind]}")
        return None
    low, high = args
    if kind in ("uniform", "log_uniform"):
        low, high = float(low), float(high)
    return Dim(key, kind, (low, high))


def parse_space(space: Any, where: str, problems: list[str]) -> tuple[Dim, ...]:
    if not isinstance(space, dict) or not space:
        problems.append(f"{where} = {cut(space)}: must be a non-empty mapping of dotted keys to "
                        "{choice: [...]}, {uniform: [low, high]}, {log_uniform: ...}, {int: ...} or {log_int: ...}")
        return ()
    dims = [parse_dim(str(k), v, where, problems) for k, v in space.items()]
    return tuple(d for d in dims if d is not None)


def _check_int(value: Any, where: str, problems: list[str], low: int = 1, high: int | None = None) -> bool:
    if not _is_int(value) or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        problems.append(f"{where} = {cut(value)}: must be an integer {bound}")
        return False
    return True


def _within_runs(values: list, where: str, what: str, problems: list[str]) -> bool:
    """A list a sweep multiplies its runs by holds at most ``max_runs`` items."""
    most = limits().max_runs
    if len(values) > most:
        problems.append(f"{where}: {len(values):,} {what}: at most {most:,}, the runs one sweep may queue "
                        "(lab.toml [limits] max_runs)")
        return False
    return True


def _check_seed(value: Any, where: str, problems: list[str]) -> bool:
    return _check_int(value, where, problems, 0, MAX_SEED)


def parse_seeds(value: Any, where: str, problems: list[str]) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(_is_int(s) for s in value):
        problems.append(f"{where} = {cut(value)}: must be a non-empty list of integers, e.g. [0, 1, 2]")
        return (0,)
    if not _within_runs(value, where, "seeds", problems):
        return (0,)
    bad = [s for s in value if not 0 <= s <= MAX_SEED]
    if bad:
        problems.append(f"{where} = {cut(bad[0])}: every seed must be from 0 to {MAX_SEED}")
        return (0,)
    if len(set(value)) != len(value):
        problems.append(f"{where} = {cut(value)}: every seed may appear once")
    return tuple(value)


def parse_grid(grid: Any, where: str, problems: list[str]) -> dict[str, tuple]:
    if not isinstance(grid, dict) or not grid:
        problems.append(f"{where} = {cut(grid)}: must be a non-empty mapping of dotted keys to lists of values, "
                        "e.g. {{train.lr: [0.01, 0.05]}}")
        return {}
    out = {}
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            problems.append(f"{where}.{cut_text(key)} = {cut(values)}: must be a non-empty list of values, e.g. [0.01, 0.05]")
        elif _within_runs(values, f"{where}.{cut_text(key)}", "values", problems):
            out[str(key)] = tuple(values)
    return out


def parse_grids(grid: Any, where: str, problems: list[str]) -> tuple[dict[str, tuple], ...]:
    """A list of grids (each as ``parse_grid``), for rows that each have their own settings."""
    if not grid:
        problems.append(f"{where} = []: must be a mapping of dotted keys to lists of values, or a non-empty list "
                        "of such mappings")
        return ()
    if not _within_runs(grid, where, "grids", problems):
        return ()
    return tuple(parse_grid(g, f"{where}[{i}]", problems) for i, g in enumerate(grid))


def merged_grid(grids: Iterable[Mapping[str, tuple]]) -> dict[str, tuple]:
    """The union of a list of grids: every key, with every value any of them gives it (once, in order)."""
    out: dict[str, list] = {}
    for g in grids:
        for key, values in g.items():
            have = out.setdefault(key, [])
            have += [v for v in values if v not in have]
    return {k: tuple(v) for k, v in out.items()}


def parse_search(body: Any, where: str, problems: list[str]) -> SearchSpec | None:
    from store.metrics import METRICS

    if not isinstance(body, dict):
        problems.append(f"{where} = {cut(body)}: must be a mapping with trials, objectives, sampler and space")
        return None
    unknown_fields(body, ("trials", "objectives", "sampler", "seed", "space", "population_size"), where, problems)
    trials = body.get("trials")
    if trials is None:
        problems.append(f"{where}.trials: is required (the number of trials, e.g. 12)")
    else:
        _check_int(trials, f"{where}.trials", problems, 1, limits().max_runs)
    objectives = body.get("objectives", ["acc"])
    if isinstance(objectives, str):
        objectives = [objectives]
    usable = [k for k, m in METRICS.items() if m.higher_is_better is not None]
    if not isinstance(objectives, list) or not 1 <= len(objectives) <= 2 or len(set(map(str, objectives))) != len(objectives):
        problems.append(f"{where}.objectives = {cut(objectives)}: must be one or two different metric keys, e.g. [acc, min_acc]")
        objectives = []
    for key in objectives:
        if not isinstance(key, str) or key not in METRICS:
            problems.append(f"{where}.objectives = {cut(key)}: must be a metric key of store.metrics: {', '.join(usable)}")
        elif METRICS[key].higher_is_better is None:
            problems.append(f"{where}.objectives = {cut(key)}: has no better direction; use one of {', '.join(usable)}")
    sampler = body.get("sampler", "tpe")
    if sampler not in ("tpe", "nsga2", "random"):
        problems.append(f"{where}.sampler = {cut(sampler)}: must be tpe (default), nsga2 or random")
    seed = body.get("seed", 0)
    seed = seed if _check_seed(seed, f"{where}.seed", problems) else 0
    population = body.get("population_size")
    if population is not None:
        if sampler != "nsga2":
            problems.append(f"{where}.population_size = {cut(population)}: only for sampler nsga2")
        else:
            _check_int(population, f"{where}.population_size", problems, 2)
    space = parse_space(body.get("space"), f"{where}.space", problems)
    if not _is_int(trials) or not objectives:
        return None
    return SearchSpec(trials, tuple(objectives), str(sampler), seed, space, population)


def parse_random(body: Any, where: str, problems: list[str]) -> RandomSpec | None:
    if not isinstance(body, dict):
        problems.append(f"{where} = {cut(body)}: must be a mapping {{samples: N, seed: S, space: {{...}}}}")
        return None
    unknown_fields(body, ("samples", "seed", "space"), where, problems)
    samples = body.get("samples")
    if samples is None:
        problems.append(f"{where}.samples: is required (how many points to draw, e.g. 8)")
    else:
        _check_int(samples, f"{where}.samples", problems, 1, limits().max_runs)
    seed = body.get("seed", 0)
    seed = seed if _check_seed(seed, f"{where}.seed", problems) else 0
    space = parse_space(body.get("space"), f"{where}.space", problems)
    if not _is_int(samples):
        return None
    return RandomSpec(samples, seed, space)


def strategies_in_play(base: Mapping, values_of_name: Iterable[Any] | None) -> list[str]:
    """The strategies a sweep's runs may use: the values of strategy.name if it varies, else the base's."""
    if values_of_name is not None:
        names = list(values_of_name)
    else:
        names = [((base.get("strategy") or {}) if isinstance(base.get("strategy"), dict) else {}).get("name",
                                                                                                   DEFAULT_STRATEGY)]
    return list(dict.fromkeys(n for n in names if isinstance(n, str) and n in STRATEGIES))


def check_key(key: str, where: str, in_play: list[str], problems: list[str], *, allow_name: bool = True) -> bool:
    """A dotted key must name a field of a run-config section; ``strategy.X`` a hyperparameter of one of
    the strategies in play."""
    section, _, fname = key.partition(".")
    shown = cut_text(key)
    if section in ("seed", "name") and not fname:
        what = "the run seed comes from seeds: [...]" if section == "seed" else "run names are made by the sweep"
        problems.append(f"{where}.{shown}: cannot be swept ({what})")
        return False
    if section not in SECTIONS or not fname or "." in fname:
        problems.append(f"{where}.{shown}: must be a dotted key section.field with section one of "
                        f"{', '.join(SECTIONS)}, e.g. train.lr")
        return False
    if section == "strategy":
        if fname == "name":
            if not allow_name:
                problems.append(f"{where}.{shown}: the strategies come from reality_check.strategies")
                return False
            return True
        if not any(fname in declared(s) for s in in_play):
            have = "; ".join(f"{s}: {', '.join(STRATEGIES[s].hparams) or 'none'}" for s in in_play)
            problems.append(f"{where}.{shown}: no strategy of this sweep declares {cut_text(fname)} ({have})")
            return False
        return True
    fields = SECTIONS[section].model_fields
    if section == "model":  # any model's hyperparameter; the run configs check it against their model
        fields = {"name": None, **{k: None for m in MODEL_CONFIGS.values() for k in m.model_fields}}
    if fname not in fields:
        problems.append(f"{where}.{shown}: {cut_text(section)} has no field {cut_text(fname)} (fields: {', '.join(fields)})")
        return False
    return True


def check_base_strategy(base: Mapping, in_play: list[str], problems: list[str], where: str = "base") -> None:
    strategy = base.get("strategy")
    if isinstance(strategy, dict):
        for k in strategy:
            if k != "name":
                check_key(f"strategy.{k}", where, in_play, problems)


def _jsonable(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))


def parse_sweep(data: Any, default_name: str = "sweep") -> SweepSpec:
    """Validate a sweep mapping (a parsed YAML file); raise ``ConfigError`` with one line per problem."""
    if not isinstance(data, dict):
        raise ConfigError(["sweep: must be a mapping with name, base, seeds and one of grid, random, search, "
                           "reality_check"])
    check_document(data, "sweep")
    problems: list[str] = []
    unknown_fields(data, TOP_KEYS, "", problems)
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name.strip() or len(name) > 100 or "/" in name:
        problems.append(f"name = {cut(name)}: must be a non-empty text of at most 100 characters without '/'")
        name = default_name
    base = data.get("base", {})
    if not isinstance(base, dict):
        problems.append(f"base = {cut(base)}: must be a run config mapping (scenario, model, strategy, train, eval)")
        base = {}
    base, preset_problems = apply_preset(copy.deepcopy(base))  # base: {preset: NAME, ...}: the paper's setting
    problems += [f"base.{line}" for line in preset_problems]
    base.pop("name", None)
    modes = [m for m in MODES if m in data]
    if len(modes) > 1:
        problems.append(f"{', '.join(modes)}: give one of {', '.join(MODES)}, not several")
    mode = modes[0] if modes else "grid"
    raw = _jsonable(data)
    if mode == "reality_check":
        from engine.reality import parse_reality

        if "seeds" in data:
            problems.append("seeds: a reality check takes its seeds from reality_check.tune.seeds and "
                            "reality_check.test.seeds")
        reality = parse_reality(data["reality_check"], base, name, problems)
        _raise(problems)
        return SweepSpec(name, "reality-check", base, reality.tune_seeds, reality=reality, raw=raw, prefix=name)
    default_seed = base.get("seed", 0)
    seeds = parse_seeds(data["seeds"], "seeds", problems) if "seeds" in data else (default_seed,)
    spec = SweepSpec(name, KINDS[mode], base, seeds, raw=raw, prefix=name)
    if mode == "grid" and isinstance(data.get("grid"), list):
        spec.grids = parse_grids(data["grid"], "grid", problems)
        spec.grid = merged_grid(spec.grids)
    elif mode == "grid" and "grid" in data:
        spec.grid = parse_grid(data["grid"], "grid", problems)
    elif mode == "grid":
        spec.grid = {}
    elif mode == "random":
        spec.random = parse_random(data["random"], "random", problems)
    else:
        spec.search = parse_search(data["search"], "search", problems)
        if len(seeds) > 1:
            problems.append(f"seeds = {cut(list(seeds))}: a search runs each trial once: give one seed")
    if spec.grid is not None or spec.random is not None or spec.search is not None:
        if check_runs(count_runs(spec), problems):
            check_spec(spec, problems)
    _raise(problems)
    return spec


def check_spec(spec: SweepSpec, problems: list[str], where: str | None = None,
               in_play: list[str] | None = None) -> None:
    """Check a grid, random or search spec's keys and values by building its configs. ``in_play``: the
    strategies a ``strategy.X`` key may belong to (default: the sweep's own)."""
    where = where or {"grid": "grid", "random": "random.space", "optuna": "search.space"}[spec.kind]
    name_values = None
    if spec.fixed_strategy is None:
        if spec.grid and "strategy.name" in spec.grid:
            name_values = spec.grid["strategy.name"]
        for d in (spec.random or spec.search).space if (spec.random or spec.search) else ():
            if d.key == "strategy.name":
                name_values = d.values
        for v in name_values or ():
            if not known_strategy(v):
                problems.append(f"{where}.strategy.name = {cut(v)}: must be one of {', '.join(STRATEGIES)}")
    if in_play is None:
        in_play = [spec.fixed_strategy] if spec.fixed_strategy else strategies_in_play(spec.base, name_values)
    bad = {key for key in spec.keys if not check_key(key, where, in_play, problems,
                                                     allow_name=spec.fixed_strategy is None)}
    check_base_strategy(spec.base, in_play, problems)  # such keys are left out of the configs below
    if bad:  # go on with the good keys, for the other problems
        spec = dataclasses.replace(spec, grid={k: v for k, v in spec.grid.items() if k not in bad}
                                   if spec.grid is not None else None,
                                   grids=tuple({k: v for k, v in g.items() if k not in bad} for g in spec.grids)
                                   if spec.grids is not None else None,
                                   random=dataclasses.replace(spec.random, space=tuple(d for d in spec.random.space
                                                                                      if d.key not in bad))
                                   if spec.random is not None else None,
                                   search=dataclasses.replace(spec.search, space=tuple(d for d in spec.search.space
                                                                                       if d.key not in bad))
                                   if spec.search is not None else None)
    if spec.grid is None:  # each bound and each choice on its own, with a strategy that has the key
        n = len(problems)
        for d in (spec.random or spec.search).space:
            for value in d.probes():
                users = [s for s in in_play if d.key == "strategy.name" or not d.key.startswith("strategy.")
                         or d.key.split(".", 1)[1] in declared(s)]
                fixed = {"strategy.name": users[0]} if users and d.key != "strategy.name" else {}
                _, errs = _build(spec, [{**fixed, d.key: value}], spec.seeds[:1], where, dedupe=False)
                problems += [e for e in errs if e not in problems]
        if len(problems) > n:
            return  # the samples would repeat the same problems
    if spec.kind != "optuna":
        _, errs = _build(spec, _points(spec), spec.seeds, where)
        problems += [e for e in errs if e not in problems]


def count_runs(spec: SweepSpec) -> tuple[int, str]:
    """The runs a grid, random or search spec asks for, and how (``4 x 3 points x 2 seeds``), from the
    sizes alone: nothing is expanded. A grid counts every point (points that differ only in keys
    left out of a strategy are one run later, so this is an upper bound)."""
    if spec.grids is not None:
        runs = sum(math.prod(len(v) for v in g.values()) for g in spec.grids)
        return runs * len(spec.seeds), f"{runs} points in {len(spec.grids)} grids x {len(spec.seeds)} seeds"
    if spec.grid is not None:
        sizes = [len(v) for v in spec.grid.values()]
        return math.prod(sizes) * len(spec.seeds), f"{' x '.join(map(str, sizes)) or 1} points x {len(spec.seeds)} seeds"
    if spec.random is not None:
        return spec.random.samples * len(spec.seeds), f"{spec.random.samples} samples x {len(spec.seeds)} seeds"
    return spec.search.trials, f"{spec.search.trials} trials"


def grid_plan(base: Mapping, grid: Mapping[str, list], seeds: Iterable[Any]) -> list[tuple[str, int, dict]]:
    """Per strategy of a grid over ``strategy.name``: its runs and the hyperparameters it runs with that
    the grid does not vary (the base's where the strategy declares them, else the defaults), as
    ``_build`` makes them, from the sizes alone (a grid key a strategy does not declare adds no runs)."""
    distinct = lambda values: len({json.dumps(v, sort_keys=True, default=str) for v in values})  # noqa: E731
    n_seeds = distinct(seeds)
    plan = []
    for name in dict.fromkeys(grid.get("strategy.name", [])):
        have = STRATEGIES[name].hparams if known_strategy(name) else {}
        sizes = [distinct(v) for k, v in grid.items() if k != "strategy.name"
                 and (not k.startswith("strategy.") or k.split(".", 1)[1] in have)]
        cfg, _ = apply_point(base, {"strategy.name": name})
        fixed = {k: spec.default for k, spec in have.items() if f"strategy.{k}" not in grid}
        fixed.update({k: v for k, v in cfg["strategy"].items() if k in fixed})
        plan.append((name, math.prod(sizes) * n_seeds, fixed))
    return plan


def check_runs(counted: tuple[int, str], problems: list[str], where: str = "sweep") -> bool:
    """One line if a sweep asks for more than ``max_runs`` runs (checked before anything is expanded)."""
    runs, how = counted
    most = limits().max_runs
    if runs > most:
        problems.append(f"{where}: {how} = {runs:,} runs: at most {most:,} runs a sweep "
                        "(lab.toml [limits] max_runs)")
        return False
    return True


def _raise(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems)


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file (YAML); the name defaults to the file's stem."""
    return parse_sweep(read_yaml(path), default_name=Path(path).stem)


# ---- expansion (pure) ------------------------------------------------------------------------------

def apply_point(base: Mapping, point: Mapping[str, Any], strategy: str | None = None) -> tuple[dict, dict]:
    """``base`` with the point's values set; returns (config dict, the keys that applied). ``strategy.X``
    applies only if the run's strategy declares X; base strategy keys it does not declare are dropped."""
    cfg = copy.deepcopy(dict(base))
    strat = cfg.get("strategy", {"name": DEFAULT_STRATEGY})
    strat = dict(strat) if isinstance(strat, dict) else strat  # not a mapping: parse_config says so
    applied: dict[str, Any] = {}
    if isinstance(strat, dict):
        if strategy is not None:
            strat["name"] = strategy
        if "strategy.name" in point:
            strat["name"] = point["strategy.name"]
            applied["strategy.name"] = point["strategy.name"]
        have = declared(strat.get("name"))
        if have or known_strategy(strat.get("name")):
            strat = {k: v for k, v in strat.items() if k == "name" or k in have}
    for key, value in point.items():
        section, _, fname = key.partition(".")
        if section == "strategy":
            if fname != "name" and isinstance(strat, dict) and fname in declared(strat.get("name")):
                strat[fname] = copy.deepcopy(value)
                applied[key] = value
        else:
            sec = cfg.get(section)
            cfg[section] = dict(sec) if isinstance(sec, dict) else {}
            cfg[section][fname] = copy.deepcopy(value)
            applied[key] = value
    cfg["strategy"] = strat
    return cfg, applied


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def labels(keys: Iterable[str]) -> dict[str, str]:
    """Short labels for run names: the field name, or the whole key where two keys share it (or it
    would read as the run seed)."""
    keys = [k for k in keys if k != "strategy.name"]
    short = [k.split(".", 1)[-1] for k in keys]
    return {k: (s if short.count(s) == 1 and s not in ("seed", "name", "trial") else k) for k, s in zip(keys, short)}


def run_name(prefix: str, config: Mapping, applied: Mapping[str, Any], label: Mapping[str, str], seed: int,
             extra: str = "") -> str:
    strat = config.get("strategy")
    strategy = strat.get("name", DEFAULT_STRATEGY) if isinstance(strat, dict) else DEFAULT_STRATEGY
    strategy = strategy if isinstance(strategy, str) else "?"  # parse_config says what is wrong
    parts = [f"{prefix}/{strategy}"] + [f"{label[k]}={_fmt(v)}" for k, v in applied.items() if k in label]
    parts.append(f"seed={seed}")
    if extra:
        parts.append(extra)
    name = " ".join(parts)
    return name if len(name) <= 200 else name[:199] + "…"


def _points(spec: SweepSpec) -> list[dict]:
    if spec.grids is not None:
        return [dict(zip(g, combo)) for g in spec.grids for combo in itertools.product(*g.values())]
    if spec.grid is not None:
        keys = list(spec.grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(spec.grid[k] for k in keys))]
    rng = np.random.default_rng(spec.random.seed)
    return [{d.key: d.sample(rng) for d in spec.random.space} for _ in range(spec.random.samples)]


_FIELD = re.compile(r"^([\w.]+)(?: = |: )")


def _where(line: str, applied: Mapping[str, Any], where: str, base_where: str = "base") -> str:
    m = _FIELD.match(line)
    if m and m.group(1) in applied:
        return f"{where}.{line}"
    if m and m.group(1) == "config":
        return f"{base_where}: {line.split(': ', 1)[-1]}"
    return f"{base_where}.{line}"


def _build(spec: SweepSpec, points: list[dict], seeds: Iterable[int], where: str, *, dedupe: bool | None = None
           ) -> tuple[list[RunConfig], list[str]]:
    """The configs of the points times the seeds, validated; and the problems (lines), deduplicated."""
    label = labels(spec.keys)
    dedupe = spec.grid is not None if dedupe is None else dedupe
    configs: list[RunConfig] = []
    problems: list[str] = []
    seen: set[str] = set()
    for point in points:
        cfg, applied = apply_point(spec.base, point, spec.fixed_strategy)
        for seed in seeds:
            data = {**cfg, "seed": seed}
            if dedupe:
                key = json.dumps(data, sort_keys=True, default=str)
                if key in seen:
                    continue
                seen.add(key)
            data["name"] = run_name(spec.prefix or spec.name, cfg, applied, label, seed)
            try:
                configs.append(parse_config(data))
            except ConfigError as err:
                for line in err.problems:
                    line = _where(line, applied, where)
                    if line not in problems:
                        problems.append(line)
    return configs, problems


def expand(spec: SweepSpec | Mapping) -> list[RunConfig]:
    """Every run config of a grid or random sweep (a reality check: its tune phase), in order. Pure and
    deterministic. A search is not expanded ahead: its trials are asked from Optuna as runs end."""
    if not isinstance(spec, SweepSpec):
        spec = parse_sweep(spec)
    if spec.kind == "optuna":
        raise ValueError("a search is not expanded ahead: its trials come from Optuna (engine.search)")
    if spec.kind == "reality-check":
        return [c for s in spec.reality.strategies for c in expand(spec.reality.tune_spec(s))]
    configs, problems = _build(spec, _points(spec), spec.seeds, "grid" if spec.grid is not None else "random.space")
    if problems:
        raise ConfigError(problems)
    return configs


# ---- launching, progress, cancelling ----------------------------------------------------------------

def launch_sweep(manager, spec: SweepSpec | Mapping, owner: str | None = None, principal=None) -> int:
    """Create the sweep row and queue its runs as one group (a search: start its driver thread; a
    reality check: queue its tune phase), for ``principal`` (``RunManager.admit``: who may launch,
    the cost, and their quotas for the whole sweep, before any row is written). Returns the sweep id."""
    if not isinstance(spec, SweepSpec):
        spec = parse_sweep(spec)
    if spec.kind == "optuna":
        from engine.search import start_search

        return start_search(manager, spec, owner=owner, principal=principal)
    if spec.kind == "reality-check":
        from engine.reality import launch_reality_check

        return launch_reality_check(manager, spec, owner=owner, principal=principal)
    configs = expand(spec)
    from engine.cost import QUEUE_LOCK

    with QUEUE_LOCK:  # every run's cost, the weights budget and the quotas, before any row is written
        who, owner = manager.admit(principal, owner, configs, sweep_runs=len(configs))
        sweep_id = manager.store.create_sweep(spec.name, spec.kind, spec.raw, owner=owner)
        for config in configs:
            manager.submit(config, owner=owner, sweep_id=sweep_id, check_cost=False, principal=principal)
    manager.store.audit(who, None, "launch", sweep_id=sweep_id, detail=f"{spec.kind} sweep {spec.name!r}: {len(configs)} runs")
    return sweep_id


def _sweep_row(store, sweep_id: int) -> tuple[str, str, dict]:
    rows = store.sql("SELECT name, kind, spec FROM sweeps WHERE id = ?", [sweep_id])
    if not rows:
        raise KeyError(f"no sweep with id {sweep_id}")
    name, kind, spec = rows[0]
    return name, kind, json.loads(spec) if isinstance(spec, str) else spec


def planned_runs(kind: str, raw: Mapping, created: Mapping[str, int]) -> int:
    """The runs a sweep will have in all. Grid and random sweeps (and a reality check's grid or random
    tune phase) queue every run at launch; a search plans ``trials``; a test phase one run per
    strategy and test seed."""
    if kind == "optuna":
        return max(int(raw["search"]["trials"]), created.get("", 0))
    if kind == "reality-check":
        rc = raw["reality_check"]
        n_strategies = len(rc["strategies"])
        tune = created.get("tune", 0)
        if "search" in rc["tune"]:
            tune = max(tune, int(rc["tune"]["search"]["trials"]) * n_strategies)
        return tune + max(created.get("test", 0), n_strategies * len(rc["test"]["seeds"]))
    return sum(created.values())


def sweep_progress(store, sweep_id: int) -> dict:
    """Counts by status (and by phase), runs planned, ended, and the fraction done."""
    name, kind, raw = _sweep_row(store, sweep_id)
    rows = store.sql("SELECT coalesce(sweep_phase, ''), status, count(*) FROM runs WHERE sweep_id = ? "
                     "GROUP BY ALL", [sweep_id])
    counts = {s: 0 for s in RUN_STATUSES}
    phases: dict[str, dict[str, int]] = {}
    for phase, status, n in rows:
        counts[status] = counts.get(status, 0) + n
        phases.setdefault(phase, {s: 0 for s in RUN_STATUSES})[status] = n
    created = {p: sum(c.values()) for p, c in phases.items()}
    total = planned_runs(kind, raw, created)
    ended = sum(counts[s] for s in FINAL_STATUSES)
    return {"sweep_id": sweep_id, "name": name, "kind": kind, "total": total, "created": sum(created.values()),
            "ended": ended, "active": counts["queued"] + counts["running"], "counts": counts,
            "done_fraction": ended / total if total else 1.0,
            "phases": {p: c for p, c in phases.items() if p}}


def format_progress(p: Mapping) -> str:
    c = p["counts"]
    ended = ", ".join(f"{s} {c[s]}" for s in FINAL_STATUSES if c.get(s))
    line = (f"sweep {p['sweep_id']} {p['name']}: {p['ended']}/{p['total']} ended"
            + (f" ({ended})" if ended else "") + f", {c['running']} running, {c['queued']} queued, "
            f"{100 * p['done_fraction']:5.1f}%")
    if p.get("phases"):
        line += " [" + ", ".join(f"{ph} {sum(v for s, v in pc.items() if s in FINAL_STATUSES)}/{sum(pc.values())}"
                                 for ph, pc in p["phases"].items()) + "]"
    return line


_advance_lock = threading.Lock()


def advance(manager, sweep_id: int) -> str:
    """Move a sweep on and say where it is: 'running', 'tuning', 'testing', 'done' or 'cancelled'.
    Safe to call again at any time: a reality check queues its test phase once its tune phase has
    ended; a search whose driver is not running in this process (after a restart) is resumed."""
    with _advance_lock:
        _, kind, _ = _sweep_row(manager.store, sweep_id)
        if kind == "reality-check":
            from engine.reality import advance_reality_check

            return advance_reality_check(manager, sweep_id)
        if kind == "optuna":
            from engine.search import advance_search

            return advance_search(manager, sweep_id)
        p = sweep_progress(manager.store, sweep_id)
        if p["active"]:
            return "running"
        return "cancelled" if p["counts"]["cancelled"] else "done"


def cancel_sweep(manager, sweep_id: int, principal=None) -> int:
    """Cancel a sweep as a group: stop its search drivers (no new trials) and cancel every queued or
    running run (``RunManager.cancel_sweep``). Returns how many runs were cancelled. ``AccessDenied``,
    before anything stops, for a principal who may not."""
    from engine.search import stop_drivers

    manager.store.authorize(principal, "cancel", sweep_id=sweep_id)
    stop_drivers(sweep_id)
    return manager.cancel_sweep(sweep_id, principal=principal)


def wait_sweep(manager, sweep_id: int, timeout: float | None = None, poll: float = 0.5,
               on_progress: Callable[[dict], None] | None = None) -> str:
    """Advance the sweep until it is 'done' or 'cancelled' (or the timeout passes); returns the state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        state = advance(manager, sweep_id)
        if on_progress is not None:
            on_progress(sweep_progress(manager.store, sweep_id))
        if state in ("done", "cancelled") or (deadline is not None and time.monotonic() >= deadline):
            return state
        active = manager.store.sql("SELECT id FROM runs WHERE sweep_id = ? AND status IN ('queued', 'running') "
                                   "ORDER BY id LIMIT 1", [sweep_id])
        if active:
            manager.wait(active[0][0], timeout=poll)
        else:
            time.sleep(min(poll, 0.1))


class SweepKeeper(threading.Thread):
    """Moves a long-lived lab's sweeps on in the background: a reality check's test phase is queued
    when its tune phase ends, and a search's trials keep coming (or resume after a restart). At start
    it watches every sweep with runs still to come; ``watch`` adds one launched later."""

    def __init__(self, manager, interval: float = 1.0):
        super().__init__(daemon=True, name="sweep-keeper")
        self.manager, self.interval = manager, interval
        self._watched: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        for (sweep_id,) in manager.store.sql("SELECT id FROM sweeps ORDER BY id"):
            p = sweep_progress(manager.store, sweep_id)
            if p["ended"] < p["total"] and not p["counts"]["cancelled"]:
                self._watched.add(sweep_id)

    def watch(self, sweep_id: int) -> None:
        with self._lock:
            self._watched.add(sweep_id)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                watched = sorted(self._watched)
            for sweep_id in watched:
                try:
                    state = advance(self.manager, sweep_id)
                except Exception as err:  # one broken sweep must not stop the others
                    print(f"sweep {sweep_id}: {err}", file=sys.stderr)
                    state = "done"
                if state in ("done", "cancelled"):
                    with self._lock:
                        self._watched.discard(sweep_id)


# ---- results ---------------------------------------------------------------------------------------

def _flat(config: Mapping) -> dict[str, Any]:
    out = {}
    for section, value in config.items():
        if isinstance(value, dict):
            for k, v in value.items():
                out[f"{section}.{k}"] = v
        else:
            out[section] = value
    return out


def config_results(store, sweep_id: int, metric: str = "acc", phase: str | None = None) -> list[dict]:
    """The sweep's runs grouped by config (everything but the name and the seed), each with the metric
    over its finished runs: strategy, hparams (the strategy's hyperparameters and the keys that vary
    in the sweep), config, run_ids, seeds, values, n, mean, std (sample std; None below 2 values).
    Runs that did not finish, or whose metric is unavailable, count in ``run_ids`` but not in ``n``."""
    from store.metrics import summaries

    query = "SELECT id, status, config, CAST(config->>'$.seed' AS BIGINT) FROM runs WHERE sweep_id = ?"
    params: list[Any] = [sweep_id]
    if phase is not None:
        query += " AND sweep_phase = ?"
        params.append(phase)
    rows = store.sql(query + " ORDER BY id", params)
    finished = [r[0] for r in rows if r[1] == "finished"]
    values = {rid: s.get(metric) for rid, s in zip(finished, summaries(store, finished))} if finished else {}
    groups: dict[str, dict] = {}
    for run_id, status, config, seed in rows:
        cfg = json.loads(config) if isinstance(config, str) else config
        rest = {k: v for k, v in cfg.items() if k not in ("name", "seed")}
        key = json.dumps(rest, sort_keys=True)
        g = groups.setdefault(key, {"strategy": cfg["strategy"]["name"], "config": rest, "run_ids": [],
                                    "seeds": [], "values": []})
        g["run_ids"].append(run_id)
        g["seeds"].append(seed)
        v = values.get(run_id)
        if v is not None and isinstance(v, (int, float)) and math.isfinite(v):
            g["values"].append(float(v))
    flats = [_flat(g["config"]) for g in groups.values()]
    varying = {k for k in set().union(*flats) if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1} \
        if flats else set()
    out = []
    for g, flat in zip(groups.values(), flats):
        vals = g["values"]
        g["hparams"] = {k: v for k, v in flat.items()
                        if k != "strategy.name" and (k.startswith("strategy.") or k in varying)}
        g["n"] = len(vals)
        g["mean"] = float(np.mean(vals)) if vals else None
        g["std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
        out.append(g)
    return out


def format_results(groups: list[dict], metric: str, higher_is_better: bool = True, top: int = 10) -> str:
    ranked = sorted(groups, key=lambda g: (g["mean"] is None, -(g["mean"] or 0) if higher_is_better else (g["mean"] or 0)))
    lines = [f"{'mean ' + metric:>12} {'std':>7} {'n':>3}  config"]
    for g in ranked[:top]:
        mean = "     n/a" if g["mean"] is None else f"{g['mean']:12.4f}"
        std = "      -" if g["std"] is None else f"{g['std']:7.4f}"
        hp = " ".join(f"{k.split('.', 1)[-1]}={_fmt(v)}" for k, v in g["hparams"].items())
        lines.append(f"{mean:>12} {std} {g['n']:3d}  {g['strategy']} {hp}".rstrip())
    if len(ranked) > top:
        lines.append(f"... and {len(ranked) - top} more config(s)")
    return "\n".join(lines)
