"""Hyperparameter search with Optuna: each trial is a lab run.

A sweep file with ``search:``::

    name: lr-search
    base: {scenario: {dataset: digits, n_tasks: 5}, strategy: {name: replay}}
    search:
      trials: 12
      objectives: [acc, min_acc]   # one or two keys of store.metrics.METRICS; directions from higher_is_better
      sampler: tpe                 # tpe (default), nsga2 (multi-objective; population_size: N), random
      seed: 0                      # the sampler's seed
      space: {train.lr: {log_uniform: [0.001, 0.1]}, strategy.buffer_size: {int: [50, 500]}}
    seeds: [0]                     # one seed: a trial is one run

The space syntax is the random sweep's (``engine.sweeps.random``), the strategy rule too: ``strategy.X`` is
suggested only for trials whose strategy declares X (``strategy.name`` is suggested first), so
Optuna sees a conditional space.

The study lives beside the lab's database in an Optuna journal file, ``<db>.optuna.journal``
(``JournalStorage(JournalFileBackend)``: one append-only file, safe for several processes, no
SQLAlchemy database to migrate), as study ``sweep-<id>`` (a reality check: ``sweep-<id>-<strategy>``).
Each trial's run id is its user attribute ``run_id``.

A driver thread (ask/tell) keeps up to the manager's parallelism of trials in flight: it asks a
trial, submits its run (with the sweep id), and tells Optuna the run's metric values when it ends.
A run that fails, diverges or has the metric unavailable is told as a failed trial. A cancelled
trial run (e.g. ``RunManager.cancel_sweep``) stops the search: no new trials, and the driver cancels
its other runs. TPE runs with ``constant_liar`` when trials run in parallel.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

from engine.config import ConfigError, parse_config
from engine.core.inputs import cut
from engine.sweeps.kind import SweepKind
from engine.sweeps.outcome import Outcome
from engine.sweeps.spec import (SearchSpec, SweepSpec, apply_point, check_counted, declared, labels, parse_search,
                                run_name, sweep_seeds)
from store.schema import FINAL_STATUSES
from store.sweeps import first_active_run, run_statuses, sweep_row

_drivers: dict[int, list["SearchDriver"]] = {}
_drivers_lock = threading.Lock()


def study_path(db_path: str | Path) -> Path:
    """The Optuna journal beside the lab's database: ``<db>.optuna.journal``."""
    db_path = Path(db_path)
    return db_path.with_name(db_path.name + ".optuna.journal")


def study_name(sweep_id: int, strategy: str | None = None) -> str:
    return f"sweep-{sweep_id}" + (f"-{strategy}" if strategy else "")


def _storage(db_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(study_path(db_path))))


def make_sampler(search: SearchSpec, parallel: int = 1):
    import optuna

    if search.sampler == "nsga2":
        kwargs = {"population_size": search.population_size} if search.population_size else {}
        return optuna.samplers.NSGAIISampler(seed=search.seed, **kwargs)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=search.seed)
    return optuna.samplers.TPESampler(seed=search.seed, constant_liar=parallel > 1)


def open_study(db_path, sweep_id: int, search: SearchSpec, strategy: str | None = None, parallel: int = 1):
    """Create or load a sweep's study in ``<db>.optuna.journal``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=_storage(db_path), study_name=study_name(sweep_id, strategy),
                                directions=search.directions, sampler=make_sampler(search, parallel),
                                load_if_exists=True)
    if "sweep_id" not in study.user_attrs:
        study.set_user_attr("sweep_id", sweep_id)
        study.set_user_attr("objectives", list(search.objectives))
    return study


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def suggest(trial, space, strategy: str | None = None) -> dict[str, Any]:
    """A point of the space from an Optuna trial; ``strategy.name`` first, then only the strategy
    keys the chosen strategy declares (define-by-run: a conditional space)."""
    point: dict[str, Any] = {}
    dims = sorted(space, key=lambda d: d.key != "strategy.name")
    for d in dims:
        if d.key.startswith("strategy.") and d.key != "strategy.name":
            name = point.get("strategy.name", strategy)
            if d.key.split(".", 1)[1] not in declared(name):
                continue
        if d.kind == "choice":
            if all(_scalar(v) for v in d.values):
                point[d.key] = trial.suggest_categorical(d.key, list(d.values))
            else:  # lists (model.hidden) go through Optuna as JSON text
                point[d.key] = json.loads(trial.suggest_categorical(d.key, [json.dumps(v) for v in d.values]))
        elif d.kind in ("uniform", "log_uniform"):
            point[d.key] = trial.suggest_float(d.key, d.values[0], d.values[1], log=d.kind == "log_uniform")
        else:
            point[d.key] = trial.suggest_int(d.key, d.values[0], d.values[1], log=d.kind == "log_int")
    return point


class SearchDriver(threading.Thread):
    """Asks trials, runs each as a lab run through the manager, tells Optuna the results."""

    def __init__(self, manager, sweep_id: int, spec: SweepSpec, *, owner: str | None = None,
                 phase: str | None = None, strategy: str | None = None):
        super().__init__(daemon=True, name=f"search-{sweep_id}{'-' + strategy if strategy else ''}")
        self.manager, self.sweep_id, self.spec = manager, sweep_id, spec
        self.owner, self.phase, self.strategy = owner, phase, strategy
        self.parallel = max(1, manager.max_parallel)
        self.cancelled = False
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as err:  # noqa: BLE001 - kept for the caller
            self.error = err

    def _stopping(self) -> bool:
        return self._stop_event.is_set() or getattr(self.manager, "_closing", False)

    def _run(self) -> None:
        from optuna.trial import TrialState

        store, search = self.manager.store, self.spec.search
        study = open_study(store.path, self.sweep_id, search, self.strategy, self.parallel)
        label = labels(self.spec.keys)
        inflight: dict[int, int] = {}  # run id -> trial number
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # resume after a restart
            run_id = t.user_attrs.get("run_id")
            if run_id is None:
                study.tell(t.number, state=TrialState.FAIL)
            else:
                inflight[int(run_id)] = t.number
        if study.user_attrs.get("cancelled"):
            self.cancelled = True
            self._stop_event.set()
        while True:
            ended = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL,
                                                                     TrialState.PRUNED)))
            while not self._stopping() and len(inflight) < self.parallel and ended + len(inflight) < search.trials:
                trial = study.ask()
                point = suggest(trial, search.space, self.strategy)
                cfg, applied = apply_point(self.spec.base, point, self.strategy)
                seed = self.spec.seeds[0]
                cfg["seed"] = seed
                cfg["name"] = run_name(self.spec.prefix or self.spec.name, cfg, applied, label, seed,
                                       f"trial={trial.number}")
                try:
                    config = parse_config(cfg)
                    run_id = self.manager.submit(config, owner=self.owner, sweep_id=self.sweep_id,
                                                 sweep_phase=self.phase,
                                                 principal=store.sweep_principal(self.sweep_id))
                except ConfigError as err:  # a bad point, or one that costs more than the limits allow
                    trial.set_user_attr("error", "; ".join(err.problems))
                    study.tell(trial, state=TrialState.FAIL)
                    ended += 1
                    continue
                trial.set_user_attr("run_id", run_id)
                inflight[run_id] = trial.number
            if not inflight:
                return
            self.manager.wait(next(iter(inflight)), timeout=0.5)
            rows = run_statuses(store, list(inflight))
            for run_id, status in rows:
                if status not in FINAL_STATUSES:
                    continue
                number = inflight.pop(run_id)
                values = self._values(run_id) if status == "finished" else None
                if values is None:
                    study.tell(number, state=TrialState.FAIL)
                else:
                    study.tell(number, values if len(values) > 1 else values[0])
                if status == "cancelled" and not self.cancelled:
                    self.cancelled = True
                    self._stop_event.set()
                    study.set_user_attr("cancelled", True)
                    for other in list(inflight):
                        self.manager.cancel(other, principal=store.sweep_principal(self.sweep_id))
            missing = [r for r in inflight if r not in {row[0] for row in rows}]
            for run_id in missing:  # deleted from the store
                study.tell(inflight.pop(run_id), state=TrialState.FAIL)

    def _values(self, run_id: int) -> list[float] | None:
        from store.metrics.summary import summary

        s = summary(self.manager.store, run_id)
        values = [s.get(k) for k in self.spec.search.objectives]
        if any(not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
            return None
        return [float(v) for v in values]


def start_driver(manager, sweep_id: int, spec: SweepSpec, *, owner: str | None = None, phase: str | None = None,
                 strategy: str | None = None) -> SearchDriver:
    driver = SearchDriver(manager, sweep_id, spec, owner=owner, phase=phase, strategy=strategy)
    with _drivers_lock:
        _drivers.setdefault(sweep_id, []).append(driver)
    driver.start()
    return driver


def start_search(manager, spec: SweepSpec, owner: str | None = None, principal=None) -> int:
    """Create the sweep (kind 'search') and start its driver thread; returns the sweep id. Its trials
    count against ``principal``'s quotas at once (each trial's cost is checked as it comes)."""
    from engine.runs.admission import QUEUE_LOCK

    with QUEUE_LOCK:
        who, owner = manager.admit(principal, owner, runs=spec.search.trials, sweep_runs=spec.search.trials)
        sweep_id = manager.store.create_sweep(spec.name, Search.name, spec.raw, owner=owner)
    manager.store.audit(who, None, "launch", sweep_id=sweep_id, detail=f"search {spec.name!r}: {spec.search.trials} trials")
    start_driver(manager, sweep_id, spec, owner=owner)
    return sweep_id


def drivers(sweep_id: int) -> list[SearchDriver]:
    with _drivers_lock:
        return list(_drivers.get(sweep_id, []))


def stop_drivers(sweep_id: int | None, join: bool = False, timeout: float = 10.0) -> None:
    """Stop a sweep's drivers (None: every driver in this process): no new trials are asked."""
    with _drivers_lock:
        chosen = [d for sid, ds in _drivers.items() if sweep_id is None or sid == sweep_id for d in ds]
    for d in chosen:
        d.stop()
    if join:
        for d in chosen:
            d.join(timeout)


def study_state(db_path, sweep_id: int, search: SearchSpec, strategy: str | None = None) -> tuple[int, bool]:
    """(trials ended, cancelled) of a study; (0, False) if it does not exist yet."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name(sweep_id, strategy), storage=_storage(db_path))
    except KeyError:
        return 0, False
    ended = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)))
    return ended, bool(study.user_attrs.get("cancelled"))


def ensure_drivers(manager, sweep_id: int, spec: SweepSpec, *, owner=None, phase=None, strategy=None) -> str:
    """'running' while the study has trials to go (resuming its driver if none runs in this process),
    else 'done' or 'cancelled'."""
    live = [d for d in drivers(sweep_id) if d.strategy == strategy]
    if any(d.is_alive() for d in live):
        return "running"
    if any(d.error for d in live):
        raise RuntimeError(f"the search driver of sweep {sweep_id} failed: {cut(live[-1].error)}") from live[-1].error
    if any(d.cancelled for d in live):
        return "cancelled"
    ended, cancelled = study_state(manager.store.path, sweep_id, spec.search, strategy)
    if cancelled:
        return "cancelled"
    if ended >= spec.search.trials:
        return "done"
    if live and all(d._stop_event.is_set() for d in live):
        return "cancelled"  # stopped in this process (cancel_sweep)
    start_driver(manager, sweep_id, spec, owner=owner, phase=phase, strategy=strategy)
    return "running"


def advance_search(manager, sweep_id: int) -> str:
    name, _, raw = sweep_row(manager.store, sweep_id)
    state = ensure_drivers(manager, sweep_id, Search().stored_spec(raw, name))
    if state != "running" and first_active_run(manager.store, sweep_id) is not None:
        return "running"
    return state


def best_trials(store, sweep_id: int, strategy: str | None = None) -> list[dict]:
    """The best trial (single objective) or the Pareto front (two objectives): number, run_id, values,
    params."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name(sweep_id, strategy), storage=_storage(store.path))
    except KeyError:
        return []
    try:
        best = study.best_trials
    except ValueError:
        return []
    return [{"number": t.number, "run_id": t.user_attrs.get("run_id"), "values": list(t.values),
             "params": dict(t.params)} for t in sorted(best, key=lambda t: t.number)]


def best_outcome(store, sweep_id: int, objectives) -> Outcome | None:
    """The best trial (the Pareto front with two objectives): trial, run, the objectives' values and
    the parameters; None while no trial has finished."""
    rows = best_trials(store, sweep_id)
    if not rows:
        return None
    params = list(dict.fromkeys(k for r in rows for k in r["params"]))
    caption = f"the best trial by {objectives[0]}" if len(objectives) == 1 else \
        f"the Pareto front of {' and '.join(objectives)} ({len(rows)} trials)"
    return Outcome("Best trials", caption, ["trial", "run", "values", *params],
                   [[r["number"], r["run_id"], r["values"], *(r["params"].get(k) for k in params)] for r in rows],
                   key="best_trials")


class Search(SweepKind):
    """An Optuna study: its trials are asked as runs end, never expanded ahead."""

    name = "search"
    summary = "Optuna search"
    shown_in = ("cli", "page")

    def parse(self, data, base, name, problems):
        seeds = sweep_seeds(data, base, problems)
        spec = SweepSpec(name, self.name, base, seeds, prefix=name)
        spec.search = parse_search(data["search"], "search", problems)
        if len(seeds) > 1:
            problems.append(f"seeds = {cut(list(seeds))}: a search runs each trial once: give one seed")
        if spec.search is not None:
            check_counted(spec, problems)
        return spec

    def configs(self, spec):
        raise ValueError("a search is not expanded ahead: its trials come from Optuna (engine.sweeps.search)")

    def planned_runs(self, spec):
        return spec.search.trials

    def expected_runs(self, raw, created):
        return max(int(raw["search"]["trials"]), created.get("", 0))

    def launch(self, manager, spec, owner, principal):
        return start_search(manager, spec, owner=owner, principal=principal)

    def advance(self, manager, sweep_id):
        return advance_search(manager, sweep_id)

    def stop(self, sweep_id, join=False):
        stop_drivers(sweep_id, join=join)

    def outcome(self, store, sweep_id):
        objectives = sweep_row(store, sweep_id)[2]["search"].get("objectives", ["acc"])  # as parse_search reads them
        return best_outcome(store, sweep_id, [objectives] if isinstance(objectives, str) else objectives)

