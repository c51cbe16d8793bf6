"""Hostile files: a checkpoint someone else wrote (pickle payloads, forged safetensors headers, a damaged
sidecar or training state), a CIFAR batch that runs a command, an archive that writes outside the cache.
Each through the command line: refused in one line, exit code 2, nothing run, nothing overwritten."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convzoo.cli import main
from train_fixtures import make_toy_mnist

from .harness import snapshot


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return make_toy_mnist(tmp_path_factory.mktemp("toy"), 128, 32)


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    argv = ["train", "--model", "lenet", "--dataset", "mnist", "--data-dir", str(toy), "--epochs", "1", "--out",
            str(run), "--quiet", "--optimizer", "momentum"]
    assert main(argv) == 0
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    """A fresh copy of a finished one-epoch run (its only checkpoint: checkpoints/last)."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(trained, copy, symlinks=True)
    return copy


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(path)
    return path


def uses(run: Path, toy: Path, image: Path) -> dict[str, list[str]]:
    """The three commands that load a checkpoint."""
    return {"eval": ["eval", str(run)], "predict": ["predict", str(run), str(image)],
            "train --resume": ["train", "--resume", str(run), "--data-dir", str(toy), "--quiet"]}


def refused(capsys, argv: list[str], *needles: str) -> str:
    code = main(argv)
    _, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, code, err)
    for needle in needles:
        assert needle in err, (argv, err)
    return err


class Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---- pickle payloads ---------------------------------------------------------------------------------------


def test_pickle_payload_in_the_state_file_is_refused_and_never_runs(run, toy, tmp_path, image, capsys,
                                                                    record_counts):
    marker = tmp_path / "pwned"
    torch.save({"optimizer": Payload(marker)}, run / "checkpoints" / "last" / "state.pt")
    before = snapshot(run)
    refused(capsys, uses(run, toy, image)["train --resume"], "refusing to load", "state.pt")
    # eval and predict read the weights (safetensors) and the JSON sidecar only: the payload is never opened
    assert main(uses(run, toy, image)["predict"]) == 0
    assert main(uses(run, toy, image)["eval"]) == 0
    capsys.readouterr()
    assert not marker.exists() and snapshot(run) == before
    record_counts("hostile", "pickle payload in state.pt", 1, 1)


@pytest.mark.parametrize("use", ["eval", "predict", "train --resume"])
def test_pickle_payload_as_the_weights_is_refused_and_never_runs(use, run, toy, tmp_path, image, capsys,
                                                                 record_counts):
    marker = tmp_path / "pwned"
    torch.save({"features.0.weight": Payload(marker)}, run / "checkpoints" / "last" / "model.safetensors")
    before = snapshot(run)
    refused(capsys, uses(run, toy, image)[use], "cannot read", "model.safetensors")
    assert not marker.exists() and snapshot(run) == before
    record_counts("hostile", f"pickle payload as model.safetensors: {use}", 1, 1)


def test_a_pickle_file_given_as_the_checkpoint_is_refused(tmp_path, image, capsys, record_counts):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.pt"
    torch.save({"state_dict": Payload(marker)}, evil)
    refused(capsys, ["predict", str(evil), str(image)], "neither a run directory nor a checkpoint folder")
    refused(capsys, ["eval", str(evil)], "neither a run directory nor a checkpoint folder")
    assert not marker.exists()
    record_counts("hostile", "a pickle file given as the checkpoint", 2, 2)


def test_pickle_payload_in_a_cifar_batch_is_refused_and_never_runs(tmp_path, capsys, record_counts):
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": Payload(marker), b"labels": [0]}))
    refused(capsys, ["train", "--model", "lenet5_cifar", "--dataset", "cifar10", "--data-dir", str(tmp_path),
                     "--out", str(tmp_path / "run"), "--quiet"], "refusing to unpickle", "system")
    assert not marker.exists()
    record_counts("hostile", "pickle payload in a CIFAR batch", 1, 1)


# ---- forged safetensors headers ----------------------------------------------------------------------------


def _forge(path: Path, how: str) -> None:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    if how == "huge header length":
        path.write_bytes(struct.pack("<Q", 2**60) + data[8:])
        return
    if how == "header that is not JSON":
        path.write_bytes(struct.pack("<Q", 16) + b"{not json at all" + data[8 + n:])
        return
    name = next(k for k in header if k != "__metadata__" and len(header[k]["shape"]) >= 2)  # a weight matrix
    begin, end = header[name]["data_offsets"]
    if how == "offsets past the end":
        header[name]["data_offsets"] = [begin, 10**12]
    elif how == "overlapping offsets":
        header[name]["data_offsets"] = [0, end - begin]
    elif how == "shape disagrees with the model":
        header[name]["shape"] = [(end - begin) // 4]  # same bytes: a flat vector where the model wants a matrix
    elif how == "huge declared shape":
        header[name]["shape"] = [2**31, 2**31]
    elif how == "another dtype, same bytes":
        header[name]["dtype"], header[name]["shape"] = "I32", header[name]["shape"]
    elif how == "a tensor renamed":
        header["evil"] = header.pop(name)
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data[8 + n:])


FORGERIES = ["huge header length", "header that is not JSON", "offsets past the end", "overlapping offsets",
             "shape disagrees with the model", "huge declared shape", "another dtype, same bytes", "a tensor renamed"]


@pytest.mark.parametrize("how", FORGERIES)
def test_forged_safetensors_header(how, run, toy, image, capsys, record_counts):
    _forge(run / "checkpoints" / "last" / "model.safetensors", how)
    before = snapshot(run)
    for use, argv in uses(run, toy, image).items():
        err = refused(capsys, argv, "model.safetensors")
        assert snapshot(run) == before, (use, err)
    record_counts("hostile", f"safetensors: {how}", 3, 3)


# ---- a damaged sidecar, a training state that is not the loop's ---------------------------------------------


def _edit_json(key_path: str, value: object, delete: bool = False) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        path = run / "checkpoints" / "last" / "model.json"
        meta = json.loads(path.read_text())
        *parents, last = key_path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        if delete:
            del node[last]
        else:
            node[last] = value
        path.write_text(json.dumps(meta))
    return edit


def _edit_state(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(run: Path) -> None:
        path = run / "checkpoints" / "last" / "state.pt"
        state = torch.load(path, weights_only=True)
        change(state)
        torch.save(state, path)
    return edit


def _wrong_momentum(state: dict) -> None:
    buffers = state["optimizer"]["state"]
    buffers[0]["momentum_buffer"] = torch.zeros(3, 3)


DAMAGED = {
    # case: (edit, the commands that must refuse, a needle)
    "sidecar without classes": (_edit_json("classes", None, delete=True), ("eval", "predict", "train --resume"),
                                "'classes' must be a list"),
    "sidecar: more classes than the model": (_edit_json("classes", [str(i) for i in range(11)]),
                                             ("eval", "predict", "train --resume"), "11 classes"),
    "sidecar: input size not a pair": (_edit_json("input.size", [28]), ("eval", "predict", "train --resume"),
                                       "'input.size' must be [height, width]"),
    "sidecar: a billion classes": (_edit_json("model_kwargs.num_classes", 10**9), ("eval", "predict", "train --resume"),
                                   "1000000000 classes"),  # refused before anything is allocated
    "sidecar: unknown model": (_edit_json("model", "nope"), ("eval", "predict", "train --resume"),
                               "does not describe a zoo model"),
    "sidecar: model arguments it does not take": (_edit_json("model_kwargs.evil", 1),
                                                  ("eval", "predict", "train --resume"), "unknown argument"),
    "sidecar not JSON": (lambda run: (run / "checkpoints" / "last" / "model.json").write_text("{"),
                         ("eval", "predict", "train --resume"), "cannot read"),
    "state: an empty dict": (_edit_state(lambda s: s.clear()), ("train --resume",), "'optimizer'"),
    "state: history not a list": (_edit_state(lambda s: s.update(history=5)), ("train --resume",), "'history'"),
    "state: a history row missing": (_edit_state(lambda s: s["history"].clear()), ("train --resume",),
                                     "one row per epoch"),
    "state: best epoch not in the history": (_edit_state(lambda s: s.update(best_epoch=7)), ("train --resume",),
                                             "'best_epoch'"),
    "state: running sums renamed": (_edit_state(lambda s: s.update(sums={"evil": 1})), ("train --resume",),
                                    "'sums'"),
    "state: momentum of the wrong shape": (_edit_state(_wrong_momentum), ("train --resume",), "momentum_buffer"),
    "state: parameters missing from the optimizer": (
        _edit_state(lambda s: s["optimizer"]["param_groups"][0]["params"].pop()), ("train --resume",),
        "the optimizer holds"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_damaged_sidecar_or_state(case, run, toy, image, capsys, record_counts):
    edit, refusing, needle = DAMAGED[case]
    edit(run)
    before = snapshot(run)
    for use in refusing:
        refused(capsys, uses(run, toy, image)[use], needle)
        assert snapshot(run) == before, use
    record_counts("hostile", case, len(refusing), len(refusing))


# ---- archives escaping the extraction folder ---------------------------------------------------------------


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _evil_archive(path: Path, case: str, outside: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        add("train/a/0.png", _png())
        add("train/b/0.png", _png())
        if case == "parent":
            add("train/a/../../../outside.png", b"x")
        elif case == "absolute":
            add(str(outside), b"x")
        elif case == "symlink out":
            add("train/a/1.png", kind=tarfile.SYMTYPE, link=str(outside))
        elif case == "symlink then write through it":
            add("train/a/dir", kind=tarfile.SYMTYPE, link=str(outside.parent))
            add("train/a/dir/outside.png", b"x")
        elif case == "hard link":
            add("train/b/1.png", kind=tarfile.LNKTYPE, link="/etc/passwd")
        elif case == "device":
            add("train/b/null", kind=tarfile.CHRTYPE)
        elif case == "fifo":
            add("train/b/pipe", kind=tarfile.FIFOTYPE)
    return path


ARCHIVES = ["parent", "absolute", "symlink out", "symlink then write through it", "hard link", "device", "fifo"]


@pytest.mark.parametrize("case", ARCHIVES)
def test_archive_members_escaping_the_cache(case, tmp_path, capsys, monkeypatch, record_counts):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CONVZOO_CACHE", str(cache))
    outside = tmp_path / "outside.png"
    archive = _evil_archive(tmp_path / "evil.tar.gz", case, outside)
    before = snapshot(tmp_path)
    argv = ["train", "--model", "simple_cnn", "--dataset", f"imagefolder:{archive}", "--resize", "28",
            "--val-split", "0.5", "--out", str(tmp_path / "run"), "--quiet"]
    refused(capsys, argv, "refused")
    assert not outside.exists()
    after = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(str(cache))}
    assert after == before  # nothing written outside the cache (the run folder stays empty)
    extracted = cache / "extracted"
    assert not extracted.exists() or not any(extracted.iterdir())
    record_counts("hostile", f"archive: {case}", 1, 1)
