from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the code needs to know of a dataset without loading it (config checks, cost
    estimates, the launch form): no table elsewhere repeats it."""

    name: str
    title: str
    input_shape: tuple[int, ...]   # one sample: (features,) for rows, (C, H, W) for images
    n_classes: int
    n_samples: int                 # train and test together, as the lab splits them (an estimate is fine)
    embedded: bool = True          # ships with a package (no data directory needed)


@dataclass
class Dataset:
    """A classification dataset already split: features as float32 rows, labels 0..n_classes-1."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    n_classes: int


def split_and_standardize(name: str, x: np.ndarray, y: np.ndarray, seed: int, test_size: float) -> Dataset:
    """A stratified train/test split fixed by ``seed``, standardized with the training part's
    mean and standard deviation only (the test part must not leak into the scaling)."""
    train_x, test_x, train_y, test_y = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    mean = train_x.mean(0)
    std = train_x.std(0)
    std[std == 0] = 1.0  # constant pixels (the digits' borders) stay 0 instead of dividing by 0
    return Dataset(
        name=name,
        train_x=((train_x - mean) / std).astype(np.float32),
        train_y=train_y.astype(np.int64),
        test_x=((test_x - mean) / std).astype(np.float32),
        test_y=test_y.astype(np.int64),
        n_classes=int(y.max()) + 1,
    )
