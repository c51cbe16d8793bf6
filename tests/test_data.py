"""convzoo.data: readers of each real format (files written here), sources, cache, splits, and the real data."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import convzoo.data.datasets as datasets
from convzoo.data import check_disjoint, load_dataset, split_train_val
from convzoo.errors import DataError
from train_fixtures import (
    SHARED_DATA,
    make_toy_cifar_png,
    make_toy_mnist,
    need_fashion,
    need_mnist,
    toy_images,
    write_idx,
)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# ---- IDX ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_gzipped_or_not(tmp_path, cache, gz):
    root = tmp_path / "mnist"
    make_toy_mnist(root, 50, 20)
    if not gz:
        for f in root.glob("*.gz"):
            f.with_suffix("").write_bytes(gzip.decompress(f.read_bytes()))
            f.unlink()
    data = load_dataset("mnist", data_dir=root, cache_dir=cache)
    images, labels = toy_images(50, 0)
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape == (50, 1, 28, 28)
    assert torch.equal(data.train.images[:, 0], torch.from_numpy(images))
    assert torch.equal(data.train.labels, torch.from_numpy(labels).long())
    assert len(data.test) == 20 and data.num_classes == 10 and data.channels == 1 and data.image_size == (28, 28)
    pixels = torch.from_numpy(images).double() / 255
    assert data.mean[0] == pytest.approx(pixels.mean().item(), rel=1e-9)
    assert data.std[0] == pytest.approx(pixels.std(unbiased=False).item(), rel=1e-9)


def test_torchvision_download_layout_is_found(tmp_path, cache):
    make_toy_mnist(tmp_path / "FashionMNIST" / "raw", 30, 10)
    data = load_dataset("fashion-mnist", data_dir=tmp_path, cache_dir=cache)
    assert data.classes[0] == "T-shirt/top" and data.classes[-1] == "Ankle boot" and len(data.train) == 30


def _corrupt(root: Path, name: str, how: str) -> None:
    path = root / name
    raw = gzip.decompress(path.read_bytes())
    if how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "truncated gzip":
        path.write_bytes(path.read_bytes()[:-30])
    elif how == "wrong magic":
        path.write_bytes(gzip.compress(b"\x12\x34" + raw[2:]))
    elif how == "truncated data":
        path.write_bytes(gzip.compress(raw[:-7]))
    elif how == "wrong type":
        path.write_bytes(gzip.compress(raw[:2] + b"\x0d" + raw[3:]))


@pytest.mark.parametrize("how, message", [
    ("empty", "the file is empty"),
    ("truncated gzip", "truncated or corrupt gzip"),
    ("wrong magic", "not an IDX file"),
    ("truncated data", "the file is truncated or corrupt"),
    ("wrong type", "element type 0x0d"),
])
def test_bad_idx_files_are_named(tmp_path, cache, how, message):
    root = make_toy_mnist(tmp_path / "m", 20, 10)
    _corrupt(root, "train-images-idx3-ubyte.gz", how)
    with pytest.raises(DataError, match=message) as err:
        load_dataset("mnist", data_dir=root, cache_dir=cache)
    assert "train-images-idx3-ubyte.gz" in str(err.value) and "\n" not in str(err.value)


def test_missing_idx_file_is_not_found_in_data_dir(tmp_path, cache):
    root = make_toy_mnist(tmp_path / "m", 20, 10)
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"mnist not found in --data-dir .*train-images-idx3-ubyte.gz"):
        load_dataset("mnist", data_dir=root, cache_dir=cache)


def test_image_label_count_mismatch(tmp_path, cache):
    root = make_toy_mnist(tmp_path / "m", 20, 10)
    write_idx(root / "train-labels-idx1-ubyte.gz", toy_images(19, 0)[1])
    with pytest.raises(DataError, match="has 20 images but .* has 19 labels"):
        load_dataset("mnist", data_dir=root, cache_dir=cache)


def test_label_out_of_range(tmp_path, cache):
    root = make_toy_mnist(tmp_path / "m", 20, 10)
    labels = toy_images(10, 1)[1]
    labels[3] = 12
    write_idx(root / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DataError, match="label 12 is out of range for 10 classes"):
        load_dataset("mnist", data_dir=root, cache_dir=cache)


def test_unreadable_file_is_named(tmp_path, cache):
    root = make_toy_mnist(tmp_path / "m", 20, 10)
    target = root / "train-images-idx3-ubyte.gz"
    target.unlink()
    target.symlink_to(target)  # a symlink loop: unreadable whoever runs the test (root reads any mode bits)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", data_dir=root, cache_dir=cache)


# ---- CIFAR-10 python batches ----------------------------------------------------------------------------


def _cifar_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"batch", b"labels": rng.integers(0, 10, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}


def _write_cifar(root: Path, n: int = 8, protocol: int = 2) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(_cifar_batch(n, i), protocol=protocol))
    (folder / "test_batch").write_bytes(pickle.dumps(_cifar_batch(n, 9), protocol=protocol))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=protocol))
    return folder


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_python_batches(tmp_path, cache, protocol):
    _write_cifar(tmp_path, 8, protocol)
    data = load_dataset("cifar10", data_dir=tmp_path, cache_dir=cache)
    first = _cifar_batch(8, 1)
    assert data.train.images.shape == (40, 3, 32, 32) and len(data.test) == 8
    assert torch.equal(data.train.images[0], torch.from_numpy(first[b"data"][0].reshape(3, 32, 32)))
    assert data.train.labels[:8].tolist() == first[b"labels"] and data.classes[1] == "automobile"
    assert len(data.mean) == 3


def test_official_cifar_archive_is_extracted_once(tmp_path, cache):
    _write_cifar(tmp_path / "src")
    archive = tmp_path / "data" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    assert len(load_dataset("cifar10", data_dir=archive.parent, cache_dir=cache).train) == 40
    assert len(list((cache / "extracted").iterdir())) == 1


def test_cifar_wrong_keys(tmp_path, cache):
    folder = _write_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"pixels": np.zeros((2, 3072), np.uint8)}))
    with pytest.raises(DataError, match="data_batch_3: CIFAR batch without the key 'data'"):
        load_dataset("cifar10", data_dir=tmp_path, cache_dir=cache)


def test_cifar_missing_batch(tmp_path, cache):
    folder = _write_cifar(tmp_path)
    (folder / "data_batch_5").unlink()
    with pytest.raises(DataError, match="data_batch_5 are missing"):
        load_dataset("cifar10", data_dir=tmp_path, cache_dir=cache)


# ---- CIFAR-10 lossless PNG layout ------------------------------------------------------------------------


@pytest.mark.parametrize("tarballs", [True, False], ids=["tarballs", "folders"])
def test_cifar_png_layout_with_the_official_test_split(tmp_path, cache, tarballs):
    written = make_toy_cifar_png(tmp_path / "cifar10", 3, 2, tarballs=tarballs)
    data = load_dataset("cifar10", data_dir=tmp_path, cache_dir=cache)  # found in DIR/cifar10/
    assert data.source == str(tmp_path / "cifar10") and data.classes == datasets.CIFAR10_CLASSES
    assert data.test is not None and data.train.images.shape == (30, 3, 32, 32) and len(data.test) == 20
    for split, name in ((data.train, "train"), (data.test, "test")):
        assert torch.equal(split.images, torch.from_numpy(written[name]).permute(0, 3, 1, 2))  # PNG: lossless
        assert split.labels.tolist() == [c for c in range(10) for _ in range(len(split) // 10)]
    pixels = torch.from_numpy(written["train"]).double() / 255
    assert data.mean == pytest.approx(pixels.mean((0, 1, 2)).tolist(), rel=1e-9)
    again = load_dataset("cifar10", data_dir=tmp_path, cache_dir=cache)  # from the decoded cache
    assert torch.equal(again.test.images, data.test.images) and again.test.digest == data.test.digest


def test_cifar_png_layout_is_found_through_convzoo_data(tmp_path, cache, monkeypatch):
    make_toy_cifar_png(tmp_path, 1, 1)
    monkeypatch.setenv("CONVZOO_DATA", str(tmp_path))
    assert len(load_dataset("cifar10", cache_dir=cache).test) == 10


def test_cifar_pickles_and_lossless_pngs_come_before_the_jpeg_copy(tmp_path, cache):
    make_toy_cifar_png(tmp_path / "cifar10", 1, 1)
    jpegs = tmp_path / "cifar10-jpg" / "train.tar.gz"
    jpegs.parent.mkdir()
    jpegs.write_bytes((tmp_path / "cifar10" / "train.tar.gz").read_bytes())
    assert load_dataset("cifar10", data_dir=tmp_path, cache_dir=cache).source == str(tmp_path / "cifar10")
    _write_cifar(tmp_path / "cifar10")  # the python batches, beside the PNGs
    assert load_dataset("cifar10", data_dir=tmp_path, cache_dir=cache).source == str(
        tmp_path / "cifar10" / "cifar-10-batches-py")


def test_cifar_jpeg_copy_alone_is_not_cifar10_and_the_error_says_how_to_read_it(tmp_path, cache):
    make_toy_cifar_png(tmp_path / "src", 1, 1)
    jpegs = tmp_path / "cifar10-jpg" / "train.tar.gz"
    jpegs.parent.mkdir()
    jpegs.write_bytes((tmp_path / "src" / "train.tar.gz").read_bytes())
    (tmp_path / "src" / "train.tar.gz").unlink()
    (tmp_path / "src" / "test.tar.gz").unlink()
    with pytest.raises(DataError, match=r"cifar10 not found in --data-dir .*imagefolder:DIR/cifar10-jpg/train"):
        load_dataset("cifar10", data_dir=tmp_path, cache_dir=cache)
    assert len(load_dataset(f"imagefolder:{jpegs}", cache_dir=cache).train) == 10


def test_cifar_png_layout_needs_both_tarballs(tmp_path, cache):
    make_toy_cifar_png(tmp_path, 1, 1)
    (tmp_path / "test.tar.gz").unlink()
    with pytest.raises(DataError, match=r"test.tar.gz is missing; CIFAR-10's PNG layout needs both train.tar.gz and"):
        load_dataset("cifar10", data_dir=tmp_path, cache_dir=cache)


def test_cifar_png_layout_of_other_classes_is_refused(tmp_path, cache):
    make_toy_cifar_png(tmp_path, 1, 1, tarballs=False)
    for split in ("train", "test"):
        (tmp_path / split / "truck").rename(tmp_path / split / "lorry")
    with pytest.raises(DataError, match=r"class folders .*lorry, ship, expected CIFAR-10.s .*truck; for other "
                                         r"images use --dataset imagefolder:PATH"):
        load_dataset("cifar10", data_dir=tmp_path, cache_dir=cache)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_pickle_that_would_run_a_command_is_refused(tmp_path, cache):
    folder = _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    batch = _cifar_batch(8, 2)
    batch[b"data"] = _Payload(marker)
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match=r"refusing to unpickle (posix|os)\.system"):
        load_dataset("cifar10", data_dir=tmp_path, cache_dir=cache)
    assert not marker.exists()


# ---- image folders and archives -------------------------------------------------------------------------


def _write_png(path: Path, image: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).squeeze(-1).numpy()).save(path)


def _image_folder(root: Path, classes=("cat", "dog"), per_class: int = 3, size=(12, 10), gray: bool = False,
                  seed: int = 0) -> Path:
    g = torch.Generator().manual_seed(seed)
    for c in classes:
        for i in range(per_class):
            image = torch.randint(0, 256, (1 if gray else 3, *size), generator=g, dtype=torch.uint8)
            _write_png(root / c / f"{i}.png", image)
    return root


def test_image_folder_train_and_test(tmp_path, cache):
    _image_folder(tmp_path / "pets" / "train", per_class=3)
    _image_folder(tmp_path / "pets" / "test", per_class=2, seed=1)
    data = load_dataset(f"imagefolder:{tmp_path / 'pets'}", cache_dir=cache)
    assert data.classes == ("cat", "dog") and data.train.images.shape == (6, 3, 12, 10) and len(data.test) == 4
    assert data.train.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_gray_images_give_one_channel_and_odd_sizes_are_resized(tmp_path, cache):
    root = _image_folder(tmp_path / "digits", classes=("a", "b", "c"), gray=True, size=(8, 8))
    _write_png(root / "c" / "big.png", torch.full((1, 16, 16), 200, dtype=torch.uint8))
    data = load_dataset(f"imagefolder:{root}", cache_dir=cache)
    assert data.train.images.shape == (10, 1, 8, 8) and data.test is None
    assert int(data.train.images[-1].min()) == 200  # the 16x16 image, resized


def test_image_folder_errors(tmp_path, cache):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="cat: class folder without images"):  # as torchvision refuses it
        load_dataset(f"imagefolder:{tmp_path / 'empty'}", cache_dir=cache)
    with pytest.raises(DataError, match="no class folders"):
        load_dataset(f"imagefolder:{tmp_path / 'empty' / 'cat'}", cache_dir=cache)
    with pytest.raises(DataError, match="no such folder"):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}", cache_dir=cache)
    root = _image_folder(tmp_path / "bad")
    (root / "dog" / "notes.png").write_text("this is not an image")
    with pytest.raises(DataError, match=r"notes.png: not a readable image"):
        load_dataset(f"imagefolder:{root}", cache_dir=cache)


def test_symlink_loop_in_image_folder(tmp_path, cache):
    root = _image_folder(tmp_path / "loop")
    (root / "cat" / "again").symlink_to(root / "cat")
    with pytest.raises(DataError, match="symlink loop"):
        load_dataset(f"imagefolder:{root}", cache_dir=cache)


def test_test_folder_equal_to_train_is_refused(tmp_path, cache):
    """Notes 004 evaluated on its training images; a test folder that is a copy of train is refused."""
    root = tmp_path / "copy"
    _image_folder(root / "train")
    _image_folder(root / "test")  # same seed: the same images under another name
    data = load_dataset(f"imagefolder:{root}", cache_dir=cache)
    with pytest.raises(DataError, match="exactly the training images"):
        check_disjoint(data.train, data.test)


def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def _png_bytes(seed: int) -> bytes:
    g = torch.Generator().manual_seed(seed)
    buffer = io.BytesIO()
    Image.fromarray(torch.randint(0, 256, (6, 6, 3), generator=g, dtype=torch.uint8).numpy()).save(buffer, "PNG")
    return buffer.getvalue()


def test_tar_of_an_image_folder_is_extracted_once(tmp_path, cache):
    archive = _tar(tmp_path / "shapes.tar.gz", {f"train/{c}/{i}.png": _png_bytes(i) for c in "xy" for i in range(2)})
    first = load_dataset(f"imagefolder:{archive}", cache_dir=cache)
    assert first.train.images.shape == (4, 3, 6, 6) and first.classes == ("x", "y")
    (extracted,) = (cache / "extracted").iterdir()
    mtime = extracted.stat().st_mtime_ns
    second = load_dataset(f"imagefolder:{archive}", cache_dir=cache)
    assert torch.equal(first.train.images, second.train.images) and extracted.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("name", ["../escape.png", "/tmp/convzoo-escape-test.png", "train/../../escape.png"])
def test_tar_members_escaping_the_cache_are_refused(tmp_path, cache, name):
    archive = _tar(tmp_path / "evil.tar.gz", {"train/x/0.png": _png_bytes(0), name: b"owned"})
    with pytest.raises(DataError, match="outside the extraction folder"):
        load_dataset(f"imagefolder:{archive}", cache_dir=cache)
    assert not (tmp_path / "escape.png").exists() and not Path("/tmp/convzoo-escape-test.png").exists()
    assert not any((cache / "extracted").iterdir())


def test_tar_symlink_members_are_refused(tmp_path, cache):
    archive = _tar(tmp_path / "evil.tar.gz", {"train/x/0.png": _png_bytes(0)}, links={"train/x/1.png": "/etc/passwd"})
    with pytest.raises(DataError, match="is a link"):
        load_dataset(f"imagefolder:{archive}", cache_dir=cache)


def test_truncated_archive(tmp_path, cache):
    archive = _tar(tmp_path / "a.tar.gz", {f"train/x/{i}.png": _png_bytes(i) for i in range(3)})
    archive.write_bytes(archive.read_bytes()[:100])
    with pytest.raises(DataError, match="not a readable tar archive"):
        load_dataset(f"imagefolder:{archive}", cache_dir=cache)


# ---- sources, download, cache ---------------------------------------------------------------------------


def test_source_order(tmp_path, cache, monkeypatch):
    explicit = make_toy_mnist(tmp_path / "explicit", 11, 5)
    env = make_toy_mnist(tmp_path / "env", 12, 5)
    make_toy_mnist(tmp_path / "debian" / "mnist", 13, 5)
    monkeypatch.setattr(datasets, "DEBIAN_ROOT", tmp_path / "debian")
    monkeypatch.setenv("CONVZOO_DATA", str(env))
    assert len(load_dataset("mnist", data_dir=explicit, cache_dir=cache).train) == 11
    assert len(load_dataset("mnist", cache_dir=cache).train) == 12
    monkeypatch.delenv("CONVZOO_DATA")
    assert len(load_dataset("mnist", cache_dir=cache).train) == 13
    make_toy_mnist(cache / "datasets" / "mnist", 14, 5)
    monkeypatch.setattr(datasets, "DEBIAN_ROOT", tmp_path / "nothing")
    assert len(load_dataset("mnist", cache_dir=cache).train) == 14


def test_absent_data_names_the_three_ways(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(datasets, "DEBIAN_ROOT", tmp_path / "nothing")
    monkeypatch.delenv("CONVZOO_DATA", raising=False)
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", cache_dir=cache)
    message = str(err.value)
    for way in ("--data-dir DIR", "CONVZOO_DATA=DIR", "--download", "apt-get install dataset-fashion-mnist"):
        assert way in message
    with pytest.raises(DataError, match="no such folder"):
        load_dataset("mnist", data_dir=tmp_path / "typo", cache_dir=cache)
    with pytest.raises(DataError, match="unknown data set 'svhn'"):
        load_dataset("svhn", cache_dir=cache)


def test_download_goes_through_torchvision_into_the_cache(tmp_path, cache, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeMNIST:  # what torchvision.datasets.MNIST(root, download=True) leaves on disk
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            make_toy_mnist(Path(root) / "MNIST" / "raw", 15, 5)

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    monkeypatch.setattr(datasets, "DEBIAN_ROOT", tmp_path / "nothing")
    monkeypatch.delenv("CONVZOO_DATA", raising=False)
    with pytest.raises(DataError, match="not found"):
        load_dataset("mnist", cache_dir=cache)
    assert calls == []  # never without download=True
    assert len(load_dataset("mnist", download=True, cache_dir=cache).train) == 15
    assert calls == [(str(cache / "datasets" / "mnist"), True, True), (str(cache / "datasets" / "mnist"), False, True)]


def test_decoded_cache_is_used_and_rebuilt_when_stale_or_corrupt(tmp_path, cache, monkeypatch):
    root = make_toy_mnist(tmp_path / "m", 20, 10)
    first = load_dataset("mnist", data_dir=root, cache_dir=cache)
    (cached,) = (cache / "decoded").glob("*.safetensors")

    def fail(*args, **kwargs):
        raise AssertionError("decoded again although the cache is fresh")

    with monkeypatch.context() as m:
        m.setattr(datasets, "read_idx", fail)
        again = load_dataset("mnist", data_dir=root, cache_dir=cache)
    assert torch.equal(first.train.images, again.train.images) and again.train.digest == first.train.digest
    cached.write_bytes(b"garbage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rebuilt = load_dataset("mnist", data_dir=root, cache_dir=cache)
    assert torch.equal(rebuilt.train.images, first.train.images)
    assert any("unreadable data cache" in str(w.message) for w in caught)
    make_toy_mnist(root, 25, 10)  # the files change: a new key
    assert len(load_dataset("mnist", data_dir=root, cache_dir=cache).train) == 25


def test_unwritable_cache_only_warns(tmp_path, monkeypatch):
    root = make_toy_mnist(tmp_path / "m", 20, 10)
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="could not write the data cache"):
        data = load_dataset("mnist", data_dir=root, cache_dir=blocker)
    assert len(data.train) == 20


# ---- splits -----------------------------------------------------------------------------------------------


def test_validation_split_is_fixed_disjoint_and_checked(tmp_path, cache):
    data = load_dataset("mnist", data_dir=make_toy_mnist(tmp_path / "m", 100, 10), cache_dir=cache)
    train, val = split_train_val(data.train, 0.2, seed=3)
    again = split_train_val(data.train, 0.2, seed=3)[1]
    assert len(train) == 80 and len(val) == 20 and torch.equal(val.indices, again.indices)
    assert not set(train.indices.tolist()) & set(val.indices.tolist())
    assert torch.equal(val.images, data.train.images[val.indices])
    assert not torch.equal(val.indices, split_train_val(data.train, 0.2, seed=4)[1].indices)
    check_disjoint(train, val, data.test)
    with pytest.raises(DataError, match="read from the training files"):
        check_disjoint(data.train, val)
    with pytest.raises(DataError, match="exactly the training images"):
        check_disjoint(data.train, data.train)
    with pytest.raises(DataError, match="empty split"):
        split_train_val(data.train, 0.001)
    with pytest.raises(DataError, match="between 0 and 1"):
        split_train_val(data.train, 1.0)


def test_in_memory_cost_is_the_uint8_size(tmp_path, cache):
    data = load_dataset("mnist", data_dir=make_toy_mnist(tmp_path / "m", 100, 10), cache_dir=cache)
    assert data.train.images.dtype == torch.uint8 and data.train.images.nbytes == 100 * 28 * 28


# ---- the real data sets (skipped with the reason when absent) -----------------------------------------------


@pytest.mark.data
def test_real_fashion_mnist():
    data = load_dataset("fashion-mnist", data_dir=need_fashion())
    assert data.train.images.shape == (60000, 1, 28, 28) and len(data.test) == 10000
    assert data.mean[0] == pytest.approx(0.2860, abs=1e-4) and data.std[0] == pytest.approx(0.3530, abs=1e-4)
    assert torch.bincount(data.train.labels).tolist() == [6000] * 10


@pytest.mark.data
def test_real_mnist():
    data = load_dataset("mnist", data_dir=need_mnist())
    assert data.train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # shared/data/README.md
    assert data.mean[0] == pytest.approx(0.1307, abs=1e-4) and data.std[0] == pytest.approx(0.3081, abs=1e-4)


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_real_cifar10_is_the_lossless_copy_with_the_official_statistics():
    if not (SHARED_DATA / "cifar10" / "train.tar.gz").exists():
        pytest.skip(f"the lossless CIFAR-10 not found at {SHARED_DATA / 'cifar10'}")
    data = load_dataset("cifar10", data_dir=SHARED_DATA)  # 60,000 PNGs: about 45 s on 2 shared cores
    assert data.source == str(SHARED_DATA / "cifar10") and data.test is not None
    assert data.train.images.shape == (50000, 3, 32, 32) and data.test.images.shape == (10000, 3, 32, 32)
    assert data.classes == datasets.CIFAR10_CLASSES
    assert torch.bincount(data.train.labels).tolist() == [5000] * 10
    assert torch.bincount(data.test.labels).tolist() == [1000] * 10
    # the official training-set statistics (shared/data/README.md): JPEG's would differ in the third digit
    assert data.mean == pytest.approx((0.49139968, 0.48215841, 0.44653091), abs=1e-7)
    assert data.std == pytest.approx((0.24703223, 0.24348513, 0.26158784), abs=1e-7)


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_real_cifar10_jpegs_are_read_as_an_image_folder():
    archive = SHARED_DATA / "cifar10-jpg" / "train.tar.gz"
    if not archive.exists():
        pytest.skip(f"CIFAR-10 JPEGs not found at {archive}")
    data = load_dataset(f"imagefolder:{archive}")
    assert data.train.images.shape == (50000, 3, 32, 32) and data.test is None
    assert data.classes == datasets.CIFAR10_CLASSES and torch.bincount(data.train.labels).tolist() == [5000] * 10
