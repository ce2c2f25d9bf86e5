from engine.core.hparams import HParam
from engine.strategies.joint import Joint


class Cumulative(Joint):
    """Cumulative training (Avalanche's ``Cumulative``): at task k, train on the data of tasks 1..k.
    A reference that gives a full accuracy matrix (what Joint's ``all`` cannot) and the joint accuracy
    on the tasks seen so far, from which intransigence is measured (Chaudhry et al., 2018)."""

    name = "cumulative"
    title = "Cumulative (reference)"
    description = "At each task, trains on every task's data seen so far: the upper reference, task by task."
    hparams: dict[str, HParam] = {}
    mode = "cumulative"  # Joint's schedule, fixed
    epochs = 0  # the run's budget
