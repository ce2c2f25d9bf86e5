"""Any folder of class folders of images (``<root>/<class>/*.png|jpg|...``), read with Pillow; the
classes are the folder names in sorted order. With ``<root>/train/<class>/`` and
``<root>/test/<class>/`` that split is used, else a stratified split by ``scenario.seed`` and
``scenario.test_size``. Every image must have the first one's size; grayscale when every image is,
else RGB. Normalised with the training part's per-channel mean and std; no suggested augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.datasets.base import DatasetError, DatasetInfo, Header, check_size, counts_of, split_counts, split_images
from engine.datasets.images import EXTENSIONS, image_files, image_mode, image_size, read_images


def _classes(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _listing(folder: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    paths, labels = [], []
    for k, name in enumerate(classes):
        files = image_files(folder / name) if (folder / name).is_dir() else []
        paths += files
        labels += [k] * len(files)
    return paths, np.array(labels, np.int64)


def _survey(folder: Path):
    """The listing (no pixel decoded): paths and labels of the train part and the given test part (None:
    the lab splits), the mode and the first image's size; the whole set's size checked against the
    memory limits."""
    split = (folder / "train").is_dir() and (folder / "test").is_dir()
    classes = _classes(folder / "train" if split else folder)
    if len(classes) < 2:
        raise DatasetError(f"{folder}: found {len(classes)} class folder(s); needs at least 2 (one folder of images "
                           "a class)")
    paths, y = _listing(folder / "train" if split else folder, classes)
    test_paths, test_y = _listing(folder / "test", classes) if split else ([], None)
    if not len(y) or (split and not len(test_y)):
        raise DatasetError(f"{folder}: no images found in the class folders ({', '.join(sorted(EXTENSIONS))})")
    extra = sorted(set(_classes(folder / "test")) - set(classes)) if split else []
    if extra:
        raise DatasetError(f"{folder / 'test' / extra[0]}: a test class with no training folder")
    mode, size = image_mode(paths + test_paths), image_size(paths[0])
    channels, n = 1 if mode == "L" else 3, len(paths) + len(test_paths)
    check_size(folder, f"{n:,} images of {size[0]}x{size[1]} ({mode})", n * channels * size[0] * size[1])
    return (paths, y), ((test_paths, test_y) if split else None), mode, size


def header(seed: int = 0, test_size: float = 0.25, root=None) -> Header:
    folder = INFO.location(root)
    (_, y), test, mode, (width, height) = _survey(folder)
    n_classes = int(max(y.max(), test[1].max() if test else 0)) + 1
    train, held = (counts_of(y, n_classes), counts_of(test[1], n_classes)) if test else split_counts(y, seed, test_size, folder)
    return Header((1 if mode == "L" else 3, height, width), train, held)


def load(seed: int = 0, test_size: float = 0.25, root=None):
    folder = INFO.location(root)
    (paths, y), given, mode, size = _survey(folder)
    x = read_images(paths, mode, size)
    test = (read_images(given[0], mode, size), given[1]) if given else None
    return split_images("image_folder", x, y, seed, test_size, test, folder)


INFO = DatasetInfo(
    "image_folder", "Image folder (class folders of images)", None, None, 0, embedded=False, load=load, header=header,
    own_split=False, path_name="image_folder/",
    layout="give scenario.root = a folder with one folder of images per class (or train/ and test/ folders of them)")
