"""What loading a data set checks and records: an empty imagefolder path, empty class folders, leakage
between splits by content, a stratified --train-limit and image-folder paths stored resolved."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from convzoo.data import check_disjoint, load_dataset, split_train_val
from convzoo.errors import DataError


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _image_folder(root: Path, counts: dict[str, int], seed: int = 0, size: tuple[int, int] = (6, 6)) -> Path:
    """``root/<class>/<i>.png`` with ``counts[class]`` random RGB images each (distinct pixels)."""
    g = torch.Generator().manual_seed(seed)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = torch.randint(0, 256, (*size, 3), generator=g, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


# ---- #12: an empty path -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["imagefolder:", "imagefolder:  "])
def test_empty_imagefolder_path_is_refused_without_scanning(tmp_path, cache, monkeypatch, name):
    _image_folder(tmp_path, {"cat": 1})  # the current folder holds an image folder: it must not be read
    (tmp_path / "last").symlink_to(tmp_path)  # as convzoo's own runs/last link: no "symlink loop" either
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"^imagefolder:PATH needs a path") as err:
        load_dataset(name, cache_dir=cache)
    assert "\n" not in str(err.value) and not cache.exists()


# ---- #14: an empty class folder ---------------------------------------------------------------------------


def test_empty_class_folder_is_refused_naming_it(tmp_path, cache):
    root = _image_folder(tmp_path / "pets", {"cat": 2, "dog": 2})
    (root / "bird").mkdir()
    with pytest.raises(DataError, match=r"bird: class folder without images.*add images to it or remove it"):
        load_dataset(f"imagefolder:{root}", cache_dir=cache)


def test_empty_class_folder_is_refused_after_a_cached_load(tmp_path, cache):
    root = _image_folder(tmp_path / "pets", {"cat": 2, "dog": 2})
    assert load_dataset(f"imagefolder:{root}", cache_dir=cache).classes == ("cat", "dog")
    (root / "bird").mkdir()  # no file changed: the cached tensors must not hide the new, empty class
    with pytest.raises(DataError, match=r"bird: class folder without images"):
        load_dataset(f"imagefolder:{root}", cache_dir=cache)


def test_empty_class_folder_in_the_test_split_is_refused(tmp_path, cache):
    _image_folder(tmp_path / "pets" / "train", {"cat": 2, "dog": 2})
    _image_folder(tmp_path / "pets" / "test", {"cat": 1}, seed=1)
    (tmp_path / "pets" / "test" / "dog").mkdir()
    with pytest.raises(DataError, match=r"test/dog: class folder without images"):
        load_dataset(f"imagefolder:{tmp_path / 'pets'}", cache_dir=cache)


# ---- #4: leakage by content -------------------------------------------------------------------------------


def test_test_folder_equal_to_train_minus_one_file_is_refused(tmp_path, cache):
    root = tmp_path / "pets"
    _image_folder(root / "train", {"cat": 3, "dog": 3})
    _image_folder(root / "test", {"cat": 3, "dog": 3})  # same seed: the same images...
    (root / "test" / "dog" / "2.png").unlink()  # ...less one, so not an exact copy of the split
    data = load_dataset(f"imagefolder:{root}", cache_dir=cache)
    with pytest.raises(DataError) as err:
        check_disjoint(data.train, data.test)
    assert str(err.value).startswith(  # the two files of each pair, not positions in the decoded tensors
        f"5 of the 5 evaluation images have the pixels of a training image ({root / 'test/cat/0.png'} = "
        f"{root / 'train/cat/0.png'}, {root / 'test/cat/1.png'} = {root / 'train/cat/1.png'}, ...); remove the "
        "duplicates from one side")


def test_one_shared_image_between_train_and_test_is_refused(tmp_path, cache):
    root = tmp_path / "pets"
    _image_folder(root / "train", {"cat": 3, "dog": 3})
    _image_folder(root / "test", {"cat": 2, "dog": 2}, seed=1)
    check_disjoint(*(lambda d: (d.train, d.test))(load_dataset(f"imagefolder:{root}", cache_dir=cache)))
    (root / "test" / "cat" / "copy.png").write_bytes((root / "train" / "dog" / "1.png").read_bytes())
    data = load_dataset(f"imagefolder:{root}", cache_dir=cache)  # test: cat/0, cat/1, cat/copy, dog/0, dog/1
    with pytest.raises(DataError) as err:
        check_disjoint(data.train, data.test)
    assert str(err.value).startswith(f"1 of the 5 evaluation images have the pixels of a training image "
                                     f"({root / 'test/cat/copy.png'} = {root / 'train/dog/1.png'}); remove")


def test_duplicate_inside_a_split_that_lands_on_both_sides_of_the_validation_split_is_refused(tmp_path, cache):
    root = _image_folder(tmp_path / "pets", {"cat": 10, "dog": 10})
    data = load_dataset(f"imagefolder:{root}", cache_dir=cache)
    train, val = split_train_val(data.train, 0.2, seed=0)
    check_disjoint(train, val)  # distinct images: accepted
    source, copy = int(train.indices[0]), int(val.indices[0])
    (root / ("cat" if copy < 10 else "dog") / f"{copy % 10}.png").write_bytes(
        (root / ("cat" if source < 10 else "dog") / f"{source % 10}.png").read_bytes())
    data = load_dataset(f"imagefolder:{root}", cache_dir=cache)
    name = lambda i: root / ("cat" if i < 10 else "dog") / f"{i % 10}.png"  # noqa: E731  (position -> file)
    with pytest.raises(DataError) as err:  # both files in the one folder, through the split's positions
        check_disjoint(*split_train_val(data.train, 0.2, seed=0))
    assert str(err.value).startswith(f"1 of the 4 evaluation images have the pixels of a training image "
                                     f"({name(copy)} = {name(source)}); remove")


def test_splits_read_from_files_of_many_images_are_named_by_position():
    from convzoo.data import Split

    images = torch.randint(0, 256, (6, 1, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    train = Split(images[:4], torch.zeros(4, dtype=torch.int64), files=("/data/train-images-idx3-ubyte",))
    test = Split(images[[5, 1, 4]], torch.zeros(3, dtype=torch.int64), files=("/data/t10k-images-idx3-ubyte",))
    with pytest.raises(DataError, match=r"^1 of the 3 evaluation images have the pixels of a training image "
                                        r"\(evaluation #1 = training #1, positions from 0\)"):  # MNIST's idx files
        check_disjoint(train, test)


def test_symlinked_class_alias_is_refused(tmp_path, cache):
    root = _image_folder(tmp_path / "pets", {"cat": 2, "dog": 2})
    (root / "cat_alias").symlink_to(root / "cat", target_is_directory=True)
    with pytest.raises(DataError, match=r"cat and .*cat_alias are the same folder .*remove the link"):
        load_dataset(f"imagefolder:{root}", cache_dir=cache)


def test_alias_added_after_a_cached_load_is_refused(tmp_path, cache):
    root = _image_folder(tmp_path / "pets", {"cat": 2, "dog": 2})
    load_dataset(f"imagefolder:{root}", cache_dir=cache)
    (root / "cat_alias").symlink_to(root / "cat", target_is_directory=True)
    with pytest.raises(DataError, match=r"are the same folder"):
        load_dataset(f"imagefolder:{root}", cache_dir=cache)


def test_hashes_are_per_image_cached_and_carried_by_subsets(tmp_path, cache):
    from convzoo.data.datasets import image_hashes, subset

    root = _image_folder(tmp_path / "pets", {"cat": 3, "dog": 3})
    first = load_dataset(f"imagefolder:{root}", cache_dir=cache)
    cached = load_dataset(f"imagefolder:{root}", cache_dir=cache)
    assert torch.equal(first.train.hashes, image_hashes(first.train.images))
    assert torch.equal(cached.train.hashes, first.train.hashes) and len(set(first.train.hashes.tolist())) == 6
    picked = subset(first.train, torch.tensor([4, 1]))
    assert torch.equal(picked.hashes, first.train.hashes[[4, 1]])
    assert image_hashes(first.train.images[:1].clone()).tolist() == first.train.hashes[:1].tolist()


# ---- #15: --train-limit draws a stratified subset -----------------------------------------------------------


def _ordered_split(counts: list[int]):
    """A split ordered by class as an image folder is: ``counts[c]`` images of class c, each image distinct."""
    from convzoo.data import Split

    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    images = torch.arange(len(labels), dtype=torch.int64).view(-1, 1, 1, 1).to(torch.uint8).expand(-1, 1, 2, 2)
    return Split(images.contiguous(), labels)


def test_train_limit_draws_every_class_in_proportion_not_the_first_n():
    from convzoo.data.datasets import stratified_subset

    split = _ordered_split([60, 30, 10])
    drawn = stratified_subset(split, 20, seed=5)
    assert torch.bincount(drawn.labels).tolist() == [12, 6, 2]  # the first 20 would all be class 0
    assert drawn.indices.tolist() == sorted(drawn.indices.tolist()) and len(set(drawn.indices.tolist())) == 20
    assert torch.equal(drawn.images, split.images[drawn.indices])
    assert drawn.indices.tolist() != list(range(12)) + list(range(60, 66)) + list(range(90, 92))  # random in class


def test_train_limit_draw_is_fixed_by_the_seed_and_uses_largest_remainders():
    from convzoo.data.datasets import stratified_subset

    split = _ordered_split([5, 5, 5])
    first, again = stratified_subset(split, 7, seed=1), stratified_subset(split, 7, seed=1)
    assert torch.equal(first.indices, again.indices)
    assert torch.bincount(first.labels).tolist() == [3, 2, 2]  # 7/3 each: the one left over to the lowest class
    other = [stratified_subset(split, 7, seed=s).indices.tolist() for s in range(2, 6)]
    assert any(o != first.indices.tolist() for o in other)
    assert stratified_subset(split, 15, seed=1) is split and stratified_subset(split, 99, seed=1) is split
    assert torch.bincount(stratified_subset(_ordered_split([8, 1, 1]), 2, seed=0).labels, minlength=3).tolist() \
        == [2, 0, 0]  # quotas below one image: those classes are left out (and the run warns)


def test_fit_with_train_limit_on_an_image_folder_trains_on_every_class(tmp_path, cache, monkeypatch):
    from convzoo.train import TrainConfig, fit

    monkeypatch.setenv("CONVZOO_CACHE", str(cache))
    root = tmp_path / "pets"
    _image_folder(root / "train", {"a": 6, "b": 6, "c": 6}, size=(28, 28))
    _image_folder(root / "test", {"a": 2, "b": 2, "c": 2}, seed=1, size=(28, 28))
    out = io.StringIO()
    fit(TrainConfig(model="simple_cnn", dataset=f"imagefolder:{root}", epochs=1, batch_size=3, train_limit=6,
                    out=str(tmp_path / "run")), progress=False, out=out)
    assert "[6 train, 6 test]" in out.getvalue() and "warning:" not in out.getvalue()  # first 6: all class a


# ---- #17: image-folder paths are stored resolved ------------------------------------------------------------


def test_relative_imagefolder_path_is_stored_resolved_and_eval_works_from_elsewhere(tmp_path, cache, monkeypatch):
    import json

    import tomllib

    from convzoo.train import TrainConfig, fit
    from convzoo.train.inference import evaluate

    monkeypatch.setenv("CONVZOO_CACHE", str(cache))
    work = tmp_path / "work"
    _image_folder(work / "pets" / "train", {"a": 4, "b": 4}, size=(28, 28))
    _image_folder(work / "pets" / "test", {"a": 2, "b": 2}, seed=1, size=(28, 28))
    monkeypatch.chdir(work)
    fit(TrainConfig(model="simple_cnn", dataset="imagefolder:pets", epochs=1, batch_size=4, out="run"),
        progress=False, out=io.StringIO())
    stored = f"imagefolder:{work / 'pets'}"
    assert tomllib.loads((work / "run" / "config.toml").read_text())["dataset"] == stored
    assert json.loads((work / "run" / "checkpoints" / "last" / "model.json").read_text())["dataset"] == stored
    monkeypatch.chdir(tmp_path)  # another folder: "pets" alone would not be found here
    first = evaluate(work / "run", device="cpu")
    assert len(first.result.confusion) == 2 and int(first.result.confusion.sum()) == 4
    (work / "pets").rename(tmp_path / "moved")  # the data moved: --data-dir points the run at it
    moved = evaluate(work / "run", data_dir=str(tmp_path / "moved"), device="cpu")
    assert torch.equal(moved.result.confusion, first.result.confusion)


def test_resuming_a_run_with_the_relative_path_it_was_typed_with(tmp_path, cache, monkeypatch):
    from convzoo.data.datasets import resolve_dataset_name
    from convzoo.train import TrainConfig, fit

    monkeypatch.setenv("CONVZOO_CACHE", str(cache))
    _image_folder(tmp_path / "pets" / "train", {"a": 4, "b": 4}, size=(28, 28))
    _image_folder(tmp_path / "pets" / "test", {"a": 2, "b": 2}, seed=1, size=(28, 28))
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(model="simple_cnn", dataset="imagefolder:pets", epochs=1, batch_size=4, out="run")
    fit(config, progress=False, out=io.StringIO())
    again = fit(config, resume="run", progress=False, out=io.StringIO())  # typed the same way: accepted
    assert again.selected_epoch == 1
    assert resolve_dataset_name("imagefolder:~/x") == f"imagefolder:{Path.home() / 'x'}"
    assert resolve_dataset_name("mnist") == "mnist" and resolve_dataset_name("imagefolder:") == "imagefolder:"
