"""What a launch must pass before it writes a row: who may launch, what each run would cost against the
limits of this machine, the lab's weights budget and free disk, and the principal's quotas; and where
on this machine a run can train (its place: a CPU worker or a GPU).

``check_queue(store, configs)`` is what every way into the queue calls (``RunManager.submit``, the
CLI, a sweep's launch, through ``admit``): each run against ``limits()`` (parameters, memory, steps,
metric rows), then all of them together against the lab's weights budget and the disk. A refusal is a
``ConfigError`` whose lines carry the figures; past a quota, ``QuotaExceeded``; nothing is written.
The checks and the rows they allow are one step under ``QUEUE_LOCK``: two launches cannot both pass.
"""

from __future__ import annotations

import threading

from engine.core.access import AccessDenied, Principal, QuotaExceeded, default_owner, denied
from engine.config import ConfigError, RunConfig, stored_config
from engine.training.cost import Cost, describe_model, estimate, human_bytes
from engine.core.devices import DEVICE_PATTERN
from engine.core.limits import limits, machine_memory
from engine.machine_checks import configs_problems
from engine.runs.artifacts import disk_usage
from store import queue
from store.disk import free_bytes, mount_of

QUEUE_LOCK = threading.RLock()  # a budget check and the rows it allows are one step: two launches cannot both pass

# what a metric row takes in the database and its log at their peak, about (measured: 10 to 22 bytes)
METRIC_ROW_DISK = 32


# ---- each run against this machine's limits ----------------------------------------------------------------

def run_problems(config: RunConfig, cost: Cost | None = None) -> list[str]:
    """The lines refusing ``config`` for what it would cost (empty: it fits)."""
    cost = cost or estimate(config)
    lim = limits()
    problems = []
    model = describe_model(config.model)
    machine = machine_memory()
    allowed = lim.max_memory_fraction * machine
    allows = f"this machine allows {human_bytes(allowed)} ({lim.max_memory_fraction:.0%} of {human_bytes(machine)})"
    if cost.params > lim.max_model_params:
        problems.append(f"model: {model} has {cost.params:,} parameters: at most {lim.max_model_params:,} "
                        "(limits.max_model_params)")
    if cost.memory["weights"] > allowed:
        problems.append(f"model: {model} needs about {human_bytes(cost.memory['weights'])} for the weights alone; "
                        f"{allows}")
    elif cost.memory_total > allowed:
        parts = ", ".join(f"{k} {human_bytes(v)}" for k, v in sorted(cost.memory.items(), key=lambda kv: -kv[1]) if v)
        problems.append(f"memory: the run needs about {human_bytes(cost.memory_total)} at its peak ({parts}); {allows}")
    train = config.train
    if cost.steps > lim.max_steps_per_run:
        budget = (f"train.iterations_per_task = {train.iterations_per_task}" if train.iterations_per_task
                  else f"train.epochs_per_task = {train.epochs_per_task}")
        problems.append(f"{budget}: the run would train about {cost.steps:,} "
                        f"steps (batch_size {train.batch_size}); at most {lim.max_steps_per_run:,} "
                        "(limits.max_steps_per_run)")
    if cost.metric_rows > lim.max_metric_rows_per_run:
        problems.append(f"eval.every = {config.eval.every}: the run would write about {cost.metric_rows:,} metric "
                        f"rows over {cost.steps:,} steps; at most {lim.max_metric_rows_per_run:,} "
                        "(limits.max_metric_rows_per_run)")
    return problems


def check_runs(configs: list[RunConfig]) -> list[Cost]:
    """Each config's cost; ``ConfigError`` if any cannot be run (a sweep: each line once, with how many
    of its runs it concerns and one run's name)."""
    costs, seen, problems = [], {}, []
    for config in configs:
        cost = estimate(config)
        costs.append(cost)
        for line in run_problems(config, cost):
            if line not in seen:
                seen[line] = [config.name, 0]
                problems.append(line)
            seen[line][1] += 1
    if problems:
        if len(configs) > 1:
            problems = [f"{line} ({seen[line][1]} of the {len(configs)} runs, e.g. {seen[line][0]!r})" for line in problems]
        raise ConfigError(problems)
    return costs


# ---- all of them against the lab's disk ---------------------------------------------------------------------

def pending_weights(store, owner: str | None = None) -> int:
    """Bytes the queued and running runs (of ``owner``, if given) will still write: their weights not yet
    on disk, and one resume checkpoint each."""
    on_disk = disk_usage(store.path)["runs"]
    total = 0
    for run_id, text in queue.active_configs(store, owner):
        try:
            cost = estimate(stored_config(text))
        except Exception:  # a user's own run config the engine cannot read: it writes nothing of ours
            continue
        total += max(0, cost.weights_disk + cost.checkpoint_disk - on_disk.get(run_id, 0))
    return total


def check_budget(store, costs: list[Cost]) -> None:
    """``ConfigError`` unless the weights on disk beside the database, what queued and running runs will
    write, and the new runs' weights (and a resume checkpoint each) fit ``limits().weights_budget_gb``."""
    budget = limits().weights_budget_gb * 1e9
    new = sum(c.weights_disk + c.checkpoint_disk for c in costs)
    if not new:
        return
    on_disk = disk_usage(store.path)["total"]
    pending = pending_weights(store)
    if on_disk + pending + new > budget:
        runs = f"these {len(costs)} runs" if len(costs) > 1 else "this run"
        raise ConfigError([
            f"train.weights: {runs} would keep about {human_bytes(new)} of weights and checkpoints; with "
            f"{human_bytes(on_disk)} already beside the database and {human_bytes(pending)} to come from queued "
            f"and running runs that is {human_bytes(on_disk + pending + new)}, over the weights budget of "
            f"{human_bytes(budget)} (limits.weights_budget_gb). Choose train.weights last or none, delete runs, "
            "or run `python -m engine gc`"])


def check_free_disk(store, costs) -> None:
    """``ConfigError`` unless the disk that holds the database has room for what these runs will write
    (their metric rows, weights and resume checkpoints), checked before they are queued."""
    need = sum(c.metric_rows * METRIC_ROW_DISK + c.weights_disk + c.checkpoint_disk for c in costs)
    free = free_bytes(store.path)
    if need > free:
        device, mount = mount_of(store.path)
        runs = f"these {len(costs)} runs" if len(costs) > 1 else "this run"
        raise ConfigError([f"disk: {runs} would write about {human_bytes(need)} (metrics, weights and checkpoints), "
                           f"and {device} mounted at {mount} has {human_bytes(free)} free ({store.path}): free "
                           "some space, or pass --db on another disk"])


def check_queue(store, configs: list[RunConfig]) -> list[Cost]:
    """Every check made before runs are queued: each run's cost, then the weights budget and the disk.
    Call it holding ``QUEUE_LOCK`` up to the rows' creation, so that two launches cannot both pass."""
    costs = check_runs(configs)
    check_budget(store, costs)
    check_free_disk(store, costs)
    return costs


# ---- the principal's quotas ---------------------------------------------------------------------------------

def owner_weights(store, owner: str) -> int:
    """Bytes of weights and checkpoints an owner's runs have on disk and will still write."""
    on_disk = disk_usage(store.path)["runs"]
    mine = sum(on_disk.get(run_id, 0) for run_id in queue.owner_runs(store, owner))
    return mine + pending_weights(store, owner)


def check_quotas(store, who: Principal, *, new_runs: int, sweep_runs: int | None = None,
                 new_weights: int = 0) -> None:
    """``QuotaExceeded`` (written to the audit table) unless ``who`` may queue ``new_runs`` more runs,
    a sweep of ``sweep_runs`` runs, and ``new_weights`` more bytes of weights; the message has the
    figure and the limit. Call it holding ``QUEUE_LOCK`` up to the rows' creation."""
    if who.local:  # the local lab's one user (``store.policy.LocalUser`` when nobody was named) has no quotas
        return
    q = who.quotas
    problem = None
    if q.largest_sweep is not None and sweep_runs is not None and sweep_runs > q.largest_sweep:
        problem = (f"the sweep plans {sweep_runs:,} runs, over the quota of {q.largest_sweep:,} runs a sweep "
                   "(largest_sweep)")
    if problem is None and q.runs_queued is not None and new_runs:
        queued = queue.queued_count(store, who.email)
        if queued + new_runs > q.runs_queued:
            problem = (f"{queued:,} runs queued and {new_runs:,} more make {queued + new_runs:,}, over the quota of "
                       f"{q.runs_queued:,} runs queued (runs_queued)")
    if problem is None and q.weights_gb is not None and new_weights:
        used = owner_weights(store, who.email)
        if used + new_weights > q.weights_gb * 1e9:
            problem = (f"weights: {human_bytes(used)} of yours on disk or to come and {human_bytes(new_weights)} more "
                       f"make {human_bytes(used + new_weights)}, over the quota of {q.weights_gb:g} GB (weights_gb); "
                       "delete runs or choose train.weights last or none")
    if problem is not None:
        store.audit(who, None, "launch", allowed=False, detail=problem)
        raise QuotaExceeded(denied(who, "launch", problem))


def admit(store, principal=None, owner: str | None = None, configs=(), *, runs: int | None = None,
          sweep_runs: int | None = None, check_cost: bool = True, quotas: bool = True):
    """Everything checked before a launch writes a row: that ``principal`` may launch (``AccessDenied``),
    what this machine lacks for each config, each config's cost and the lab's weights budget
    (``ConfigError``, unless ``check_cost`` is False),
    and the principal's quotas (``QuotaExceeded``): ``runs`` more runs queued (default: the configs),
    a sweep of ``sweep_runs``, the configs' weights. Returns (principal, the owner of the new runs).
    Call it holding ``QUEUE_LOCK`` up to the rows' creation."""
    who = store.authorize(principal, "launch")
    if principal is None and store.access is None:
        owner = owner or default_owner()  # a local lab's callers, as before
    elif owner not in (None, who.email):
        reason = f"a run's owner is who launches it, not {owner}"
        store.audit(who, None, "launch", allowed=False, detail=reason)
        raise AccessDenied(denied(who, "launch", reason))
    else:
        owner = who.email
    # a RunConfig checks only its shape: what this machine lacks for it (parse_config's lines)
    if check_cost and (problems := configs_problems(configs)):
        raise ConfigError(problems)
    costs = check_queue(store, list(configs)) if check_cost else []
    if quotas:
        check_quotas(store, who, new_runs=len(configs) if runs is None else runs, sweep_runs=sweep_runs,
                     new_weights=sum(c.weights_disk + c.checkpoint_disk for c in costs))
    return who, owner


# ---- where a run trains on this machine ----------------------------------------------------------------------

def place_for(device: str, gpus: tuple[int, ...]) -> str | int | None:
    """Where a run with this ``train.device`` must train on a machine with ``gpus``: None (a CPU worker),
    a GPU index, "any" GPU, or a sentence saying why it cannot run here (a queue kept from another machine)."""
    if device == "cpu" or (device == "auto" and not gpus):
        return None
    if device == "auto" or device == "cuda":
        return "any" if gpus else f"train.device = {device!r}: this machine has no GPU"
    if DEVICE_PATTERN.match(device) and int(device.split(":")[1]) in gpus:
        return int(device.split(":")[1])
    return f"train.device = {device!r}: no such GPU here (GPUs: {', '.join(map(str, gpus)) or 'none'})"

