"""A NumPy ``.npz`` file with ``x`` (samples) and ``y`` (integer labels 0..K-1), and optionally
``x_test``/``y_test`` (else a stratified split by ``scenario.seed``). ``x`` of shape (N, D) is rows
(standardised per feature on the training part); (N, H, W) grayscale images; (N, H, W, C) images with
C = 1, 3 or 4 channels last (as NumPy and Pillow keep them), uint8 (0..255) or float. Read with
``allow_pickle=False``: a file cannot run code."""

from __future__ import annotations

import numpy as np

from engine.datasets.base import DatasetError, DatasetInfo, check_labels, reading, split_images, split_and_standardize, standardize


def _images(x: np.ndarray, where, key: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[3] in (1, 3, 4):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    raise DatasetError(f"{where}: {key} has shape {x.shape}; expected (N, D) rows, (N, H, W) or (N, H, W, C) "
                       "images with C = 1, 3 or 4")


def load(seed: int = 0, test_size: float = 0.25, root=None):
    path = INFO.location(root)
    with reading(path, "a NumPy .npz file"), np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("x", "y") if k not in f.files]
        if missing:
            raise DatasetError(f"{path}: no array {missing[0]!r} (found {', '.join(f.files) or 'none'}); needs x and y")
        if ("x_test" in f.files) != ("y_test" in f.files):
            raise DatasetError(f"{path}: x_test and y_test come together")
        arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test") if k in f.files}
    x, y = arrays["x"], arrays["y"]
    test = (arrays["x_test"], arrays["y_test"]) if "x_test" in arrays else None
    for key, (a, b) in {"x": (x, y), **({"x_test": test} if test else {})}.items():
        if a.dtype.kind not in "uif" or a.ndim < 2 or len(a) != len(b) or len(a) == 0:
            raise DatasetError(f"{path}: {key} must be a numeric array of N samples with N labels "
                               f"(got {a.dtype} {a.shape}, {len(b)} labels)")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise DatasetError(f"{path}: {key} has NaN or infinite values")
    n_classes = int(max(y.max(initial=0), test[1].max(initial=0) if test else 0)) + 1
    check_labels(y, n_classes, path, "y")
    if test:
        check_labels(test[1], n_classes, path, "y_test")
        if test[0].shape[1:] != x.shape[1:] or test[0].dtype != x.dtype:
            raise DatasetError(f"{path}: x_test samples are {test[0].dtype} {test[0].shape[1:]}, x samples "
                               f"{x.dtype} {x.shape[1:]}: they must match")
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
    "npz", "NumPy file (x, y)", None, None, 0, embedded=False, load=load, own_split=False, path_name="dataset.npz",
    layout="give scenario.root = a .npz file with arrays x and y (optionally x_test and y_test)")
