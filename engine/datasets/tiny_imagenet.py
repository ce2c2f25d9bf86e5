"""Tiny-ImageNet (Stanford CS231n) as unpacked from ``tiny-imagenet-200.zip``:
``<root>/tiny-imagenet-200/wnids.txt`` (200 WordNet ids), ``train/<wnid>/images/*.JPEG`` (500 64x64
images a class) and ``val/images/*.JPEG`` with ``val/val_annotations.txt`` (file, wnid, box). The
labelled validation set is the test part (the test set has no labels), as in the CL literature.
Class k is the k-th wnid in sorted order (as an image-folder reader orders class folders).
Decoding 110,000 JPEGs takes a while at a run's start; the arrays stay cached in a worker."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from engine.datasets.base import DatasetError, DatasetInfo, image_dataset, reading
from engine.datasets.images import image_files, read_images

FOLDER = "tiny-imagenet-200"


def load(info: DatasetInfo, seed: int = 0, test_size: float = 0.25, root=None):
    folder = info.location(root) / FOLDER
    with reading(folder / "wnids.txt", "a list of WordNet ids"):
        wnids = sorted({line.strip() for line in (folder / "wnids.txt").read_text().splitlines() if line.strip()})
    if len(wnids) != info.n_classes:
        raise DatasetError(f"{folder / 'wnids.txt'}: {len(wnids)} class ids, expected {info.n_classes}")
    label = {w: k for k, w in enumerate(wnids)}
    train_paths, train_y = [], []
    for wnid in wnids:
        images = folder / "train" / wnid / "images"
        if not images.is_dir():
            raise DatasetError(f"{images} not found: every class in wnids.txt needs its training images there")
        paths = image_files(images)
        train_paths += paths
        train_y += [label[wnid]] * len(paths)
    test_paths, test_y = [], []
    annotations = folder / "val" / "val_annotations.txt"
    with reading(annotations, "Tiny-ImageNet validation annotations"):
        lines = annotations.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or fields[1] not in label:
            raise DatasetError(f"{annotations}: line {number} must be FILE<TAB>WNID with a wnid of wnids.txt")
        test_paths.append(folder / "val" / "images" / fields[0])
        test_y.append(label[fields[1]])
    size = (info.input_shape[2], info.input_shape[1])
    train = (read_images(train_paths, "RGB", size), np.array(train_y, np.int64))
    test = (read_images(test_paths, "RGB", size), np.array(test_y, np.int64))
    return image_dataset(info, train, test, folder)


INFO = DatasetInfo(
    "tiny_imagenet", "Tiny-ImageNet (64x64, 200 classes)", (3, 64, 64), 200, 110_000, embedded=False,
    mean=(0.4802, 0.4481, 0.3975), std=(0.2770, 0.2691, 0.2821), augment=("crop", "flip"),
    files=(f"{FOLDER}/wnids.txt", f"{FOLDER}/train", f"{FOLDER}/val/images", f"{FOLDER}/val/val_annotations.txt"),
    layout=f"Tiny-ImageNet unzipped ({FOLDER}/wnids.txt, train/<wnid>/images/*.JPEG, val/images, "
           "val/val_annotations.txt)")
INFO = dataclasses.replace(INFO, load=functools.partial(load, INFO))
