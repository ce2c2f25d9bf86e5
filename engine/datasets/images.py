"""Decoding image files with Pillow, for the folder datasets (Tiny-ImageNet, image_folder)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from engine.datasets.base import DatasetError, reading

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def read_images(paths: list[Path], mode: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Every image as (N, C, H, W) uint8 in ``mode`` ("L" or "RGB"); all must have one size (``size``
    = (width, height) if given, else the first image's). Decoded in threads (Pillow releases the GIL)."""
    from PIL import Image

    def one(path: Path) -> np.ndarray:
        with reading(path, "an image"), Image.open(path) as image:
            image = image.convert(mode)
            if size is not None and image.size != size:
                raise DatasetError(f"{path}: the image is {image.size[0]}x{image.size[1]}, expected {size[0]}x{size[1]} "
                                   "like the others")
            return np.asarray(image, dtype=np.uint8)

    if size is None and paths:
        size = image_size(paths[0])
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        arrays = list(pool.map(one, paths))
    if not arrays:
        return np.zeros((0, 1 if mode == "L" else 3, *(size or (0, 0))[::-1]), np.uint8)
    x = np.stack(arrays)
    return x[:, None] if mode == "L" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with reading(path, "an image"), Image.open(path) as image:
        return image.size


def image_mode(paths: list[Path]) -> str:
    """"L" when every image is grayscale (stored as one channel), else "RGB". Reads headers only."""
    from PIL import Image

    for path in paths:
        with reading(path, "an image"), Image.open(path) as image:
            if image.mode not in ("L", "1", "I", "I;16", "F"):
                return "RGB"
    return "L"


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
