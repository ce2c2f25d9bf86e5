"""SVHN (cropped digits) as torchvision keeps it: ``<root>/svhn/train_32x32.mat`` (73,257 images)
and ``test_32x32.mat`` (26,032), MATLAB files with ``X`` (32 x 32 x 3 x N, uint8) and ``y``
(N x 1, 1..10, where 10 is the digit 0). The extra set is not used. No horizontal flip (digits)."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from engine.datasets.base import DatasetError, DatasetInfo, image_dataset, reading

FOLDER = "svhn"
FILES = ("train_32x32.mat", "test_32x32.mat")


def read_mat(path) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    with reading(path, "a MATLAB (v5) file"):
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
    if "X" not in mat or "y" not in mat:
        raise DatasetError(f"{path}: expected variables X and y (found {', '.join(sorted(k for k in mat if not k.startswith('__'))) or 'none'})")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DatasetError(f"{path}: X is {x.dtype} {x.shape}, expected uint8 32 x 32 x 3 x N")
    y = y.reshape(-1)
    if len(y) != x.shape[3]:
        raise DatasetError(f"{path}: {x.shape[3]} images but {len(y)} labels")
    if not np.issubdtype(y.dtype, np.integer) and not np.array_equal(y, np.round(y)):
        raise DatasetError(f"{path}: y must hold whole numbers 1..10")
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise DatasetError(f"{path}: y must be from 1 to 10 (10 is the digit 0), found {y.min()} to {y.max()}")
    # (H, W, C, N) -> (N, C, H, W), as torchvision does; label 10 -> digit 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), (y.astype(np.int64) % 10)


def load(info: DatasetInfo, seed: int = 0, test_size: float = 0.25, root=None):
    folder = info.location(root) / FOLDER
    return image_dataset(info, read_mat(folder / FILES[0]), read_mat(folder / FILES[1]), folder)


INFO = DatasetInfo(
    "svhn", "SVHN", (3, 32, 32), 10, 99_289, embedded=False,
    mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), augment=("crop",),
    files=tuple(f"{FOLDER}/{f}" for f in FILES),
    layout=f"SVHN's cropped digits ({FOLDER}/train_32x32.mat, test_32x32.mat)")
INFO = dataclasses.replace(INFO, load=functools.partial(load, INFO))
