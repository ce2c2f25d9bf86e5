"""A sweep's spec and the parsing, checking and pure expansion every kind shares.

The sweep file (YAML) and its rules are in ``engine/sweeps/__init__.py``; each kind parses its own
section (``grid:``, ``random:``, ``search:``, ``reality_check:``) with the helpers here.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from engine.config import (MAX_SEED, MODEL_CONFIGS, ConfigError, EvalConfig, ModelConfig, RunConfig, ScenarioConfig,
                           TrainConfig, parse_config)
from engine.core.inputs import cut, cut_text
from engine.core.limits import limits
from engine.presets import apply_preset
from engine.strategies import STRATEGIES

SECTIONS = {"scenario": ScenarioConfig, "model": ModelConfig, "strategy": None, "train": TrainConfig,
            "eval": EvalConfig}

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
    """A parsed, validated sweep. ``kind`` is the name of its kind (``engine.sweeps.SWEEP_KINDS``, the
    ``sweeps.kind`` column); ``raw`` is the file as given (stored in ``sweeps.spec``)."""

    name: str
    kind: str
    base: dict
    seeds: tuple[int, ...]
    grid: dict[str, tuple] | None = None
    grids: tuple[dict[str, tuple], ...] | None = None  # a list of grids: each one's points, joined; grid: their union
    random: RandomSpec | None = None
    search: SearchSpec | None = None
    reality: Any = None       # engine.sweeps.reality.RealitySpec
    raw: dict = field(default_factory=dict)
    prefix: str = ""          # run names start with it (default: name)
    fixed_strategy: str | None = None  # reality check: every run uses this strategy

    @property
    def keys(self) -> list[str]:
        if self.grid is not None:
            return list(self.grid)
        space = (self.random or self.search).space if (self.random or self.search) else ()
        return [d.key for d in space]


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


def check_spec(spec: SweepSpec, problems: list[str], where: str | None = None,
               in_play: list[str] | None = None) -> None:
    """Check a grid, random or search spec's keys and values by building its configs. ``in_play``: the
    strategies a ``strategy.X`` key may belong to (default: the sweep's own)."""
    where = where or ("grid" if spec.grid is not None else "random.space" if spec.random is not None else "search.space")
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
    if spec.search is None:  # a search is not expanded ahead
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


def raise_problems(problems: list[str]) -> None:
    if problems:
        raise ConfigError(problems)


def sweep_base(data: Mapping, problems: list[str]) -> dict:
    """The file's ``base`` run config, its preset applied (``base: {preset: NAME, ...}``: the paper's
    setting), without a name (the sweep names its runs)."""
    base = data.get("base", {})
    if not isinstance(base, dict):
        problems.append(f"base = {cut(base)}: must be a run config mapping (scenario, model, strategy, train, eval)")
        base = {}
    base, preset_problems = apply_preset(copy.deepcopy(base))
    problems += [f"base.{line}" for line in preset_problems]
    base.pop("name", None)
    return base


def sweep_seeds(data: Mapping, base: Mapping, problems: list[str]) -> tuple[int, ...]:
    """The file's ``seeds`` (default: the base's seed, else 0)."""
    return parse_seeds(data["seeds"], "seeds", problems) if "seeds" in data else (base.get("seed", 0),)


def check_counted(spec: SweepSpec, problems: list[str], where: str | None = None) -> None:
    """A grid, random or search spec: its runs counted from the sizes alone, then (if they are within
    the limit) its keys and values checked by building its configs (lines start with ``where``, by
    default the section: grid, random.space or search.space)."""
    if check_runs(count_runs(spec), problems):
        check_spec(spec, problems, where)


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


def fmt_value(value: Any) -> str:
    """A value in a run name or a line of text: floats to 3 significant digits, lists and mappings as JSON."""
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
    parts = [f"{prefix}/{strategy}"] + [f"{label[k]}={fmt_value(v)}" for k, v in applied.items() if k in label]
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




def expand_points(spec: SweepSpec) -> list[RunConfig]:
    """Every run config of a grid or random spec, in order (grid points in the order of the keys, the
    last key varying fastest; seeds innermost). Pure and deterministic."""
    configs, problems = _build(spec, _points(spec), spec.seeds, "grid" if spec.grid is not None else "random.space")
    raise_problems(problems)
    return configs
