"""The "Try it" panels' two parts: each shipped weights' ONNX file, and onnxruntime-web to run it in the page.

    runtime = onnxruntime_web(cache)        # a folder holding ort.wasm.min.js and its WebAssembly, or a reason
    path = onnx_model(info, cache)          # convzoo.export's ONNX file of the weights, checked against PyTorch

The ONNX file is :func:`convzoo.export.export_model`'s, with the metadata ``convzoo export`` writes, kept in
the cache under the weights' sha256 and the torch version (an export takes seconds; the weights do not
change). onnxruntime-web (its WebAssembly build is 14 MB, too large to ship inside the Python package) is
installed from npm into the cache the first time a site is built, at the version pinned here; without npm,
or when the install fails, the panels are left out and the pages say why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from convzoo._version import __version__
from convzoo.models import WeightsInfo

__all__ = ["ORT_FILES", "ORT_VERSION", "Runtime", "copy_runtime", "onnx_model", "onnxruntime_web"]

ORT_VERSION = "1.30.0"  # the onnxruntime-web release the panels were tested with
# what the page loads: the WebAssembly-only build (global ``ort``), its loader module and the module's binary;
# the package's own description of its licence (MIT, in package.json; the README points to the repository's)
ORT_FILES = ("dist/ort.wasm.min.js", "dist/ort-wasm-simd-threaded.mjs", "dist/ort-wasm-simd-threaded.wasm",
             "package.json", "README.md")
NPM_TIMEOUT_S = 300


@dataclass(frozen=True)
class Runtime:
    """onnxruntime-web in ``folder`` (its package folder), or ``None`` and the ``reason`` it is not there."""

    folder: Path | None
    reason: str = ""


def onnxruntime_web(cache: Path, npm: str | None = "npm") -> Runtime:
    """onnxruntime-web ``ORT_VERSION`` under ``cache/npm``, installed with ``npm`` there first if missing
    (``npm=None``: never install)."""
    prefix = cache / "npm" / f"onnxruntime-web-{ORT_VERSION}"
    package = prefix / "node_modules" / "onnxruntime-web"
    if all((package / name).is_file() for name in ORT_FILES):
        return Runtime(package)
    if npm is None:
        return Runtime(None, f"onnxruntime-web {ORT_VERSION} is not in {prefix} and installing it was not asked for")
    executable = shutil.which(npm)
    if executable is None:
        return Runtime(None, f"npm is not installed, so onnxruntime-web {ORT_VERSION} could not be installed "
                             "(install Node.js's npm and build the site again)")
    prefix.mkdir(parents=True, exist_ok=True)
    command = [executable, "install", "--prefix", os.fspath(prefix), "--no-audit", "--no-fund", "--ignore-scripts",
               "--no-save", f"onnxruntime-web@{ORT_VERSION}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return Runtime(None, f"npm install onnxruntime-web@{ORT_VERSION} took over {NPM_TIMEOUT_S} s and was stopped")
    if done.returncode != 0 or not all((package / name).is_file() for name in ORT_FILES):
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return Runtime(None, f"npm install onnxruntime-web@{ORT_VERSION} failed ({last})")
    return Runtime(package)


def copy_runtime(runtime: Runtime, target: Path) -> int:
    """Copy the files the pages load into ``target``; the bytes copied."""
    if runtime.folder is None:
        raise ValueError("no runtime to copy")
    target.mkdir(parents=True, exist_ok=True)
    size = 0
    for name in ORT_FILES:
        destination = target / Path(name).name
        shutil.copyfile(runtime.folder / name, destination)
        size += destination.stat().st_size
    return size


def onnx_model(info: WeightsInfo, cache: Path) -> Path:
    """The ONNX file of ``info``'s weights (``convzoo export --model M --pretrained D``), from the cache or
    exported into it now. Needs the ``export`` extra; without it a ``ConvzooError`` says how to install it."""
    import torch

    from convzoo.export import example_batch, export_model
    from convzoo.models import create_model

    folder = cache / "onnx"
    torch_version = torch.__version__.split("+")[0]
    path = folder / f"{info.model}-{info.dataset}-{info.sha256[:12]}-torch{torch_version}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    net = create_model(info.model, pretrained=info.dataset)
    metadata = {"convzoo_version": __version__, "model": info.model, "dataset": info.dataset,
                "classes": list(info.classes), "input_size": list(info.input_size),
                "mean": None if info.mean is None else list(info.mean),
                "std": None if info.std is None else list(info.std),
                "source": f"{info.model} with its shipped {info.dataset} weights"}
    example = example_batch(net, size=(info.input_size[1], info.input_size[2]))
    export_model(net, path, "onnx", example=example, metadata=metadata)
    return path
