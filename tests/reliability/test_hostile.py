"""Hostile files: a checkpoint someone else wrote, an archive that tries to write outside the cache."""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convzoo.cli import main
from train_fixtures import make_toy_mnist


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return make_toy_mnist(tmp_path_factory.mktemp("toy"), 128, 32)


@pytest.fixture
def run(toy, tmp_path) -> Path:
    run = tmp_path / "run"
    argv = ["train", "--model", "lenet", "--dataset", "mnist", "--data-dir", str(toy), "--epochs", "1", "--out",
            str(run), "--quiet"]
    assert main(argv) == 0
    return run


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(path)
    return path


def refused(capsys, argv: list[str], needle: str) -> None:
    code = main(argv)
    _, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert needle in err, err


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_in_the_state_file_is_refused_and_never_runs(run, toy, tmp_path, image, capsys,
                                                                    record_counts):
    marker = tmp_path / "pwned"
    state = run / "checkpoints" / "last" / "state.pt"
    torch.save({"optimizer": Payload(marker)}, state)
    refused(capsys, ["train", "--resume", str(run), "--data-dir", str(toy)], "refusing to load")
    assert not marker.exists()
    # eval and predict read the weights (safetensors) and the JSON sidecar only: the payload is never opened
    assert main(["predict", str(run), str(image)]) == 0
    assert main(["eval", str(run)]) == 0
    capsys.readouterr()
    assert not marker.exists()
    record_counts("hostile", "pickle payload in state.pt", 1, 1)


def _forge(path: Path, how: str) -> None:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    if how == "huge header length":
        path.write_bytes(struct.pack("<Q", 2**60) + data[8:])
        return
    name = next(k for k in header if k != "__metadata__" and len(header[k]["shape"]) >= 2)  # a weight matrix
    if how == "offsets past the end":
        header[name]["data_offsets"] = [0, 10**12]
    elif how == "shape disagrees with the model":
        begin, end = header[name]["data_offsets"]
        header[name]["shape"] = [(end - begin) // 4]  # same bytes, a flat vector where the model wants a matrix
    elif how == "huge declared shape":
        header[name]["shape"] = [2**31, 2**31]
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data[8 + n:])


@pytest.mark.parametrize("how", ["huge header length", "offsets past the end", "shape disagrees with the model",
                                 "huge declared shape"])
def test_forged_safetensors_header(run, image, how, capsys, record_counts):
    _forge(run / "checkpoints" / "last" / "model.safetensors", how)
    for argv in (["predict", str(run), str(image)], ["eval", str(run)]):
        code = main(argv)
        _, err = capsys.readouterr()
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (how, err)
        assert "model.safetensors" in err or "weights" in err, err
    record_counts("hostile", f"safetensors: {how}", 1, 1)


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


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("case", ["parent", "absolute", "symlink out", "hard link"])
def test_archive_members_escaping_the_cache(case, tmp_path, capsys, monkeypatch, record_counts):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CONVZOO_CACHE", str(cache))
    outside = tmp_path / "outside.png"
    members = {"train/a/0.png": _png(), "train/b/0.png": _png()}
    links = None
    if case == "parent":
        members["train/a/../../../outside.png"] = b"x"
    elif case == "absolute":
        members[str(outside)] = b"x"
    elif case == "symlink out":
        links = {"train/a/1.png": str(outside)}
    archive = _tar(tmp_path / "evil.tar.gz", members, links)
    if case == "hard link":
        with tarfile.open(archive, "w:gz") as tar:
            info = tarfile.TarInfo("train/a/0.png")
            info.size = len(_png())
            tar.addfile(info, io.BytesIO(_png()))
            link = tarfile.TarInfo("train/b/1.png")
            link.type, link.linkname = tarfile.LNKTYPE, "/etc/passwd"
            tar.addfile(link)
    argv = ["train", "--model", "simple_cnn", "--dataset", f"imagefolder:{archive}", "--resize", "28",
            "--val-split", "0.5", "--out", str(tmp_path / "run"), "--quiet"]
    refused(capsys, argv, "refused")
    assert not outside.exists()
    extracted = cache / "extracted"
    assert not extracted.exists() or not any(extracted.iterdir())
    record_counts("hostile", f"archive: {case}", 1, 1)
