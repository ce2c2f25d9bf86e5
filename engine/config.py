"""Validated run configs. A config comes from a YAML file, the launch form or a sweep; every problem
is reported as one line naming the field, the value and what is allowed, before anything is written."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, create_model, field_validator, model_validator

from engine.datasets import DATASET_INFO, DATASETS
from engine.strategies import STRATEGIES, HParam

CLASS_COUNTS = {name: info.n_classes for name, info in DATASET_INFO.items()}  # n_tasks checks without loading the data


class ConfigError(ValueError):
    """A config with problems; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))

    def report(self, source, what: str = "config") -> None:
        """Print the problems for a command line: a header naming the file, then one line each."""
        print(f"{source}: the {what} has {len(self.problems)} problem(s):", file=sys.stderr)
        for line in self.problems:
            print(f"  {line}", file=sys.stderr)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScenarioConfig(_Section):
    dataset: str = Field("digits", description="the dataset the tasks are cut from")
    setting: Literal["class", "task", "domain"] = Field("class", description="class-, task- or domain-incremental")
    n_tasks: int = Field(5, ge=1, le=100, description="number of tasks")
    class_seed: int | None = Field(None, description="shuffles the class order; null keeps 0, 1, 2, ...")
    seed: int = Field(0, description="fixes the train/test split and the permutations")
    test_size: float = Field(0.25, gt=0.0, lt=1.0, description="held-out share of each class")
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
        if value not in DATASETS:
            raise ValueError(f"must be one of {', '.join(sorted(DATASETS))}")
        return value

    @field_validator("n_tasks")
    @classmethod
    def _tasks_fit_classes(cls, value: int, info: ValidationInfo) -> int:
        dataset, setting = info.data.get("dataset"), info.data.get("setting")
        n_classes = CLASS_COUNTS.get(dataset)
        if setting != "domain" and n_classes and value > n_classes:
            raise ValueError(f"must be at most {n_classes}: {dataset} has {n_classes} classes to share out")
        return value


class ModelConfig(_Section):
    name: Literal["mlp"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [256, 256], max_length=16, description="hidden layer widths")

    @field_validator("hidden")
    @classmethod
    def _widths(cls, value: list[int]) -> list[int]:
        bad = [w for w in value if not 1 <= w <= 16384]
        if bad:
            raise ValueError(f"every width must be from 1 to 16384 (got {bad[0]})")
        return value


class TrainConfig(_Section):
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0.0, description="learning rate")
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 weight decay")
    batch_size: int = Field(32, ge=1, le=65536)
    epochs_per_task: int = Field(5, ge=1, le=10000)
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


class EvalConfig(_Section):
    every: int = Field(10, ge=1, description="evaluate every task every this many training steps")
    subset: int | None = Field(None, ge=1, description="a fixed random subset of this many samples per task; null: all")


def _strategy_model(name: str, hparams: dict[str, HParam]) -> type[BaseModel]:
    fields: dict[str, Any] = {"name": (Literal[name], name)}
    for key, spec in hparams.items():
        kind: Any = Literal[spec.choices] if spec.choices else spec.type  # type: ignore[valid-type]
        limits = {}
        if spec.low is not None:
            limits["ge"] = spec.low
        if spec.high is not None:
            limits["le"] = spec.high
        fields[key] = (kind, Field(spec.default, description=spec.help, **limits))
    return create_model(f"{name}_hparams", __config__=ConfigDict(extra="forbid", strict=False), **fields)


STRATEGY_MODELS = {name: _strategy_model(name, cls.hparams) for name, cls in STRATEGIES.items()}


class RunConfig(_Section):
    name: str = Field("run", min_length=1, max_length=200)
    seed: int = 0
    scenario: ScenarioConfig = Field(default_factory=ScenarioConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    strategy: dict[str, Any] = Field(default_factory=lambda: {"name": "naive"})
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy(cls, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError("must be a mapping with a name and the strategy's hyperparameters")
        name = value.get("name")
        if name not in STRATEGY_MODELS:
            raise ValueError(f"name = {name!r}: must be one of {', '.join(STRATEGY_MODELS)}")
        try:
            return STRATEGY_MODELS[name].model_validate(value).model_dump()
        except ValidationError as err:
            raise ValueError("; ".join(_lines(err, prefix=""))) from None

    @model_validator(mode="after")
    def _supported(self):
        strategy = STRATEGIES[self.strategy["name"]]
        if self.scenario.setting not in strategy.settings:
            raise ValueError(
                f"strategy {strategy.name} does not support the {self.scenario.setting}-incremental setting "
                f"(it supports: {', '.join(strategy.settings)})"
            )
        if strategy.models is not None and self.model.name not in strategy.models:
            raise ValueError(f"strategy {strategy.name} does not work with model {self.model.name} "
                             f"(it works with: {', '.join(strategy.models)})")
        return self

    @property
    def strategy_hparams(self) -> dict[str, Any]:
        return {k: v for k, v in self.strategy.items() if k != "name"}


def _lines(err: ValidationError, prefix: str) -> list[str]:
    lines = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"] if p not in ("function-after[_supported(), RunConfig]",))
        field = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "config"
        msg = e["msg"].replace("Value error, ", "").replace("Input should be", "must be")
        if e["type"] == "extra_forbidden":
            msg = "is not a known field"
        elif e["type"] == "missing":
            msg = "is required"
        if e["type"] in ("extra_forbidden", "missing"):
            lines.append(f"{field}: {msg}")
        else:
            lines.append(f"{field} = {e['input']!r}: {msg}")
    return lines


def parse_config(data: Any) -> RunConfig:
    """Validate a config mapping; raise ``ConfigError`` with one line per problem."""
    if not isinstance(data, dict):
        raise ConfigError(["config: must be a mapping of sections (name, seed, scenario, model, strategy, train, eval)"])
    problems: list[str] = []
    strategy = data.get("strategy")
    if isinstance(strategy, dict):  # its own lines, field by field, before the rest
        name = strategy.get("name")
        if name not in STRATEGY_MODELS:
            problems.append(f"strategy.name = {name!r}: must be one of {', '.join(STRATEGY_MODELS)}")
        else:
            try:
                STRATEGY_MODELS[name].model_validate(strategy)
            except ValidationError as err:
                problems += _lines(err, prefix="strategy.")
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as err:
        lines = _lines(err, prefix="")
        if problems:
            lines = [line for line in lines if not line.startswith("strategy")]
        raise ConfigError(problems + lines) from None
    if problems:
        raise ConfigError(problems)
    return config


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; ``ConfigError`` (one line: the file, the line and column, the problem)
    if it cannot be read or parsed. Config and sweep files both come in through here."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError([f"{path}: cannot be read ({err.strerror})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"{path}:{where} is not valid YAML ({getattr(err, 'problem', err)})"]) from None
    return data


def load_config(path: str | Path) -> RunConfig:
    return parse_config(read_yaml(path))
