"""Image folders on their two paths: the layouts (train/ + val/ or test/, one folder), which path a folder takes
and why, the streaming loader's determinism (any number of workers and processes, resumed mid-epoch or after a
kill -9: the same weights bit for bit), unreadable files, the leakage check by file bytes, --train-limit
before any decode, and ``convzoo eval RUN --dataset imagefolder:DIR``."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convzoo.data import load_dataset
from convzoo.data.folders import inspect_files, scan_image_folder
from convzoo.data.presets import train_transform
from convzoo.data.streaming import EpochBatchSampler, StreamDataset
from convzoo.errors import ConvzooError, DataError
from convzoo.train import TrainConfig, fit
from convzoo.train.loader import StreamBatches
from convzoo.train.pipeline import Preprocess

sys.path.insert(0, str(Path(__file__).parent))
from reliability.harness import launch, outcome  # noqa: E402

CLASSES = ("cat", "dog")


def _photos(root: Path, split: str, per_class: int, *, seed: int, sizes: tuple[int, int] = (20, 60),
            same_size: tuple[int, int] | None = None) -> Path:
    """``per_class`` random images per class in ``root/split/<class>/``, JPEG and PNG in turn, of random sizes
    from ``sizes`` (or all ``same_size``); the dog images' red channel saturated, so that they can be learned."""
    rng = np.random.default_rng(seed)
    for c in CLASSES:
        for i in range(per_class):
            h, w = same_size or (int(rng.integers(*sizes)), int(rng.integers(*sizes)))
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            if c == "dog":
                pixels[..., 0] = 255
            path = root / split / c / f"{i:03d}.{'jpg' if i % 2 else 'png'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
    return root


def _run(root: Path, out: Path, **kwargs) -> str:
    text = io.StringIO()
    values = dict(model="simple_cnn", dataset=f"imagefolder:{root}", epochs=1, batch_size=8, image_size=28,
                  out=str(out), workers=0) | kwargs
    fit(TrainConfig(**values), progress=False, out=text)
    return text.getvalue()


# ---- layouts and the choice of path ----------------------------------------------------------------------


@pytest.mark.parametrize("flags, path, pipeline, recorded", [
    ({}, "data: held in memory, decoded once", "held", "cache_resized = true"),
    ({"stream": True}, "data: streamed from disk", "stream", "stream = true"),
    ({"cache_memory": 0.0}, "data: streamed from disk", "stream", "stream = true")])
def test_a_mixed_size_train_and_val_folder_is_held_resized_or_streams_and_val_is_the_val_split(
        tmp_path, flags, path, pipeline, recorded):
    root = _photos(tmp_path / "pets", "train", 8, seed=0)
    _photos(root, "val", 3, seed=1, sizes=(70, 90))  # another size range than train: normal
    said = _run(root, tmp_path / "run", **flags)
    assert "[16 train, 6 val]" in said
    assert path in said
    if pipeline == "held":
        assert "shorter side resized to at most 32 px" in said
        assert "crops of the held images cut by this process" in said
    elif not flags.get("stream"):
        assert "more than --cache-memory 0.00 GB" in said
        assert "aspect ratio kept, never stretched to one size" in said
    import json

    meta = json.loads((tmp_path / "run" / "checkpoints" / "last" / "model.json").read_text())
    assert meta["pipeline"] == pipeline and meta["input"]["size"] == [28, 28] and meta["input"]["resize"] == "crop"
    assert set(meta["data"]["splits"]) == {"train", "val"}
    assert recorded in (tmp_path / "run" / "config.toml").read_text()  # so that a resume takes the same path


def test_held_images_are_resized_as_evaluation_resizes_and_evaluate_as_the_files_do(tmp_path):
    """Held at shorter side round(28 / 0.875) = 32, aspect kept, smaller ones as they are; evaluation batches of
    the held images equal those decoded from the files bit for bit; training draws the same crops for 0 and 2
    workers, and other crops than from the files (cut from the held image)."""
    from convzoo.data.presets import eval_transform
    from convzoo.data.streaming import decode_resized, held_bytes

    root = _photos(tmp_path / "pets", "train", 10, seed=0, sizes=(20, 90)) / "train"
    split = inspect_files(scan_image_folder(root, root).train)
    held = decode_resized(split, 32)
    assert split.sizes is not None
    for X, (h, w) in zip(held, split.sizes.tolist(), strict=True):
        assert X is not None and X.dtype == torch.uint8 and X.is_contiguous()
        if min(h, w) <= 32:
            assert tuple(X.shape[1:]) == (h, w)
        else:
            assert min(X.shape[1:]) == 32 and abs(X.shape[1] / X.shape[2] - h / w) < 0.1
    counts: dict[tuple[int, int], int] = {}
    for h, w in split.sizes.tolist():
        counts[(h, w)] = counts.get((h, w), 0) + 1
    assert held_bytes(counts, 32) == sum(X.numel() for X in held if X is not None)

    def batches(workers: int, transform, shuffle: bool, source):
        loader = StreamBatches(split, 8, device=torch.device("cpu"), preprocess=Preprocess(3), transform=transform,
                               channels=3, shuffle=shuffle, seed=3, workers=workers, held=source)
        return [X for epoch in (0, 1) for _, X, _ in loader.epoch(epoch)]

    for a, b in zip(batches(0, eval_transform(28), False, held), batches(0, eval_transform(28), False, None),
                    strict=True):
        assert torch.equal(a, b)
    trained = batches(0, train_transform(28), True, held)
    assert all(torch.equal(a, b) for a, b in zip(trained, batches(2, train_transform(28), True, held), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(trained, batches(0, train_transform(28), True, None),
                                                     strict=True))
    with pytest.raises(ValueError, match="9 held images for a split of 20"):
        StreamDataset(split, train_transform(28), 3, held=held[:9])


def test_cache_resized_holds_a_folder_beyond_cache_memory_and_is_refused_where_it_means_nothing(tmp_path):
    root = _photos(tmp_path / "pets", "train", 4, seed=0)
    _photos(root, "val", 2, seed=1)
    said = _run(root, tmp_path / "run", cache_memory=0.0, cache_resized=True)
    assert "data: held in memory" in said and "--cache-resized (--stream" in said
    with pytest.raises(ConvzooError, match="--stream .* and --cache-resized .* contradict each other"):
        TrainConfig(dataset=f"imagefolder:{root}", stream=True, cache_resized=True).validate()
    one = _photos(tmp_path / "one", "train", 4, seed=0, same_size=(28, 28))
    _photos(one, "val", 2, seed=1, same_size=(28, 28))
    with pytest.raises(ConvzooError, match="--cache-resized is for image folders of mixed sizes"):
        _run(one, tmp_path / "run2", cache_resized=True)
    from convzoo.train.data import load_splits

    with pytest.raises(ConvzooError, match="--cache-resized is for image folders"):
        load_splits(TrainConfig(dataset="mnist", cache_resized=True))


def test_a_one_size_folder_stays_in_memory_and_val_is_read_there_too(tmp_path):
    root = _photos(tmp_path / "pets", "train", 6, seed=0, same_size=(28, 28))
    _photos(root, "val", 2, seed=1, same_size=(28, 28))
    data = load_dataset(f"imagefolder:{root}")
    assert data.val is not None and len(data.val) == 4 and data.test is None
    said = _run(root, tmp_path / "run", image_size=None)
    assert "[12 train, 4 val]" in said and "data: in memory: 16 images of one size, 28x28" in said


@pytest.mark.parametrize("flags, reason", [({"stream": True}, "--stream"),
                                           ({"cache_memory": 0.0}, "more than --cache-memory"),
                                           ({"image_size": 30}, "--image-size 30 for images of 28x28")])
def test_a_one_size_folder_streams_when_asked_too_large_or_cropped(tmp_path, flags, reason):
    root = _photos(tmp_path / "pets", "train", 6, seed=0, same_size=(28, 28))
    _photos(root, "test", 2, seed=1, same_size=(28, 28))
    said = _run(root, tmp_path / "run", **({"image_size": None} | flags))
    assert "data: streamed from disk" in said and reason in said and "[12 train, 4 test]" in said


def test_one_folder_is_split_by_val_split_and_a_val_folder_refuses_it(tmp_path):
    flat = _photos(tmp_path / "flat", "", 10, seed=0)
    assert "[15 train, 5 val]" in _run(flat, tmp_path / "run1", val_split=0.25)
    root = _photos(tmp_path / "pets", "train", 4, seed=0)
    _photos(root, "val", 2, seed=1)
    with pytest.raises(ConvzooError, match="has a val/ folder.*drop --val-split"):
        _run(root, tmp_path / "run2", val_split=0.25)


def test_streaming_refuses_the_in_memory_flags(tmp_path):
    root = _photos(tmp_path / "pets", "train", 4, seed=0)
    _photos(root, "val", 2, seed=1)
    for flags in ({"resize": 28}, {"augment": "flip"}):
        with pytest.raises(ConvzooError, match="is for data held in memory"):
            _run(root, tmp_path / "run", **flags)
    from convzoo.train.data import load_splits

    with pytest.raises(ConvzooError, match="--stream is for image folders"):
        load_splits(TrainConfig(dataset="mnist", stream=True))


# ---- determinism ---------------------------------------------------------------------------------------


def _batches(root: Path, workers: int, shard: tuple[int, int] = (0, 1)) -> list[tuple[torch.Tensor, torch.Tensor]]:
    split = inspect_files(scan_image_folder(root, root).train)
    pre = Preprocess(3)
    loader = StreamBatches(split, 8, device=torch.device("cpu"), preprocess=pre, transform=train_transform(28),
                           channels=3, shuffle=True, seed=3, shard=shard, workers=workers)
    return [(X, y) for epoch in (0, 1) for _, X, y in loader.epoch(epoch)]


def test_zero_and_two_workers_give_identical_batches(tmp_path):
    root = _photos(tmp_path / "pets", "train", 10, seed=0) / "train"
    alone, workers = _batches(root, 0), _batches(root, 2)
    assert len(alone) == 2 * 3 and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                                       for a, b in zip(alone, workers, strict=True))
    assert not torch.equal(alone[0][0], alone[3][0])  # another epoch: another order and other crops


def test_two_processes_each_take_their_rows_of_the_same_global_batch(tmp_path):
    root = _photos(tmp_path / "pets", "train", 10, seed=0) / "train"
    whole = _batches(root, 0)
    parts = [_batches(root, 0, (rank, 2)) for rank in (0, 1)]
    for (X, y), (X0, y0), (X1, y1) in zip(whole, *parts, strict=True):
        assert torch.equal(X[0::2], X0) and torch.equal(X[1::2], X1)
        assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)


def test_an_image_draws_the_same_augmentation_wherever_it_is_decoded(tmp_path):
    root = _photos(tmp_path / "pets", "train", 3, seed=0) / "train"
    split = inspect_files(scan_image_folder(root, root).train)
    data = StreamDataset(split, train_transform(16), 3, seed=5, train=True)
    torch.manual_seed(123)
    first = data[(2, 4)][0]
    torch.manual_seed(999)  # the caller's generator plays no part, and is left as it was
    state = torch.get_rng_state()
    assert torch.equal(first, data[(2, 4)][0]) and torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(first, data[(3, 4)][0])
    order = [list(b) for b in EpochBatchSampler(6, 4, shuffle=True, seed=5)]
    sampler = EpochBatchSampler(6, 4, shuffle=True, seed=5)
    sampler.set_epoch(0, start=1)
    assert [list(b) for b in sampler] == order[1:]  # a resumed epoch goes on with the same batches


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("fault, path", [("optim.lr_at:6:KILL", "--stream"), ("optim.lr_at:7:INT", "--stream"),
                                         ("optim.lr_at:6:KILL", "--cache-resized")])
def test_a_streamed_run_killed_mid_epoch_resumes_to_the_same_weights(tmp_path, fault, path):
    """3 epochs of 4 steps; lr_at is called once a step and once per epoch's row, so call 6 is step 1 of epoch
    2 (kill -9: resumed from epoch 1's checkpoint) and call 7 its step 2 (SIGINT: saved at epoch 2, step 2,
    resumed from there). The faulty run has 2 loader workers and is resumed with none; streamed from the files,
    or held resized."""
    root = _photos(tmp_path / "pets", "train", 16, seed=0)
    _photos(root, "val", 3, seed=1)
    args = ["train", "--model", "simple_cnn", "--dataset", f"imagefolder:{root}", "--image-size", "28",
            "--epochs", "3", "--batch-size", "8", "--quiet", path]
    reference = launch([*args, "--out", str(tmp_path / "ref"), "--workers", "0"])
    assert reference.wait(300) == 0, reference.stderr.read() if reference.stderr else ""
    faulty = launch([*args, "--out", str(tmp_path / "run"), "--workers", "2"], at=[fault])
    code = faulty.wait(300)
    assert code == (-9 if fault.endswith("KILL") else 130), faulty.stderr.read() if faulty.stderr else ""
    resumed = launch(["train", "--resume", str(tmp_path / "run"), "--workers", "0", "--quiet"])
    assert resumed.wait(300) == 0, resumed.stderr.read() if resumed.stderr else ""
    out = resumed.stdout.read() if resumed.stdout else ""
    assert ("at epoch 2, step 2" if fault.endswith("INT") else "at epoch 2, step 0") in out
    assert outcome(tmp_path / "run") == outcome(tmp_path / "ref")


# ---- bad files, leakage, the limit ---------------------------------------------------------------------


def test_a_file_that_is_no_image_is_refused_before_training(tmp_path):
    root = _photos(tmp_path / "pets", "train", 4, seed=0)
    _photos(root, "val", 2, seed=1)
    (root / "train" / "dog" / "notes.jpg").write_text("not an image")
    with pytest.raises(DataError, match=r"notes.jpg: not a readable image"):
        _run(root, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_file_corrupt_past_its_header_is_named_and_left_out_mid_epoch(tmp_path, capfd):
    root = _photos(tmp_path / "pets", "train", 6, seed=0, sizes=(40, 60))
    _photos(root, "val", 2, seed=1)
    jpeg = root / "train" / "cat" / "001.jpg"
    data = jpeg.read_bytes()
    jpeg.write_bytes(data[: len(data) * 2 // 3])  # the header intact, the pixels cut short
    said = _run(root, tmp_path / "run", epochs=2, workers=2, stream=True)
    assert "val accuracy" in said
    assert "001.jpg: not a readable image" in capfd.readouterr().err
    said = _run(root, tmp_path / "held", epochs=2)  # held: named once, when decoded at the start
    assert "data: held in memory" in said and "val accuracy" in said
    assert capfd.readouterr().err.count("001.jpg: not a readable image") == 1


def test_a_byte_copy_of_a_training_file_in_val_is_refused(tmp_path):
    root = _photos(tmp_path / "pets", "train", 4, seed=0)
    _photos(root, "val", 2, seed=1)
    (root / "val" / "cat" / "copy.png").write_bytes((root / "train" / "dog" / "002.png").read_bytes())
    with pytest.raises(DataError, match=r"1 of the 5 evaluation images are byte-for-byte copies of a training "
                                         r"image \(.*val/cat/copy.png = .*train/dog/002.png\)"):
        _run(root, tmp_path / "run")


def test_train_limit_picks_the_files_before_any_is_decoded(tmp_path, monkeypatch):
    import convzoo.data.streaming as streaming

    root = _photos(tmp_path / "pets", "train", 20, seed=0)
    _photos(root, "val", 2, seed=1)
    decoded: set[str] = set()
    real = streaming.decode_image

    def counting(path, *args, **kwargs):
        decoded.add(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(streaming, "decode_image", counting)
    said = _run(root, tmp_path / "run", train_limit=6)
    assert "[6 train, 4 val]" in said
    train_files = {str(p) for p in (root / "train").rglob("*.*")}
    assert len(decoded & train_files) == 6  # the limited split's files, and no other training file


# ---- convzoo eval RUN --dataset imagefolder:DIR -------------------------------------------------------------


def test_eval_of_a_streamed_run_on_its_val_split_and_on_any_labelled_folder(tmp_path):
    import json
    import shutil

    import convzoo

    root = _photos(tmp_path / "pets", "train", 8, seed=0)
    _photos(root, "val", 3, seed=1)
    _run(root, tmp_path / "run", epochs=2)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    best = max(r["val_acc"] for r in rows)
    own = convzoo.evaluate(tmp_path / "run", "val", device="cpu")
    assert own.split == "val" and own.result.count == 6 and own.result.accuracy == best
    shutil.copytree(root / "val", tmp_path / "elsewhere" / "val")  # the same images, named otherwise
    shutil.rmtree(tmp_path / "elsewhere" / "val" / "cat")  # a folder lacking a class is fine
    other = convzoo.evaluate(tmp_path / "run", dataset=f"imagefolder:{tmp_path / 'elsewhere'}", device="cpu")
    assert other.split == "val" and other.result.count == 3
    assert other.result.confusion[1].tolist() == own.result.confusion[1].tolist()  # the dogs, predicted alike
    flat = convzoo.evaluate(tmp_path / "run", dataset=f"imagefolder:{tmp_path / 'elsewhere' / 'val'}", device="cpu")
    assert flat.result.confusion.tolist() == other.result.confusion.tolist()
    (tmp_path / "elsewhere" / "val" / "zebra").mkdir()
    shutil.copy(root / "val" / "cat" / "000.png", tmp_path / "elsewhere" / "val" / "zebra")
    with pytest.raises(DataError, match=r"class folders zebra are not among the run's classes cat, dog"):
        convzoo.evaluate(tmp_path / "run", dataset=f"imagefolder:{tmp_path / 'elsewhere'}", device="cpu")
    with pytest.raises(DataError, match=r"has no test/ folder"):
        convzoo.evaluate(tmp_path / "run", "test", dataset=f"imagefolder:{tmp_path / 'pets'}", device="cpu")


def test_eval_of_an_in_memory_run_on_another_folder_preprocesses_as_its_evaluation_did(tmp_path):
    import shutil

    import convzoo

    root = _photos(tmp_path / "pets", "train", 6, seed=0, same_size=(28, 28))
    _photos(root, "test", 3, seed=1, same_size=(28, 28))
    _run(root, tmp_path / "run", image_size=None)
    own = convzoo.evaluate(tmp_path / "run", device="cpu")
    shutil.copytree(root / "test", tmp_path / "copy")
    other = convzoo.evaluate(tmp_path / "run", dataset=f"imagefolder:{tmp_path / 'copy'}", device="cpu")
    assert other.result.confusion.tolist() == own.result.confusion.tolist() and other.result.count == 6
    with pytest.raises(ConvzooError, match=r"--dataset takes imagefolder:DIR"):
        convzoo.evaluate(tmp_path / "run", dataset="mnist", device="cpu")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_processes_stream_the_weights_of_one(tmp_path):
    """torchrun's 2 processes (gloo on 127.0.0.1) each decode their rows of every global batch; the weights
    are one process's (to float rounding: the gradients are averaged in another order)."""
    import os
    import subprocess

    from safetensors.torch import load_file

    root = _photos(tmp_path / "pets", "train", 20, seed=0)
    _photos(root, "val", 5, seed=1)
    args = [sys.executable, "-m", "convzoo", "train", "--model", "simple_cnn", "--dataset", f"imagefolder:{root}",
            "--image-size", "28", "--epochs", "2", "--batch-size", "8", "--optimizer", "momentum", "--lr", "0.03",
            "--workers", "1", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")} | {"OMP_NUM_THREADS": "1"}
    for name, extra in (("one", ["--threads", "1"]), ("two", ["--nproc-per-node", "2"])):
        done = subprocess.run([*args, *extra, "--out", str(tmp_path / name)], capture_output=True, text=True,
                              timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = (load_file(tmp_path / n / "checkpoints" / "last" / "model.safetensors") for n in ("one", "two"))
    assert max(float((one[k] - two[k]).abs().max()) for k in one) <= 1e-5
    rows = [(tmp_path / n / "metrics.csv").read_text().splitlines()[1:] for n in ("one", "two")]
    assert [r.split(",")[4] for r in rows[0]] == [r.split(",")[4] for r in rows[1]]  # val accuracy, per epoch


def test_predict_on_a_streamed_run_preprocesses_as_its_evaluation_did(tmp_path):
    """A streamed run evaluates the shorter side resized and the centre cut out; predict on the same files
    does the same: its probabilities are the model's on the evaluation's own batches."""

    import convzoo
    from convzoo.train.eval_data import eval_batches

    root = _photos(tmp_path / "pets", "train", 8, seed=0)
    _photos(root, "val", 4, seed=1, sizes=(20, 90))
    _run(root, tmp_path / "run", epochs=1)
    checkpoint = convzoo.load(tmp_path / "run")
    assert checkpoint.meta["input"]["resize"] == "crop"
    meta = checkpoint.meta
    batches, _ = eval_batches(checkpoint.path, meta, "val", dataset=None, data_dir=None, device=torch.device("cpu"),
                              batch_size=64, preprocess=checkpoint.preprocess)
    (_, X, _), = list(batches.epoch())
    with torch.no_grad():
        expected = checkpoint.model.eval()(X).softmax(dim=1)
    files = batches.split.files
    assert len(files) == 8
    got = torch.tensor([[p for _, p in sorted(checkpoint.predict(f, topk=2)[0], key=lambda cp: CLASSES.index(cp[0]))]
                        for f in files])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels, normalised", [(3, True), (1, True), (3, False)])
def test_channels_last_preprocessing_equals_the_general_path_from_either_layout(channels, normalised):
    """Preprocess for a channels-last model reorders the uint8 batch and normalises rows of W x C values;
    collate_decoded(channels_last=True) gives a batch already in that order. Both give the values of
    converting, normalising and then reordering the float batch, bit for bit."""
    from convzoo.data.streaming import collate_decoded

    X = torch.randint(0, 256, (6, channels, 17, 23), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    stats = dict(mean=(0.485, 0.456, 0.406)[:channels], std=(0.229, 0.224, 0.225)[:channels]) if normalised else {}
    general = Preprocess(channels, None, **stats)(X).contiguous(memory_format=torch.channels_last)
    fast = Preprocess(channels, None, **stats, channels_last=True)
    collated, labels = collate_decoded([(x, i) for i, x in enumerate(X)], channels_last=True)
    assert torch.equal(collated, X) and collated.is_contiguous(memory_format=torch.channels_last)
    assert labels.tolist() == list(range(6))
    for batch in (X, collated):
        got = fast(batch)
        assert torch.equal(got, general) and got.is_contiguous(memory_format=torch.channels_last)
