"""What a run will cost, estimated before it is queued (the checks that refuse what cannot fit are
admission's: engine/runs/admission.py). Training-side: it knows neither the store nor the queue.

``estimate(config)`` is a plain function: no data is loaded and no memory is taken. The model is built
on torch's ``meta`` device (shapes only) and one forward pass there gives its activation sizes; the
input shape and each class's train and test counts come from the files' header (``ScenarioConfig.header``,
after the split the run makes), and the strategy's schedule (``experiences``) runs on meta tensors of
those sizes, so Joint's merged tasks count as they train. The figures are estimates of
the peak (float32 weights, gradients, optimizer state, the strategy's state, a batch's activations
and their gradients, the dataset and its tasks, the evaluation tensors and one evaluation pass).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch

from engine.config import ConfigError, RunConfig
from engine.datasets import Header
from engine.models import MODELS
from engine.scenarios import DomainShift, Pool, Samples, Scenario, TaskData, is_split_domain, task_classes
from engine.strategies import STRATEGIES, Strategy

# Optimizer state per trainable parameter, in copies of the weights: SGD's momentum buffer, Adam's two moments.
OPTIMIZER_STATE = {"sgd": lambda cfg: 1 if cfg.momentum > 0 else 0, "adam": lambda cfg: 2, "adamw": lambda cfg: 2}
FILE_OVERHEAD = 4096  # bytes a torch.save file adds to its tensors (names, pickle, zip), about


@dataclass(frozen=True)
class Cost:
    params: int
    memory: dict[str, int]     # bytes at the run's peak, by part
    steps: int
    metric_rows: int
    weight_files: int          # files train.weights keeps
    weights_disk: int          # bytes those files take
    checkpoint_disk: int       # a resume checkpoint while the run is unfinished (weights, optimizer, strategy)

    @property
    def memory_total(self) -> int:
        return sum(self.memory.values())

    def summary(self) -> str:
        """One line for the Launch form: about 85 k parameters, 3.4 MB; 1,400 steps; ..."""
        disk = f"{human_bytes(self.weights_disk)} of weights ({self.weight_files} file{'s' * (self.weight_files != 1)})" \
            if self.weight_files else "no weights kept"
        return (f"about {human_count(self.params)} parameters, {human_bytes(self.memory_total)} of memory; "
                f"{self.steps:,} steps; {self.metric_rows:,} metric rows; {disk}")


def human_count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:,.0f}"


def human_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


# ---- the model, on the meta device ----------------------------------------------------------------------

@dataclass(frozen=True)
class _Profile:
    params: int
    trainable: int
    weight_bytes: int          # parameters and buffers, as a state_dict saves them
    element: int               # bytes of one parameter
    outputs: tuple[int, ...]   # elements each leaf module outputs for one sample, in call order


_profiles: dict[tuple, _Profile] = {}
_profiles_lock = threading.Lock()


def model_profile(model_cfg, input_shape: tuple[int, ...], n_classes: int) -> _Profile:
    """The model's parameter count and per-sample activation sizes, from a build on the meta device
    (cached: a sweep's runs share a handful of models)."""
    from engine.models import build_model

    key = (model_cfg.model_dump_json(), tuple(input_shape), n_classes)
    with _profiles_lock:
        if key in _profiles:
            return _profiles[key]
    with torch.device("meta"):
        net = build_model(model_cfg, tuple(input_shape), n_classes)
    params = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    weight_bytes = sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()])
    element = next((p.element_size() for p in net.parameters()), 4)
    outputs: list[int] = []

    def record(_module, _inputs, out):
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                outputs.append(t.numel() // 2)

    hooks = [m.register_forward_hook(record) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net.eval()(torch.empty((2, *input_shape), device="meta"))  # 2: batch norm refuses one sample
    except Exception:  # an op without a meta kernel: activations are then not counted
        outputs.clear()
    finally:
        for h in hooks:
            h.remove()
    profile = _Profile(params, trainable, weight_bytes, element, tuple(outputs))
    with _profiles_lock:
        if len(_profiles) > 1024:
            _profiles.clear()
        _profiles[key] = profile
    return profile


def describe_model(model_cfg) -> str:
    """'mlp hidden [16384 x 16]': the model and its settings, a repeated list shortened; a choice left at
    its default (the MLP's init) is not named."""
    parts = [model_cfg.name]
    specs = MODELS[model_cfg.name].hparams
    for key, value in model_cfg.model_dump().items():
        if key == "name" or (key in specs and specs[key].choices and value == specs[key].default):
            continue
        if isinstance(value, list) and len(value) > 3 and len(set(map(repr, value))) == 1:
            value = f"[{value[0]} x {len(value)}]"
        parts.append(f"{key} {value}")
    return " ".join(parts)


# ---- the tasks, as shapes ---------------------------------------------------------------------------------

def shadow_scenario(sc, header: Header) -> Scenario:
    """The scenario ``build_scenario`` would make, over one pool of meta tensors of the sizes the files
    hold (``header``: each class's train and test counts; tasks are index views of the pool, as in the
    real one)."""
    shape, n_classes = tuple(header.input_shape), header.n_classes
    storage = torch.uint8 if header.pixels else torch.float32  # images stay uint8 until a batch needs them
    meta = lambda *size, dtype=torch.long: torch.empty(size, dtype=dtype, device="meta")  # noqa: E731
    n_samples = sum(header.train_counts) + sum(header.test_counts)
    pool = Pool(meta(n_samples, *shape, dtype=storage), meta(n_samples), None, None, DomainShift(None, shape, 1, 0))

    def task(classes: list[int]) -> TaskData:
        n_train = sum(header.train_counts[c] for c in classes)
        n_test = sum(header.test_counts[c] for c in classes)
        return TaskData(classes, Samples(pool, meta(n_train), meta(n_train)), Samples(pool, meta(n_test), meta(n_test)))

    if sc.setting == "domain" and not is_split_domain(sc):
        tasks = [task(list(range(n_classes))) for _ in range(sc.n_tasks)]
    else:  # the classes shared out as build_scenario does
        tasks = [task(classes) for classes in task_classes(n_classes, sc)]
    if sc.tasks is not None:
        tasks = [tasks[t - 1] for t in sc.tasks]
    head = n_classes // sc.n_tasks if is_split_domain(sc) else n_classes  # domain split: classes per task
    return Scenario(sc.dataset, sc.setting, head, shape, tasks, None)


def _bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


# ---- the estimate -----------------------------------------------------------------------------------------

_estimates: dict[str, Cost] = {}


def estimate(config: RunConfig) -> Cost:
    """What ``config`` will cost: parameters, memory by part, training steps, metric rows, disk.
    Cached by everything but the name and the seed, which cost nothing (a sweep's seeds share one)."""
    key = config.model_dump_json(exclude={"name", "seed"})
    cost = _estimates.get(key)
    if cost is None:
        cost = _estimate(config)
        if len(_estimates) > 4096:
            _estimates.clear()
        _estimates[key] = cost
    return cost


def _estimate(config: RunConfig) -> Cost:
    try:
        header = config.scenario.header()  # the files' real sizes: read when the config was checked (cached)
    except ValueError as err:  # a file changed since
        raise ConfigError([str(err)]) from None
    shape = tuple(header.input_shape)
    scenario = shadow_scenario(config.scenario, header)
    profile = model_profile(config.model, shape, scenario.n_classes)
    cls: type[Strategy] = STRATEGIES[config.strategy["name"]]
    hparams = config.strategy_hparams
    strategy = cls(seed=0, **hparams)
    experiences = strategy.experiences(scenario)
    train = config.train
    steps = strategy.planned_steps(experiences, train)
    n_eval = len(scenario.tasks)
    per_boundary = 3 if config.scenario.setting == "class" else 2  # acc, loss (and the task-masked acc)
    rows = steps + (steps // config.eval.every) * 2 * n_eval + (1 + len(experiences)) * per_boundary * n_eval

    sample = math.prod(shape) * 4 + 16  # float32 features, a label and a task id
    el = profile.element
    per_sample = sum(profile.outputs) * el
    batch = train.batch_size + int(hparams.get("replay_batch_size", 0))
    test = sum(len(t.test_y) for t in scenario.tasks)
    held = min(test, config.eval.subset * n_eval) if config.eval.subset else 0
    pairs = [a + b for a, b in zip(profile.outputs, profile.outputs[1:])] or list(profile.outputs) or [0]
    optimizer_copies = OPTIMIZER_STATE[train.optimizer](train)
    task_classes = sum(len(t.classes) for t in scenario.tasks)  # a memory per class keeps each task's own
    strategy_state = cls.state_bytes(hparams, profile.weight_bytes, sample, len(experiences), task_classes)
    memory = {
        "weights": profile.weight_bytes,
        "gradients": profile.trainable * el,
        "optimizer": optimizer_copies * profile.trainable * el,
        "strategy": strategy_state,
        "activations": 2 * batch * per_sample,  # the forward's outputs and their gradients
        # the dataset's one stored copy (tasks are index views of it), and the largest experience taken
        # whole at once (EWC's Fisher, a buffer filled at a task's end)
        "data": _bytes(scenario.tasks[0].train.pool.x) + max(len(e) for e in experiences) * sample,
        # the stacked held-out sets (and the periodic subset), and one pass of eval.batch_size samples
        "evaluation": (test + held) * sample + min(test, config.eval.batch_size) * max(pairs) * el,
    }
    files = {"none": 0, "last": 1, "every": len(experiences) + 1}[train.weights]
    return Cost(
        params=profile.params, memory=memory, steps=steps, metric_rows=rows, weight_files=files,
        weights_disk=files * (profile.weight_bytes + FILE_OVERHEAD),
        checkpoint_disk=profile.weight_bytes + memory["optimizer"] + strategy_state + FILE_OVERHEAD,
    )


__all__ = ["Cost", "describe_model", "estimate", "human_bytes", "human_count"]
