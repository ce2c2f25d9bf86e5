"""SVHN (cropped digits) as torchvision keeps it: ``<root>/svhn/train_32x32.mat`` (73,257 images)
and ``test_32x32.mat`` (26,032), MATLAB files with ``X`` (32 x 32 x 3 x N, uint8) and ``y``
(N x 1, 1..10, where 10 is the digit 0). The extra set is not used. No horizontal flip (digits)."""

from __future__ import annotations

import dataclasses
import functools
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from engine.datasets.base import DatasetError, DatasetInfo, Header, check_size, counts_of, image_dataset, reading

FOLDER = "svhn"
FILES = ("train_32x32.mat", "test_32x32.mat")


# bytes of one value of each MATLAB numeric class (mxDOUBLE_CLASS = 6 ... mxUINT64_CLASS = 15)
ITEM_BYTES = {6: 8, 7: 4, 8: 1, 9: 1, 10: 2, 11: 2, 12: 4, 13: 4, 14: 8, 15: 8}
MI_MATRIX, MI_COMPRESSED = 14, 15


def mat_variables(path: Path) -> dict[str, tuple[tuple[int, ...], int]]:
    """Each variable's dimensions and bytes as a MATLAB v5 file's headers declare them, read without
    decompressing more than a variable's first bytes (scipy's reader inflates whole blocks, and loads a
    variable at the size it declares). Checked against the file's size and the memory limits."""
    variables = {}
    with reading(path, "a MATLAB (v5) file"), path.open("rb") as f:
        head = f.read(128)
        order = {b"IM": "<", b"MI": ">"}.get(head[126:128])
        if len(head) < 128 or order is None:
            raise ValueError("no MATLAB 5 header")
        while len(tag := f.read(8)) == 8:
            kind, size = struct.unpack(order + "II", tag)
            start = f.tell()
            if kind == MI_COMPRESSED:  # a zlib stream holding one miMATRIX element: inflate its first 512 bytes
                element = zlib.decompressobj().decompress(f.read(min(size, 65536)), 512)
            else:
                element = tag + f.read(min(size, 512))
            f.seek(start + size)
            if len(element) < 40 or struct.unpack(order + "I", element[:4])[0] != MI_MATRIX:
                continue  # not an array (a subsystem's data): not read
            flags, n_dims = struct.unpack(order + "I", element[16:20])[0], struct.unpack(order + "I", element[28:32])[0] // 4
            dims = struct.unpack(f"{order}{n_dims}i", element[32:32 + 4 * n_dims])
            at = 32 + (4 * n_dims + 7) // 8 * 8
            name_tag = struct.unpack(order + "I", element[at:at + 4])[0]
            if name_tag >> 16:  # the small element format: length in the upper half, name in the same 8 bytes
                name = element[at + 4:at + 4 + (name_tag >> 16)]
            else:
                name = element[at + 8:at + 8 + struct.unpack(order + "I", element[at + 4:at + 8])[0]]
            declared = math.prod(dims) * ITEM_BYTES.get(flags & 0xFF, 8) * (2 if flags & 0x800 else 1)  # complex: x2
            name = name.decode("latin-1")
            if kind != MI_COMPRESSED and declared > size:
                raise DatasetError(f"{path}: {name} declares {declared:,} bytes in an element of {size:,}: truncated "
                                   "or corrupt")
            check_size(path, f"{name} {dims}", declared, size if kind == MI_COMPRESSED else None)
            variables[name] = dims, declared
    return variables


def read_mat(path) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    mat_variables(path)  # sizes checked before scipy allocates them
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


def header(info: DatasetInfo, seed: int = 0, test_size: float = 0.25, root=None) -> Header:
    """The images' count from X's declared dimensions, the class counts from y (small)."""
    import scipy.io

    folder = info.location(root) / FOLDER
    counts = []
    for name in FILES:
        path = folder / name
        dims = mat_variables(path).get("X", ((),))[0]
        if tuple(dims[:3]) != (32, 32, 3) or len(dims) != 4:
            raise DatasetError(f"{path}: X is {dims}, expected 32 x 32 x 3 x N")
        with reading(path, "a MATLAB (v5) file"):
            y = scipy.io.loadmat(path, variable_names=("y",)).get("y", np.zeros(0)).reshape(-1)
        if len(y) != dims[3] or not np.array_equal(y, np.round(y)) or (len(y) and (y.min() < 1 or y.max() > 10)):
            raise DatasetError(f"{path}: y must be one label from 1 to 10 an image ({dims[3]} images, {len(y)} labels)")
        counts.append(counts_of(y.astype(np.int64) % 10, info.n_classes))
    return Header(info.input_shape, *counts)


def load(info: DatasetInfo, seed: int = 0, test_size: float = 0.25, root=None):
    folder = info.location(root) / FOLDER
    return image_dataset(info, read_mat(folder / FILES[0]), read_mat(folder / FILES[1]), folder)


INFO = DatasetInfo(
    "svhn", "SVHN", (3, 32, 32), 10, 99_289, embedded=False,
    mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), augment=("crop",),
    files=tuple(f"{FOLDER}/{f}" for f in FILES),
    layout=f"SVHN's cropped digits ({FOLDER}/train_32x32.mat, test_32x32.mat)")
INFO = dataclasses.replace(INFO, load=functools.partial(load, INFO), header=functools.partial(header, INFO))
