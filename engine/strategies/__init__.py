"""The strategy registry. Adding a strategy means adding its file and one line here."""

from __future__ import annotations

from engine.strategies.base import Experience, HParam, Strategy
from engine.strategies.ewc import EWC
from engine.strategies.joint import Joint
from engine.strategies.lwf import LwF
from engine.strategies.naive import Naive
from engine.strategies.replay import Replay

STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (Naive, Joint, Replay, EWC, LwF)}

__all__ = ["STRATEGIES", "Experience", "HParam", "Strategy"]
