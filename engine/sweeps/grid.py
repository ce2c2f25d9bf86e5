"""A grid sweep: every combination of the values of each key, times the seeds.

``grid: {strategy.name: [naive, replay], train.lr: [0.01, 0.05]}``; or a list of grids, each expanded on
its own and the runs joined (scikit-learn's ParameterGrid convention), for rows that each have their
own settings: ``grid: [{strategy.name: [replay], train.lr: [0.01]}, {strategy.name: [gem], ...}]``.
No ``grid:`` at all is one point: the base config times the seeds.
"""

from __future__ import annotations

from engine.sweeps.kind import SweepKind
from engine.sweeps.spec import SweepSpec, check_counted, merged_grid, parse_grid, parse_grids, sweep_seeds


class Grid(SweepKind):
    name = "grid"
    summary = "grid"

    def parse(self, data, base, name, problems):
        spec = SweepSpec(name, self.name, base, sweep_seeds(data, base, problems), prefix=name)
        if isinstance(data.get("grid"), list):
            spec.grids = parse_grids(data["grid"], "grid", problems)
            spec.grid = merged_grid(spec.grids)
        elif "grid" in data:
            spec.grid = parse_grid(data["grid"], "grid", problems)
        else:
            spec.grid = {}
        check_counted(spec, problems)
        return spec
