"""Validated run configs. A config comes from a YAML file, the launch form or a sweep; every problem
is reported as one line naming the field, the value and what is allowed, before anything is written.
``RunConfig`` checks a config's shape only (nothing of this machine), so a stored config reads back typed
anywhere (``stored_config``); ``parse_config`` admits a config to run here, with the checks of this
machine (``engine.machine_checks``: dataset files, devices)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, ValidationInfo, create_model,
                      field_validator, model_validator)

from engine.datasets import DATASET_INFO, DatasetError, Header, dataset_header
from engine.core.devices import DEVICE_PATTERN
from engine.core.inputs import ConfigError, check_document, cut, cut_text, read_yaml  # noqa: F401 - ConfigError, read_yaml: the config's API
from engine.core.limits import limits
from engine.machine_checks import image_input_problem, machine_problems
from engine.models import MODELS
from engine.presets import apply_preset
from engine.scenarios import split_domain_problem
from engine.core.hparams import HParam
from engine.strategies import STRATEGIES

MAX_SEED = 2**32 - 1  # what numpy's and Lightning's seed_everything accept
MAX_LR = 10.0         # no optimizer here learns above it; a sweep that wants to see divergence still can
# Every section is strict (true is not 1, 1 is not true, "5" is not 5; an int is still a float) and
# refuses inf and nan: what is accepted is what the engine runs.
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _Section(BaseModel):
    model_config = STRICT


class ScenarioConfig(_Section):
    root: str | None = Field(None, min_length=1, max_length=4096,
                             description="the data directory (else $CL_LAB_DATA, else data/ beside the app); for "
                                         "image_folder and npz the folder or file itself")
    dataset: str = Field("digits", description="the dataset the tasks are cut from")
    setting: Literal["class", "task", "domain"] = Field("class", description="class-, task- or domain-incremental")
    domain: Literal["permuted", "rotated", "split"] = Field(
        "permuted", description="domain-incremental: each task's inputs under a fixed pixel permutation (permuted), "
                                "rotated by k x 180 / n_tasks degrees (rotated), or split: van de Ven et al.'s "
                                "domain-incremental Split MNIST, the classes shared out into n_tasks tasks and each "
                                "relabelled to its place in its task (y mod classes per task: 'first or second' for "
                                "pairs), a head of classes-per-task units")
    n_tasks: int = Field(5, ge=1, le=100, description="number of tasks")
    class_seed: int | None = Field(None, ge=0, le=MAX_SEED, description="shuffles the class order; null keeps 0, 1, 2, ...")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="fixes the train/test split and the permutations")
    test_size: float = Field(0.25, gt=0.0, lt=1.0, description="held-out share of each class")
    normalize: bool = Field(
        True, description="images: minus the dataset's per-channel mean, over its std (the common convention); "
                          "false: raw pixels in [0, 1], as Mammoth's and van de Ven's MNIST code feed them (rows "
                          "are standardised when loaded either way)")
    tasks: list[int] | None = Field(
        None, min_length=1, description="train only these tasks of the sequence (from 1), e.g. [3]: a single-task "
                                        "expert for the L2M metrics; null: all")

    @field_validator("tasks")
    @classmethod
    def _tasks_in_sequence(cls, value: list[int] | None, info: ValidationInfo) -> list[int] | None:
        n = info.data.get("n_tasks")
        if value is not None and n is not None:
            bad = [t for t in value if not 1 <= t <= n]
            if bad:
                raise ValueError(f"every task must be from 1 to n_tasks = {n} (got {bad[0]})")
            if len(set(value)) != len(value):
                raise ValueError("a task may appear once")
        return value

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        if value not in DATASET_INFO:
            raise ValueError(f"must be one of {', '.join(sorted(DATASET_INFO))}")
        return value

    @field_validator("root")
    @classmethod
    def _plain_path(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must be a path (no NUL character)")
        return value

    @field_validator("domain")
    @classmethod
    def _rotate_images(cls, value: str, info: ValidationInfo) -> str:
        dataset = DATASET_INFO.get(info.data.get("dataset"))
        if info.data.get("setting") == "domain" and value == "rotated" and dataset and not dataset.is_image:
            raise ValueError(f"needs an image dataset ({dataset.name} has rows of {dataset.input_shape[0]} values)")
        return value

    @field_validator("n_tasks")
    @classmethod
    def _tasks_fit_classes(cls, value: int, info: ValidationInfo) -> int:
        dataset, setting = info.data.get("dataset"), info.data.get("setting")
        n_classes = DATASET_INFO[dataset].n_classes if dataset in DATASET_INFO else None  # None: in the files
        if setting != "domain" and n_classes and value > n_classes:
            raise ValueError(f"must be at most {n_classes}: {dataset} has {n_classes} classes to share out")
        if setting == "domain" and info.data.get("domain") == "split" and n_classes:
            if problem := split_domain_problem(dataset, n_classes, value):
                raise ValueError(problem)
        return value

    def header(self) -> Header:
        """What the dataset's files hold (engine.datasets.dataset_header); a file that cannot be read is
        one line (ValueError) naming it."""
        try:
            return dataset_header(self)
        except DatasetError as err:
            raise ValueError(f"scenario.dataset = {self.dataset!r}: {err}") from None


class ModelConfig(_Section):
    """The model section: ``name`` and that model's hyperparameters (its ``hparams``); each model gets
    its own subclass (``MODEL_CONFIGS``), as each strategy does."""

    name: str = "mlp"


class TrainConfig(_Section):
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0.0, le=MAX_LR, description="learning rate")
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 weight decay")
    batch_size: int = Field(32, ge=1, le=65536)
    epochs_per_task: int = Field(5, ge=1, le=10000, description="passes over each task's training set")
    iterations_per_task: int | None = Field(
        None, ge=1, le=10_000_000, description="a fixed number of optimizer steps a task instead of epochs_per_task "
                                              "(passes over its data, each reshuffled, until that many), as van de "
                                              "Ven et al.'s code trains (2,000 a task); null: epochs_per_task decide")
    optimizer_state: Literal["reset", "keep"] = Field(
        "reset", description="the optimizer's state (momentum, Adam's moments and step) at a new task: reset (a fresh "
                             "optimizer each task, as Lightning's Trainer, Avalanche and Mammoth make) or keep (carried "
                             "over for every parameter that stays, as van de Ven's continual-learning code does)")
    augment: Literal["none", "default"] = Field(
        "default", description="training augmentation: default is the dataset's suggested one (random crop with "
                            "4-pixel padding and horizontal flip for CIFAR and Tiny-ImageNet, crop for SVHN; none "
                            "for MNIST and rows), on the training device")
    schedule: Literal["constant", "step", "cosine"] = Field(
        "constant", description="learning-rate schedule within each task (it restarts at each task, as the optimizer)")
    warmup_steps: int = Field(0, ge=0, le=1_000_000, description="linear warm-up over this many steps of each task")
    lr_step_every: int = Field(1, ge=1, le=10000, description="step schedule: multiply the lr by lr_gamma every this many epochs")
    lr_gamma: float = Field(0.1, gt=0.0, le=1.0, description="step schedule: the factor")
    device: str = Field("auto", max_length=16, description="auto (a GPU when there is one), cpu, cuda or cuda:N")
    precision: Literal["32", "bf16-mixed", "16-mixed"] = Field("32", description="32-bit, or mixed precision (autocast)")
    deterministic: bool = Field(False, description="deterministic algorithms only (torch.use_deterministic_algorithms, "
                                                   "cuDNN deterministic, no cuDNN benchmark): reproducible on a GPU, slower")
    weights: Literal["none", "last", "every"] = Field(
        "last", description="weights kept on disk: every (after-task-0.pt .. after-task-T.pt, which trade-off "
                            "curves need), last (the final weights only) or none. Default last: one file a run, so "
                            "a sweep of thousands of runs cannot fill a disk (every keeps T + 1 files a run)")
    save_weights: bool | None = Field(None, exclude=True, description="the old name: true = weights every, "
                                                                      "false = none (configs of earlier runs)")

    @model_validator(mode="after")
    def _old_save_weights(self):
        if self.save_weights is not None:
            if "weights" in self.model_fields_set:
                raise ValueError("save_weights is the old name of weights: give weights alone")
            self.weights = "every" if self.save_weights else "none"
            self.save_weights = None
        return self

    def task_steps(self, batches_per_epoch: int) -> int:
        """The optimizer steps a task gets whose one pass is ``batches_per_epoch`` batches (none without data)."""
        if not batches_per_epoch:
            return 0
        return self.iterations_per_task or self.epochs_per_task * batches_per_epoch

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, value: Any) -> Any:
        return "32" if value in (32, "32-true") else value  # YAML reads 32 as a number

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        if not DEVICE_PATTERN.match(value):  # whether this machine has it: engine.machine_checks
            raise ValueError("must be auto, cpu, cuda or cuda:N (N a GPU index)")
        return value


class EvalConfig(_Section):
    every: int = Field(10, ge=1, description="evaluate every task every this many training steps")
    batch_size: int = Field(512, ge=1, le=1_000_000, description="samples per forward pass of an evaluation (memory, not results)")
    subset: int | None = Field(None, ge=1, description="a fixed random subset of this many samples per task; null: all")


def _hparams_model(name: str, hparams: dict[str, HParam], base: type[BaseModel] | None = None) -> type[BaseModel]:
    """A pydantic model for a strategy's or a model's section, from its declared hyperparameters. A list
    hyperparameter holds integers, each within its low and high (e.g. an MLP's widths)."""
    fields: dict[str, Any] = {"name": (Literal[name], name)}
    validators = {}
    for key, spec in hparams.items():
        kind: Any = Literal[spec.choices] if spec.choices else spec.type  # type: ignore[valid-type]
        limits = {}
        if spec.type is list:
            kind, limits["max_length"] = list[int], MAX_LIST_ITEMS
            validators[f"_{key}_items"] = field_validator(key)(_items_within(spec.low, spec.high))
        else:
            if spec.low is not None:
                limits["ge"] = spec.low
            if spec.high is not None:
                limits["le"] = spec.high
        fields[key] = (kind, Field(spec.default, description=spec.help, **limits))
    if base is None:
        return create_model(f"{name}_hparams", __config__=STRICT, __validators__=validators, **fields)
    return create_model(f"{name}_hparams", __base__=base, __validators__=validators, **fields)


MAX_LIST_ITEMS = 16


def _items_within(low, high):
    def check(cls, value: list[int]) -> list[int]:
        bad = [v for v in value if (low is not None and v < low) or (high is not None and v > high)]
        if bad:
            raise ValueError(f"every entry must be from {low:g} to {high:g} (got {bad[0]})")
        return value
    return classmethod(check)


STRATEGY_MODELS = {name: _hparams_model(name, cls.hparams) for name, cls in STRATEGIES.items()}
MODEL_CONFIGS = {name: _hparams_model(name, cls.hparams, ModelConfig) for name, cls in MODELS.items()}


def _mlp_default() -> ModelConfig:
    return MODEL_CONFIGS["mlp"]()


SETTING_NAMES = {"class": "class-IL", "task": "task-IL", "domain": "domain-IL"}


def default_run_name(config: "RunConfig | dict") -> str:
    """What a run is, as its default name: '<strategy> <dataset> <setting>', e.g. 'replay digits class-IL'
    (the CLI, the Launch page and a config file without a name share it)."""
    if isinstance(config, RunConfig):
        strategy, dataset, setting = config.strategy["name"], config.scenario.dataset, config.scenario.setting
    else:  # the form's mapping, before it is checked
        sections = [config.get(k) if isinstance(config.get(k), dict) else {} for k in ("strategy", "scenario")]
        strategy, dataset, setting = sections[0].get("name"), sections[1].get("dataset"), sections[1].get("setting")
    return " ".join(str(part)[:60] for part in (strategy or "naive", dataset or "digits",
                                                SETTING_NAMES.get(setting, setting or "class-IL")))


def next_copy_name(name: str, taken: set[str]) -> str:
    """The name of a copy of a run (a relaunch): 'replay digits class-IL (2)', or (3) if (2) is taken."""
    stem = re.sub(r" \(\d+\)$", "", name)[:190]
    copy = 2
    while f"{stem} ({copy})" in taken:
        copy += 1
    return f"{stem} ({copy})"


class RunConfig(_Section):
    name: str = Field("", min_length=1, max_length=200, validate_default=False,
                      description="default: what the run is (default_run_name)")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    scenario: ScenarioConfig = Field(default_factory=ScenarioConfig)
    model: SerializeAsAny[ModelConfig] = Field(default_factory=_mlp_default)
    strategy: dict[str, Any] = Field(default_factory=lambda: {"name": "naive"})
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy(cls, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError("must be a mapping with a name and the strategy's hyperparameters")
        name = value.get("name")
        if not isinstance(name, str) or name not in STRATEGY_MODELS:
            raise ValueError(f"name = {cut(name)}: must be one of {', '.join(STRATEGY_MODELS)}")
        try:
            return STRATEGY_MODELS[name].model_validate(value).model_dump()
        except ValidationError as err:
            raise ValueError("; ".join(_lines(err, prefix=""))) from None

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> ModelConfig:
        if isinstance(value, ModelConfig):
            return value
        if not isinstance(value, dict):
            raise ValueError("must be a mapping with a name and the model's hyperparameters")
        name = value.get("name", "mlp")
        if not isinstance(name, str) or name not in MODEL_CONFIGS:  # a list is no name (and unhashable)
            raise ValueError(f"name = {cut(name)}: must be one of {', '.join(MODEL_CONFIGS)}")
        try:
            return MODEL_CONFIGS[name].model_validate({**value, "name": name})
        except ValidationError as err:
            raise ValueError("; ".join(_lines(err, prefix=""))) from None

    @model_validator(mode="after")
    def _supported(self, info: ValidationInfo):
        strategy = STRATEGIES[self.strategy["name"]]
        if self.scenario.setting not in strategy.settings:
            raise ValueError(
                f"strategy.name = {strategy.name!r}: does not support the {self.scenario.setting}-incremental setting "
                f"(scenario.setting; it supports: {', '.join(strategy.settings)})"
            )
        if strategy.models is not None and self.model.name not in strategy.models:
            raise ValueError(f"strategy.name = {strategy.name!r}: does not work with model {self.model.name} "
                             f"(model.name; it works with: {', '.join(strategy.models)})")
        # an in-memory scenario (train_run's ``scenario``) gives its own input shape in the context; a
        # generic dataset's shape is in its files (engine.machine_checks)
        shape = (info.context or {}).get("input_shape") or DATASET_INFO[self.scenario.dataset].input_shape
        if shape and MODELS[self.model.name].kind == "image" and len(shape) != 3:
            raise ValueError(image_input_problem(self.model.name, self.scenario.dataset, shape))
        return self

    @model_validator(mode="after")
    def _default_name(self):
        if "name" not in self.model_fields_set:
            self.name = default_run_name(self)
        return self

    @property
    def strategy_hparams(self) -> dict[str, Any]:
        return {k: v for k, v in self.strategy.items() if k != "name"}


def _lines(err: ValidationError, prefix: str) -> list[str]:
    lines = []
    most = limits().max_problems  # a list of 50,000 wrong items is 50,000 errors: say how many, not each
    errors = err.errors(include_url=False, include_context=False)
    if len(errors) > most:
        errors, more = errors[:most - 1], len(errors) - (most - 1)
    else:
        more = 0
    for e in errors:
        loc = ".".join(cut_text(p) for p in e["loc"] if p not in ("function-after[_supported(), RunConfig]",))
        field = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "config"
        msg = e["msg"].replace("Value error, ", "").replace("Input should be", "must be")
        if e["type"] == "extra_forbidden":
            msg = "is not a known field"
        elif e["type"] == "missing":
            msg = "is required"
        if e["type"] in ("extra_forbidden", "missing"):
            lines.append(f"{field}: {msg}")
        elif e["type"] == "value_error" and (not loc or msg.startswith(f"{loc}.")):  # a check across fields names its own
            lines.append(msg)
        else:
            lines.append(f"{field} = {cut(e['input'])}: {msg}")
    if more:
        lines.append(f"{prefix.rstrip('.') or 'config'}: ... and {more} more problem(s)")
    return lines


def parse_config(data: Any, input_shape: tuple[int, ...] | None = None) -> RunConfig:
    """Validate a config mapping to run on this machine: its shape, then what it needs of this machine
    (``machine_problems``); raise ``ConfigError`` with one line per problem. ``input_shape``: the sample
    shape of a scenario given in memory (train_run's ``scenario``), checked instead of the dataset's."""
    if not isinstance(data, dict):
        raise ConfigError(["config: must be a mapping of sections (name, seed, scenario, model, strategy, train, eval)"])
    check_document(data, "config")
    data, problems = apply_preset(data)  # a published setting under the config's own values
    sections = {"strategy": (STRATEGY_MODELS, None), "model": (MODEL_CONFIGS, "mlp")}
    for section, (registry, default) in sections.items():
        value = data.get(section)
        if isinstance(value, dict):  # its own lines, field by field, before the rest
            name = value.get("name", default)
            if not isinstance(name, str) or name not in registry:
                problems.append(f"{section}.name = {cut(name)}: must be one of {', '.join(registry)}")
            else:
                try:
                    registry[name].model_validate({**value, "name": name})
                except ValidationError as err:
                    problems += _lines(err, prefix=f"{section}.")
    try:
        config = RunConfig.model_validate(data, context={"input_shape": input_shape})
    except ValidationError as err:
        lines = _lines(err, prefix="")
        if problems:
            lines = [line for line in lines if not line.startswith(("strategy", "model"))]
        raise ConfigError(problems + lines) from None
    problems += machine_problems(config, input_shape)
    if problems:
        raise ConfigError(problems)
    return config


def stored_config(value: str | Mapping) -> RunConfig:
    """A stored run config (the store's JSON text, or its mapping) read back typed. Its shape alone is
    checked, so it reads back on another machine, or after its dataset's files are gone; ``ConfigError``
    (one line per problem) for a config that is not a CL Lab run config (a user's own run's)."""
    try:
        data = json.loads(value) if isinstance(value, str) else value
    except ValueError as err:
        raise ConfigError([f"config: not JSON ({err})"]) from None
    if not isinstance(data, Mapping):
        raise ConfigError(["config: must be a mapping of sections (name, seed, scenario, model, strategy, train, eval)"])
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(_lines(err, prefix="")) from None


def load_config(path: str | Path) -> RunConfig:
    return parse_config(read_yaml(path))
