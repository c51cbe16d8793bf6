"""Export a zoo model for use outside PyTorch's eager mode: ONNX, or a ``torch.export`` program.

    result = export_model(net, "lenet_bn.onnx", "onnx", metadata={"classes": [...], "mean": [...]})
    result.max_abs_diff   # the exported model against PyTorch, on a batch of 2: at most 1e-4

- ``onnx``: ``torch.onnx.export`` (its ``torch.export``-based exporter) with a dynamic batch axis: input
  ``images`` (``batch x C x H x W``), output ``logits`` (``batch x num_classes``). ``metadata`` goes into the
  model's ``metadata_props``, each value as JSON (class names, the mean and std the inputs are normalised
  with, the input size), where ``onnxruntime``'s ``get_modelmeta().custom_metadata_map`` reads it.
- ``exported-program``: ``torch.export.export`` with the same dynamic batch, saved by ``torch.export.save``
  (a ``.pt2`` archive; ``torch.export.load(path).module()`` runs it); ``metadata`` is the archive's extra file
  ``convzoo.json``.

No TorchScript: it is deprecated in PyTorch. Every export is checked as it is written: the file (under a
temporary name) is loaded back, by ``onnxruntime`` for ONNX and ``torch.export.load`` for a program, and run
on the example batch beside the PyTorch model; only a file whose largest absolute difference is within
``TOLERANCE`` is renamed into place. A model the exporter cannot take is one :class:`ModelError` with the
exporter's reason. The model's input check is left out of the exported graph (``ConvNet.forward`` skips it
while ``torch.export`` runs), so the graph holds the layers only.

ONNX export needs the optional extra ``export`` (onnx, onnxruntime, onnxscript): ``pip install 'convzoo[export]'``.
torch is imported on first use, so that the command line reads ``FORMATS`` for its ``--help`` at no cost.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convzoo.errors import ModelError, as_out_of_memory
from convzoo.utils.atomic import atomic_path
from convzoo.utils.extras import require_extra

if TYPE_CHECKING:
    from torch import Tensor

    from convzoo.models import ConvNet

__all__ = ["FORMATS", "SUFFIXES", "TOLERANCE", "ExportResult", "example_batch", "export_model", "read_metadata"]

FORMATS = ("onnx", "exported-program")
SUFFIXES = {"onnx": ".onnx", "exported-program": ".pt2"}  # the file name extension each format is known by
TOLERANCE = 1e-4  # largest absolute difference of the logits allowed between the export and PyTorch
CHECK_BATCH = 2  # images in the batch each export is checked on (2, not 1: the batch axis must stay dynamic)
METADATA_FILE = "convzoo.json"  # the exported program's extra file holding the metadata
ONNX_MODULES = ("onnx", "onnxruntime", "onnxscript")  # torch.onnx's exporter needs onnxscript and onnx


@dataclass(frozen=True)
class ExportResult:
    """A written export and its check against the PyTorch model."""

    path: Path
    format: str
    max_abs_diff: float  # largest |exported - PyTorch| over the logits of the check batch
    batch: int  # images in the check batch
    size: int  # bytes written


def example_batch(net: ConvNet, size: tuple[int, int] | None = None, batch: int = CHECK_BATCH) -> Tensor:
    """A ``batch x C x H x W`` batch of standard normal values (what normalised images look like), drawn from
    a fixed seed: ``C`` the model's input channels, ``H x W`` ``size`` or the model's default input size."""
    import torch

    height, width = size or (net.default_size, net.default_size)
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, net.in_channels, height, width, generator=generator)


def export_model(net: ConvNet, path: str | os.PathLike[str], format: str = "onnx", *, example: Tensor | None = None,
                 metadata: Mapping[str, Any] | None = None, tolerance: float = TOLERANCE) -> ExportResult:
    """Export ``net`` (on the CPU, in evaluation mode; its mode is restored after) to ``path`` as ``format``
    (``FORMATS``), traced on ``example`` (default: :func:`example_batch`), with a dynamic batch axis; check the
    written file against ``net`` on ``example``. ``metadata``: JSON-serialisable values stored in the file
    (module docstring).

    Raises ``ModelError`` when the model cannot be exported (the exporter's reason) or when the export differs
    from the model by more than ``tolerance``; nothing is written then.
    """
    import torch

    if format not in FORMATS:
        raise ModelError(f"unknown export format {format!r}; formats: {', '.join(FORMATS)}")
    if format == "onnx":
        require_extra("export", ONNX_MODULES, "ONNX export")
    devices = {str(t.device) for t in (*net.parameters(), *net.buffers())}
    if devices - {"cpu"}:
        raise ModelError(f"{net.model_name} is on {', '.join(sorted(devices))}: export it from the CPU "
                         "(net.cpu()), where onnxruntime and the check run")
    X = example_batch(net) if example is None else example.detach()
    target = Path(path)
    values = {key: json.dumps(value) for key, value in (metadata or {}).items()}
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            expected = net(X)  # batch x num_classes; also the input check, with its clear message
        with atomic_path(target, suffix=SUFFIXES[format]) as tmp:
            if format == "onnx":
                got = _write_onnx(net, X, tmp, values)
            else:
                got = _write_program(net, X, tmp, values)
            diff = float((got - expected).abs().max()) if expected.numel() else 0.0
            if not diff <= tolerance:  # (NaN fails it too)
                raise ModelError(f"{net.model_name}: the {format} export differs from the PyTorch model by up to "
                                 f"{diff:.3g} on a batch of {len(X)} (more than {tolerance:g}), so it was not "
                                 f"written")
    finally:
        net.train(was_training)
    return ExportResult(target, format, diff, len(X), target.stat().st_size)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata an export holds, as :func:`export_model` was given it (``.onnx``: its ``metadata_props``;
    else an exported program's ``convzoo.json``)."""
    import torch

    if Path(path).suffix == SUFFIXES["onnx"]:
        require_extra("export", ("onnx",), "reading ONNX metadata")
        import onnx

        model = onnx.load(os.fspath(path), load_external_data=False)
        return {prop.key: json.loads(prop.value) for prop in model.metadata_props}
    extra = {METADATA_FILE: ""}
    torch.export.load(path, extra_files=extra)
    return dict(json.loads(extra[METADATA_FILE])) if extra[METADATA_FILE] else {}


def _dynamic_batch() -> tuple[dict[int, Any]]:
    """The ``dynamic_shapes`` of a forward taking one batch: its dimension 0 is free, named ``batch``."""
    import torch

    return ({0: torch.export.Dim("batch")},)


def _write_onnx(net: ConvNet, X: Tensor, path: Path, metadata: Mapping[str, str]) -> Tensor:
    """Export to ONNX at ``path`` with ``metadata`` in its ``metadata_props``; its logits on ``X`` by onnxruntime."""
    import onnxruntime
    import torch

    with _exporter_errors(net, "onnx"):
        program = torch.onnx.export(net, (X,), input_names=["images"], output_names=["logits"],
                                    dynamic_shapes=_dynamic_batch(), dynamo=True, verbose=False)
    assert program is not None  # (None only for the TorchScript exporter, dynamo=False)
    program.model.metadata_props.update(metadata)
    program.save(path, external_data=False)  # one file: weights inside (protobuf's limit, 2 GB, is above the zoo)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its notes on graph optimisation are no concern of the user's
    session = onnxruntime.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": X.numpy()})
    return torch.from_numpy(logits)


def _write_program(net: ConvNet, X: Tensor, path: Path, metadata: Mapping[str, str]) -> Tensor:
    """Export with ``torch.export`` and save at ``path``; its logits on ``X``, from the program loaded back."""
    import torch

    with _exporter_errors(net, "exported-program"):
        program = torch.export.export(net, (X,), dynamic_shapes=_dynamic_batch())
    torch.export.save(program, path, extra_files={METADATA_FILE: json.dumps(
        {key: json.loads(value) for key, value in metadata.items()})})
    with torch.no_grad():
        logits: Tensor = torch.export.load(path).module()(X)
    return logits


@contextlib.contextmanager
def _exporter_errors(net: ConvNet, format: str) -> Iterator[None]:
    """Run the exporter quietly and turn its refusal into one ``ModelError`` with its reason.

    Any exception the exporter raises while tracing or translating is its verdict on this model (an operator
    it cannot translate, control flow on values, a shape it cannot keep dynamic): the message keeps the
    innermost cause's first line; the whole chain stays attached (``convzoo --debug`` shows it). Running out of
    memory is the one exception that says nothing about the model, and stays what it is.

    On a refusal torch also prints the partial graph to stderr and logs warnings about it, tens of lines
    each: stderr is held back while the exporter runs, and passed on only if it succeeds (a warning then is
    the user's to see); torch's and onnxscript's loggers are raised to errors meanwhile.
    """
    quiet = [logger for name, logger in logging.Logger.manager.loggerDict.items()
             if isinstance(logger, logging.Logger) and name.split(".")[0] in ("torch", "onnxscript")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    held = io.StringIO()
    try:
        with contextlib.redirect_stderr(held):
            yield
    except Exception as err:
        oom = as_out_of_memory(err)
        if oom is not None:
            raise oom from err
        raise ModelError(f"{net.model_name} cannot be exported as {format}: {_reason(err)}") from err
    else:
        sys.stderr.write(held.getvalue())
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # torch.onnx colours its messages


def _reason(err: BaseException) -> str:
    """The innermost cause of ``err`` (what the exporter's wrappers wrap), as its type and first line."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = [line.strip() for line in _ANSI.sub("", str(err)).splitlines() if line.strip()]
    text = lines[0] if lines else "no message"
    return f"{type(err).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}"
