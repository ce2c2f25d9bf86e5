"""MNIST-1D (Greydanus & Steinbach): 5,000 one-dimensional signals of 40 values, 10 classes, made
locally from the ``mnist1d`` package's ten digit templates (padding, scaling, translation, noise,
shear). A harder embedded dataset than the digits, for a reality check's second scenario.

No download: ``mnist1d.get_dataset`` fetches a pickle from GitHub by default, so this calls the
package's generator ``make_dataset`` with its default arguments (the canonical dataset, generation
seed 42) and never touches the network. Generation takes about a second; the arrays are cached in
memory (per process) and the split seed only changes the train/test split. ``make_dataset`` reseeds
numpy's and Python's global random generators; their states are restored afterwards.
"""

from __future__ import annotations

import functools
import os
import random

import numpy as np

from engine.datasets.base import Dataset, DatasetInfo, split_and_standardize

@functools.lru_cache(maxsize=1)
def generate() -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 signals (float64, 40 values) and labels, as the package's generator makes them."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # the package imports matplotlib.pyplot
    from mnist1d.data import get_dataset_args, make_dataset

    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float64)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def load(seed: int = 0, test_size: float = 0.25, root=None) -> Dataset:
    # make_dataset centres and scales the whole set by one scalar; the per-feature standardization on
    # the training part below makes that irrelevant (nothing of the test part leaks into the scaling).
    x, y = generate()
    return split_and_standardize("mnist1d", x, y, seed, test_size)


INFO = DatasetInfo("mnist1d", "MNIST-1D (generated, 40 values)", (40,), 10, 5000, load=load, own_split=False)
