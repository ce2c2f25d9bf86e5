"""Dataset registry. A dataset is one file here with a ``load(seed, test_size) -> Dataset`` function;
adding one means adding its file and one line below."""

from __future__ import annotations

from engine.datasets.base import Dataset, DatasetInfo
from engine.datasets import digits, mnist1d

DATASETS = {
    "digits": digits.load,
    "mnist1d": mnist1d.load,
}

DATASET_INFO: dict[str, DatasetInfo] = {m.INFO.name: m.INFO for m in (digits, mnist1d)}

__all__ = ["DATASETS", "DATASET_INFO", "Dataset", "DatasetInfo"]
