"""Prediction from what users hold: ``Checkpoint.predict`` takes paths, PIL images,
numpy arrays, uint8 and float tensors alike, or refuses with one clear error; ``convzoo predict`` reports an
unreadable file and predicts the rest, takes folders and globs, and prints JSON on request."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import convzoo
from convzoo.cli import main
from convzoo.errors import ConvzooError
from convzoo.train import fit
from convzoo.train.config import TrainConfig
from train_fixtures import make_toy_mnist, toy_images


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch run of a small CNN on the toy MNIST (10 classes, 1 channel, 28 x 28)."""
    root = tmp_path_factory.mktemp("predict_inputs")
    toy = make_toy_mnist(root / "toy", 256, 64)
    out = root / "run"
    fit(TrainConfig(model="simple_cnn", dataset="mnist", data_dir=str(toy), epochs=1, batch_size=64,
                    optimizer="momentum", lr=0.05, out=str(out), eval_batch_size=128), progress=False)
    return out


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], np.ndarray]:
    """Three toy images as PNG files, and their pixels (N x 28 x 28 uint8)."""
    folder = tmp_path_factory.mktemp("pictures")
    images, _ = toy_images(3, seed=11)
    paths = []
    for i, pixels in enumerate(images):
        paths.append(folder / f"img{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths, images


def probabilities(top: list[tuple[str, float]]) -> dict[str, float]:
    return dict(top)


def test_every_accepted_form_gives_the_file_s_prediction(run, pictures):
    ckpt = convzoo.load(run)
    paths, pixels = pictures
    k = len(ckpt.classes)
    expected = ckpt.predict([str(p) for p in paths], topk=k)
    assert len(expected) == 3
    uint8 = torch.from_numpy(pixels)[:, None]  # 3 x 1 x 28 x 28
    forms = {
        "one str": (str(paths[0]), 1),
        "one Path": (paths[0], 1),
        "Paths": (paths, 3),
        "a PIL image": (Image.open(paths[0]), 1),
        "PIL images": ([Image.open(p) for p in paths], 3),
        "numpy H x W": (pixels[0], 1),
        "numpy H x W x 1": (pixels[0][..., None], 1),
        "numpy H x W x 3": (np.repeat(pixels[0][..., None], 3, axis=2), 1),
        "uint8 C x H x W": (uint8[0], 1),
        "uint8 B x C x H x W": (uint8, 3),
        "float C x H x W on [0, 1]": (uint8[0].float() / 255, 1),
        "float64 B x C x H x W on [0, 1]": (uint8.double() / 255, 3),
        "a mixed list": ([paths[0], uint8[1], pixels[2]], 3),
    }
    for form, (given, n) in forms.items():
        got = ckpt.predict(given, topk=k)
        assert len(got) == n, form
        for g, e in zip(got, expected[:n] if form != "numpy H x W x 3" else expected[:1], strict=True):
            assert [c for c, _ in g] == [c for c, _ in e], form
            assert [p for _, p in g] == pytest.approx([p for _, p in e], abs=1e-5), form


def test_float_is_read_on_the_unit_scale_not_as_bytes(run, pictures):
    """Before the fix a float tensor in [0, 1] was divided by 255 again: every class came out near 0.10."""
    ckpt = convzoo.load(run)
    X = torch.from_numpy(pictures[1])[:, None].float() / 255
    top = ckpt.predict(X, topk=1)
    assert all(p > 0.3 for (_, p), in top), top


@pytest.mark.parametrize(("given", "needle"), [
    (torch.full((1, 28, 28), 200.0), "float values must lie in [0, 1], these span 200..200"),
    (torch.tensor(float("nan")).expand(1, 28, 28), "float values must lie in [0, 1]"),
    (torch.zeros(28, 28, dtype=torch.uint8), "a tensor is C x H x W or B x C x H x W"),
    (torch.zeros(28, 28, 3, dtype=torch.uint8), "28 channels; the model reads 1 or 3 (converted) or 1: channels "
                                                 "first"),
    (torch.zeros(1, 28, 28, dtype=torch.int64), "tensors are uint8 (0..255) or floating point ([0, 1])"),
    (np.zeros((28, 28)), "numpy arrays must be uint8"),
    (np.zeros((2, 28, 28, 1), np.uint8), "a uint8 ndarray of shape (2, 28, 28, 1) (a numpy array is one image"),
    # N x H x W gray images: named as passed (it was read as H x W x C and reported as "(1, 28, 10, 28)")
    (np.zeros((10, 28, 28), np.uint8), "a uint8 ndarray of shape (10, 28, 28) (a numpy array is one image, H x W or "
                                       "H x W x C with C = 1 or 3, and its last axis is 28; a stack of images N x H x "
                                       "W (x C) is many images: pass list(a)"),
    (np.zeros((3, 28, 28), np.uint8), "move its channels last: a.transpose(1, 2, 0)"),
    (5, "cannot read int 5"),
    ([Path("x.png"), b"bytes"], "cannot read bytes b'bytes'"),
])
def test_anything_else_is_one_clear_error(run, given, needle):
    ckpt = convzoo.load(run)
    with pytest.raises(ConvzooError) as err:
        ckpt.predict(given)
    message = str(err.value)
    assert needle in message and "it takes a path (str or Path)" in message and "\n" not in message, message


def test_a_tiny_tensor_is_refused_as_a_tiny_file_is(run):
    with pytest.raises(ConvzooError, match="1x1 pixels is too small to classify"):
        convzoo.load(run).predict(torch.zeros(1, 1, 1, dtype=torch.uint8))


def test_pil_images_follow_the_decoder_s_rules(run, tmp_path):
    """A PIL image gives what its file gives: RGBA composited over black, a palette's colours, 16-bit scaled."""
    ckpt = convzoo.load(run)
    rng = np.random.default_rng(3)
    images = {
        "rgba.png": Image.fromarray(rng.integers(0, 256, (28, 28, 4), np.uint8), "RGBA"),
        "palette.png": Image.fromarray(rng.integers(0, 256, (28, 28, 3), np.uint8)).convert("P"),
        "sixteen.png": Image.fromarray(rng.integers(0, 65536, (28, 28), np.uint16)),
    }
    for name, image in images.items():
        image.save(tmp_path / name)
        (got,), (expected,) = ckpt.predict(image, topk=10), ckpt.predict(tmp_path / name, topk=10)
        assert probabilities(got) == pytest.approx(probabilities(expected), abs=1e-6), name


# ---- convzoo predict ----------------------------------------------------------------------------------


def test_cli_reports_an_unreadable_file_and_predicts_the_rest(run, pictures, tmp_path, capsys):
    paths, _ = pictures
    broken = tmp_path / "broken.png"
    broken.write_text("not a picture")
    code = main(["predict", str(run), str(paths[0]), str(broken), str(tmp_path / "missing.png"), str(paths[1])])
    out, err = capsys.readouterr()
    assert code == 2
    assert [line.split(": ")[0] for line in out.splitlines()] == [str(paths[0]), str(paths[1])]
    errors = err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("convzoo: error: ") for line in errors)
    assert str(broken) in errors[0] and "not an image" in errors[0]
    assert "missing.png" in errors[1] and "no such file" in errors[1]
    assert main(["predict", str(run), str(paths[0])]) == 0  # all readable: success


def test_cli_takes_a_folder_and_a_glob(run, pictures, tmp_path, capsys):
    paths, _ = pictures
    folder = paths[0].parent
    assert main(["predict", str(run), str(folder)]) == 0
    assert [line.split(": ")[0] for line in capsys.readouterr().out.splitlines()] == [str(p) for p in paths]
    assert main(["predict", str(run), str(folder / "img[02].png")]) == 0
    assert [line.split(": ")[0] for line in capsys.readouterr().out.splitlines()] == [str(paths[0]), str(paths[2])]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", str(run), str(empty), str(tmp_path / "*.jpg"), str(paths[1])]) == 2
    out, err = capsys.readouterr()
    assert out.startswith(f"{paths[1]}: ")
    assert "is a folder with no image files" in err and "no file matches this pattern" in err


def test_cli_takes_top_k_in_both_spellings_and_points_at_its_own_help(run, pictures, capsys):
    paths, _ = pictures
    for flag in ("--topk", "--top-k"):  # torchvision's and timm's scripts spell it --topk; --top-k reads as English
        assert main(["predict", str(run), str(paths[0]), flag, "2"]) == 0
        line = capsys.readouterr().out.strip()
        assert len(line.split(": ", 1)[1].split(", ")) == 2, line
    assert main(["predict", str(run), str(paths[0]), "--tpk", "2"]) == 2
    assert capsys.readouterr().err == ("convzoo predict: error: unrecognized arguments: --tpk 2 (did you mean --topk?) "
                                       "(see convzoo predict --help)\n")


def test_cli_json(run, pictures, tmp_path, capsys):
    paths, _ = pictures
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"")
    code = main(["predict", str(run), str(paths[0]), str(broken), "--json", "--topk", "3"])
    out, err = capsys.readouterr()
    assert code == 2 and "broken.png" in err
    records = json.loads(out)
    expected = convzoo.load(run).predict(paths[0], topk=3)[0]
    assert records[0]["image"] == str(paths[0])
    assert [t["class"] for t in records[0]["top"]] == [name for name, _ in expected]
    assert [t["probability"] for t in records[0]["top"]] == pytest.approx([p for _, p in expected], abs=1e-7)
    assert records[1]["image"] == str(broken) and "not an image" in records[1]["error"]
