"""Dataset registry. A dataset is one file here with a ``load(seed, test_size) -> Dataset`` function;
adding one means adding its file and one line below."""

from __future__ import annotations

from engine.datasets.base import Dataset
from engine.datasets import digits

DATASETS = {
    "digits": digits.load,
}

__all__ = ["DATASETS", "Dataset"]
