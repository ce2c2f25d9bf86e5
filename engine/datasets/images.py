"""Decoding image files with Pillow, for the folder datasets (Tiny-ImageNet, image_folder).

Pillow only warns for an image over ``PIL.Image.MAX_IMAGE_PIXELS`` (89.5 million pixels, about 9,459
square) and refuses one only at twice that: here its warning is an error, and every image's size is
checked (from its header) before it is decoded."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from engine.datasets.base import DatasetError, reading

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _pillow():
    """PIL.Image, with its decompression-bomb warning made an error: process-wide (a filter set inside a
    thread pool would not hold for the other threads), and again if something reset the filters."""
    from PIL import Image

    if not any(f[0] == "error" and f[2] is Image.DecompressionBombWarning for f in warnings.filters):
        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
    return Image


def open_image(path: Path):
    """The image, opened (its header read, nothing decoded); an image over Pillow's pixel limit is one line."""
    Image = _pillow()
    try:
        return Image.open(path)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise DatasetError(f"{path}: {err} (PIL.Image.MAX_IMAGE_PIXELS); not decoded") from None


def read_images(paths: list[Path], mode: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Every image as (N, C, H, W) uint8 in ``mode`` ("L" or "RGB"); all must have one size (``size``
    = (width, height) if given, else the first image's). Decoded in threads (Pillow releases the GIL)."""
    def one(path: Path) -> np.ndarray:
        with reading(path, "an image"), open_image(path) as image:
            if size is not None and image.size != size:  # before decoding it
                raise DatasetError(f"{path}: the image is {image.size[0]}x{image.size[1]}, expected {size[0]}x{size[1]} "
                                   "like the others")
            return np.asarray(image.convert(mode), dtype=np.uint8)

    if size is None and paths:
        size = image_size(paths[0])
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        arrays = list(pool.map(one, paths))
    if not arrays:
        return np.zeros((0, 1 if mode == "L" else 3, *(size or (0, 0))[::-1]), np.uint8)
    x = np.stack(arrays)
    return x[:, None] if mode == "L" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def image_size(path: Path) -> tuple[int, int]:
    with reading(path, "an image"), open_image(path) as image:
        return image.size


def image_mode(paths: list[Path]) -> str:
    """"L" when every image is grayscale (stored as one channel), else "RGB". Reads headers only."""
    for path in paths:
        with reading(path, "an image"), open_image(path) as image:
            if image.mode not in ("L", "1", "I", "I;16", "F"):
                return "RGB"
    return "L"


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
