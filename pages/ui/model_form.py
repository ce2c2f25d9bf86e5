"""The Launch form's model section: the model, its inputs built from its declared hyperparameters
(as the strategy's are), and the device and precision to train on."""

from __future__ import annotations

import streamlit as st

from engine.datasets import DATASET_INFO
from engine.devices import gpu_indices
from engine.models import MODELS

PRECISIONS = {"32": "32-bit", "bf16-mixed": "bf16 mixed", "16-mixed": "fp16 mixed (GPU)"}


def _list_text(values) -> str:
    return ", ".join(map(str, values))


def model_inputs(dataset: str, hparam_input, field_error) -> None:
    """The widgets; each hyperparameter is keyed per model (``model.<name>.<key>``): defaults differ."""
    name = st.selectbox("Model", list(MODELS), format_func=lambda n: MODELS[n].title, key="model.name")
    model = MODELS[name]
    for key, spec in model.hparams.items():
        if spec.type is list:
            st.text_input(key.replace("_", " "), value=_list_text(spec.default), key=f"model.{name}.{key}",
                          help=f"{spec.help} (whole numbers, comma-separated)")
        else:
            hparam_input(f"model.{name}.{key}", spec)
        field_error(f"model.{key}")
    field_error("model.name")
    if model.kind == "image" and len(DATASET_INFO[dataset].input_shape) != 3:
        st.warning(f"{model.title} needs images; {dataset} has flat rows.", icon=":material/warning:")
    c1, c2 = st.columns(2)
    gpus = gpu_indices()
    devices = ["auto", "cpu"] + (["cuda"] + [f"cuda:{g}" for g in gpus] if gpus else [])
    c1.selectbox("Device", devices, key="train.device",
                 help="auto: a GPU when there is one" + ("" if gpus else " (this machine has none)"))
    field_error("train.device")
    c2.selectbox("Precision", list(PRECISIONS), format_func=PRECISIONS.get, key="train.precision")
    field_error("train.precision")


def model_config(state) -> tuple[dict, dict[str, list[str]]]:
    """The model section from the widgets' values, and a problem line per list that is not a list of
    whole numbers (keyed ``model.<key>``, where the form shows it)."""
    name = state["model.name"]
    section, problems = {"name": name}, {}
    for key, spec in MODELS[name].hparams.items():
        value = state[f"model.{name}.{key}"]
        if spec.type is list:
            try:
                value = [int(w) for w in str(value).replace(" ", "").split(",") if w]
            except ValueError:
                problems[f"model.{key}"] = [f"model.{key} = {value!r}: must be whole numbers separated by commas"]
        section[key] = value
    return section, problems
