"""Published settings as presets: a config (or a sweep's base) that says ``preset: NAME`` starts from
that paper's setting, and what it gives itself wins. The Launch form's "Start from" offers the same.

A preset is the ``base`` of the paper's reproduction sweep in ``configs/reproduce/`` (the settings
read from the paper's own code, with their sources in that file): one place for the setting, run by
``bench/reproduce.py`` and started from by anyone. Adding one is its file and one line here."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.inputs import cut, read_yaml

REPRODUCE = Path(__file__).resolve().parent.parent / "configs" / "reproduce"


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    file: str  # in configs/reproduce/: its ``base`` is the preset
    # what the reproduction sets for its own bookkeeping, not the paper's setting (no continual
    # evaluation, no weights kept): left to the lab's defaults in a run started from the preset
    not_the_papers: tuple[str, ...] = ("eval", "train.weights")

    def config(self) -> dict[str, Any]:
        """The preset's config sections (a fresh copy: callers may change it)."""
        base = copy.deepcopy((read_yaml(REPRODUCE / self.file) or {}).get("base") or {})
        for key in self.not_the_papers:
            section, _, field = key.partition(".")
            if not field:
                base.pop(section, None)
            elif isinstance(base.get(section), dict):
                base[section].pop(field, None)
        return base


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("mammoth-seq-mnist", "Mammoth's Seq-MNIST (Buzzega et al. 2020: MLP 100-100, raw pixels, SGD, batch 10)",
           "buzzega2020-seq-mnist.yaml"),
    Preset("vandeven-split-mnist", "van de Ven et al. 2022 Split MNIST (MLP 400-400, Adam, 2000 iterations a task)",
           "vandeven2022-split-mnist.yaml"),
    Preset("avalanche-split-mnist", "Avalanche baselines, Split MNIST (MLP 256-256, 10 epochs a task)",
           "avalanche-split-mnist.yaml"),
    Preset("avalanche-permuted-mnist", "Avalanche baselines, Permuted MNIST (MLP 1000-1000, 30 epochs a task)",
           "avalanche-permuted-mnist.yaml"),
    Preset("delange-stability-gap", "De Lange et al. 2023 stability gap (ER on Split-MNIST, evaluated every step)",
           "delange2023-stability-gap.yaml", not_the_papers=("train.weights",)),
)}


def list_presets() -> list[str]:
    return list(PRESETS)


def is_preset(name: Any) -> bool:
    return isinstance(name, str) and name in PRESETS


def get_preset(name: str) -> Preset:
    return PRESETS[name]


def merged(preset: dict, given: dict) -> dict:
    """``given`` over ``preset``, section by section; a strategy or model section naming another
    strategy or model than the preset's replaces the preset's (its settings belong to the other)."""
    out = dict(preset)
    for key, value in given.items():
        base = out.get(key)
        if isinstance(base, dict) and isinstance(value, dict):
            if key in ("strategy", "model") and value.get("name", base.get("name")) != base.get("name"):
                out[key] = value
            else:
                out[key] = merged(base, value)
        else:
            out[key] = value
    return out


def apply_preset(data: dict) -> tuple[dict, list[str]]:
    """A config mapping with its ``preset`` key resolved (the preset's settings under the config's own),
    and a line if the preset is not known."""
    if "preset" not in data:
        return data, []
    name = data["preset"]
    rest = {k: v for k, v in data.items() if k != "preset"}
    if not is_preset(name):
        return rest, [f"preset = {cut(name)}: must be one of {', '.join(PRESETS)}"]
    return merged(get_preset(name).config(), rest), []
