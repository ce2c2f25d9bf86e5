"""Dataset registry. A dataset is one file here declaring its ``DatasetInfo`` (with its loader,
``load(seed=, test_size=, root=) -> Dataset``); adding one means adding its file and one line below."""

from __future__ import annotations

import threading
from pathlib import Path

from engine.datasets.base import Dataset, DatasetError, DatasetInfo, Header, data_dir, declared_header
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
        # a generic dataset's root is its folder or file (a root that is one is taken as it), else it is
        # looked for under the data directory
        ok, message = info.ready(root) if info.path_name and root and info.ready(root)[0] else \
            info.ready(data_dir(root) / info.path_name if info.path_name else root)
        rows.append({"name": name, "title": info.title, "ready": ok, "message": message})
    return rows


_headers: dict[tuple, Header] = {}
_headers_lock = threading.Lock()


def dataset_header(scenario) -> Header:
    """What the files of ``scenario`` (a ``ScenarioConfig``, or anything with dataset, root, seed and
    test_size) hold: input shape, classes and each part's class counts, read cheaply (headers, labels,
    a folder's listing) and kept until a file changes. ``DatasetError`` (one line naming the file) for
    files that cannot be read or declare more than they hold or than memory allows."""
    info = DATASET_INFO[scenario.dataset]
    if info.header is None:  # embedded, or too slow to survey (Tiny-ImageNet's 110,000 files): as declared
        return declared_header(info, scenario.test_size)
    where = info.location(scenario.root)
    seed, test_size = (0, 0.0) if info.own_split else (scenario.seed, scenario.test_size)
    key = (info.name, str(where), seed, test_size, _signature(info, where))
    with _headers_lock:
        if key in _headers:
            return _headers[key]
    header = info.header(seed=seed, test_size=test_size, root=where if info.path_name else scenario.root)
    with _headers_lock:
        if len(_headers) > 256:
            _headers.clear()
        _headers[key] = header
    return header


def _signature(info: DatasetInfo, where: Path) -> tuple:
    """Size and modification time of the dataset's files (a folder: of it and its class folders, whose
    times change when an image is added or removed)."""
    if info.path_name:  # a folder's class folders (or train/ and test/ and theirs)
        paths = [where]
        try:
            if where.is_dir():
                paths += [d for d in where.iterdir() if d.is_dir()]
                paths += [d for part in ("train", "test") if (where / part).is_dir() for d in (where / part).iterdir()
                          if d.is_dir()]
        except OSError:  # unreadable: the header says so
            pass
    else:
        files = info.file_paths(where)
        paths = files + [f.with_name(f.name + ".gz") for f in files if info.gzip_ok]
    stats = []
    for path in paths:
        try:
            st = path.stat()
            stats.append((str(path), st.st_size, st.st_mtime_ns))
        except OSError:
            stats.append((str(path), None))
    return tuple(stats)


__all__ = ["DATASETS", "DATASET_INFO", "Dataset", "DatasetError", "DatasetInfo", "Header", "data_dir", "dataset_header",
           "dataset_status"]
