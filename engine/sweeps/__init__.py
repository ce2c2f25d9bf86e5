"""Sweeps: a base config times a grid or a random sample of hyperparameters, times a list of seeds; an
Optuna search (``engine.sweeps.search``); a reality check (``engine.sweeps.reality``).

A sweep file (YAML)::

    name: lr-by-strategy
    base: {scenario: {dataset: digits, n_tasks: 5}, strategy: {name: naive}, train: {lr: 0.05}}
    grid: {strategy.name: [naive, replay, ewc], train.lr: [0.01, 0.05]}      # or random: / search: /
    seeds: [0, 1, 2]                                                         # reality_check:

A grid may also be a list of grids, each expanded on its own and the runs joined (scikit-learn's
ParameterGrid convention): the way to give rows that each have their own settings, as a paper's table
does (``grid: [{strategy.name: [replay], train.lr: [0.01]}, {strategy.name: [gem], train.lr: [0.03]}]``).

Keys are dotted paths into the run config: ``section.field`` with section one of scenario, model,
strategy, train, eval (``train.lr``, ``strategy.buffer_size``, ``strategy.name``). The run seed comes
from ``seeds`` (default: ``base.seed``, else 0), never from a key.

The strategy rule: a key ``strategy.X`` (in the grid, the space, or ``base.strategy``) applies to the
configs whose strategy declares the hyperparameter X and is left out of the others; every such X must
be declared by at least one strategy of the sweep. A grid point that differs from another only in keys
left out (naive with buffer_size 100 and 500) is one run, not two.

The space of ``random`` and ``search`` maps each key to one of::

    {choice: [a, b, ...]}       one of the values (any YAML values, lists included)
    {uniform: [low, high]}      a float, low < high
    {log_uniform: [low, high]}  a float on a log scale, 0 < low < high
    {int: [low, high]}          an integer, low <= high (both included)
    {log_int: [low, high]}      an integer on a log scale, 1 <= low <= high

``random: {samples: N, seed: S, space: {...}}`` draws N points (a numpy Generator seeded with S; each
point draws every key in the order given, so adding a sample never changes the earlier ones; floats are
rounded to 6 significant digits). ``search: {...}`` is an Optuna study (``engine.sweeps.search``).

Every expanded config is validated with ``parse_config`` and each bound of a space (or each choice) is
checked on its own; a bad sweep raises ``ConfigError`` with one line per problem, before anything is
written. The runs a sweep asks for (grid points x seeds, samples x seeds, trials; a reality check's
both phases) are counted from the sizes alone, before anything is expanded, and may not exceed
``limits().max_runs`` (lab.toml ``[limits] max_runs``); no list of seeds, values or choices may be
longer either. ``expand`` is pure and deterministic: grid points in the order of the keys (the last key
varies fastest), seeds innermost.

The kinds: a ``SweepKind`` (``engine/sweeps/kind.py``: parse, configs, planned runs, launch, advance,
outcome) one file each, registered below by the key of their section in the file, which is also the
``sweeps.kind`` column (``store/sweeps.py`` maps the names older rows have). The operations on any
sweep (``parse_sweep``, ``launch_sweep``, ``advance``, ``cancel_sweep``, progress) are in
``engine/sweeps/sweep.py``; the CLI in ``engine/cli/sweep.py``. Adding a kind: its file and one line here.
"""

from __future__ import annotations

from engine.sweeps.grid import Grid
from engine.sweeps.kind import SweepKind
from engine.sweeps.random import Random
from engine.sweeps.reality import RealityCheck
from engine.sweeps.search import Search

# one line a kind, by the key of its section in a sweep file (a file with none of them is a grid)
SWEEP_KINDS: dict[str, SweepKind] = {k.name: k for k in (Grid(), Random(), Search(), RealityCheck())}

__all__ = ["SWEEP_KINDS", "SweepKind"]
