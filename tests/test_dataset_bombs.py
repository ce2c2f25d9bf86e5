"""Dataset files built to exhaust memory: small files that declare gigabytes (a CIFAR pickle repeating
one row, a bare ndarray call in a pickle, a gzip of zeros, a MATLAB or .npy header that lies, PNGs of
12000 x 12000). Each reader checks what a file declares against its real size and the memory limits
before it allocates, with one line naming the file: through the CLI (``python -m engine run`` under an
address-space limit far below the bomb, so an allocation would fail otherwise) and reader by reader."""

import gzip
import io
import json
import pickle
import resource
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from engine.datasets import DATASETS, DatasetError
from tests.conftest import ROOT
from tests.test_datasets import write_cifar10, write_mnist

ADDRESS_SPACE = 2 * 1024 ** 3  # the CLI's limit: its check fits, none of the bombs below does


# ---- the bombs -----------------------------------------------------------------------------------------
def cifar_repeated_rows(root: Path) -> Path:
    """2 MB: one row of 3072 values referenced a million times, which np.asarray makes 22.9 GiB of int64."""
    write_cifar10(root)
    row = [0] * 3072
    path = root / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": [row] * 1_000_000, b"labels": [0] * 10}, protocol=2))
    return path


class BareArray:
    """Pickles as numpy.ndarray((1000000, 3072), uint8): a 3 GB reservation from 100 bytes."""

    def __reduce__(self):
        return np.ndarray, ((1_000_000, 3072), np.dtype(np.uint8))


def cifar_bare_array(root: Path) -> Path:
    write_cifar10(root)
    path = root / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(pickle.dumps({b"data": BareArray(), b"labels": [0] * 10}, protocol=2))
    return path


def mnist_gzip_of_zeros(root: Path, n: int = 700_000) -> Path:
    """A real IDX file of n images of zeros (549 MB at the default), gzipped to about 0.5 MB."""
    write_mnist(root, gz=True)
    path = root / "MNIST/raw/train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write((2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28)))
        zeros = bytes(784 * 1000)
        for _ in range(n // 1000):
            f.write(zeros)
    return path


def mat_file(path: Path, name: str, dims: tuple[int, ...], data: bytes, declared: int | None = None) -> Path:
    """A MATLAB v5 file of one compressed uint8 variable; ``declared``: the bytes its data tag claims
    (more than ``data``: a header that lies)."""
    body = struct.pack("<II", 6, 8) + struct.pack("<II", 9, 0)  # array flags: mxUINT8_CLASS
    body += struct.pack("<II", 5, 4 * len(dims)) + struct.pack(f"<{len(dims)}i", *dims) + bytes(-4 * len(dims) % 8)
    body += struct.pack("<I", len(name) << 16 | 1) + name.encode().ljust(4, b"\0")  # small element: the name
    size = len(data) if declared is None else declared
    body += struct.pack("<II", 2, size) + data + bytes(-len(data) % 8)  # miUINT8 values
    matrix = struct.pack("<II", 14, len(body) - len(data) + size) + body
    packed = zlib.compress(matrix)
    header = b"MATLAB 5.0 MAT-file, written by a test".ljust(116) + bytes(8) + struct.pack("<H", 0x0100) + b"IM"
    path.write_bytes(header + struct.pack("<II", 15, len(packed)) + packed)
    return path


def svhn_lying_header(root: Path) -> Path:
    """X declared 32 x 32 x 3 x 699,051 (2 GiB) in a file of a few hundred bytes."""
    (root / "svhn").mkdir(parents=True, exist_ok=True)
    n = 699_051
    for name in ("train_32x32.mat", "test_32x32.mat"):
        mat_file(root / "svhn" / name, "X", (32, 32, 3, n), bytes(64), declared=32 * 32 * 3 * n)
    return root / "svhn" / "train_32x32.mat"


def npy(shape: tuple[int, ...], data: bytes) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return out.getvalue() + data


def npz_lying_header(path: Path) -> Path:
    """x.npy declares (1048576, 32, 32, 3) uint8, 3 GiB, and holds 1 KB (NumPy allocates what it declares)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", npy((1_048_576, 32, 32, 3), bytes(1024)))
        zf.writestr("y.npy", npy((1_048_576,), bytes(16)))
    return path


def npz_deflated_zeros(path: Path, n: int = 100_000) -> Path:
    """A real (n, 32, 32, 3) array of zeros (307 MB at the default), deflated to about 0.3 MB."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as f:
            f.write(npy((n, 32, 32, 3), b""))
            zeros = bytes(3072 * 1000)
            for _ in range(n // 1000):
                f.write(zeros)
        zf.writestr("y.npy", npy((n,), bytes(n)))
    return path


def huge_pngs(folder: Path, side: int = 12_000, count: int = 12) -> Path:
    """PNGs whose header says side x side (144 million pixels: over Pillow's limit, under twice it,
    where Pillow itself only warns)."""
    from PIL import Image

    small = io.BytesIO()
    Image.new("L", (4, 4)).save(small, format="PNG")
    png = bytearray(small.getvalue())
    png[16:24] = struct.pack(">II", side, side)  # IHDR's width and height, then its CRC
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    for i in range(count):
        (folder / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        (folder / f"class{i % 2}" / f"{i}.png").write_bytes(bytes(png))
    return folder / "class0" / "0.png"


# ---- through the CLI -------------------------------------------------------------------------------------
def limited():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_cli(tmp_path: Path, scenario: dict) -> subprocess.CompletedProcess:
    config, db = tmp_path / "bomb.yaml", tmp_path / "lab.duckdb"
    config.write_text(json.dumps({"scenario": {"n_tasks": 2, **scenario}, "model": {"name": "mlp", "hidden": [8]}}))
    out = subprocess.run([sys.executable, "-m", "engine", "run", str(config), "--db", str(db)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, preexec_fn=limited)
    assert not db.exists()  # refused at the check: nothing written
    return out


@pytest.mark.parametrize("bomb,dataset,declares", [
    (cifar_repeated_rows, "cifar10", "b'data' is a list, expected a uint8 array N x 3072"),
    (cifar_bare_array, "cifar10", "refused to call numpy.ndarray: an array's bytes must be in the file"),
    (mnist_gzip_of_zeros, "mnist", "images (700000, 28, 28) declares 523 MiB from"),
    (svhn_lying_header, "svhn", "X (32, 32, 3, 699051) declares 2 GiB, more than a run may take here (1 GiB"),
    (lambda root: npz_lying_header(root / "bomb.npz"), "npz",
     "x declares (1048576, 32, 32, 3) uint8 (3,221,225,472 bytes) in an entry of 1,024: truncated or corrupt"),
    (lambda root: huge_pngs(root / "pngs"), "image_folder",
     "Image size (144000000 pixels) exceeds limit of 89478485 pixels"),
], ids=["cifar-rows", "cifar-bare-array", "mnist-gz", "svhn-mat", "npz", "png"])
def test_the_cli_refuses_a_bomb_in_one_line_naming_the_file_within_bounded_memory(tmp_path, bomb, dataset, declares):
    path = bomb(tmp_path / "data")
    root = path if dataset == "npz" else path.parent.parent if dataset == "image_folder" else tmp_path / "data"
    out = run_cli(tmp_path, {"dataset": dataset, "root": str(root)})
    assert out.returncode == 2 and "Traceback" not in out.stderr and "MemoryError" not in out.stderr, out.stderr[-3000:]
    header, line = out.stderr.strip().split("\n")
    assert header.endswith("the config has 1 problem(s):")
    assert str(path) in line and declares in line, line


# ---- reader by reader, with the limits of this machine -----------------------------------------------------
def test_a_gzip_expanding_past_what_real_data_packs_is_refused_before_it_is_inflated(tmp_path):
    mnist_gzip_of_zeros(tmp_path, n=400_000)  # 314 MB from about 0.3 MB: over the 256 MB floor, 1,000x
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz: images \(400000, 28, 28\) declares 299 MiB from "
                                           r".* compressed \(.*x; real data packs at most 100x\): a decompression bomb"):
        DATASETS["mnist"](root=tmp_path)


def test_an_idx_gzip_with_more_data_than_its_header_declares_is_not_read_past_it(tmp_path):
    write_mnist(tmp_path, gz=True)
    path = tmp_path / "MNIST/raw/t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()) + bytes(10_000)))
    with pytest.raises(DatasetError, match=r"more than 7840 bytes of data for dimensions \(10, 28, 28\)"):
        DATASETS["mnist"](root=tmp_path)


def test_a_mat_variable_is_checked_from_its_header_before_scipy_reads_it(tmp_path):
    import scipy.io

    (tmp_path / "svhn").mkdir()
    honest = mat_file(tmp_path / "svhn" / "train_32x32.mat", "X", (2, 3), bytes(range(6)))
    assert scipy.io.loadmat(honest)["X"].tolist() == [[0, 2, 4], [1, 3, 5]]  # the writer writes real MAT files
    svhn_lying_header(tmp_path)
    with pytest.raises(DatasetError, match=r"train_32x32.mat: X \(32, 32, 3, 699051\) declares 2 GiB from .* compressed "
                                           r"\(.*x; real data packs at most 100x\): a decompression bomb, not read"):
        DATASETS["svhn"](root=tmp_path)


def test_npz_arrays_are_checked_from_their_headers_and_zip_entries(tmp_path):
    with pytest.raises(DatasetError, match=r"bomb.npz: x declares \(1048576, 32, 32, 3\) uint8 .* truncated or corrupt"):
        DATASETS["npz"](root=npz_lying_header(tmp_path / "bomb.npz"))
    with pytest.raises(DatasetError, match=r"zeros.npz: x \(100000, 32, 32, 3\) declares 293 MiB from .* compressed"):
        DATASETS["npz"](root=npz_deflated_zeros(tmp_path / "zeros.npz"))


def test_cifar_pickles_build_no_array_the_file_does_not_hold(tmp_path):
    for bomb, message in ((cifar_repeated_rows, "b'data' is a list, expected a uint8 array N x 3072"),
                          (cifar_bare_array, "refused to call numpy.ndarray")):
        path = bomb(tmp_path)
        assert path.stat().st_size < 2_100_000
        with pytest.raises(DatasetError, match=message):
            DATASETS["cifar10"](root=tmp_path)


def test_an_image_over_pillows_limit_is_an_error_before_it_is_decoded(tmp_path):
    path = huge_pngs(tmp_path / "pngs")
    with pytest.raises(DatasetError) as err:
        DATASETS["image_folder"](root=tmp_path / "pngs")
    assert str(err.value).startswith(f"{path}: Image size (144000000 pixels) exceeds limit of 89478485 pixels")
    assert "\n" not in str(err.value)
