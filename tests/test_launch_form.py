"""The Launch form's table of fields (pages/ui/launch_form.py) gives both directions: for every field,
a config shown in the form (``form_state``) and read back (``form_config``) is the same config."""

import typing

import pytest
from hypothesis import HealthCheck, given, reject, settings, strategies as st

from engine.config import ConfigError, RunConfig, parse_config
from engine.datasets import DATASET_INFO
from engine.core.devices import gpu_indices
from engine.models import MODELS
from engine.strategies import STRATEGIES
from pages.ui.launch_form import FIELDS, SECTIONS, form_config, form_state

IMAGE_SHAPE = (3, 8, 8)  # an image model's input, given as in memory (the embedded datasets are rows)


def bounded(kind, low, high, exclusive_low=False, exclusive_high=False):
    if kind is int:
        low, high = (-5 if low is None else int(low)), (10**6 if high is None else int(high))
        return st.integers(low, min(high, low + 9)) | st.integers(low, high)  # small values, and any
    return st.floats(-1e6 if low is None else low, 1e6 if high is None else high, allow_nan=False,
                     exclude_min=exclusive_low, exclude_max=exclusive_high)


def field_values(path: str):
    """Values of a plain config field, from its declared type and bounds."""
    section, _, key = path.rpartition(".")
    info = (SECTIONS[section] if section else RunConfig).model_fields[key]
    if path == "train.device":
        return st.sampled_from(["auto", "cpu", *(f"cuda:{g}" for g in gpu_indices())])
    if path == "scenario.dataset":  # those whose files this machine has
        return st.sampled_from(sorted(DATASET_INFO))
    if path == "scenario.tasks":  # within the default's 5 tasks
        return st.none() | st.lists(st.integers(1, 5), min_size=1, max_size=5, unique=True)
    if typing.get_origin(info.annotation) is typing.Literal:
        return st.sampled_from(typing.get_args(info.annotation))
    kinds = [k for k in typing.get_args(info.annotation) if k is not type(None)] or [info.annotation]
    none = st.none() if type(None) in typing.get_args(info.annotation) else st.nothing()
    kind = kinds[0]
    if kind is bool:
        return st.booleans()
    if kind is str:  # a path: the form strips what is typed
        return none | st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).map(
            str.strip).filter(bool)
    bound = {name: getattr(m, name) for m in info.metadata for name in ("ge", "gt", "le", "lt") if hasattr(m, name)}
    return none | bounded(kind, bound.get("ge", bound.get("gt")), bound.get("le", bound.get("lt")),
                          exclusive_low="gt" in bound, exclusive_high="lt" in bound)


def hparam_values(spec):
    if spec.choices:
        return st.sampled_from(spec.choices)
    if spec.type is bool:
        return st.booleans()
    if spec.type is list:
        return st.lists(st.integers(int(spec.low), min(int(spec.high), 64)), max_size=3)
    return bounded(spec.type, spec.low, spec.high)


@st.composite
def section_values(draw, registry, setting="class"):
    names = [n for n, cls in registry.items() if setting in getattr(cls, "settings", (setting,))]
    name = draw(st.sampled_from(names))
    return {"name": name, **{k: draw(hparam_values(spec)) for k, spec in registry[name].hparams.items()}}


def values_of(field):
    if field.path == "model":
        return section_values(MODELS)
    if field.path == "strategy":
        return section_values(STRATEGIES)
    return field_values(field.path)


def with_value(path: str, value) -> dict:
    section, _, key = path.rpartition(".")
    return {section: {key: value}} if section else {key: value}


@pytest.mark.parametrize("field", FIELDS, ids=[f.path for f in FIELDS])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(data=st.data())
def test_a_config_shown_in_the_form_reads_back_the_same(field, data):
    value = data.draw(values_of(field), label=field.path)
    shape = IMAGE_SHAPE if field.path == "model" and MODELS[value["name"]].kind == "image" else None
    try:
        config = parse_config(with_value(field.path, value), input_shape=shape)
    except ConfigError:  # a value its field allows and the whole config does not (a check across fields)
        reject()
    state, missing = form_state(config.model_dump(mode="json"))
    assert missing == []
    read_back = parse_config({**form_config(state), "name": config.name}, input_shape=shape)
    assert read_back == config
    assert read_back.model_dump_json() == config.model_dump_json()  # the stored JSON too


def test_every_field_of_a_config_is_in_the_table():
    """A config section's field the form does not draw would be lost by a relaunch: each is in the table."""
    paths = {f.path for f in FIELDS}
    expected = {"seed", "model", "strategy"} | {f"{s}.{k}" for s, cls in SECTIONS.items() for k, info in
                                                 cls.model_fields.items() if not info.exclude}
    assert paths == expected


def test_a_value_this_lab_cannot_show_is_a_line_and_the_default():
    state, missing = form_state({"scenario": {"dataset": "imagenet-22k"}, "model": {"name": "vit"},
                                 "strategy": {"name": "foo"}, "train": {"device": "tpu"}})
    assert (state["scenario.dataset"], state["model.name"], state["strategy.name"], state["train.device"]) == \
        ("digits", "mlp", "naive", "auto")
    assert missing[:3] == ["scenario.dataset = 'imagenet-22k': not in this lab; digits is shown",
                           "model.name = 'vit': not in this lab; mlp is shown",
                           "strategy.name = 'foo': not in this lab; naive is shown"]
    assert missing[3].startswith("train.device = 'tpu': must be auto, cpu, cuda or cuda:N") and len(missing) == 4
