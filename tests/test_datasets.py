"""Every dataset reader on small files written here in the exact format torchvision (or the dataset's
authors) write; the messages for missing and corrupt files; the CLI listing; augmentation; a short real
training run from CIFAR-format files."""

import gzip
import pickle
import numpy as np
import pytest
import torch

from engine.augment import augment, random_crop, random_flip
from engine.config import ConfigError, parse_config
from engine.datasets import DATASET_INFO, DATASETS, DatasetError, dataset_status

RNG = np.random.default_rng(0)


# ---- writers, in each dataset's exact format -----------------------------------------------------------
def write_idx(path, array: np.ndarray, gz: bool = False) -> None:
    magic = 2051 if array.ndim == 3 else 2049
    raw = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def write_mnist(root, folder="MNIST", n_train=30, n_test=10, gz=False):
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x, y = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", x, gz)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", y, gz)
        data[prefix] = (x, y)
    return data


def cifar_images(y: np.ndarray) -> np.ndarray:
    """N x 3072 uint8 whose colour depends on the class (learnable), plus noise."""
    base = (np.stack([y * 25, 255 - y * 25, (y * 70) % 256], 1)[:, :, None]).astype(np.int64)
    return np.clip(base + RNG.integers(-20, 21, (len(y), 3, 1024)), 0, 255).astype(np.uint8).reshape(len(y), 3072)


def write_cifar10(root, per_batch=20, n_test=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        y = RNG.permutation(np.arange(n) % 10)
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in y], b"data": cifar_images(y),
                 b"filenames": [f"{i}.png".encode() for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


def write_cifar100(root, n=40):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train", "test"):
        fine = RNG.integers(0, 100, n)
        batch = {b"data": cifar_images(fine % 10), b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


# ---- MNIST family (IDX) ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,folder,gz", [("mnist", "MNIST", False), ("fashion_mnist", "FashionMNIST", True),
                                            ("kmnist", "KMNIST", False)])
def test_idx_readers_read_the_raw_and_gzipped_files_in_torchvisions_layout(tmp_path, name, folder, gz):
    written = write_mnist(tmp_path, folder, gz=gz)
    data = DATASETS[name](root=tmp_path)
    assert data.train_x.shape == (30, 1, 28, 28) and data.train_x.dtype == np.uint8
    assert np.array_equal(data.train_x[:, 0], written["train"][0]) and np.array_equal(data.test_y, written["t10k"][1])
    assert data.n_classes == 10 and data.mean == DATASET_INFO[name].mean
    assert DATASET_INFO[name].ready(tmp_path)[0]


def test_idx_magic_truncation_and_corrupt_gzip_each_give_one_line(tmp_path):
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST/raw"
    (raw / "train-labels-idx1-ubyte").write_bytes((2051).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte: not an IDX label file \(magic number 2051, expected 2049\)"):
        DATASETS["mnist"](root=tmp_path)
    write_mnist(tmp_path)
    images = raw / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte: 7740 bytes of data for dimensions \(10, 28, 28\) "
                                           r"\(7840 expected\): truncated or corrupt"):
        DATASETS["mnist"](root=tmp_path)
    images.unlink()
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DatasetError) as err:
        DATASETS["mnist"](root=tmp_path)
    assert "t10k-images-idx3-ubyte.gz: cannot be read as an IDX file" in str(err.value) and "\n" not in str(err.value)


def test_labels_outside_the_classes_are_refused(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "MNIST/raw/train-labels-idx1-ubyte", np.full(30, 12))
    with pytest.raises(DatasetError, match="train labels must be from 0 to 9 \\(found 12 to 12\\)"):
        DATASETS["mnist"](root=tmp_path)


# ---- CIFAR ------------------------------------------------------------------------------------------
def test_cifar10_reads_the_five_batches_and_the_test_batch_in_rgb_planes(tmp_path):
    folder = write_cifar10(tmp_path)
    data = DATASETS["cifar10"](root=tmp_path)
    assert data.train_x.shape == (100, 3, 32, 32) and data.test_x.shape == (20, 3, 32, 32)
    first = pickle.loads((folder / "data_batch_1").read_bytes())
    # row = 1024 red values, then green, then blue, each 32 rows of 32
    assert np.array_equal(data.train_x[0, 1].ravel(), first[b"data"][0, 1024:2048])
    assert data.train_y[:20].tolist() == first[b"labels"]
    assert data.mean == (0.4914, 0.4822, 0.4465)


def test_cifar100_fine_and_coarse_labels(tmp_path):
    folder = write_cifar100(tmp_path)
    batch = pickle.loads((folder / "test").read_bytes())
    fine, coarse = DATASETS["cifar100"](root=tmp_path), DATASETS["cifar100_coarse"](root=tmp_path)
    assert fine.n_classes == 100 and coarse.n_classes == 20
    assert fine.test_y.tolist() == batch[b"fine_labels"] and coarse.test_y.tolist() == batch[b"coarse_labels"]
    assert np.array_equal(fine.train_x, coarse.train_x)


def test_a_cifar_pickle_that_would_run_code_is_refused_and_a_bad_one_named(tmp_path):
    folder = write_cifar10(tmp_path)

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": []}))
    with pytest.raises(DatasetError, match=r"data_batch_3: cannot be read as a CIFAR python batch \(UnpicklingError: "
                                           r"refused to build builtins.print"):
        DATASETS["cifar10"](root=tmp_path)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}))
    with pytest.raises(DatasetError, match=r"data_batch_3: b'data' is uint8 \(4, 100\), expected uint8 N x 3072"):
        DATASETS["cifar10"](root=tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x80\x02}q\x00(")  # a truncated pickle
    with pytest.raises(DatasetError, match=r"data_batch_3: cannot be read as a CIFAR python batch"):
        DATASETS["cifar10"](root=tmp_path)


# ---- SVHN, Tiny-ImageNet, image folders, npz --------------------------------------------------------
def test_svhn_reads_the_mat_files_and_maps_label_10_to_digit_0(tmp_path):
    import scipy.io

    (tmp_path / "svhn").mkdir()
    x = RNG.integers(0, 256, (32, 32, 3, 12), dtype=np.uint8)
    y = (np.arange(12) % 10 + 1).astype(np.uint8)[:, None]
    for name in ("train_32x32.mat", "test_32x32.mat"):
        scipy.io.savemat(tmp_path / "svhn" / name, {"X": x, "y": y})
    data = DATASETS["svhn"](root=tmp_path)
    assert data.train_x.shape == (12, 3, 32, 32)
    assert np.array_equal(data.train_x[5, 2], x[:, :, 2, 5])  # (H, W, C, N) -> (N, C, H, W)
    assert data.train_y.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    scipy.io.savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": x[:, :, :2], "y": y})
    with pytest.raises(DatasetError, match=r"test_32x32.mat: X is uint8 \(32, 32, 2, 12\), expected uint8 32 x 32 x 3 x N"):
        DATASETS["svhn"](root=tmp_path)
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(DatasetError, match="test_32x32.mat: cannot be read as a MATLAB"):
        DATASETS["svhn"](root=tmp_path)


def write_tiny_imagenet(root):
    from PIL import Image

    folder = root / "tiny-imagenet-200"
    wnids = [f"n{k:08d}" for k in range(200)][::-1]  # the file's order is not the label order
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for w in wnids:
        (folder / "train" / w / "images").mkdir(parents=True)
        Image.new("RGB", (64, 64), (int(w[-3:]) % 256, 0, 0)).save(folder / "train" / w / "images" / f"{w}_0.JPEG")
    lines = []
    for i, w in enumerate(wnids[:4]):
        Image.new("L", (64, 64), 200).save(folder / "val" / "images" / f"val_{i}.JPEG")  # grayscale, as some are
        lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_tiny_imagenet_reads_class_folders_and_the_annotated_validation_set(tmp_path):
    folder = write_tiny_imagenet(tmp_path)
    data = DATASETS["tiny_imagenet"](root=tmp_path)
    assert data.train_x.shape == (200, 3, 64, 64) and data.test_x.shape == (4, 3, 64, 64)
    assert data.train_y.tolist() == list(range(200))  # sorted wnids
    assert abs(int(data.train_x[7, 0, 30, 30]) - 7) <= 3 and data.train_x[7, 1].max() <= 3  # JPEG: nearly exact
    assert data.test_y.tolist() == [199, 198, 197, 196] and (data.test_x[:, :, 10, 10] > 190).all()
    from PIL import Image
    Image.new("RGB", (32, 32)).save(folder / "val" / "images" / "val_2.JPEG")
    with pytest.raises(DatasetError, match=r"val_2.JPEG: the image is 32x32, expected 64x64"):
        DATASETS["tiny_imagenet"](root=tmp_path)


def test_image_folder_reads_pngs_by_class_folder_split_by_seed_or_by_train_test(tmp_path):
    from PIL import Image

    for k, name in enumerate(["cat", "dog", "emu"]):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (6, 5), 40 * k + i).save(tmp_path / "imgs" / name / f"{i}.png")
    a = DATASETS["image_folder"](seed=0, test_size=0.25, root=tmp_path / "imgs")
    b = DATASETS["image_folder"](seed=1, test_size=0.25, root=tmp_path / "imgs")
    assert a.train_x.shape == (9, 1, 5, 6) and a.test_x.shape == (3, 1, 5, 6) and a.n_classes == 3
    assert sorted(a.test_y.tolist()) == [0, 1, 2] and not np.array_equal(a.train_x, b.train_x)
    assert np.array_equal(a.train_x[:, 0, 0, 0] // 40, a.train_y)  # the pixel says the class
    assert a.mean[0] == pytest.approx(a.train_x.mean() / 255)
    for part in ("train", "test"):  # a given split is used as is
        for name in ("a", "b"):
            (tmp_path / "split" / part / name).mkdir(parents=True)
            Image.new("RGB", (4, 4), (9, 9, 9)).save(tmp_path / "split" / part / name / "x.png")
    split = DATASETS["image_folder"](root=tmp_path / "split")
    assert split.train_x.shape == (2, 3, 4, 4) and split.test_y.tolist() == [0, 1]
    Image.new("L", (7, 7)).save(tmp_path / "imgs" / "dog" / "odd.png")
    with pytest.raises(DatasetError, match=r"odd.png: the image is 7x7, expected 6x5 like the others"):
        DATASETS["image_folder"](root=tmp_path / "imgs")


def test_npz_rows_images_and_a_given_test_part(tmp_path):
    x, y = RNG.normal(size=(40, 5)), np.arange(40) % 4
    np.savez(tmp_path / "rows.npz", x=x, y=y)
    rows = DATASETS["npz"](seed=0, test_size=0.25, root=tmp_path / "rows.npz")
    assert rows.train_x.shape == (30, 5) and rows.n_classes == 4 and rows.mean is None
    assert np.allclose(rows.train_x.mean(0), 0, atol=1e-6)
    images = RNG.integers(0, 256, (8, 6, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "img.npz", x=images, y=np.arange(8) % 2, x_test=images[:2], y_test=np.array([1, 0]))
    data = DATASETS["npz"](root=tmp_path / "img.npz")
    assert data.train_x.shape == (8, 3, 6, 6) and np.array_equal(data.train_x[3, 1], images[3, :, :, 1])
    assert data.test_y.tolist() == [1, 0] and data.train_x.dtype == np.uint8
    np.savez(tmp_path / "bad.npz", x=images, y=np.arange(7))
    with pytest.raises(DatasetError, match="x must be a numeric array of N samples with N labels"):
        DATASETS["npz"](root=tmp_path / "bad.npz")
    np.savez(tmp_path / "none.npz", features=images)
    with pytest.raises(DatasetError, match=r"no array 'x' \(found features\); needs x and y"):
        DATASETS["npz"](root=tmp_path / "none.npz")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(DatasetError, match="cannot be read as a NumPy .npz file"):  # no pickles
        DATASETS["npz"](root=tmp_path / "objects.npz")


# ---- missing files: one line at config time; the listing ----------------------------------------------
def test_a_missing_file_is_one_config_line_naming_the_file_where_and_the_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("CL_LAB_DATA", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        parse_config({"scenario": {"dataset": "cifar10"}})
    assert err.value.problems == [
        f"scenario.dataset = 'cifar10': {tmp_path}/cifar-10-batches-py/data_batch_1 not found; put the CIFAR-10 python "
        "version (cifar-10-batches-py/data_batch_1..5, test_batch) there or set scenario.root / CL_LAB_DATA"]
    write_cifar10(tmp_path)
    assert parse_config({"scenario": {"dataset": "cifar10"}}).scenario.root is None  # $CL_LAB_DATA is used
    with pytest.raises(ConfigError) as err:
        parse_config({"scenario": {"dataset": "npz", "root": str(tmp_path / "nothing.npz")}})
    assert err.value.problems == [f"scenario.dataset = 'npz': {tmp_path}/nothing.npz not found; give scenario.root = "
                                  "a .npz file with arrays x and y (optionally x_test and y_test)"]
    with pytest.raises(ConfigError) as err:  # a name too long to stat is a missing file, not a traceback
        parse_config({"scenario": {"dataset": "cifar10", "root": "x" * 300}})
    assert err.value.problems[0].startswith(f"scenario.dataset = 'cifar10': {'x' * 300}/cifar-10-batches-py/data_batch_1 "
                                            "not found")
    with pytest.raises(ConfigError) as err:
        parse_config({"scenario": {"dataset": "cifar10", "n_tasks": 11}})
    assert err.value.problems == ["scenario.n_tasks = 11: must be at most 10: cifar10 has 10 classes to share out"]
    with pytest.raises(ConfigError) as err:
        parse_config({"scenario": {"setting": "domain", "domain": "rotated"}})
    assert err.value.problems == ["scenario.domain = 'rotated': needs an image dataset (digits has rows of 64 values)"]


def test_the_cli_refuses_a_missing_dataset_with_exit_2_and_lists_the_datasets(tmp_path, monkeypatch, capsys):
    from engine.cli.main import main

    monkeypatch.setenv("CL_LAB_DATA", str(tmp_path))
    config = tmp_path / "c.yaml"
    config.write_text(f"scenario: {{dataset: svhn, root: {tmp_path}}}\n")
    db = tmp_path / "lab.duckdb"
    assert main(["run", str(config), "--db", str(db)]) == 2 and not db.exists()
    assert f"scenario.dataset = 'svhn': {tmp_path}/svhn/train_32x32.mat not found" in capsys.readouterr().err
    write_mnist(tmp_path)
    assert main(["datasets"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert set(lines) == set(DATASET_INFO)
    assert lines["mnist"].split()[1] == "ready" and lines["digits"].split()[1] == "ready"
    assert lines["kmnist"].split()[1] == "missing" and f"{tmp_path}/KMNIST/raw/train-images-idx3-ubyte not found" in lines["kmnist"]


def test_dataset_status_for_the_launch_form(tmp_path):
    write_cifar10(tmp_path)
    status = {row["name"]: row for row in dataset_status(tmp_path)}
    assert status["cifar10"]["ready"] and status["cifar10"]["message"] == f"found in {tmp_path}"
    assert not status["cifar100"]["ready"] and "cifar-100-python/train not found" in status["cifar100"]["message"]


# ---- augmentation -----------------------------------------------------------------------------------
def test_random_crop_keeps_the_shape_and_takes_a_shifted_window_of_the_padded_image():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    out = random_crop(x, g, padding=2)
    assert out.shape == x.shape
    offsets = torch.randint(0, 5, (2, 2), generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        r, c = offsets[i].tolist()
        assert torch.equal(out[i], padded[i, :, r:r + 8, c:c + 8])


def test_flip_mirrors_the_chosen_samples_and_a_seed_repeats_the_augmentation():
    x = torch.rand(64, 3, 4, 4)
    out = random_flip(x, torch.Generator().manual_seed(1))
    flipped = torch.tensor([torch.equal(o, i.flip(2)) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert (flipped ^ kept).all() and 16 < flipped.sum() < 48
    a = augment(x, ("crop", "flip"), torch.Generator().manual_seed(5))
    b = augment(x, ("crop", "flip"), torch.Generator().manual_seed(5))
    c = augment(x, ("crop", "flip"), torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---- a real run from CIFAR-format files ---------------------------------------------------------------
def test_a_short_run_trains_split_cifar_from_files_with_augmentation(tmp_path, store):
    from engine.runs.manager import run_in_process

    write_cifar10(tmp_path, per_batch=40, n_test=40)
    config = parse_config({
        "scenario": {"dataset": "cifar10", "root": str(tmp_path), "n_tasks": 2},
        "model": {"name": "mlp", "hidden": [32]}, "strategy": {"name": "naive"},
        "train": {"optimizer": "adam", "lr": 0.003, "batch_size": 20, "epochs_per_task": 3, "augment": "default"},
        "eval": {"every": 5}})
    run_id = run_in_process(store, config)
    status, total = store.sql("SELECT status, total_steps FROM runs WHERE id = ?", [run_id])[0]
    assert status == "finished" and total == 2 * 3 * 5  # 100 images a task, batches of 20, 3 epochs
    (acc,) = store.sql("SELECT value FROM metrics WHERE run_id = ? AND metric = 'boundary_acc' AND task = 2 "
                       "ORDER BY step DESC LIMIT 1", [run_id])[0]
    assert acc > 0.5  # the classes' colours are learnable: well above the 1/5 of chance within the task's classes
