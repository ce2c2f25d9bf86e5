"""The Launch form's model section: the model, its inputs built from its declared hyperparameters
(as the strategy's are), and the device and precision to train on."""

from __future__ import annotations

import streamlit as st

from engine.datasets import DATASET_INFO
from engine.core.devices import gpu_indices
from engine.models import MODELS
from pages.ui.launch_form import list_text, parse_widths

PRECISIONS = {"32": "32-bit", "bf16-mixed": "bf16 mixed", "16-mixed": "fp16 mixed (GPU)"}


def model_inputs(dataset: str, hparam_input, field_error) -> None:
    """The widgets; each hyperparameter is keyed per model (``model.<name>.<key>``): defaults differ.
    ``hparam_input(key, problem_key, spec)`` and ``field_error(*keys)`` are the page's."""
    name = st.selectbox("Model", list(MODELS), format_func=lambda n: MODELS[n].title, key="model.name")
    model = MODELS[name]
    info = DATASET_INFO[dataset]
    for key, spec in model.hparams.items():
        if spec.type is list:
            st.session_state.setdefault(f"model.{name}.{key}", list_text(spec.default))  # no default as well: see launch's initial
            text = st.text_input(key.replace("_", " "), key=f"model.{name}.{key}",
                                 help=f"{spec.help} (whole numbers, comma-separated)", max_chars=200)
            if name == "mlp" and key == "hidden":  # what the widths make, and what empty means
                try:
                    widths = parse_widths(text)
                    layers = " → ".join(["x".join(map(str, info.input_shape or ("input",))), *map(str, widths),
                                         str(info.n_classes or "?")])
                    st.caption(f"{len(widths)} hidden layer{'s' * (len(widths) != 1)}: {layers}" if widths else
                               f"Empty: a linear model, no hidden layer ({layers})")
                except ValueError:
                    pass
            field_error(f"model.{key}")
        else:
            hparam_input(f"model.{name}.{key}", f"model.{key}", spec)
    field_error("model.name", "model")
    if model.kind == "image" and not info.is_image:
        st.warning(f"{model.title} needs images; {dataset} has flat rows.", icon=":material/warning:")
    c1, c2 = st.columns(2)
    gpus = gpu_indices()
    devices = ["auto", "cpu"] + (["cuda"] + [f"cuda:{g}" for g in gpus] if gpus else [])
    with c1:
        st.selectbox("Device", devices, key="train.device",
                     help="auto: a GPU when there is one" + ("" if gpus else " (this machine has none)"))
        field_error("train.device")
    with c2:
        st.selectbox("Precision", list(PRECISIONS), format_func=PRECISIONS.get, key="train.precision")
        field_error("train.precision")
