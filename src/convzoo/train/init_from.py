"""``--init-from RUN|FILE``: start a new run from trained weights (fine-tuning), not from a fresh init.

The source is a run directory (its selected checkpoint: best by validation, else the last), a checkpoint
folder or its ``model.safetensors``, another ``.safetensors`` file (convzoo's shipped weights among them), or
a ``.pt`` state_dict saved with ``torch.save`` (read with ``weights_only=True``). The weights must be of the
model the run trains: another model is a ``RunError`` naming both. When the classes or input channels
differ they are adapted as pretrained weights are (``convzoo.models.weights.adapt_state_dict``): a new
classifier, the first convolution's kernels summed or repeated; each adaptation is a note.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from convzoo.errors import ConvzooError, RunError
from convzoo.models import ConvNet
from convzoo.models.weights import adapt_state_dict
from convzoo.train.checkpoint import find_checkpoint, read_checkpoint, read_sidecar

__all__ = ["init_from", "read_init_weights"]


def _checkpoint_folder(path: Path) -> Path | None:
    """The checkpoint folder ``path`` names (a run directory, a checkpoint folder or its model.safetensors),
    or None when it is a weights file of its own."""
    if path.is_dir() or (path.name == "model.safetensors" and (path.parent / "model.json").is_file()):
        return find_checkpoint(path)
    return None


def _safetensors_model(path: Path) -> str | None:
    """The model a ``.safetensors`` file says it holds (convzoo's shipped files record it), if any."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("model")
    except (OSError, SafetensorError) as err:
        raise ConvzooError(f"--init-from {path}: cannot read it as safetensors ({err})") from None


def read_init_weights(source: str | os.PathLike[str], model: str) -> dict[str, Tensor]:
    """The state_dict ``source`` holds, refused (``RunError``) when it says it is another model's."""
    path = Path(source)
    if not path.exists():
        raise ConvzooError(f"--init-from {path}: no such file or folder; give a run directory, a checkpoint "
                           f"folder, or a .safetensors or .pt weights file")
    folder = _checkpoint_folder(path)
    if folder is not None:
        other = read_sidecar(folder)["model"]
        if other != model:
            raise RunError(f"--init-from {path}: it holds {other} weights, this run trains {model}; give a run "
                           f"of {model}, or train --model {other}")
        weights, _, _ = read_checkpoint(folder, state=False)
        return weights
    if path.suffix == ".safetensors":
        other = _safetensors_model(path)
        if other is not None and other != model:
            raise RunError(f"--init-from {path}: it holds {other} weights, this run trains {model}; give weights "
                           f"of {model}, or train --model {other}")
        from safetensors.torch import load_file

        return load_file(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many kinds (UnpicklingError, RuntimeError, EOFError, ...)
        raise ConvzooError(f"--init-from {path}: cannot read it as a torch.save state_dict "
                           f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    for key in ("state_dict", "model"):  # a training script's checkpoint dict holding the state_dict
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise ConvzooError(f"--init-from {path}: it holds a {type(loaded).__name__}, not a state_dict of tensors")
    return dict(loaded)


def init_from(net: ConvNet, source: str | os.PathLike[str]) -> list[str]:
    """Load the weights of ``source`` into ``net`` (adapted to its classes and input channels); return one
    note per adaptation. Tensors of another model are a ``RunError``; ``net`` is then left untouched."""
    given = read_init_weights(source, net.model_name)
    try:
        weights, notes = adapt_state_dict(given, net, source=f"--init-from {source}")
    except ConvzooError as err:
        raise RunError(str(err)) from None
    net.load_state_dict(weights, strict=True)
    return notes
