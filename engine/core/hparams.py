"""A declared hyperparameter: what validation, the Launch form, sweeps and the cost estimate read
(strategies and models declare theirs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HParam:
    """One hyperparameter: its type (int, float, bool or str), default, allowed range or choices,
    and one line of help."""

    type: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    log: bool = False  # a log scale suits it (sweeps and sliders)

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        if self.type is bool:
            return "true or false"
        kind = {int: "an integer", float: "a number"}.get(self.type, self.type.__name__)
        if self.low is not None and self.high is not None:
            return f"{kind} from {self.low:g} to {self.high:g}"
        if self.low is not None:
            return f"{kind} of at least {self.low:g}"
        return kind
