"""Dataset registry. A dataset is one file here declaring its ``DatasetInfo`` (with its loader,
``load(seed=, test_size=, root=) -> Dataset``); adding one means adding its file and one line below."""

from __future__ import annotations

from engine.datasets.base import Dataset, DatasetError, DatasetInfo, data_dir
from engine.datasets import cifar10, cifar100, digits, image_folder, mnist, mnist1d, npz, svhn, tiny_imagenet

DATASET_INFO: dict[str, DatasetInfo] = {info.name: info for info in (
    digits.INFO, mnist1d.INFO, *mnist.INFOS, cifar10.INFO, *cifar100.INFOS, svhn.INFO, tiny_imagenet.INFO,
    image_folder.INFO, npz.INFO,
)}

DATASETS = {name: info.load for name, info in DATASET_INFO.items()}


def dataset_status(root=None) -> list[dict]:
    """Every dataset, whether its files are there and a one-line message (where they were found, or
    where to put them): for ``python -m engine datasets`` and the launch form."""
    rows = []
    for name, info in DATASET_INFO.items():
        # a generic dataset's root is its folder or file: here it is looked for under the data directory
        ok, message = info.ready(data_dir(root) / info.path_name if info.path_name else root)
        rows.append({"name": name, "title": info.title, "ready": ok, "message": message})
    return rows


__all__ = ["DATASETS", "DATASET_INFO", "Dataset", "DatasetError", "DatasetInfo", "data_dir", "dataset_status"]
