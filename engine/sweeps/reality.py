"""The reality-check protocol (Hyperparameters in Continual Learning: a Reality Check, 2024).

Two phases in one sweep (kind ``reality_check``): tune every strategy's hyperparameters on scenario A
(a grid, random sample or Optuna search; runs with ``sweep_phase = 'tune'``), pick each strategy's best
config by a metric (the mean over the tune seeds), then run those configs on scenario B (the same
setting, other data) with new seeds (``sweep_phase = 'test'``). ``reality_rankings`` puts both phases'
rankings side by side; a strategy whose rank moves is one whose tuned advantage did not carry over.

A sweep file::

    name: reality-digits-mnist1d
    base: {model: {hidden: [256, 256]}, train: {lr: 0.05, epochs_per_task: 5}}  # shared by both phases
    reality_check:
      metric: acc                          # a key of store.metrics.METRICS (its direction decides "best")
      strategies: [naive, replay, ewc]     # strategy.name comes from here, never from the grid
      tune:
        scenario: {dataset: digits, setting: class, n_tasks: 5}      # merged over base.scenario
        grid: {train.lr: [0.01, 0.05], strategy.buffer_size: [100, 500], strategy.ewc_lambda: [100, 10000]}
        seeds: [0, 1]                      # or random: {...} / search: {...} (a search: one seed, trials per strategy)
      test:
        scenario: {dataset: mnist1d}       # merged over the tune scenario; the setting must stay the same
        seeds: [10, 11]                    # new seeds: none of the tune seeds

The strategy rule of ``engine.sweeps`` holds: ``strategy.buffer_size`` tunes replay only, and so on.
Phase 2 is queued by ``advance_reality_check`` (through ``engine.sweeps.sweep.advance``) once every tune run
has ended; it can be called again at any time (it queues the test phase once). If any tune run was
cancelled, the test phase is not started. A strategy whose tune runs all failed has no test runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from engine.config import ConfigError, parse_config
from engine.core.inputs import cut
from engine.strategies import STRATEGIES
from engine.sweeps.kind import SweepKind
from engine.sweeps.outcome import Outcome
from engine.sweeps.results import config_results
from engine.sweeps.search import ensure_drivers, start_driver, stop_drivers
from engine.sweeps.spec import (SweepSpec, check_runs, check_spec, count_runs, expand_points, known_strategy, labels,
                                parse_grid, parse_random, parse_search, parse_seeds, run_name, unknown_fields)
from store.sweeps import status_counts, sweep_owner, sweep_row

TUNE, TEST = "tune", "test"


@dataclass
class RealitySpec:
    name: str
    metric: str
    strategies: tuple[str, ...]
    base: dict
    tune_scenario: dict
    tune_seeds: tuple[int, ...]
    test_scenario: dict
    test_seeds: tuple[int, ...]
    tune_mode: str = "grid"           # grid | random | search
    tune_body: Any = None             # the parsed grid / RandomSpec / SearchSpec

    @property
    def higher_is_better(self) -> bool:
        from store.metrics import METRICS

        return bool(METRICS[self.metric].higher_is_better)

    def tune_spec(self, strategy: str) -> SweepSpec:
        """The tune phase of one strategy as a sweep of its own (runs named ``<name>/tune/<strategy> ...``)."""
        base = {**self.base, "scenario": dict(self.tune_scenario)}
        strat = dict(base.get("strategy") or {})
        strat["name"] = strategy
        base["strategy"] = strat
        spec = SweepSpec(f"{self.name}/{TUNE}", self.tune_mode, base, self.tune_seeds, prefix=f"{self.name}/{TUNE}",
                         fixed_strategy=strategy)
        if self.tune_mode == "grid":
            spec.grid = {k: v for k, v in self.tune_body.items()}
        elif self.tune_mode == "random":
            spec.random = self.tune_body
        else:
            spec.search = self.tune_body
        return spec

    @property
    def planned_runs(self) -> int:
        if self.tune_mode == "search":
            tune = self.tune_body.trials * len(self.strategies)
        else:
            tune = sum(len(expand_points(self.tune_spec(s))) for s in self.strategies)
        return tune + len(self.strategies) * len(self.test_seeds)

    def test_config(self, strategy: str, tuned: Mapping, seed: int, keys: list[str]):
        """A test-phase run config: the tuned config (without name and seed) on the test scenario."""
        data = {**{k: v for k, v in tuned.items() if k not in ("name", "seed")},
                "scenario": dict(self.test_scenario), "seed": seed}
        applied = {k: data.get(k.split(".")[0], {}).get(k.split(".", 1)[1]) for k in keys
                   if isinstance(data.get(k.split(".")[0]), dict) and k.split(".", 1)[1] in data[k.split(".")[0]]}
        data["name"] = run_name(f"{self.name}/{TEST}", data, applied, labels(keys), seed)
        return parse_config(data)


def parse_reality(body: Any, base: dict, name: str, problems: list[str]) -> RealitySpec:
    from store.metrics import METRICS

    where = "reality_check"
    usable = [k for k, m in METRICS.items() if m.higher_is_better is not None]
    empty = RealitySpec(name, "acc", (), base, {}, (0,), {}, (1,))
    if not isinstance(body, dict):
        problems.append(f"{where} = {cut(body)}: must be a mapping with metric, strategies, tune and test")
        return empty
    unknown_fields(body, ("metric", "strategies", "tune", "test"), where, problems)
    metric = body.get("metric", "acc")
    if not isinstance(metric, str) or metric not in METRICS or METRICS[metric].higher_is_better is None:
        problems.append(f"{where}.metric = {cut(metric)}: must be a metric key with a direction: {', '.join(usable)}")
        metric = "acc"
    strategies = body.get("strategies")
    if not isinstance(strategies, list) or not strategies or len(set(map(str, strategies))) != len(strategies):
        problems.append(f"{where}.strategies = {cut(strategies)}: must be a list of different strategy names, "
                        f"e.g. [naive, replay, ewc] (known: {', '.join(STRATEGIES)})")
        strategies = []
    for s in strategies:
        if not known_strategy(s):
            problems.append(f"{where}.strategies = {cut(s)}: must be one of {', '.join(STRATEGIES)}")
    strategies = tuple(s for s in strategies if known_strategy(s))
    if isinstance(base.get("strategy"), dict) and "name" in base["strategy"]:
        problems.append(f"base.strategy.name = {cut(base['strategy']['name'])}: the strategies come from "
                        f"{where}.strategies")
    tune, test = body.get("tune"), body.get("test")
    if not isinstance(tune, dict):
        problems.append(f"{where}.tune = {cut(tune)}: must be a mapping with scenario, one of grid / random / search, "
                        "and seeds")
        tune = {}
    if not isinstance(test, dict):
        problems.append(f"{where}.test = {cut(test)}: must be a mapping with scenario and seeds")
        test = {}
    unknown_fields(tune, ("scenario", "grid", "random", "search", "seeds"), f"{where}.tune", problems)
    unknown_fields(test, ("scenario", "seeds"), f"{where}.test", problems)
    base_scenario = base.get("scenario") if isinstance(base.get("scenario"), dict) else {}
    scenarios = {}
    for phase, section in (("tune", tune), ("test", test)):
        sc = section.get("scenario")
        if not isinstance(sc, dict) or not sc:
            problems.append(f"{where}.{phase}.scenario = {cut(sc)}: is required, a scenario mapping, e.g. "
                            "{dataset: digits, setting: class, n_tasks: 5}")
            sc = {}
        scenarios[phase] = sc
    tune_scenario = {**base_scenario, **scenarios["tune"]}
    test_scenario = {**tune_scenario, **scenarios["test"]}
    tune_seeds = parse_seeds(tune.get("seeds", [0]), f"{where}.tune.seeds", problems)
    if "seeds" not in test:
        problems.append(f"{where}.test.seeds: is required (new seeds, e.g. [10, 11])")
    test_seeds = parse_seeds(test.get("seeds", [1]), f"{where}.test.seeds", problems)
    reused = sorted(set(tune_seeds) & set(test_seeds))
    if reused:
        problems.append(f"{where}.test.seeds = {cut(list(test_seeds))}: must be new seeds, none of the tune seeds "
                        f"(reused: {cut(reused)})")
    setting = lambda sc: sc.get("setting", "class")  # noqa: E731 - the ScenarioConfig default
    if scenarios["tune"] and scenarios["test"]:
        if setting(test_scenario) != setting(tune_scenario):
            problems.append(f"{where}.test.scenario.setting = {cut(setting(test_scenario))}: must be the tune phase's "
                            f"setting ({cut(setting(tune_scenario))}): the check moves to other data, not another setting")
        elif test_scenario == tune_scenario:
            problems.append(f"{where}.test.scenario = {cut(scenarios['test'])}: must differ from the tune scenario "
                            "(other data: another dataset, split seed or class order)")
    modes = [m for m in ("grid", "random", "search") if m in tune]
    if len(modes) > 1:
        problems.append(f"{where}.tune: give one of grid, random, search, not {', '.join(modes)}")
    mode = modes[0] if modes else "grid"
    mwhere = f"{where}.tune.{mode}"
    if mode == "grid":
        body_ = parse_grid(tune["grid"], mwhere, problems) if "grid" in tune else {}
    elif mode == "random":
        body_ = parse_random(tune["random"], mwhere, problems)
    else:
        body_ = parse_search(tune["search"], mwhere, problems)
        if len(tune_seeds) > 1:
            problems.append(f"{where}.tune.seeds = {cut(list(tune_seeds))}: a search runs each trial once: give one seed")
    spec = RealitySpec(name, metric, strategies, base, tune_scenario, tune_seeds, test_scenario, test_seeds,
                       mode, body_)
    if not strategies or body_ is None:
        return spec
    # every strategy's tune configs (a strategy.X key must apply to at least one of the strategies),
    # then the test scenario with each strategy's defaults
    tune_runs, how = count_runs(spec.tune_spec(strategies[0]))
    n = len(strategies)
    if not check_runs((tune_runs * n + n * len(test_seeds), f"tune ({how}) x {n} strategies + test {n} strategies "
                       f"x {len(test_seeds)} seeds"), problems, where):
        return spec
    kwhere = mwhere if mode == "grid" else f"{mwhere}.space"
    lines: list[str] = []
    for s in strategies:
        check_spec(spec.tune_spec(s), lines, kwhere, in_play=list(strategies))
        data = {**{k: v for k, v in base.items() if k not in ("scenario", "strategy")},
                "scenario": test_scenario, "strategy": {"name": s}}
        try:
            parse_config(data)
        except ConfigError as err:
            lines += [f"{where}.test.{line}" for line in err.problems if line.startswith("scenario.")]
    for line in lines:
        if line.startswith("base.scenario."):
            line = f"{where}.tune.scenario." + line[len("base.scenario."):]
        if line not in problems:
            problems.append(line)
    return spec


# ---- launching and advancing -------------------------------------------------------------------------

def launch_reality_check(manager, spec: SweepSpec, owner: str | None = None, principal=None) -> int:
    """Create the sweep (kind 'reality_check') and queue its tune phase (a search: start one driver a
    strategy). Returns the sweep id; ``advance_reality_check`` queues the test phase later. Every run
    it plans counts against ``principal``'s quotas at launch (``RunManager.admit``)."""
    from engine.runs.admission import QUEUE_LOCK

    r = spec.reality
    configs = RealityCheck().configs(spec)
    planned = r.planned_runs
    with QUEUE_LOCK:  # the tune phase's cost and the quotas, before any row is written (search trials: each as it comes)
        who, owner = manager.admit(principal, owner, configs, runs=planned, sweep_runs=planned)
        sweep_id = manager.store.create_sweep(spec.name, RealityCheck.name, spec.raw, owner=owner)
        if r.tune_mode == "search":
            for s in r.strategies:
                start_driver(manager, sweep_id, r.tune_spec(s), owner=owner, phase=TUNE, strategy=s)
        for config in configs:
            manager.submit(config, owner=owner, sweep_id=sweep_id, sweep_phase=TUNE, check_cost=False,
                           principal=principal)
    manager.store.audit(who, None, "launch", sweep_id=sweep_id, detail=f"reality check {spec.name!r}: {planned} runs")
    return sweep_id


def _load(store, sweep_id: int) -> SweepSpec:
    name, kind, raw = sweep_row(store, sweep_id)
    if kind != RealityCheck.name:
        raise ValueError(f"sweep {sweep_id} is a {kind} sweep, not a reality check")
    return RealityCheck().stored_spec(raw, name)


def _phases(store, sweep_id: int) -> dict[str, dict[str, int]]:
    """Runs by status in each phase that has runs."""
    phases: dict[str, dict[str, int]] = {}
    for phase, status, n in status_counts(store, sweep_id):
        phases.setdefault(phase, {})[status] = n
    return phases


def advance_reality_check(manager, sweep_id: int) -> str:
    """'tuning', 'testing', 'done' or 'cancelled'; queues the test phase (once) when tuning has ended."""
    store = manager.store
    r = _load(store, sweep_id).reality
    owner = sweep_owner(store, sweep_id)
    phases = _phases(store, sweep_id)
    if TEST not in phases:
        tune = phases.get(TUNE, {})
        if r.tune_mode == "search":
            states = [ensure_drivers(manager, sweep_id, r.tune_spec(s), owner=owner, phase=TUNE, strategy=s)
                      for s in r.strategies]
            if "running" in states:
                return "tuning"
            if "cancelled" in states:
                return "cancelled"
        if tune.get("queued", 0) + tune.get("running", 0):
            return "tuning"
        if tune.get("cancelled", 0):
            return "cancelled"
        best = select_best(store, sweep_id, r.metric)
        keys = r.tune_spec(r.strategies[0]).keys if r.strategies else []
        configs = [r.test_config(s, best[s]["config"], seed, keys) for s in r.strategies if s in best
                   for seed in r.test_seeds]
        for config in configs:
            manager.submit(config, owner=owner, sweep_id=sweep_id, sweep_phase=TEST,
                           principal=store.sweep_principal(sweep_id))
        return "testing" if configs else "done"
    test = phases[TEST]
    if test.get("queued", 0) + test.get("running", 0):
        return "testing"
    return "cancelled" if test.get("cancelled", 0) else "done"


# ---- selection and rankings (pure functions over grouped results) -----------------------------------

def pick_best(groups: list[Mapping], higher_is_better: bool = True) -> dict[str, Mapping]:
    """Each strategy's best config among ``groups`` (as ``engine.sweeps.results.config_results`` gives them:
    strategy, mean, n, std, run_ids): the best mean; ties go to more seeds, then the lower std, then
    the earlier run. Configs with no value (n = 0) are never picked."""
    best: dict[str, Mapping] = {}

    def key(g):
        mean = g["mean"] if higher_is_better else -g["mean"]
        std = g.get("std")
        return (mean, g.get("n", 0), -(std if std is not None else math.inf), -min(g.get("run_ids") or [0]))

    for g in groups:
        if g.get("mean") is None or not g.get("n"):
            continue
        s = g["strategy"]
        if s not in best or key(g) > key(best[s]):
            best[s] = g
    return best


def select_best(store, sweep_id: int, metric: str = "acc", phase: str = TUNE) -> dict[str, dict]:
    """The best config of each strategy in one phase of a sweep, by the mean of ``metric`` over seeds."""
    from store.metrics import METRICS

    return pick_best(config_results(store, sweep_id, metric, phase), bool(METRICS[metric].higher_is_better))


def _ranks(means: Mapping[str, float | None], higher_is_better: bool) -> dict[str, int | None]:
    sign = 1 if higher_is_better else -1
    known = {s: m for s, m in means.items() if m is not None}
    return {s: (1 + sum(sign * o > sign * known[s] for o in known.values()) if s in known else None)
            for s in means}


def rank_strategies(tune_groups: list[Mapping], test_groups: list[Mapping], strategies: list[str],
                    higher_is_better: bool = True) -> list[dict]:
    """Both phases side by side, one row a strategy: strategy, hparams (the tuned best), tune_mean,
    tune_std, tune_n, tune_rank, test_mean, test_std, test_n, test_rank, rank_shift (test - tune rank)
    and rank_differs. Rank 1 is the best; equal means share a rank."""
    best = pick_best(tune_groups, higher_is_better)
    tested = pick_best(test_groups, higher_is_better)
    tune_rank = _ranks({s: best[s]["mean"] if s in best else None for s in strategies}, higher_is_better)
    test_rank = _ranks({s: tested[s]["mean"] if s in tested else None for s in strategies}, higher_is_better)
    rows = []
    for s in strategies:
        b, t = best.get(s), tested.get(s)
        a, z = tune_rank[s], test_rank[s]
        rows.append({"strategy": s, "hparams": dict(b["hparams"]) if b else None,
                     "tune_mean": b["mean"] if b else None, "tune_std": b["std"] if b else None,
                     "tune_n": b["n"] if b else 0, "tune_rank": a,
                     "test_mean": t["mean"] if t else None, "test_std": t["std"] if t else None,
                     "test_n": t["n"] if t else 0, "test_rank": z,
                     "rank_shift": (z - a) if a is not None and z is not None else None,
                     "rank_differs": a is not None and z is not None and a != z})
    order = {s: i for i, s in enumerate(strategies)}
    return sorted(rows, key=lambda r: (r["tune_rank"] is None, r["tune_rank"] or 0, order[r["strategy"]]))


def reality_rankings(store, sweep_id: int) -> list[dict]:
    """A reality check's two rankings side by side (see ``rank_strategies``)."""
    return _rankings(store, sweep_id, _load(store, sweep_id).reality)


def _rankings(store, sweep_id: int, r: RealitySpec) -> list[dict]:
    return rank_strategies(config_results(store, sweep_id, r.metric, TUNE),
                           config_results(store, sweep_id, r.metric, TEST), list(r.strategies), r.higher_is_better)


def rankings_findings(rows: list[Mapping]) -> list[str]:
    """What the two rankings say, in one sentence."""
    moved = [r for r in rows if r["rank_differs"]]
    if not rows or all(r["tune_rank"] is None or r["test_rank"] is None for r in rows):
        return ["The reality check has no complete ranking yet."]
    if not moved:
        return ["The reality check held: every strategy kept its rank from the tuning scenario to the test scenario."]
    return ["The reality check moved " + ", ".join(f"{r['strategy']} (rank {r['tune_rank']} → {r['test_rank']})"
                                                  for r in moved) + " from the tuning scenario to the test scenario."]


def rankings_outcome(rows: list[Mapping], metric: str) -> Outcome:
    """The two rankings side by side, one row a strategy, and what they say."""
    return Outcome(
        "Reality check", f"Each strategy tuned on scenario A, its best config (by {metric}) tested on scenario B "
                         "with new seeds. A rank that moved is marked.",
        ["strategy", "best hyperparameters (tuned on A)", "A mean", "A sd", "A rank", "B mean", "B sd", "B rank",
         "rank moved"],
        [[r["strategy"], ", ".join(f"{k.split('.', 1)[-1]}={v}" for k, v in (r["hparams"] or {}).items()),
          r["tune_mean"], r["tune_std"], r["tune_rank"], r["test_mean"], r["test_std"], r["test_rank"],
          "yes" if r["rank_differs"] else ""] for r in rows],
        key="reality_rankings", widths=[0.1, 0.3, 0.08, 0.08, 0.07, 0.08, 0.08, 0.07, 0.07],
        findings=rankings_findings(rows))


class RealityCheck(SweepKind):
    """Two phases: tune on scenario A (a grid, random sample or search per strategy), test the best
    configs on scenario B with new seeds."""

    name = "reality_check"
    summary = "reality check"
    shown_in = ("cli", "page", "report")

    def parse(self, data, base, name, problems):
        if "seeds" in data:
            problems.append("seeds: a reality check takes its seeds from reality_check.tune.seeds and "
                            "reality_check.test.seeds")
        reality = parse_reality(data["reality_check"], base, name, problems)
        return SweepSpec(name, self.name, base, reality.tune_seeds, reality=reality, prefix=name)

    def configs(self, spec):
        """The tune phase's runs (a search tunes with trials: none ahead)."""
        r = spec.reality
        if r.tune_mode == "search":
            return []
        return [c for s in r.strategies for c in expand_points(r.tune_spec(s))]

    def planned_runs(self, spec):
        return spec.reality.planned_runs

    def expected_runs(self, raw, created):
        """A grid or random tune phase is queued at launch, a search's plans ``trials`` a strategy;
        the test phase one run a strategy and test seed."""
        rc = raw["reality_check"]
        n_strategies = len(rc["strategies"])
        tune = created.get(TUNE, 0)
        if "search" in rc["tune"]:
            tune = max(tune, int(rc["tune"]["search"]["trials"]) * n_strategies)
        return tune + max(created.get(TEST, 0), n_strategies * len(rc["test"]["seeds"]))

    def launch(self, manager, spec, owner, principal):
        return launch_reality_check(manager, spec, owner=owner, principal=principal)

    def advance(self, manager, sweep_id):
        return advance_reality_check(manager, sweep_id)

    def stop(self, sweep_id, join=False):
        stop_drivers(sweep_id, join=join)  # a search tune phase's drivers

    def outcome(self, store, sweep_id):
        r = _load(store, sweep_id).reality
        return rankings_outcome(_rankings(store, sweep_id, r), r.metric)

