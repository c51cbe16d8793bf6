"""Bad input, through the command line: one clear line on stderr, exit code 2, no traceback, nothing
overwritten. Plus a property test over random argument lists for every subcommand."""

from __future__ import annotations

import gzip
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from convzoo.cli import build_parser, main
from train_fixtures import make_toy_mnist, toy_images, write_idx


def one_line_error(capsys, argv: list[str], *needles: str) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def train(toy: Path | str, run: Path, *extra: str) -> list[str]:
    return ["train", "--model", "lenet", "--dataset", "mnist", "--data-dir", str(toy), "--epochs", "1",
            "--out", str(run), "--quiet", *extra]


# ---- data files ------------------------------------------------------------------------------------------


def _idx_case(root: Path, case: str) -> str:
    """Spoil the toy MNIST folder in one way; return what the message must name."""
    images = root / "train-images-idx3-ubyte.gz"
    labels = root / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    if case == "missing":
        images.unlink()
        return "mnist not found in --data-dir"
    if case == "zero bytes":
        images.write_bytes(b"")
        return "the file is empty"
    if case == "truncated gzip":
        images.write_bytes(images.read_bytes()[: len(images.read_bytes()) // 2])
        return "truncated or corrupt gzip"
    if case == "wrong magic":
        images.write_bytes(gzip.compress(b"\x01\x02" + raw[2:]))
        return "not an IDX file"
    if case == "count mismatch":
        write_idx(labels, toy_images(100, 0)[1][:99])
        return "but"
    if case == "label out of range":
        y = toy_images(100, 0)[1]
        y[5] = 42
        write_idx(labels, y)
        return "label 42 is out of range"
    if case == "symlink loop":
        images.unlink()
        images.symlink_to(images)
        return "train-images-idx3-ubyte.gz"
    raise AssertionError(case)


IDX_CASES = ["missing", "zero bytes", "truncated gzip", "wrong magic", "count mismatch", "label out of range",
             "symlink loop"]


@pytest.mark.parametrize("case", IDX_CASES)
def test_bad_idx_files(case, tmp_path, capsys, record_counts):
    toy = make_toy_mnist(tmp_path / "toy", 100, 20)
    needle = _idx_case(toy, case)
    one_line_error(capsys, train(toy, tmp_path / "run"), needle)
    record_counts("bad", f"IDX: {case}", 1, 1)


def test_cifar_pickle_with_wrong_keys(tmp_path, capsys, record_counts):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"pixels": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}))
    argv = ["train", "--model", "lenet5_cifar", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--out",
            str(tmp_path / "run"), "--quiet"]
    one_line_error(capsys, argv, "without the key 'data'")
    record_counts("bad", "CIFAR pickle with wrong keys", 1, 1)


@pytest.mark.parametrize("case", ["no images", "non-image file", "unreadable", "symlink loop"])
def test_bad_image_folders(case, tmp_path, capsys, record_counts):
    root = tmp_path / "folder"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        if case != "no images":
            for i in range(2):
                Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    needle = {"no images": "no images found", "non-image file": "not a readable image",
              "unreadable": "cannot be read", "symlink loop": "symlink loop"}[case]
    if case == "non-image file":
        (root / "b" / "broken.png").write_text("not a png")
    elif case == "unreadable":
        (root / "a" / "gone.png").symlink_to(root / "a" / "gone.png")  # unreadable even by root: ELOOP
    elif case == "symlink loop":
        (root / "a" / "loop").symlink_to(root)
    argv = ["train", "--model", "simple_cnn", "--dataset", f"imagefolder:{root}", "--resize", "28",
            "--val-split", "0.25", "--out", str(tmp_path / "run"), "--quiet"]
    one_line_error(capsys, argv, needle)
    record_counts("bad", f"image folder: {case}", 1, 1)


# ---- images given to predict ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("predict")
    toy = make_toy_mnist(tmp / "toy", 128, 32)
    run = tmp / "run"
    assert main(train(toy, run)) == 0
    return run


def _bomb(path: Path) -> None:
    """A valid PNG header declaring 40000 x 40000 pixels, with almost no data."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


PREDICT_CASES = {
    # case: (writer, None if converted, else a needle of the refusal)
    "16-bit": (lambda p: Image.fromarray(np.full((28, 28), 30000, np.uint16)).save(p), None),
    "palette": (lambda p: Image.fromarray(np.zeros((28, 28, 3), np.uint8)).convert("P").save(p), None),
    "CMYK": (lambda p: Image.new("CMYK", (28, 28), (0, 0, 0, 255)).save(p.with_suffix(".jpg")), None),
    "alpha": (lambda p: Image.new("RGBA", (28, 28), (255, 0, 0, 128)).save(p), None),
    "1x1": (lambda p: Image.new("L", (1, 1)).save(p), "too small"),
    "not an image": (lambda p: p.write_text("hello"), "not an image"),
    "decompression bomb": (_bomb, "decompression bomb"),
    "missing": (lambda p: None, "no such file"),
}


@pytest.mark.parametrize("case", list(PREDICT_CASES))
def test_predict_images(case, trained, tmp_path, capsys, record_counts):
    write, needle = PREDICT_CASES[case]
    path = tmp_path / "image.png"
    write(path)
    if case == "CMYK":
        path = path.with_suffix(".jpg")
    before = sorted(p.name for p in trained.rglob("*"))
    if needle is None:
        assert main(["predict", str(trained), str(path)]) == 0, capsys.readouterr().err
        assert re.search(r"image\.(png|jpg): \S+ 0\.\d{3}, ", capsys.readouterr().out)  # top-k, probabilities
    else:
        line = one_line_error(capsys, ["predict", str(trained), str(path)])
        assert needle.lower() in line.lower(), line
    assert sorted(p.name for p in trained.rglob("*")) == before  # nothing written or removed
    record_counts("bad", f"predict: {case}", 1, 1)


# ---- model and command-line values -------------------------------------------------------------------------


CLI_CASES = {
    "unknown model": (["--model", "nope"], "unknown model 'nope'"),
    "too-small input": (["--model", "alexnet", "--resize", "32"], "smaller than the minimum"),
    "negative size": (["--resize", "-3"], "--resize"),
    "zero size": (["--resize", "0"], "--resize"),
    "lr zero": (["--lr", "0"], "--lr must be a number > 0"),
    "lr negative": (["--lr", "-0.1"], "--lr must be a number > 0"),
    "batch size 0": (["--batch-size", "0"], "--batch-size"),
    "epochs 0": (["--epochs", "0"], "--epochs"),
    "unknown flag": (["--lr-max", "3"], "unrecognized arguments"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_bad_training_values(case, tmp_path, capsys, record_counts):
    toy = make_toy_mnist(tmp_path / "toy", 64, 16)
    extra, needle = CLI_CASES[case]
    base = train(toy, tmp_path / "run")
    one_line_error(capsys, base + extra, needle)
    assert not (tmp_path / "run" / "checkpoints").exists()
    record_counts("bad", f"CLI: {case}", 1, 1)


def test_wrong_channel_count(capsys, record_counts):
    one_line_error(capsys, ["summary", "lenet", "--in-channels", "1", "--input-size", "3", "28", "28"],
                   "expected 1 input channel")
    record_counts("bad", "CLI: wrong channel count", 1, 1)


def test_nothing_overwritten_when_a_second_run_targets_a_finished_run(trained, capsys, record_counts):
    before = {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()}
    one_line_error(capsys, train("/nonexistent", trained), "already holds a run")
    assert before == {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()}
    record_counts("bad", "CLI: run directory in use", 1, 1)


# ---- every subcommand, random arguments: never a traceback ------------------------------------------------


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(action.choices)


TOKENS = st.one_of(
    st.sampled_from(["--lr", "--epochs", "--batch-size", "--resize", "--input-size", "--depth", "--kernel",
                     "--padding", "--stride", "--mode", "--split", "--seconds", "--topk", "--model", "--dataset",
                     "-x", "--", "0", "-1", "1e9", "nan", "inf", "lenet", "nope", "conv", "pool", "*", "",
                     "imagefolder:", "/nonexistent", "3", "28"]),
    st.text(max_size=6),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sub=st.sampled_from(_subcommands()), args=st.lists(TOKENS, max_size=5))
def test_random_arguments_never_give_a_traceback(sub, args, capsys, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("CONVZOO_DATA", str(tmp_path_factory.getbasetemp() / "empty-data"))
    monkeypatch.chdir(tmp_path_factory.getbasetemp())
    argv = [sub, *args]
    if sub in ("train", "bench"):
        argv += ["--seconds", "0.01"] if sub == "bench" else ["--data-dir", "/nonexistent-data"]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's --help exits 0
        code = exit_.code
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    assert code in (0, 1, 2, None), (argv, code, err)
