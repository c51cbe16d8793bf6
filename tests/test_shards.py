"""Shards (``convzoo pack DIR OUT``, ``--dataset shards:OUT``): the packed images are the folder's (bytes, labels,
classes, hashes), ``--max-side`` keeps the aspect ratio, bad inputs are one-line user errors, and a run from the
shards is the run from the folder: bit for bit in one process, and with two processes (torchrun, gloo on
127.0.0.1) each process reads its rows of the same global batches as the folder's."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from convzoo.cli import main
from convzoo.data.folders import inspect_files, scan_image_folder
from convzoo.data.images import decode_image
from convzoo.data.shards import open_shards, pack_folder
from convzoo.errors import ConvzooError
from convzoo.train import TrainConfig, fit

pytest.importorskip("litdata")  # the `shards` extra (make test installs it)

CLASSES = ("cat", "dog", "owl")


def _photos(root: Path, split: str, per_class: int, *, seed: int, sizes: tuple[int, int] = (20, 60)) -> Path:
    """``per_class`` random images per class in ``root/split/<class>/`` of random sizes, JPEG and PNG in turn; each
    class's images tinted its own way, so that they can be learned."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            h, w = int(rng.integers(*sizes)), int(rng.integers(*sizes))
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            pixels[..., c] = 255
            path = root / split / name / f"{i:03d}.{'jpg' if i % 2 else 'png'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(path)
    return root


def _pack(*args: str) -> int:
    return main(["pack", *map(str, args)])


# ---- the round trip ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [("train", "val"), ("train", "test"), ("train", "val", "test"), ("",)])
def test_the_shards_hold_the_folders_bytes_labels_and_classes(tmp_path, layout, capsys):
    root = tmp_path / "pets"
    for k, split in enumerate(layout):
        _photos(root, split, 4 if split in ("", "train") else 2, seed=k)
    assert _pack(root, tmp_path / "shards") == 0
    said = capsys.readouterr().out
    assert f"into {tmp_path / 'shards'}" in said and f"--dataset shards:{tmp_path / 'shards'}" in said
    folder = scan_image_folder(root, tmp_path / "cache")
    shards = open_shards(str(tmp_path / "shards"), tmp_path / "cache")
    assert shards.classes == folder.classes == CLASSES
    for name in ("train", "val", "test"):
        expected, got = getattr(folder, name), getattr(shards, name)
        assert (got is None) == (expected is None), name
        if expected is None:
            continue
        expected = inspect_files(expected)
        assert len(got) == len(expected) > 0
        assert torch.equal(got.labels, expected.labels) and torch.equal(got.hashes, expected.hashes)
        assert torch.equal(got.sizes, expected.sizes) and got.digest == expected.digest  # the run's record alike
        assert all(got.image(i) == Path(f).read_bytes() for i, f in enumerate(expected.files))
        assert [f.split("[", 1)[1][:-1] for f in got.files] == [os.path.relpath(f, folder.root) for f in expected.files]
    # the labels are in litdata's items too: the shards are a plain litdata data set for other readers
    from litdata import StreamingDataset

    items = StreamingDataset(str(tmp_path / "shards" / "train"))
    assert [int(items[i]["label"]) for i in range(len(items))] == folder.train.labels.tolist()


def test_max_side_shrinks_only_larger_images_and_keeps_their_aspect_ratio(tmp_path):
    root = tmp_path / "pets"
    (root / "train" / "cat").mkdir(parents=True)
    (root / "train" / "dog").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (120, 60, 3), dtype=np.uint8)).save(root / "train" / "cat" / "tall.png")
    Image.fromarray(rng.integers(0, 256, (40, 200), dtype=np.uint8)).save(root / "train" / "cat" / "wide.jpg")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(root / "train" / "dog" / "small.png")
    # stored 100 wide and 40 high, with EXIF orientation 6: shown (and trained on) 40 wide and 100 high
    sideways = Image.fromarray(rng.integers(0, 256, (40, 100, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(root / "train" / "dog" / "turned.jpg", exif=exif)
    assert _pack(root, tmp_path / "shards", "--max-side", "50") == 0
    shards = open_shards(str(tmp_path / "shards"), tmp_path / "cache")
    names = [f.split("[", 1)[1][:-1] for f in shards.train.files]
    assert names == ["train/cat/tall.png", "train/cat/wide.jpg", "train/dog/small.png", "train/dog/turned.jpg"]
    assert shards.train.sizes.tolist() == [[50, 25], [10, 50], [30, 30], [50, 20]]  # height, width
    images = [shards.train.image(i) for i in range(4)]
    assert images[2] == (root / "train" / "dog" / "small.png").read_bytes()  # not larger: its own bytes
    assert images[0][:8] == b"\x89PNG\r\n\x1a\n" and images[1][:3] == images[3][:3] == b"\xff\xd8\xff"
    tall = decode_image(images[0])  # PNG: exactly the decoded image resized (Lanczos)
    original = decode_image(root / "train" / "cat" / "tall.png")
    resized = Image.fromarray(original.permute(1, 2, 0).numpy()).resize((25, 50), Image.Resampling.LANCZOS)
    assert torch.equal(tall, torch.from_numpy(np.array(resized)).permute(2, 0, 1))
    turned = decode_image(images[3])
    assert turned.shape == (3, 50, 20)
    upright = decode_image(root / "train" / "dog" / "turned.jpg")  # (EXIF applied): 3 x 100 x 40
    small = torch.nn.functional.interpolate(upright[None].float(), size=(50, 20), mode="area")[0]
    assert float((turned.float() - small).abs().mean()) < 40  # the same picture, upright (noise, JPEG twice)
    manifest = json.loads((tmp_path / "shards" / "convzoo-shards.json").read_text())
    assert manifest["max_side"] == 50 and manifest["splits"]["train"]["resized"] == 3


# ---- bad inputs ----------------------------------------------------------------------------------------------


def test_bad_inputs_are_one_line_user_errors(tmp_path, capsys):
    def refused(*args: str) -> str:
        assert _pack(*args) == 2
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        return err

    assert "no such folder" in refused(tmp_path / "missing", tmp_path / "out")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")  # images, but no class folders
    assert "no class folders" in refused(flat, tmp_path / "out")
    root = _photos(tmp_path / "pets", "train", 2, seed=0)
    (root / "train" / "cat" / "notes.jpg").write_text("not an image")
    assert "notes.jpg: not a readable image" in refused(root, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.packing-*"))  # nothing left behind
    (root / "train" / "cat" / "notes.jpg").unlink()
    assert _pack(root, tmp_path / "out") == 0
    assert "exists; choose another OUT, or give --force" in refused(root, tmp_path / "out")
    assert _pack(root, tmp_path / "out", "--force") == 0  # earlier shards are replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    assert "not convzoo shards" in refused(root, tmp_path / "mine", "--force")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"
    assert "--max-side" in refused(root, tmp_path / "other", "--max-side", "0")
    with pytest.raises(ConvzooError, match=r"no such folder; shards:PATH needs a folder written by convzoo pack"):
        open_shards(str(tmp_path / "nowhere"), tmp_path / "cache")
    with pytest.raises(ConvzooError, match=r"no readable convzoo-shards.json"):
        open_shards(str(root), tmp_path / "cache")  # a folder, not shards


def test_without_litdata_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "litdata", None)
    root = _photos(tmp_path / "pets", "train", 2, seed=0)
    with pytest.raises(ConvzooError, match=r"needs litdata.*pip install 'convzoo\[shards\]'"):
        pack_folder(root, tmp_path / "out", cache_dir=tmp_path / "cache")
    with pytest.raises(ConvzooError, match=r"pip install 'convzoo\[shards\]'"):
        open_shards(str(tmp_path), tmp_path / "cache")


def test_damaged_shards_are_refused_when_opened(tmp_path):
    root = _photos(tmp_path / "pets", "train", 2, seed=0)
    pack_folder(root, tmp_path / "out", cache_dir=tmp_path / "cache")
    index = tmp_path / "out" / "train" / "index.json"
    meta = json.loads(index.read_text())
    meta["chunks"][0]["chunk_size"] -= 1  # litdata's index says one image fewer than the manifest
    index.write_text(json.dumps(meta))
    with pytest.raises(ConvzooError, match=r"train/ does not hold what the manifest records"):
        open_shards(str(tmp_path / "out"), tmp_path / "cache")
    files = tmp_path / "out" / "train" / "convzoo-files.safetensors"
    files.write_bytes(files.read_bytes()[:40])  # cut short
    with pytest.raises(ConvzooError, match=r"train/ is damaged or incomplete"):
        open_shards(str(tmp_path / "out"), tmp_path / "cache")


# ---- training from shards ------------------------------------------------------------------------------------


def _run(dataset: str, out: Path, **kwargs) -> str:
    text = io.StringIO()
    values = dict(model="simple_cnn", dataset=dataset, epochs=2, batch_size=8, image_size=28, out=str(out),
                  workers=0, optimizer="momentum", lr=0.03) | kwargs
    fit(TrainConfig(**values), progress=False, out=text)
    return text.getvalue()


def test_a_run_from_shards_is_the_run_from_the_folder_bit_for_bit(tmp_path):
    import convzoo

    root = _photos(tmp_path / "pets", "train", 6, seed=0)
    _photos(root, "val", 2, seed=1)
    pack_folder(root, tmp_path / "shards", cache_dir=tmp_path / "cache")
    _run(f"imagefolder:{root}", tmp_path / "folder", stream=True)  # (from the files, as shards are read)
    said = _run(f"shards:{tmp_path / 'shards'}", tmp_path / "sharded", workers=2)  # read in 2 worker processes
    assert "data: streamed from litdata shards" in said and "[18 train, 6 val]" in said
    folder, sharded = (load_file(tmp_path / n / "checkpoints" / "last" / "model.safetensors")
                       for n in ("folder", "sharded"))
    assert folder.keys() == sharded.keys() and all(torch.equal(folder[k], sharded[k]) for k in folder)
    metas = [json.loads((tmp_path / n / "checkpoints" / "last" / "model.json").read_text())
             for n in ("folder", "sharded")]
    assert metas[0]["data"]["splits"] == metas[1]["data"]["splits"]  # the record of the same images and labels
    assert metas[1]["dataset"] == f"shards:{tmp_path / 'shards'}"
    own = convzoo.evaluate(tmp_path / "sharded", "val", device="cpu")  # its val split, read from the shards
    assert own.result.count == 6
    assert own.result.accuracy == convzoo.evaluate(tmp_path / "folder", "val", device="cpu").result.accuracy


def test_val_split_and_train_limit_pick_the_same_images_from_shards(tmp_path):
    from convzoo.train.data import load_splits

    root = _photos(tmp_path / "flat", "", 8, seed=0)
    pack_folder(root, tmp_path / "shards", cache_dir=tmp_path / "cache")
    picked = []
    for dataset in (f"imagefolder:{root}", f"shards:{tmp_path / 'shards'}"):
        data, val = load_splits(TrainConfig(dataset=dataset, model="simple_cnn", image_size=28, val_split=0.25,
                                            train_limit=10, stream=True))
        picked.append((data.train.hashes, val.hashes, data.mean))
    assert all(torch.equal(a, b) for a, b in zip(picked[0][:2], picked[1][:2], strict=True))
    assert picked[0][2] == picked[1][2]  # the channel statistics of the same sample


def test_shards_at_a_url_are_fetched_through_litdata_into_the_cache(tmp_path, monkeypatch):
    """litdata's ``local:`` URLs stand in for an object store (no store is reachable here): the manifest and the
    chunks are downloaded into the cache as from ``s3://``, and the images read are the same."""
    monkeypatch.setenv("CONVZOO_CACHE", str(tmp_path / "cache"))
    root = _photos(tmp_path / "pets", "train", 3, seed=0)
    _photos(root, "test", 1, seed=1)
    pack_folder(root, tmp_path / "shards", cache_dir=tmp_path / "cache")
    local, remote = (open_shards(w, tmp_path / "cache") for w in (str(tmp_path / "shards"),
                                                                  f"local:{tmp_path / 'shards'}"))
    assert remote.where == f"shards:local:{tmp_path / 'shards'}" and remote.train.digest == local.train.digest
    assert [remote.train.image(i) for i in range(9)] == [local.train.image(i) for i in range(9)]
    assert list((tmp_path / "cache" / "shards").rglob("chunk-*.bin"))  # downloaded whole into the cache
    with pytest.raises(ConvzooError, match=r"could not fetch convzoo-shards.json"):
        open_shards(f"local:{tmp_path / 'nothing'}", tmp_path / "cache")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_run_from_shards_stopped_mid_epoch_resumes_to_the_folder_runs_weights(tmp_path):
    """3 epochs of 4 steps; the 7th call of lr_at (once a step, once per epoch's row) is step 2 of epoch 2: SIGINT
    there saves mid-epoch. The run from the shards (2 loader workers), stopped and resumed (none), ends where the
    uninterrupted run from the folder ends, bit for bit."""
    sys.path.insert(0, str(Path(__file__).parent))
    from reliability.harness import launch, outcome

    root = _photos(tmp_path / "pets", "train", 11, seed=0)  # 33 images: 4 steps of 8 (the last 1 dropped)
    _photos(root, "val", 1, seed=1)
    pack_folder(root, tmp_path / "shards", cache_dir=tmp_path / "cache")
    args = ["train", "--model", "simple_cnn", "--image-size", "28", "--epochs", "3", "--batch-size", "8", "--quiet"]
    reference = launch([*args, "--dataset", f"imagefolder:{root}", "--stream", "--out", str(tmp_path / "ref"),
                        "--workers", "0"])
    assert reference.wait(300) == 0, reference.stderr.read() if reference.stderr else ""
    faulty = launch([*args, "--dataset", f"shards:{tmp_path / 'shards'}", "--out", str(tmp_path / "run"),
                     "--workers", "2"], at=["optim.lr_at:7:INT"])
    assert faulty.wait(300) == 130, faulty.stderr.read() if faulty.stderr else ""
    resumed = launch(["train", "--resume", str(tmp_path / "run"), "--workers", "0", "--quiet"])
    assert resumed.wait(300) == 0, resumed.stderr.read() if resumed.stderr else ""
    assert "at epoch 2, step 2" in (resumed.stdout.read() if resumed.stdout else "")
    assert outcome(tmp_path / "run") == outcome(tmp_path / "ref")


# ---- two processes -------------------------------------------------------------------------------------------

# each process of torchrun's two (gloo on 127.0.0.1) loads the run's data from the shards as training does and
# writes the batches of its rows of epoch 0's global batches
ROWS = """
import sys
import torch
import torch.distributed as dist
from convzoo.data.presets import train_transform
from convzoo.train import TrainConfig
from convzoo.train.data import load_splits
from convzoo.train.loader import StreamBatches
from convzoo.train.pipeline import Preprocess

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
data, _ = load_splits(TrainConfig(dataset=sys.argv[1], model="simple_cnn", image_size=28, seed=3))
loader = StreamBatches(data.train, 8, device=torch.device("cpu"), preprocess=Preprocess(3), shuffle=True, seed=3,
                       transform=train_transform(28), channels=3, shard=(rank, world), workers=1)
torch.save([(X, y) for _, X, y in loader.epoch(0)], f"{sys.argv[2]}/rows{rank}.pt")
dist.barrier()
dist.destroy_process_group()
"""


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_two_processes_read_their_rows_of_the_folders_global_batches_from_shards(tmp_path):
    from convzoo.data.presets import train_transform
    from convzoo.train.data import load_splits
    from convzoo.train.loader import StreamBatches
    from convzoo.train.pipeline import Preprocess

    root = _photos(tmp_path / "pets", "train", 7, seed=0)
    _photos(root, "val", 2, seed=1)
    pack_folder(root, tmp_path / "shards", cache_dir=tmp_path / "cache")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")} | {"OMP_NUM_THREADS": "1"}
    script = tmp_path / "rows.py"
    script.write_text(textwrap.dedent(ROWS))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                           "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", str(script),
                           f"shards:{tmp_path / 'shards'}", str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    data, _ = load_splits(TrainConfig(dataset=f"imagefolder:{root}", model="simple_cnn", image_size=28, seed=3,
                                      stream=True))
    whole = StreamBatches(data.train, 8, device=torch.device("cpu"), preprocess=Preprocess(3), shuffle=True, seed=3,
                          transform=train_transform(28), channels=3)
    batches = [(X, y) for _, X, y in whole.epoch(0)]
    rows = [torch.load(tmp_path / f"rows{r}.pt") for r in (0, 1)]
    assert len(batches) == len(rows[0]) == len(rows[1]) == 3  # 21 images: batches of 8, 8 and 5
    for (X, y), (X0, y0), (X1, y1) in zip(batches, *rows, strict=True):
        assert torch.equal(X[0::2], X0) and torch.equal(X[1::2], X1)  # the same images, the same crops
        assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)

    # and the whole run: two processes on the shards train the weights of one on the folder
    args = [sys.executable, "-m", "convzoo", "train", "--model", "simple_cnn", "--image-size", "28", "--epochs", "1",
            "--batch-size", "8", "--optimizer", "momentum", "--lr", "0.03", "--workers", "1", "--quiet"]
    for name, extra in (("one", ["--dataset", f"imagefolder:{root}", "--stream", "--threads", "1"]),
                        ("two", ["--dataset", f"shards:{tmp_path / 'shards'}", "--nproc-per-node", "2"])):
        done = subprocess.run([*args, *extra, "--out", str(tmp_path / name)], capture_output=True, text=True,
                              timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = (load_file(tmp_path / n / "checkpoints" / "last" / "model.safetensors") for n in ("one", "two"))
    assert max(float((one[k] - two[k]).abs().max()) for k in one) <= 1e-5  # (gradients averaged in another order)
