from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data"  # data/ beside the app
# A compressed file (gzip, a deflated .npz member, a compressed .mat variable) may declare at most this many
# times its own size: real image data packs 1-10x, a file of zeros built to exhaust memory ~1000x.
# Below EXPANSION_FLOOR any ratio passes: a small dataset cannot exhaust memory.
MAX_EXPANSION = 100
EXPANSION_FLOOR = 256 * 1024 ** 2


class DatasetError(ValueError):
    """A dataset's files are missing, truncated or not in the expected format: one line saying which
    file and what is wrong."""


def data_dir(root: str | os.PathLike | None = None) -> Path:
    """Where the data files are looked for: ``scenario.root``, else ``$CL_LAB_DATA``, else ``data/``
    beside the app."""
    chosen = root if root not in (None, "") else os.environ.get("CL_LAB_DATA") or DEFAULT_DATA_DIR
    return Path(chosen).expanduser()


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the code needs to know of a dataset without loading it (config checks, cost
    estimates, the launch form, the model's input): no table elsewhere repeats it."""

    name: str
    title: str
    input_shape: tuple[int, ...] | None  # one sample: (features,) for rows, (C, H, W) for images; None: from the files
    n_classes: int | None                # None: from the files (the generic datasets)
    n_samples: int                       # train and test together (an estimate is fine; 0: unknown)
    embedded: bool = True                # ships with a package (no data directory needed)
    load: Callable[..., "Dataset"] | None = field(default=None, repr=False)  # load(seed=, test_size=, root=)
    # per-channel mean and std of the pixels scaled to [0, 1] (the values the literature uses); None:
    # rows standardised when loaded, or statistics of the training part (the generic datasets)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    augment: tuple[str, ...] = ()        # suggested training augmentations (engine/augment.py)
    files: tuple[str, ...] = ()          # the files it needs, relative to the data directory
    gzip_ok: bool = False                # a file may also be there as FILE.gz
    layout: str = ""                     # what to put where, for the message when a file is missing
    path_name: str = ""                  # generic datasets: scenario.root is the data itself; this is its default name
    own_split: bool = True               # comes with a train/test split (else the lab splits it by scenario.seed)
    # folders where a system package installs the files flat, by their base names, looked in when the data
    # directory lacks them (Debian's dataset-fashion-mnist: /usr/share/datasets/fashion-mnist/)
    system_dirs: tuple[str, ...] = ()
    install_hint: str = ""               # how a system package provides the files, for the missing message
    # header(seed=, test_size=, root=) -> Header: what the files hold, read cheaply (no pixels); None: as declared
    header: Callable[..., "Header"] | None = field(default=None, repr=False)

    @property
    def is_image(self) -> bool:
        return self.input_shape is None or len(self.input_shape) == 3

    def location(self, root: str | os.PathLike | None = None) -> Path:
        """The data directory, or for a generic dataset the folder or file itself."""
        if self.path_name:
            return Path(root).expanduser() if root not in (None, "") else data_dir() / self.path_name
        return data_dir(root)

    def ready(self, root: str | os.PathLike | None = None) -> tuple[bool, str]:
        """Whether its files are there (only ``stat``: nothing is read), and a one-line message: where
        they were found, or which file is missing, where it was looked for and what to put there."""
        if self.embedded:
            return True, "embedded (no files needed)"
        where = self.location(root)
        if self.path_name:  # a trailing "/": the data is a folder, else a file
            if not _stat(where, Path.is_dir if self.path_name.endswith("/") else Path.is_file):
                return False, f"{where} not found; {self.layout}"
            return True, f"found: {where}"
        paths = self.file_paths(root)
        for path in paths:
            if not self._present(path):
                return False, (f"{path} not found; put {self.layout} there or set scenario.root / CL_LAB_DATA"
                               f"{self.install_hint}")
        found = paths[0].parent if paths and not str(paths[0]).startswith(str(where)) else where
        return True, f"found in {found}"

    def _present(self, path: Path) -> bool:
        return _stat(path, Path.exists) or (self.gzip_ok and _stat(path.with_name(path.name + ".gz"), Path.exists))

    def file_paths(self, root: str | os.PathLike | None = None) -> list[Path]:
        """Where each of ``files`` is: in the data directory, else, when the data directory lacks one of
        them, in the first of ``system_dirs`` that holds them all (by their base names)."""
        in_data_dir = [self.location(root) / rel for rel in self.files]
        if all(self._present(p) for p in in_data_dir):
            return in_data_dir
        for folder in self.system_dirs:
            flat = [Path(folder) / Path(rel).name for rel in self.files]
            if all(self._present(p) for p in flat):
                return flat
        return in_data_dir


def _stat(path: Path, test) -> bool:
    try:
        return test(path)
    except (OSError, ValueError):  # a name too long, no permission, a NUL byte: not usable either
        return False


@dataclass(frozen=True)
class Header:
    """What a dataset's files hold, read without decoding them (headers, labels, a folder's listing): the
    config check's input shape and classes, and the cost estimate's sizes. Counts are after the split the
    run will make."""

    input_shape: tuple[int, ...]
    train_counts: tuple[int, ...]  # training samples of each class 0..K-1
    test_counts: tuple[int, ...]
    pixels: bool = True            # stored as uint8 (images from files), else float32

    @property
    def n_classes(self) -> int:
        return len(self.train_counts)


def declared_header(info: DatasetInfo, test_size: float) -> Header:
    """A dataset's header from what ``info`` declares: classes of equal size."""
    per_class = info.n_samples / info.n_classes
    n_train, n_test = round(per_class * (1 - test_size)), round(per_class * test_size)
    return Header(tuple(info.input_shape), (n_train,) * info.n_classes, (n_test,) * info.n_classes,
                  len(info.input_shape) == 3)


def counts_of(y: np.ndarray, n_classes: int) -> tuple[int, ...]:
    return tuple(int(c) for c in np.bincount(y, minlength=n_classes))


def split_counts(y: np.ndarray, seed: int, test_size: float, where) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Each class's train and test counts after the stratified split ``split_images`` and
    ``split_and_standardize`` make (the split depends on the labels only, so the counts are exact)."""
    n_classes = int(y.max()) + 1
    try:
        train_y, test_y = _train_test_split(y, test_size=test_size, random_state=seed, stratify=y)
    except ValueError as err:  # too few samples of a class to hold some out
        raise DatasetError(f"{where}: cannot hold out {test_size:g} of each class ({err})") from None
    return counts_of(train_y, n_classes), counts_of(test_y, n_classes)


def check_size(path, what: str, declared: int, stored: int | None = None) -> None:
    """Refuse, before anything is allocated, ``what`` (e.g. "images (60000, 28, 28)") in the file ``path``
    declaring more bytes than a run may take here, or (``stored``: its compressed size) more than a
    compressed file of real data can hold."""
    from engine.core.limits import limits, machine_memory

    fraction, machine = limits().max_memory_fraction, machine_memory()
    if declared > fraction * machine:
        raise DatasetError(f"{path}: {what} declares {_human(declared)}, more than a run may take here "
                           f"({_human(fraction * machine)}: limits.max_memory_fraction {fraction:g} of {_human(machine)})")
    if stored is not None and declared > max(EXPANSION_FLOOR, MAX_EXPANSION * stored):
        raise DatasetError(f"{path}: {what} declares {_human(declared)} from {_human(stored)} compressed "
                           f"({declared / max(stored, 1):,.0f}x; real data packs at most {MAX_EXPANSION}x): "
                           "a decompression bomb, not read")


def _human(n: float) -> str:
    for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} bytes"


@dataclass
class Dataset:
    """A classification dataset already split, labels 0..n_classes-1. Rows: float32 features,
    standardised. Images: (N, C, H, W), uint8 (or float32), normalised per batch with ``mean`` and
    ``std`` (per channel, of the pixels scaled to [0, 1] for uint8)."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    n_classes: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


def split_and_standardize(name: str, x: np.ndarray, y: np.ndarray, seed: int, test_size: float) -> Dataset:
    """A stratified train/test split fixed by ``seed``, standardized with the training part's
    mean and standard deviation only (the test part must not leak into the scaling)."""
    train_x, test_x, train_y, test_y = _train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    return standardize(name, train_x, train_y, test_x, test_y, int(y.max()) + 1)


def standardize(name, train_x, train_y, test_x, test_y, n_classes) -> Dataset:
    """Rows scaled by the training part's per-feature mean and standard deviation."""
    mean = train_x.mean(0)
    std = train_x.std(0)
    std[std == 0] = 1.0  # constant pixels (the digits' borders) stay 0 instead of dividing by 0
    return Dataset(
        name=name,
        train_x=((train_x - mean) / std).astype(np.float32),
        train_y=train_y.astype(np.int64),
        test_x=((test_x - mean) / std).astype(np.float32),
        test_y=test_y.astype(np.int64),
        n_classes=n_classes,
    )


def image_dataset(info: DatasetInfo, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                  where: Path) -> Dataset:
    """A file dataset's own split, checked against what ``info`` declares (shape, labels, dtype)."""
    for part, (x, y) in (("train", train), ("test", test)):
        if x.dtype != np.uint8 or x.shape[1:] != info.input_shape:
            raise DatasetError(f"{where}: {part} images are {x.dtype} {tuple(x.shape[1:])}, expected uint8 "
                               f"{info.input_shape}")
        if len(x) != len(y) or len(y) == 0:
            raise DatasetError(f"{where}: {part} part has {len(x)} images and {len(y)} labels")
        check_labels(y, info.n_classes, where, part)
    return Dataset(info.name, train[0], train[1].astype(np.int64), test[0], test[1].astype(np.int64),
                   info.n_classes, info.mean, info.std)


def check_labels(y: np.ndarray, n_classes: int, where, part: str = "") -> None:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{where}: {part} labels must be one integer a sample (got {y.dtype} {y.shape})".replace(":  ", ": "))
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise DatasetError(f"{where}: {part} labels must be from 0 to {n_classes - 1} (found {y.min()} to {y.max()})"
                           .replace(":  ", ": "))


def split_images(name: str, x: np.ndarray, y: np.ndarray, seed: int, test_size: float,
                 test: tuple[np.ndarray, np.ndarray] | None, where) -> Dataset:
    """A generic image set (N, C, H, W): its given test part, else a stratified split fixed by ``seed``;
    the normalisation is the training part's per-channel mean and std."""
    if test is None:
        try:
            x, test_x, y, test_y = _train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
        except ValueError as err:  # too few samples of a class to hold some out
            raise DatasetError(f"{where}: cannot hold out {test_size:g} of each class ({err})") from None
    else:
        test_x, test_y = test
    n_classes = int(max(y.max(), test_y.max())) + 1
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    mean = tuple(float(m) / scale for m in x.mean((0, 2, 3), dtype=np.float64))
    std = tuple(max(float(s) / scale, 1e-6) for s in x.std((0, 2, 3), dtype=np.float64))
    return Dataset(name, x, y.astype(np.int64), test_x, test_y.astype(np.int64), n_classes, mean, std)


@contextlib.contextmanager
def reading(path: Path, what: str):
    """Turn any failure to read or decode ``path`` into one ``DatasetError`` line."""
    try:
        yield
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"{path} not found") from None
    except Exception as err:  # corrupt or truncated files fail in many ways (zlib, pickle, EOF, PIL)
        raise DatasetError(f"{path}: cannot be read as {what} ({type(err).__name__}: {err})".rstrip()) from None


def _train_test_split(*arrays, **options):
    """sklearn's stratified split, imported when a dataset is split: importing sklearn takes about 1 s,
    which every CLI command, worker and page server would pay at start."""
    from sklearn.model_selection import train_test_split

    return train_test_split(*arrays, **options)
