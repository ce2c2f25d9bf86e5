"""The Launch form's fields, in one table (``FIELDS``) that gives both directions: the widgets' values
(the session state, keyed by the config's dotted field) to a run config (``form_config``), and a run's
config back to the widgets' values (``form_state``: a relaunch, a preset). The widgets themselves are
drawn by pages/launch.py and pages/ui/model_form.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from engine.config import EvalConfig, RunConfig, ScenarioConfig, TrainConfig
from engine.datasets import DATASET_INFO
from engine.core.devices import device_problem
from engine.models import MODELS
from engine.strategies import STRATEGIES

SECTIONS = {"scenario": ScenarioConfig, "train": TrainConfig, "eval": EvalConfig}
# the config fields drawn under "More settings" (every other field has its own input above them)
MORE = {"scenario": ["domain", "normalize", "seed", "test_size", "tasks"],
        "train": ["optimizer_state", "augment", "schedule", "warmup_steps", "lr_step_every", "lr_gamma",
                  "deterministic"],
        "eval": ["batch_size"]}


@dataclass(frozen=True)
class FormField:
    """A value of the config and the widgets that show it. ``read(state)``: the config's value from the
    widgets' values (a widget not drawn yet: its default); ``show(value)``: the widgets' values for the
    config's value (``absent``: a config without it), and a line for a value this lab cannot show (its
    default is shown instead)."""

    path: str
    read: Callable[[Mapping], Any]
    show: Callable[[Any], tuple[dict, list[str]]]
    absent: Any = None


def list_text(values) -> str:
    return ", ".join(map(str, values))


def parse_widths(text: str) -> list[int]:
    """'256, 256' -> [256, 256]; '' -> [] (empty). ValueError if an item is not a whole number."""
    return [int(w) for w in text.replace(" ", "").split(",") if w]


def config_default(path: str) -> Any:
    section, _, field = path.rpartition(".")
    return (SECTIONS[section] if section else RunConfig).model_fields[field].default


def _same(value):
    return value


def _float_input(value):
    return float(value) if isinstance(value, int) else value  # the inputs are of floats: an int is the same value


def _tasks_value(text):
    if not isinstance(text, str):
        return text
    try:
        return parse_widths(text) or None  # a list of task numbers, as text; empty: all
    except ValueError:
        return text  # stays text: parse_config says what is wrong


def plain(path: str, to_config=_same, to_form=_same) -> FormField:
    """A field with one widget keyed by its path; the widget's default shows the config's default."""
    default = config_default(path)
    if to_form is _same and _annotation(path) is float:
        to_form = _float_input
    return FormField(path, read=lambda v: to_config(v.get(path, to_form(default))),
                     show=lambda value: ({path: to_form(value)}, []), absent=default)


def _annotation(path: str):
    section, _, field = path.rpartition(".")
    return (SECTIONS[section] if section else RunConfig).model_fields[field].annotation


def _shown_or_default(path: str, value, problem: Callable[[Any], str | None], default) -> tuple[dict, list[str]]:
    why = problem(value)
    return ({path: default}, [f"{path} = {value!r}: {why}; {default} is shown"]) if why else ({path: value}, [])


def _not_in(known) -> Callable[[Any], str | None]:
    return lambda value: None if value in known else "not in this lab"


def model_config(state) -> tuple[dict, dict[str, list[str]]]:
    """The model section from the widgets' values (their defaults before the widgets are drawn), and a
    problem line per list that is not a list of whole numbers (keyed ``model.<key>``, where the form
    shows it)."""
    name = state.get("model.name", "mlp")
    name = name if name in MODELS else "mlp"
    section, problems = {"name": name}, {}
    for key, spec in MODELS[name].hparams.items():
        value = state.get(f"model.{name}.{key}", spec.default)
        if spec.type is list and isinstance(value, str):
            try:
                value = parse_widths(value)
            except ValueError:
                problems[f"model.{key}"] = [f"model.{key} = {value[:80]!r}: must be whole numbers separated by commas"
                                            + (" (empty: a linear model)" if key == "hidden" else "")]
        section[key] = value
    return section, problems


def strategy_config(state) -> dict:
    name = state.get("strategy.name") or "naive"
    strategy = STRATEGIES.get(name) or STRATEGIES["naive"]
    return {"name": strategy.name, **{k: state.get(f"strategy.{strategy.name}.{k}", spec.default)
                                      for k, spec in strategy.hparams.items()}}


def registered(prefix: str, registry: Mapping, default: str, read) -> FormField:
    """A model or strategy section: its name, and each of that one's declared hyperparameters keyed per
    name (``<prefix>.<name>.<key>``: choices and defaults differ); the section of a name this lab lacks
    is shown at the default's defaults."""
    def show(section) -> tuple[dict, list[str]]:
        section = dict(section or {})
        state, missing = _shown_or_default(f"{prefix}.name", section.get("name"), _not_in(registry), default)
        name = state[f"{prefix}.name"]
        for key, spec in registry[name].hparams.items():
            value = section.get(key, spec.default) if section.get("name") == name else spec.default
            state[f"{prefix}.{name}.{key}"] = (list_text(value) if spec.type is list else
                                               float(value) if spec.type is float else value)
        return state, missing
    return FormField(prefix, read=read, show=show)


def _class_seed(value) -> tuple[dict, list[str]]:
    return {"shuffle_classes": value is not None, "scenario.class_seed": value or 0}, []


def _device(value) -> tuple[dict, list[str]]:
    return _shown_or_default("train.device", value, device_problem, "auto")


# The form's fields in the config's order: every field of the form, both directions.
FIELDS: list[FormField] = [
    plain("seed"),
    plain("scenario.root", to_config=lambda text: str(text).strip() or None, to_form=lambda root: root or ""),
    FormField("scenario.dataset", read=lambda v: v.get("scenario.dataset", "digits"),
              show=lambda value: _shown_or_default("scenario.dataset", value, _not_in(DATASET_INFO), "digits")),
    plain("scenario.setting"),
    plain("scenario.n_tasks"),
    FormField("scenario.class_seed", read=lambda v: v.get("scenario.class_seed", 0) if v.get("shuffle_classes") else None,
              show=_class_seed),
    registered("model", MODELS, "mlp", read=lambda v: model_config(v)[0]),
    registered("strategy", STRATEGIES, "naive", read=strategy_config),
    *(plain(f"train.{field}") for field in ("optimizer", "lr", "momentum", "weight_decay", "batch_size",
                                             "epochs_per_task")),
    plain("train.iterations_per_task", to_config=lambda steps: steps or None, to_form=lambda steps: steps or 0),
    plain("train.weights"),
    FormField("train.device", read=lambda v: v.get("train.device", "auto"), show=_device, absent="auto"),
    plain("train.precision"),
    plain("eval.every"),
    plain("eval.subset", to_config=lambda n: n or None, to_form=lambda n: n or 0),
    *(plain(f"{section}.{field}", to_config=_tasks_value, to_form=lambda tasks: list_text(tasks or []))
      if field == "tasks" else plain(f"{section}.{field}") for section, fields in MORE.items() for field in fields),
]


def whole(value):
    """Integral floats as ints, throughout a mapping: the form's number inputs are all of floats (an
    integer input cuts a typed 2.5 to 2 unseen), so 2.0 is the whole number 2 (a float field takes it
    as 2.0) and 2.5 reaches the check, which says it must be an integer."""
    if isinstance(value, dict):
        return {k: whole(v) for k, v in value.items()}
    return int(value) if isinstance(value, float) and value.is_integer() else value


def form_config(v) -> dict:
    """The run config from the widgets' values (the session state holds them before the widgets are
    drawn again, and in a button's callback)."""
    data: dict[str, Any] = {"name": str(v.get("name") or "").strip()}
    for field in FIELDS:
        section, _, key = field.path.rpartition(".")
        if section:
            data.setdefault(section, {})[key] = field.read(v)
        else:
            data[key] = field.read(v)
    return whole(data)


def form_state(config: Mapping) -> tuple[dict, list[str]]:
    """The widgets' values that show a run's config (a dumped ``RunConfig``): the inverse of
    ``form_config``; and a line per value this lab cannot show (a strategy, dataset, model or device
    it lacks), left at the form's default. A field the config lacks (older than it): its default."""
    state, missing = {}, []
    for field in FIELDS:
        section, _, key = field.path.rpartition(".")
        values = dict(config.get(section) or {}) if section else config
        shown, lines = field.show(values.get(key, field.absent))
        state.update(shown)
        missing += lines
    return state, missing
