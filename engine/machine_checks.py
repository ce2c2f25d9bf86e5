"""What a run config needs of this machine: its dataset's files (there, readable, holding what the config
asks of them) and its device. ``RunConfig`` checks only a config's shape, so a stored config reads back
typed anywhere; these checks are made where a config is admitted to run here (``parse_config``, which the
CLI, the Launch page and sweeps go through, and the run manager's admission)."""

from __future__ import annotations

from engine.datasets import DATASET_INFO
from engine.core.devices import device_problem, wants_gpu
from engine.core.inputs import cut
from engine.models import MODELS
from engine.scenarios import is_split_domain, split_domain_problem


def machine_problems(config, input_shape: tuple[int, ...] | None = None) -> list[str]:
    """One line per thing this machine lacks for ``config`` (a ``RunConfig``); empty: it can run here.
    ``input_shape``: the sample shape of a scenario given in memory (train_run's), checked instead of
    the dataset's files. The image-input check needs the files' shape, so it waits for the others."""
    problems = _dataset_problems(config.scenario, input_shape) + _device_problems(config.train)
    if problems:
        return problems
    info = DATASET_INFO[config.scenario.dataset]
    if input_shape is None and info.input_shape is None:  # a generic dataset: its shape is in its files
        shape = config.scenario.header().input_shape
        if MODELS[config.model.name].kind == "image" and len(shape) != 3:
            return [image_input_problem(config.model.name, config.scenario.dataset, shape)]
    return []


def configs_problems(configs) -> list[str]:
    """``machine_problems`` of many configs (a sweep's), each line once; configs alike in what this
    machine is asked for (the scenario, the model's kind of input, the device) are checked once."""
    seen, problems = set(), {}
    for config in configs:
        key = (config.scenario.model_dump_json(), config.model.name, config.train.device, config.train.precision)
        if key not in seen:
            seen.add(key)
            problems.update(dict.fromkeys(machine_problems(config)))
    return list(problems)


def image_input_problem(model: str, dataset: str, shape: tuple[int, ...]) -> str:
    return (f"model.name = {model!r}: needs image input (channels, height, width), and dataset {dataset} gives "
            f"flat rows of {shape[0]} values (use mlp, or an image dataset)")


def _dataset_problems(scenario, input_shape) -> list[str]:
    """The dataset's files: found (only looked for), then, for a file dataset, its header (read cheaply,
    cached: ``ScenarioConfig.header``): files that declare more than they hold or than memory
    allows are refused before anything reads them, and a generic dataset (npz, image_folder), whose
    shape and classes are in its files, gets the checks ``ScenarioConfig`` makes of a declared one."""
    info = DATASET_INFO[scenario.dataset]
    ok, message = info.ready(scenario.root)
    if not ok:
        return [f"scenario.dataset = {cut(scenario.dataset)}: {message}"]
    if info.header is None or input_shape:
        return []
    try:
        header = scenario.header()
    except ValueError as err:  # a file that cannot be read, as one line naming it
        return [str(err)]
    if scenario.setting != "domain" and scenario.n_tasks > header.n_classes:
        return [f"scenario.n_tasks = {scenario.n_tasks}: must be at most {header.n_classes}: {scenario.dataset} "
                f"has {header.n_classes} classes to share out"]
    if is_split_domain(scenario) and (problem := split_domain_problem(scenario.dataset, header.n_classes,
                                                                      scenario.n_tasks)):
        return [f"scenario.n_tasks = {scenario.n_tasks}: {problem}"]
    if scenario.setting == "domain" and scenario.domain == "rotated" and len(header.input_shape) != 3:
        return [f"scenario.domain = 'rotated': needs an image dataset ({scenario.dataset} has rows of "
                f"{header.input_shape[0]} values)"]
    return []


def _device_problems(train) -> list[str]:
    if problem := device_problem(train.device):
        return [f"train.device = {cut(train.device)}: {problem}"]
    if train.precision == "16-mixed" and not wants_gpu(train.device):
        return [f"train.precision = '16-mixed': needs a GPU (train.device = {train.device!r} trains on the CPU "
                "here, where fp16 autocast is not supported); use bf16-mixed or 32"]
    return []
