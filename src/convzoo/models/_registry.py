"""The model registry, done the torchvision way: a dict of builders with their metadata beside them.

    @register_model(paper="...", year=1998, num_params=61_706, notes="000")
    def lenet(*, num_classes: int = 10, in_channels: int = 1) -> LeNet: ...

The default input size and the accepted range come from the built model itself (its ``default_size``
and a probe of its architecture), so they are never typed twice.

``list_models("resnet*")`` filters with globs, ``create_model(name, **kwargs)`` builds, and
``model_info(name)`` returns the metadata plus what is derived from the architecture (input range).
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

import torch

from convzoo.models._base import ConvNet, InputRange

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]

Builder = TypeVar("Builder", bound=Callable[..., ConvNet])


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., ConvNet]
    family: str
    paper: str
    year: int
    num_params: int  # pinned parameter count of the default configuration (checked by the tests)
    notes: str  # the study notes the model comes from ("000", "002/003"), "" if none


@dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about a model, for its default configuration.

    ``min_input_size`` and ``max_input_size`` are derived from the architecture on first access (a
    shape-only probe, up to a second for the largest models).
    """

    name: str
    family: str  # the models/ file it lives in
    paper: str
    year: int
    default_input_size: tuple[int, int, int]  # C x H x W the architecture was designed for
    num_params: int  # pinned; the tests check it against the built model
    notes: str  # the study notes it comes from ("000", "002/003"), "" if none
    default_kwargs: dict[str, Any]

    @property
    def input_range(self) -> InputRange:
        return _input_range(self.name)

    @property
    def min_input_size(self) -> tuple[int, int, int]:
        """Smallest C x H x W the model accepts."""
        side = self.input_range.minimum
        return (self.default_input_size[0], side, side)

    @property
    def max_input_size(self) -> tuple[int, int, int] | None:
        """Largest C x H x W, when a flattened classifier fixes the size; ``None`` when any larger size works."""
        side = self.input_range.maximum
        return None if side is None else (self.default_input_size[0], side, side)


_MODELS: dict[str, _Entry] = {}


def register_model(*, paper: str, year: int, num_params: int, notes: str = "") -> Callable[[Builder], Builder]:
    """Register a builder under its function name; a name registered twice is an error."""

    def wrap(builder: Builder) -> Builder:
        name = builder.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered (by {_MODELS[name].builder.__module__})")
        family = builder.__module__.rsplit(".", 1)[-1]
        _MODELS[name] = _Entry(builder, family, paper, year, num_params, notes)
        return builder

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a glob pattern (``"resnet*"``, ``"*_bn"``), sorted."""
    return sorted(name for name in _MODELS if fnmatch.fnmatchcase(name, pattern))


def _entry(name: str) -> _Entry:
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (`convzoo models` lists all {len(_MODELS)})")
    return _MODELS[name]


def create_model(name: str, **kwargs: Any) -> ConvNet:
    """Build a registered model; keyword arguments go to its builder (``num_classes``, ``in_channels``, ...)."""
    entry = _entry(name)
    accepted = inspect.signature(entry.builder).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"{name}: unknown argument(s) {', '.join(unknown)}; it takes {', '.join(accepted)}"
        )
    return entry.builder(**kwargs)


def default_kwargs(name: str) -> dict[str, Any]:
    """The builder's keyword arguments with their defaults."""
    return {
        key: param.default
        for key, param in inspect.signature(_entry(name).builder).parameters.items()
        if param.default is not inspect.Parameter.empty
    }


def _meta_model(name: str) -> ConvNet:
    with torch.device("meta"):  # shapes only: builds even VGG-19 in milliseconds, no memory
        return _entry(name).builder()


@cache
def _input_range(name: str) -> InputRange:
    return _meta_model(name).input_range()


def model_info(name: str) -> ModelInfo:
    """Paper, year, default and minimum input size, parameter count and notes section of a model."""
    entry = _entry(name)
    net = _meta_model(name)
    return ModelInfo(
        name=name,
        family=entry.family,
        paper=entry.paper,
        year=entry.year,
        default_input_size=(net.in_channels, net.default_size, net.default_size),
        num_params=entry.num_params,
        notes=entry.notes,
        default_kwargs=default_kwargs(name),
    )
