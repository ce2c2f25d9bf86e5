"""The strategy registry. Adding a strategy means adding its file and one line here."""

from __future__ import annotations

from engine.strategies.acil import ACIL
from engine.strategies.agem import AGEM
from engine.strategies.base import Experience, HParam, Strategy
from engine.strategies.clr import CLR
from engine.strategies.der import DER
from engine.strategies.derpp import DERpp
from engine.strategies.ema import EMA
from engine.strategies.er_ace import ERACE
from engine.strategies.ewc import EWC
from engine.strategies.fetril import FeTrIL
from engine.strategies.gdumb import GDumb
from engine.strategies.gem import GEM
from engine.strategies.hat import HAT
from engine.strategies.icarl import ICaRL
from engine.strategies.joint import Joint
from engine.strategies.lwf import LwF
from engine.strategies.naive import Naive
from engine.strategies.packnet import PackNet
from engine.strategies.replay import Replay
from engine.strategies.slca import SLCA

STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (Naive, Joint, Replay, EWC, LwF)}
STRATEGIES.update({s.name: s for s in (FeTrIL, ACIL, SLCA, CLR, PackNet, HAT)})
STRATEGIES.update({s.name: s for s in (DER, DERpp, ERACE, AGEM, GEM, GDumb, ICaRL, EMA)})  # rehearsal

__all__ = ["STRATEGIES", "Experience", "HParam", "Strategy"]
