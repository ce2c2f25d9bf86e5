"""The strategy registry. Adding a strategy means adding its file and one line here."""

from __future__ import annotations

from engine.strategies.acil import ACIL
from engine.strategies.agem import AGEM
from engine.strategies.base import Experience, Strategy
from engine.strategies.classp import CLASSP
from engine.strategies.clr import CLR
from engine.strategies.cumulative import Cumulative
from engine.strategies.der import DER
from engine.strategies.derpp import DERpp
from engine.strategies.ema import EMA
from engine.strategies.er_ace import ERACE
from engine.strategies.ewc import EWC
from engine.strategies.ewc_rank1 import EWCRank1
from engine.strategies.feature_distill import FeatureDistill
from engine.strategies.fetril import FeTrIL
from engine.strategies.gdumb import GDumb
from engine.strategies.gem import GEM
from engine.strategies.hat import HAT
from engine.strategies.icarl import ICaRL
from engine.strategies.joint import Joint
from engine.strategies.l2 import L2
from engine.strategies.lwf import LwF
from engine.strategies.mas import MAS
from engine.strategies.naive import Naive
from engine.strategies.packnet import PackNet
from engine.strategies.replay import Replay
from engine.strategies.si import SI
from engine.strategies.slca import SLCA


# one line a strategy, in the order the form and the docs list them
STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (
    Naive, Joint, Cumulative,                                        # references
    EWC, SI, MAS, L2, EWCRank1, LwF, FeatureDistill, CLASSP,         # regularization
    Replay, DER, DERpp, ERACE, AGEM, GEM, GDumb, ICaRL,              # rehearsal
    EMA,                                                             # weight averaging
    FeTrIL, ACIL, SLCA,                                              # exemplar-free class-incremental
    CLR, PackNet, HAT,                                               # architecture
)}

__all__ = ["STRATEGIES", "Experience", "Strategy"]
