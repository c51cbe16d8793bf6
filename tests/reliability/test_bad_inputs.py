"""Bad input, through the command line: one clear line on stderr, exit code 2, no traceback, nothing
overwritten. Plus a property test over random argument lists for every subcommand."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import re
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from convzoo.cli import build_parser, main
from train_fixtures import make_toy_mnist, toy_images, write_idx

from .harness import assert_nothing_written, snapshot


def one_line_error(capsys, argv: list[str], *needles: str) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("convzoo") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def train(toy: Path | str, run: Path, *extra: str) -> list[str]:
    return ["train", "--model", "lenet", "--dataset", "mnist", "--data-dir", str(toy), "--epochs", "1",
            "--out", str(run), "--quiet", *extra]


def without_root_override(argvs: list[list[str]]) -> list[tuple[int, str]]:
    """Run each argv through ``convzoo.cli.main`` in one child process that file permissions bind: as root,
    without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (``setpriv``), since root reads a mode-000 file."""
    script = ("import contextlib, io, json, sys\nfrom convzoo.cli import main\nresults = []\n"
              "for argv in json.loads(sys.argv[1]):\n    err = io.StringIO()\n"
              "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
              "        results.append((main(argv), err.getvalue()))\nprint(json.dumps(results))")
    command = [sys.executable, "-c", script, json.dumps(argvs)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv (util-linux): mode 000 does not stop root from reading")
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [tuple(r) for r in json.loads(done.stdout)]


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
    if case == "truncated data":
        images.write_bytes(gzip.compress(raw[:-100]))
        return "the file is truncated or corrupt"
    if case == "wrong magic":
        images.write_bytes(gzip.compress(b"\x01\x02" + raw[2:]))
        return "not an IDX file"
    if case == "images and labels swapped":
        images.write_bytes(labels.read_bytes())
        return "IDX file with 1 dimensions, expected 3"
    if case == "count mismatch":
        write_idx(labels, toy_images(100, 0)[1][:99])
        return "has 100 images but"
    if case == "label out of range":
        y = toy_images(100, 0)[1]
        y[5] = 42
        write_idx(labels, y)
        return "label 42 is out of range"
    if case == "symlink loop":
        images.unlink()
        images.symlink_to(images)
        return "symlink loop"
    raise AssertionError(case)


IDX_CASES = ["missing", "zero bytes", "truncated gzip", "truncated data", "wrong magic", "images and labels swapped",
             "count mismatch", "label out of range", "symlink loop"]


@pytest.mark.parametrize("case", IDX_CASES)
def test_bad_idx_files(case, tmp_path, capsys, record_counts):
    toy = make_toy_mnist(tmp_path / "toy", 100, 20)
    needle = _idx_case(toy, case)
    before = snapshot(toy)
    one_line_error(capsys, train(toy, tmp_path / "run"), needle)
    assert snapshot(toy) == before
    assert_nothing_written(tmp_path / "run")
    record_counts("bad", f"IDX: {case}", 1, 1)


def test_unreadable_data_files_and_folders(tmp_path, monkeypatch, record_counts):
    """Permission denied, for real (see without_root_override): a data file, a data folder, an image, a class
    folder."""
    cases = {}
    toy = make_toy_mnist(tmp_path / "file", 100, 20)
    (toy / "t10k-labels-idx1-ubyte.gz").chmod(0)
    cases["IDX file mode 000"] = (train(toy, tmp_path / "run1"), "t10k-labels-idx1-ubyte.gz: permission denied")
    folder = make_toy_mnist(tmp_path / "folder", 100, 20)
    folder.chmod(0)
    cases["data folder mode 000"] = (train(folder, tmp_path / "run2"), f"--data-dir {folder}: permission denied")
    for name, spoil in (("image mode 000", "file"), ("class folder mode 000", "dir")):
        root = tmp_path / spoil / "images"
        for c in ("a", "b"):
            (root / c).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(root / c / f"{i}.png")
        (root / "a" / "1.png").chmod(0) if spoil == "file" else (root / "b").chmod(0)
        needle = "1.png: permission denied" if spoil == "file" else f"{root / 'b'}: cannot be listed: Permission denied"
        cases[name] = (["train", "--model", "simple_cnn", "--dataset", f"imagefolder:{root}", "--resize", "28",
                        "--val-split", "0.25", "--out", str(tmp_path / spoil / "run"), "--quiet"], needle)
    monkeypatch.setenv("CONVZOO_CACHE", str(tmp_path / "cache"))  # a cache of its own: nothing decoded before
    try:
        results = without_root_override([argv for argv, _ in cases.values()])
    finally:
        for path in (toy / "t10k-labels-idx1-ubyte.gz", folder, tmp_path / "file" / "images" / "a" / "1.png",
                     tmp_path / "dir" / "images" / "b"):
            path.chmod(0o755)
    for (name, (_, needle)), (code, err) in zip(cases.items(), results, strict=True):
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (name, err)
        assert needle in err, (name, err)
        record_counts("bad", f"unreadable: {name}", 1, 1)


def test_cifar_pickle_with_wrong_keys(tmp_path, capsys, record_counts):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"pixels": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}))
    argv = ["train", "--model", "lenet5_cifar", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--out",
            str(tmp_path / "run"), "--quiet"]
    one_line_error(capsys, argv, "without the key 'data'")
    assert_nothing_written(tmp_path / "run")
    record_counts("bad", "CIFAR pickle with wrong keys", 1, 1)


@pytest.mark.parametrize("case", ["no images", "non-image file", "unreadable (ELOOP)", "symlink loop"])
def test_bad_image_folders(case, tmp_path, capsys, record_counts):
    root = tmp_path / "folder"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        if case != "no images":
            for i in range(2):
                Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    needle = {"no images": "class folder without images", "non-image file": "not a readable image",
              "unreadable (ELOOP)": "cannot be read", "symlink loop": "symlink loop"}[case]
    if case == "non-image file":
        (root / "b" / "broken.png").write_text("not a png")
    elif case == "unreadable (ELOOP)":
        (root / "a" / "gone.png").symlink_to(root / "a" / "gone.png")  # unreadable even by root
    elif case == "symlink loop":
        (root / "a" / "loop").symlink_to(root)
    before = snapshot(root)
    argv = ["train", "--model", "simple_cnn", "--dataset", f"imagefolder:{root}", "--resize", "28",
            "--val-split", "0.25", "--out", str(tmp_path / "run"), "--quiet"]
    one_line_error(capsys, argv, needle)
    assert snapshot(root) == before
    assert_nothing_written(tmp_path / "run")
    record_counts("bad", f"image folder: {case}", 1, 1)


# ---- images given to predict ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("predict")
    toy = make_toy_mnist(tmp / "toy", 128, 32)
    run = tmp / "run"
    assert main(train(toy, run)) == 0
    return run


def _png_declaring(path: Path, width: int, height: int) -> None:
    """A valid PNG header declaring ``width x height`` gray pixels, with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _truncated(path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])


PREDICT_CASES = {
    # case: (writer, None if converted, else a needle of the refusal)
    "16-bit gray": (lambda p: Image.fromarray(np.full((28, 28), 30000, np.uint16)).save(p), None),
    "palette": (lambda p: Image.fromarray(np.zeros((28, 28, 3), np.uint8)).convert("P").save(p), None),
    "CMYK JPEG": (lambda p: Image.new("CMYK", (28, 28), (0, 0, 0, 255)).save(p, "JPEG"), None),
    "RGBA": (lambda p: Image.new("RGBA", (28, 28), (255, 0, 0, 128)).save(p), None),
    "large RGB": (lambda p: Image.new("RGB", (1000, 700), (9, 9, 9)).save(p), None),
    "1x1": (lambda p: Image.new("L", (1, 1)).save(p), "too small"),
    "not an image": (lambda p: p.write_text("hello"), "not an image"),
    "zero bytes": (lambda p: p.write_bytes(b""), "not an image"),
    "truncated PNG": (_truncated, "could not be decoded"),
    "decompression bomb 30000x30000": (lambda p: _png_declaring(p, 30000, 30000), "decompression bomb"),
    "decompression bomb 9000x9000": (lambda p: _png_declaring(p, 9000, 9000), "decompression bomb"),
    "a folder": (lambda p: p.mkdir(), "is a folder"),
    "missing": (lambda p: None, "no such file"),
}


@pytest.mark.parametrize("case", list(PREDICT_CASES))
def test_predict_images(case, trained, tmp_path, capsys, record_counts):
    write, needle = PREDICT_CASES[case]
    path = tmp_path / "image.png"
    write(path)
    before = snapshot(trained)
    if needle is None:
        assert main(["predict", str(trained), str(path)]) == 0, capsys.readouterr().err
        assert re.fullmatch(rf"{re.escape(str(path))}: (\d 0\.\d{{3}}(, )?){{5}}\n", capsys.readouterr().out)
    else:
        line = one_line_error(capsys, ["predict", str(trained), str(path)])
        assert needle.lower() in line.lower(), line
    assert snapshot(trained) == before  # nothing written or removed
    record_counts("bad", f"predict: {case}", 1, 1)


# ---- model and command-line values -------------------------------------------------------------------------


CLI_CASES = {
    "unknown model": (["--model", "nope"], "unknown model 'nope'"),
    "too-small input": (["--model", "alexnet", "--resize", "32"], "smaller than the minimum"),
    "negative size": (["--resize", "-3"], "--resize"),
    "zero size": (["--resize", "0"], "--resize"),
    "lr zero": (["--lr", "0"], "--lr must be a number > 0"),
    "lr negative": (["--lr", "-0.1"], "--lr must be a number > 0"),
    "lr not a number": (["--lr", "nan"], "--lr must be a number > 0"),
    "batch size 0": (["--batch-size", "0"], "--batch-size"),
    "epochs 0": (["--epochs", "0"], "--epochs"),
    "validation split 1": (["--val-split", "1"], "--val-split"),
    "unknown flag": (["--lr-max", "3"], "unrecognized arguments"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_bad_training_values(case, tmp_path, capsys, record_counts):
    toy = make_toy_mnist(tmp_path / "toy", 64, 16)
    extra, needle = CLI_CASES[case]
    one_line_error(capsys, train(toy, tmp_path / "run") + extra, needle)
    assert_nothing_written(tmp_path / "run")
    record_counts("bad", f"CLI: {case}", 1, 1)


MODEL_CASES = {
    "wrong channel count": (["summary", "lenet", "--in-channels", "1", "--input-size", "3", "28", "28"],
                            "expected 1 input channel"),
    "too-small input": (["summary", "alexnet", "--input-size", "3", "32", "32"], "smaller than the minimum"),
    "zero input size": (["summary", "lenet", "--input-size", "1", "0", "28"], "expected a whole number >= 1"),
    "negative classes": (["params", "lenet", "--num-classes", "-2"], "expected a whole number >= 1"),
    "unknown model": (["info", "nope"], "unknown model 'nope'"),
    "no model matches": (["models", "nope*"], "no model matches"),
    "more classes than memory": (["params", "vgg16", "--num-classes", "99999999999"], "not enough memory"),
    "input larger than memory": (["summary", "lenet", "--input-size", "1", "9999999", "9999999"],
                                 "not enough memory"),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_bad_model_values(case, capsys, record_counts):
    argv, needle = MODEL_CASES[case]
    one_line_error(capsys, argv, needle)
    record_counts("bad", f"model: {case}", 1, 1)


def test_nothing_overwritten_when_a_second_run_targets_a_finished_run(trained, capsys, record_counts):
    before = snapshot(trained)
    one_line_error(capsys, train("/nonexistent", trained), "already holds a run")
    assert before == snapshot(trained)
    record_counts("bad", "CLI: --out names a finished run", 1, 1)


# ---- every subcommand, random arguments: never a traceback ------------------------------------------------


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(action.choices)


SUBCOMMANDS = _subcommands()
TOKENS = st.one_of(
    st.sampled_from(["--lr", "--epochs", "--batch-size", "--resize", "--input-size", "--depth", "--kernel",
                     "--padding", "--stride", "--mode", "--split", "--seconds", "--topk", "--model", "--dataset",
                     "--num-classes", "--in-channels", "--val-split", "--config", "--resume", "--style", "--help",
                     "-x", "--", "0", "-1", "1e9", "99999999999", "nan", "inf", "lenet", "nope", "conv", "pool",
                     "*", "", "imagefolder:", "imagefolder:/nonexistent", "/nonexistent", "3", "28", "1"]),
    st.text(max_size=6),
)
# arguments appended so that no generated command can start a long computation: no data for train and eval,
# an unknown model first for bench, an unknown model last for report (which would train for minutes) and for site
# (which would build the whole zoo's site: ONNX exports, npm)
GUARDS = {"train": ["--data-dir", "/nonexistent-data"], "report": ["--models", "nope"], "site": ["--models", "nope"]}
EXIT_CODES = (0, 1, 2)  # done; explain's check failed (a bug: exit 1 too, refused below); bad input (argparse's
# --help and --version: 0)


class _TooLongError(Exception):
    pass


def _alarm(signum, frame):
    raise _TooLongError


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sub=st.sampled_from(SUBCOMMANDS), args=st.lists(TOKENS, max_size=6))
def test_random_arguments_never_give_a_traceback(sub, args, capsys, tmp_path_factory, monkeypatch, record_counts):
    monkeypatch.setenv("CONVZOO_DATA", str(tmp_path_factory.getbasetemp() / "empty-data"))
    monkeypatch.chdir(tmp_path_factory.mktemp("fuzz", numbered=True))
    argv = [sub, *(["no-such-model"] if sub == "bench" else []), *args, *GUARDS.get(sub, [])]
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(20)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's --help and --version
        code = exit_.code
    except _TooLongError:
        pytest.fail(f"convzoo {' '.join(argv)} ran for more than 20 s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "convzoo: bug:" not in err, f"convzoo {argv}: a bug in convzoo, to fix (not to hide): {err}"
    assert code in EXIT_CODES, (argv, code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1, (argv, err)
    record_counts("bad", "random argument lists (hypothesis)", 1, 1)


def test_the_fuzz_draws_every_subcommand():
    """The property test above draws from the parser's own list of subcommands."""
    assert {"models", "info", "summary", "params", "explain", "train", "eval", "predict", "bench"} <= set(SUBCOMMANDS)
