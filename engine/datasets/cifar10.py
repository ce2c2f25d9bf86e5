"""CIFAR-10, python version, as torchvision keeps it: ``<root>/cifar-10-batches-py/data_batch_1..5``
(train, 50,000 images) and ``test_batch`` (10,000), each a pickled dict with ``b"data"`` (N x 3072
uint8, the red, green then blue planes of a 32x32 image) and ``b"labels"`` (0..9).

The pickles are read with an unpickler that builds only dicts, lists and NumPy arrays backed by the
file's own bytes: a pickle from elsewhere cannot run code, nor reserve memory, when it is opened.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pickle
from pathlib import Path

import numpy as np

from engine.datasets.base import DatasetError, DatasetInfo, Header, counts_of, image_dataset, reading

FOLDER = "cifar-10-batches-py"
TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST = ("test_batch",)

# what a CIFAR pickle may name: NumPy's array reconstruction (old and new module paths), and the
# codec call protocol 2 uses for bytes when written from Python 3; nothing else
_ALLOWED = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                             "numpy._core.numeric", "numpy") for n in ("_reconstruct", "scalar", "ndarray", "dtype",
                                                                       "_frombuffer")} | {("_codecs", "encode")}


def _reconstruct(subtype, shape, dtype):
    """numpy's pickles make an array as an empty one (shape (0,)) that BUILD then fills with the file's
    bytes: any other shape would reserve memory that no byte of the file backs."""
    if math.prod(shape) != 0:
        raise pickle.UnpicklingError(f"refused to reserve an array of shape {tuple(shape)}: its bytes must be in the file")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


class _NoBareArray:
    """Stands for numpy.ndarray, which a pickle names only as _reconstruct's first argument: called
    itself (``ndarray(shape, dtype)``) it would reserve any size for a few bytes of pickle."""

    def __new__(cls, *args, **kwargs):
        raise pickle.UnpicklingError("refused to call numpy.ndarray: an array's bytes must be in the file")


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused to build {module}.{name}: a CIFAR batch holds only arrays and lists")
        return {"ndarray": _NoBareArray, "_reconstruct": _reconstruct}.get(name) or super().find_class(module, name)


def read_batch(path: Path, label_key: bytes, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch: images (N, 3, 32, 32) uint8 and labels, checked."""
    with reading(path, "a CIFAR python batch"), path.open("rb") as f:
        batch = _ArraysOnly(f, encoding="bytes").load()
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DatasetError(f"{path}: expected a dict with b'data' and {label_key!r} (found {keys})")
    x, y = batch[b"data"], batch[label_key]
    # a pickle repeats one object by reference for 2 bytes: a list of lists in a small file can ask
    # np.asarray for gigabytes. Images come as an array, whose bytes are in the file (the unpickler builds
    # no other); labels as an array or a list of plain integers (8 bytes each, for 2 or more in the file)
    if not isinstance(x, np.ndarray):
        raise DatasetError(f"{path}: b'data' is a {type(x).__name__}, expected a uint8 array N x 3072")
    if isinstance(y, list) and not all(type(v) is int for v in y):
        raise DatasetError(f"{path}: {label_key!r} must be a list of integers")
    y = np.asarray(y)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        raise DatasetError(f"{path}: b'data' is {x.dtype} {x.shape}, expected uint8 N x 3072")
    if y.shape != (len(x),):
        raise DatasetError(f"{path}: {len(x)} images but {label_key!r} has shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and (y.min() < 0 or y.max() >= n_classes)):
        raise DatasetError(f"{path}: {label_key!r} must be integers from 0 to {n_classes - 1}")
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64)


def header(info: DatasetInfo, label_key: bytes, n_train: int, seed: int = 0, test_size: float = 0.25, root=None):
    """Each part's class counts, from the labels: a pickle has no header to read, so the batches are read
    (their bytes are the file's own) and cached by the caller."""
    where = info.location(root)
    counts = []
    for names in (info.files[:n_train], info.files[n_train:]):
        y = np.concatenate([read_batch(where / name, label_key, info.n_classes)[1] for name in names])
        counts.append(counts_of(y, info.n_classes))
    return Header(info.input_shape, *counts)


def load_batches(info: DatasetInfo, label_key: bytes, n_train: int, seed: int = 0, test_size: float = 0.25, root=None):
    """The files' own train part (the first ``n_train`` of ``info.files``) and test part (the rest);
    ``seed`` and ``test_size`` do not apply."""
    where = info.location(root)
    parts = []
    for names in (info.files[:n_train], info.files[n_train:]):
        batches = [read_batch(where / name, label_key, info.n_classes) for name in names]
        parts.append((np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])))
    return image_dataset(info, parts[0], parts[1], where / Path(info.files[0]).parent)


INFO = DatasetInfo(
    "cifar10", "CIFAR-10", (3, 32, 32), 10, 60_000, embedded=False,
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), augment=("crop", "flip"),
    files=tuple(f"{FOLDER}/{f}" for f in TRAIN + TEST),
    layout=f"the CIFAR-10 python version ({FOLDER}/data_batch_1..5, test_batch)")
INFO = dataclasses.replace(INFO, load=functools.partial(load_batches, INFO, b"labels", len(TRAIN)),
                           header=functools.partial(header, INFO, b"labels", len(TRAIN)))
