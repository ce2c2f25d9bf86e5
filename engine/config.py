"""Validated run configs. A config comes from a YAML file, the launch form or a sweep; every problem
is reported as one line naming the field, the value and what is allowed, before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, create_model, field_validator, model_validator

from engine.datasets import DATASET_INFO, DATASETS
from engine.inputs import ConfigError, check_document, cut, cut_text, read_yaml  # noqa: F401 - ConfigError, read_yaml: the config's API
from engine.limits import limits
from engine.strategies import STRATEGIES, HParam

CLASS_COUNTS = {name: info.n_classes for name, info in DATASET_INFO.items()}  # n_tasks checks without loading the data
MAX_SEED = 2**32 - 1  # what numpy's and Lightning's seed_everything accept
MAX_LR = 10.0         # no optimizer here learns above it; a sweep that wants to see divergence still can
# Every section is strict (true is not 1, 1 is not true, "5" is not 5; an int is still a float) and
# refuses inf and nan: what is accepted is what the engine runs.
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _Section(BaseModel):
    model_config = STRICT


class ScenarioConfig(_Section):
    dataset: str = Field("digits", description="the dataset the tasks are cut from")
    setting: Literal["class", "task", "domain"] = Field("class", description="class-, task- or domain-incremental")
    n_tasks: int = Field(5, ge=1, le=100, description="number of tasks")
    class_seed: int | None = Field(None, ge=0, le=MAX_SEED, description="shuffles the class order; null keeps 0, 1, 2, ...")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="fixes the train/test split and the permutations")
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
    lr: float = Field(0.05, gt=0.0, le=MAX_LR, description="learning rate")
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 weight decay")
    batch_size: int = Field(32, ge=1, le=65536)
    epochs_per_task: int = Field(5, ge=1, le=10000)
    save_weights: bool = Field(True, description="keep the weights after each task (for trade-off curves)")


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
    return create_model(f"{name}_hparams", __config__=STRICT, **fields)


STRATEGY_MODELS = {name: _strategy_model(name, cls.hparams) for name, cls in STRATEGIES.items()}


class RunConfig(_Section):
    name: str = Field("run", min_length=1, max_length=200)
    seed: int = Field(0, ge=0, le=MAX_SEED)
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
        if not isinstance(name, str) or name not in STRATEGY_MODELS:
            raise ValueError(f"name = {cut(name)}: must be one of {', '.join(STRATEGY_MODELS)}")
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
        else:
            lines.append(f"{field} = {cut(e['input'])}: {msg}")
    if more:
        lines.append(f"{prefix.rstrip('.') or 'config'}: ... and {more} more problem(s)")
    return lines


def parse_config(data: Any) -> RunConfig:
    """Validate a config mapping; raise ``ConfigError`` with one line per problem."""
    if not isinstance(data, dict):
        raise ConfigError(["config: must be a mapping of sections (name, seed, scenario, model, strategy, train, eval)"])
    check_document(data, "config")
    problems: list[str] = []
    strategy = data.get("strategy")
    if isinstance(strategy, dict):  # its own lines, field by field, before the rest
        name = strategy.get("name")
        if not isinstance(name, str) or name not in STRATEGY_MODELS:
            problems.append(f"strategy.name = {cut(name)}: must be one of {', '.join(STRATEGY_MODELS)}")
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


def load_config(path: str | Path) -> RunConfig:
    return parse_config(read_yaml(path))
