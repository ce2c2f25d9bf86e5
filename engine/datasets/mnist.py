"""MNIST, Fashion-MNIST and KMNIST from the IDX files torchvision keeps in ``<root>/<Name>/raw/``
(``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each also as ``.gz``). The three share the format, so one reader.
Fashion-MNIST is also found where Debian's ``dataset-fashion-mnist`` package puts it.

IDX (LeCun's format): a big-endian header, magic 2051 for images (then count, rows, columns) or 2049
for labels (then count), then the uint8 values.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import math
from pathlib import Path

import numpy as np

from engine.datasets.base import (DatasetError, DatasetInfo, Header, check_labels, check_size, counts_of, image_dataset,
                                  reading)

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGES, LABELS = 2051, 2049


def _gz_or_raw(path: Path) -> Path:
    if not path.exists() and path.with_name(path.name + ".gz").exists():
        return path.with_name(path.name + ".gz")
    return path


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def idx_dims(path: Path, magic: int) -> tuple[Path, tuple[int, ...]]:
    """The file (``path`` or ``path.gz``) and the dimensions its header declares, checked against the
    file's size (a .gz: how far it can expand) and the memory limits before anything is allocated."""
    path = _gz_or_raw(path)
    n_dims = 3 if magic == IMAGES else 1
    header = 4 * (1 + n_dims)
    with reading(path, "an IDX file"), _open(path) as f:
        raw = f.read(header)
        stored = path.stat().st_size
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
        raise DatasetError(f"{path}: not an IDX {'image' if magic == IMAGES else 'label'} file "
                           f"(magic number {found}, expected {magic})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims))
    size = math.prod(dims)
    if path.suffix != ".gz" and stored != header + size:
        raise DatasetError(f"{path}: {stored - header} bytes of data for dimensions {dims} ({size} expected): "
                           "truncated or corrupt")
    check_size(path, f"{'images' if magic == IMAGES else 'labels'} {dims}", size, stored if path.suffix == ".gz" else None)
    return path, dims


def read_idx(path: Path, magic: int) -> np.ndarray:
    """One IDX file (``path`` or ``path.gz``), checked: magic number, dimensions, size; never more is read
    than the header declares."""
    path, dims = idx_dims(path, magic)
    size = math.prod(dims)
    data = bytearray(size)  # writable: torch shares it
    got, view = 0, memoryview(data)
    with reading(path, "an IDX file"), _open(path) as f:
        f.read(4 * (1 + len(dims)))
        while got < size and (n := f.readinto(view[got:])):
            got += n
        more = bool(f.read(1))
    if got != size or more:
        raise DatasetError(f"{path}: {'more than ' * more}{got} bytes of data for dimensions {dims} ({size} expected): "
                           "truncated or corrupt")
    return np.frombuffer(data, np.uint8).reshape(dims)


def load_idx(info: DatasetInfo, seed: int = 0, test_size: float = 0.25, root=None):
    """The IDX files' own train (60,000) and test (10,000) parts; ``seed`` and ``test_size`` do not apply."""
    folder = info.file_paths(root)[0].parent
    parts = []
    for images, labels in ((FILES[0], FILES[1]), (FILES[2], FILES[3])):
        x, y = read_idx(folder / images, IMAGES), read_idx(folder / labels, LABELS)
        if len(x) != len(y):
            raise DatasetError(f"{folder / images}: {len(x)} images but {len(y)} labels in {labels}")
        parts.append((x[:, None], y))  # (N, 1, 28, 28)
    return image_dataset(info, parts[0], parts[1], folder)


def header(info: DatasetInfo, seed: int = 0, test_size: float = 0.25, root=None) -> Header:
    """The images' dimensions from their headers, and the labels (small) for each class's count."""
    folder = info.file_paths(root)[0].parent
    counts = []
    for images, labels in ((FILES[0], FILES[1]), (FILES[2], FILES[3])):
        (n, rows, cols), y = idx_dims(folder / images, IMAGES)[1], read_idx(folder / labels, LABELS)
        if n != len(y):
            raise DatasetError(f"{folder / images}: {n} images but {len(y)} labels in {labels}")
        check_labels(y, info.n_classes, folder, "train" if images == FILES[0] else "test")
        counts.append(counts_of(y, info.n_classes))
    return Header((1, rows, cols), counts[0], counts[1])


def _info(name: str, title: str, folder: str, mean: float, std: float, system_dirs=()) -> DatasetInfo:
    """``system_dirs``: (folder, how to get the files there) for each system package that installs them."""
    info = DatasetInfo(
        name, title, (1, 28, 28), 10, 70_000, embedded=False, mean=(mean,), std=(std,),
        files=tuple(f"{folder}/raw/{f}" for f in FILES), gzip_ok=True, system_dirs=tuple(d for d, _ in system_dirs),
        install_hint="".join(f"; or {how}, which puts them in {d}/" for d, how in system_dirs),
        layout=f"the {title} IDX files ({folder}/raw/train-images-idx3-ubyte, train-labels-idx1-ubyte, "
               "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; .gz too)")
    return dataclasses.replace(info, load=functools.partial(load_idx, info), header=functools.partial(header, info))


# the usual per-channel statistics of each training set (pixels in [0, 1])
MNIST = _info("mnist", "MNIST", "MNIST", 0.1307, 0.3081)
# Debian's dataset-fashion-mnist installs the four .gz files here (apt-get install dataset-fashion-mnist)
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST = _info("fashion_mnist", "Fashion-MNIST", "FashionMNIST", 0.2860, 0.3530,
                      system_dirs=((DEBIAN_FASHION_MNIST, "apt-get install dataset-fashion-mnist"),))
KMNIST = _info("kmnist", "KMNIST", "KMNIST", 0.1918, 0.3483)
INFOS = (MNIST, FASHION_MNIST, KMNIST)
