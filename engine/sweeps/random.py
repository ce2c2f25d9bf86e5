"""A random sweep: ``random: {samples: N, seed: S, space: {...}}`` draws N points of the space (a numpy
Generator seeded with S; each point draws every key in the order given, so adding a sample never
changes the earlier ones; floats rounded to 6 significant digits), times the seeds."""

from __future__ import annotations

from engine.sweeps.kind import SweepKind
from engine.sweeps.spec import SweepSpec, check_counted, parse_random, sweep_seeds


class Random(SweepKind):
    name = "random"
    summary = "random"

    def parse(self, data, base, name, problems):
        spec = SweepSpec(name, self.name, base, sweep_seeds(data, base, problems), prefix=name)
        spec.random = parse_random(data["random"], "random", problems)
        if spec.random is not None:
            check_counted(spec, problems)
        return spec
