"""A NumPy ``.npz`` file with ``x`` (samples) and ``y`` (integer labels 0..K-1), and optionally
``x_test``/``y_test`` (else a stratified split by ``scenario.seed``). ``x`` of shape (N, D) is rows
(standardised per feature on the training part); (N, H, W) grayscale images; (N, H, W, C) images with
C = 1, 3 or 4 channels last (as NumPy and Pillow keep them), uint8 (0..255) or float. Read with
``allow_pickle=False``: a file cannot run code. Each array's header is read first and its declared size
checked against its zip entry and the memory limits, so a small file cannot ask for gigabytes."""

from __future__ import annotations

import math
import zipfile

import numpy as np

from engine.datasets.base import (DatasetError, DatasetInfo, Header, check_labels, check_size, counts_of, reading,
                                  split_and_standardize, split_counts, split_images, standardize)

KEYS = ("x", "y", "x_test", "y_test")


def _images(x: np.ndarray, where, key: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[3] in (1, 3, 4):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    raise DatasetError(f"{where}: {key} has shape {x.shape}; expected (N, D) rows, (N, H, W) or (N, H, W, C) "
                       "images with C = 1, 3 or 4")


def sample_shape(shape: tuple[int, ...], where, key: str = "x") -> tuple[int, ...]:
    """One sample's shape as the model gets it: (D,) rows, (C, H, W) images."""
    if len(shape) == 2:
        return shape[1:]
    return _images(np.empty((0, *shape[1:]), np.uint8), where, key).shape[1:]


def declared_arrays(path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The shape and dtype of x, y, x_test and y_test from their .npy headers, each checked against its
    zip entry (its bytes must be there) and the memory limits; nothing of the data is read."""
    arrays = {}
    with reading(path, "a NumPy .npz file"), zipfile.ZipFile(path) as zf:
        found = [entry.filename.removesuffix(".npy") for entry in zf.infolist()]
        for entry in zf.infolist():
            key = entry.filename.removesuffix(".npy")
            if key not in KEYS or entry.filename == key:
                continue
            with zf.open(entry) as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _fortran, dtype = read(f)
                header = f.tell()
            if dtype.hasobject:
                raise ValueError(f"{key} holds Python objects; allow_pickle=False")
            declared = math.prod(shape) * dtype.itemsize
            if declared > entry.file_size - header:
                raise DatasetError(f"{path}: {key} declares {shape} {dtype} ({declared:,} bytes) in an entry of "
                                   f"{entry.file_size - header:,}: truncated or corrupt")
            deflated = entry.compress_type != zipfile.ZIP_STORED
            check_size(path, f"{key} {shape}", declared, entry.compress_size if deflated else None)
            arrays[key] = shape, dtype
    _check_layout(path, arrays, found)
    return arrays


def _check_layout(path, arrays: dict, found) -> None:
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise DatasetError(f"{path}: no array {missing[0]!r} (found {', '.join(found) or 'none'}); needs x and y")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DatasetError(f"{path}: x_test and y_test come together")
    for key, labels in (("x", "y"), ("x_test", "y_test")):
        if key not in arrays:
            continue
        (shape, dtype), n_labels = arrays[key], (arrays[labels][0] or (0,))[0]
        if dtype.kind not in "uif" or len(shape) < 2 or shape[0] != n_labels or shape[0] == 0:
            raise DatasetError(f"{path}: {key} must be a numeric array of N samples with N labels "
                               f"(got {dtype} {shape}, {n_labels} labels)")
    if "x_test" in arrays and (arrays["x_test"][0][1:] != arrays["x"][0][1:] or arrays["x_test"][1] != arrays["x"][1]):
        (shape, dtype), (test_shape, test_dtype) = arrays["x"], arrays["x_test"]
        raise DatasetError(f"{path}: x_test samples are {test_dtype} {test_shape[1:]}, x samples "
                           f"{dtype} {shape[1:]}: they must match")
    sample_shape(arrays["x"][0], path)


def _labels(path, test: bool) -> tuple[np.ndarray, np.ndarray | None, int]:
    """y (and y_test), checked, and the number of classes."""
    with reading(path, "a NumPy .npz file"), np.load(path, allow_pickle=False) as f:
        y, y_test = f["y"], (f["y_test"] if test else None)
    n_classes = int(max(y.max(initial=0), y_test.max(initial=0) if test else 0)) + 1
    check_labels(y, n_classes, path, "y")
    if test:
        check_labels(y_test, n_classes, path, "y_test")
    return y, y_test, n_classes


def header(seed: int = 0, test_size: float = 0.25, root=None) -> Header:
    """x's shape from its .npy header and the labels (small): no sample is read."""
    path = INFO.location(root)
    arrays = declared_arrays(path)
    y, y_test, n_classes = _labels(path, "x_test" in arrays)
    if y_test is None:
        train, test = split_counts(y, seed, test_size, path)
    else:
        train, test = counts_of(y, n_classes), counts_of(y_test, n_classes)
    shape, dtype = arrays["x"]
    return Header(sample_shape(shape, path), train, test, len(shape) > 2 and dtype == np.uint8)


def load(seed: int = 0, test_size: float = 0.25, root=None):
    path = INFO.location(root)
    present = declared_arrays(path)
    y, _, n_classes = _labels(path, "x_test" in present)
    with reading(path, "a NumPy .npz file"), np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in present}
    x = arrays["x"]
    test = (arrays["x_test"], arrays["y_test"]) if "x_test" in arrays else None
    for key, a in {"x": x, **({"x_test": test[0]} if test else {})}.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise DatasetError(f"{path}: {key} has NaN or infinite values")
    if x.ndim == 2:  # rows
        x = x.astype(np.float64)
        if test is None:
            try:
                return split_and_standardize("npz", x, y, seed, test_size)
            except ValueError as err:
                raise DatasetError(f"{path}: cannot hold out {test_size:g} of each class ({err})") from None
        return standardize("npz", x, y, test[0].astype(np.float64), test[1], n_classes)
    as_image = lambda a: a if a.dtype == np.uint8 else a.astype(np.float32)  # noqa: E731
    x = as_image(_images(x, path, "x"))
    if test:
        test = (as_image(_images(test[0], path, "x_test")), test[1])
    return split_images("npz", x, y, seed, test_size, test, path)


INFO = DatasetInfo(
    "npz", "NumPy file (x, y)", None, None, 0, embedded=False, load=load, header=header, own_split=False,
    path_name="dataset.npz",
    layout="give scenario.root = a .npz file with arrays x and y (optionally x_test and y_test)")
