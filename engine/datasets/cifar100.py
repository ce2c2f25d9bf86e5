"""CIFAR-100, python version, as torchvision keeps it: ``<root>/cifar-100-python/train`` (50,000
images) and ``test`` (10,000), pickled dicts with ``b"data"`` (N x 3072 uint8), ``b"fine_labels"``
(100 classes) and ``b"coarse_labels"`` (20 superclasses). ``cifar100`` uses the fine labels,
``cifar100_coarse`` the coarse ones. Read as CIFAR-10 is (arrays only)."""

from __future__ import annotations

import dataclasses
import functools

from engine.datasets.base import DatasetInfo
from engine.datasets.cifar10 import header, load_batches

FOLDER = "cifar-100-python"


def _info(name: str, title: str, n_classes: int, label_key: bytes) -> DatasetInfo:
    info = DatasetInfo(
        name, title, (3, 32, 32), n_classes, 60_000, embedded=False,
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), augment=("crop", "flip"),
        files=(f"{FOLDER}/train", f"{FOLDER}/test"),
        layout=f"the CIFAR-100 python version ({FOLDER}/train, test)")
    return dataclasses.replace(info, load=functools.partial(load_batches, info, label_key, 1),
                               header=functools.partial(header, info, label_key, 1))


CIFAR100 = _info("cifar100", "CIFAR-100", 100, b"fine_labels")
CIFAR100_COARSE = _info("cifar100_coarse", "CIFAR-100 (20 superclasses)", 20, b"coarse_labels")
INFOS = (CIFAR100, CIFAR100_COARSE)
