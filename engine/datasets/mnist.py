"""MNIST, Fashion-MNIST and KMNIST from the IDX files torchvision keeps in ``<root>/<Name>/raw/``
(``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each also as ``.gz``). The three share the format, so one reader.

IDX (LeCun's format): a big-endian header, magic 2051 for images (then count, rows, columns) or 2049
for labels (then count), then the uint8 values.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
from pathlib import Path

import numpy as np

from engine.datasets.base import DatasetError, DatasetInfo, image_dataset, reading

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGES, LABELS = 2051, 2049


def read_idx(path: Path, magic: int) -> np.ndarray:
    """One IDX file (``path`` or ``path.gz``), checked: magic number, dimensions, size."""
    if not path.exists() and path.with_name(path.name + ".gz").exists():
        path = path.with_name(path.name + ".gz")
    with reading(path, "an IDX file"):
        raw = bytearray(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes())  # writable: torch shares it
    n_dims = 3 if magic == IMAGES else 1
    header = 4 * (1 + n_dims)
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
        raise DatasetError(f"{path}: not an IDX {'image' if magic == IMAGES else 'label'} file "
                           f"(magic number {found}, expected {magic})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims))
    size = int(np.prod(dims))
    if len(raw) != header + size:
        raise DatasetError(f"{path}: {len(raw) - header} bytes of data for dimensions {dims} ({size} expected): "
                           "truncated or corrupt")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def load_idx(info: DatasetInfo, seed: int = 0, test_size: float = 0.25, root=None):
    """The IDX files' own train (60,000) and test (10,000) parts; ``seed`` and ``test_size`` do not apply."""
    folder = info.location(root) / Path(info.files[0]).parent
    parts = []
    for images, labels in ((FILES[0], FILES[1]), (FILES[2], FILES[3])):
        x, y = read_idx(folder / images, IMAGES), read_idx(folder / labels, LABELS)
        if len(x) != len(y):
            raise DatasetError(f"{folder / images}: {len(x)} images but {len(y)} labels in {labels}")
        parts.append((x[:, None], y))  # (N, 1, 28, 28)
    return image_dataset(info, parts[0], parts[1], folder)


def _info(name: str, title: str, folder: str, mean: float, std: float) -> DatasetInfo:
    info = DatasetInfo(
        name, title, (1, 28, 28), 10, 70_000, embedded=False, mean=(mean,), std=(std,),
        files=tuple(f"{folder}/raw/{f}" for f in FILES), gzip_ok=True,
        layout=f"the {title} IDX files ({folder}/raw/train-images-idx3-ubyte, train-labels-idx1-ubyte, "
               "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; .gz too)")
    return dataclasses.replace(info, load=functools.partial(load_idx, info))


# the usual per-channel statistics of each training set (pixels in [0, 1])
MNIST = _info("mnist", "MNIST", "MNIST", 0.1307, 0.3081)
FASHION_MNIST = _info("fashion_mnist", "Fashion-MNIST", "FashionMNIST", 0.2860, 0.3530)
KMNIST = _info("kmnist", "KMNIST", "KMNIST", 0.1918, 0.3483)
INFOS = (MNIST, FASHION_MNIST, KMNIST)
