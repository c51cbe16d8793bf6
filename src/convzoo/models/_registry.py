"""The model registry, done the torchvision way: a dict of builders with their metadata beside them.

    @register_model(paper="...", year=1998, num_params=61_706, input_size=(1, 28, 28), min_side=28, max_side=31,
                    notes="000", d2l=D2LRecipe(table_row=1, resize=28, batch_size=256, lr=0.9, test_acc=0.804))
    def lenet(*, num_classes: int = 10, in_channels: int = 1) -> LeNet: ...

Everything ``model_info`` returns (and ``convzoo models`` / ``convzoo info`` print) is pinned at
registration, so reading it builds no model; the generic tests (tests/test_models.py) build every model
and check each pinned value against the architecture. Adding a model is one family file plus its import
line in ``models/__init__.py``: the tests, ``convzoo report`` (the models with a ``d2l`` entry) and
``load_torchvision_weights`` (``torchvision_layout=True``) find it here.

``list_models("resnet*")`` filters with globs, ``create_model(name, **kwargs)`` builds.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from convzoo.errors import ModelError
from convzoo.models._base import ConvNet, InputRange

__all__ = [
    "FAST_WITHOUT_BATCH_NORM",
    "D2LRecipe",
    "ModelInfo",
    "ReportPlan",
    "create_model",
    "d2l_models",
    "list_models",
    "model_info",
    "register_model",
    "register_weights_loader",
]

Builder = TypeVar("Builder", bound=Callable[..., ConvNet])


@dataclass(frozen=True)
class D2LRecipe:
    """d2l's ``train_ch6`` run of the model on Fashion-MNIST: its settings and the test accuracy it published.

    The figures are those of ../shared/reference/d2l_results.md (plain SGD, Xavier init, no normalisation
    or augmentation, 10 epochs, one V100). ``--recipe d2l`` trains with the settings; ``convzoo report``
    sets its own accuracy beside ``test_acc``.
    """

    table_row: int  # the model's row in that table (from 1): the report lists the models in d2l's order
    resize: int  # input side in pixels
    batch_size: int  # images per training step
    lr: float  # plain-SGD learning rate
    test_acc: float  # test accuracy after the 10th epoch, the median over 26 builds of the book


@dataclass(frozen=True, repr=False)
class ReportPlan:
    """How ``convzoo report`` trains a model of d2l's table where it departs from the report's defaults;
    each choice was measured on a two-core CPU (docs/zoo.md has what each model reaches with it).

    ``cpu_side``: the input side on a CPU, for the models whose d2l side (224 or 96) would allow one or
    two epochs in 15 minutes there: the smallest side the network takes without losing its shape that
    still lets it reach about d2l's accuracy (``None``: d2l's side). ``recipe``: the recipe when none is
    asked for, the one that does better on the CPU. ``fast_overrides``: config values that replace the
    fast recipe's for this model.
    """

    cpu_side: int | None = None
    recipe: Literal["fast", "d2l"] = "fast"
    fast_overrides: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __repr__(self) -> str:  # the overrides as the dict they read as (``convzoo info`` prints this)
        return (f"ReportPlan(cpu_side={self.cpu_side!r}, recipe={self.recipe!r}, "
                f"fast_overrides={dict(self.fast_overrides)!r})")


# The fast recipe (peak lr 0.1 with Nesterov momentum 0.9, the model's default init) suits the networks with
# batch norm. The ones without stay at chance with it (AlexNet at 72x72 for a whole epoch; GoogLeNet at 48x48
# with lr 0.02 too): they get He (kaiming) init, which keeps the activations' scale through their depth, and
# a peak lr of 0.01, d2l's plain-SGD step or less once momentum 0.9 multiplies it by 10.
FAST_WITHOUT_BATCH_NORM: Mapping[str, Any] = MappingProxyType({"lr": 0.01, "init": "kaiming"})


@dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about a model, for its default configuration; all of it pinned, none built.

    The field order is the order ``convzoo info`` prints them in.
    """

    name: str
    family: str  # the models/ file it lives in
    paper: str
    year: int
    default_input_size: tuple[int, int, int]  # C x H x W the architecture was designed for
    num_params: int  # pinned; the tests check it against the built model
    notes: str  # the study notes it comes from ("000", "002/003"), "" if none
    default_kwargs: dict[str, Any]
    min_input_size: tuple[int, int, int]  # smallest C x H x W the model accepts
    max_input_size: tuple[int, int, int] | None  # largest, when a flattened classifier fixes it; None: no limit
    torchvision_layout: bool  # its state_dict pairs one to one with torchvision's model of the same name
    d2l: D2LRecipe | None  # d2l's recipe and published accuracy, for the models of d2l's table
    report: ReportPlan | None  # how ``convzoo report`` trains it (models of d2l's table only)

    @property
    def input_range(self) -> InputRange:
        """The accepted sides as an interval (what ``ConvNet.check_input`` enforces)."""
        return InputRange(self.min_input_size[1], None if self.max_input_size is None else self.max_input_size[1])


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., ConvNet]
    family: str
    paper: str
    year: int
    num_params: int
    notes: str
    input_size: tuple[int, int, int]
    min_side: int
    max_side: int | None
    torchvision_layout: bool
    d2l: D2LRecipe | None
    report: ReportPlan | None


_MODELS: dict[str, _Entry] = {}


def register_model(*, paper: str, year: int, num_params: int, input_size: tuple[int, int, int], min_side: int,
                   max_side: int | None = None, notes: str = "", torchvision_layout: bool = False,
                   d2l: D2LRecipe | None = None, report: ReportPlan | None = None) -> Callable[[Builder], Builder]:
    """Register a builder under its function name with its metadata; a name registered twice is an error.

    ``num_params``, ``input_size`` (C x H x W), ``min_side`` and ``max_side`` (``None``: any larger side)
    describe the default configuration and are checked against the built model by the tests.
    ``torchvision_layout``: ``load_torchvision_weights`` accepts the model. ``d2l``: the model is in d2l's
    table (``--recipe d2l``, ``convzoo report``); ``report`` refines how the report trains it.
    """
    _, height, width = input_size
    if not (0 < min_side <= min(height, width) and (max_side is None or max(height, width) <= max_side)):
        raise ValueError(f"input size {input_size} is outside the accepted sides {min_side}..{max_side}")
    if report is not None and d2l is None:
        raise ValueError("a report plan needs a d2l entry: convzoo report trains the models of d2l's table")

    def wrap(builder: Builder) -> Builder:
        name = builder.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered (by {_MODELS[name].builder.__module__})")
        family = builder.__module__.rsplit(".", 1)[-1]
        plan = report if report is not None or d2l is None else ReportPlan()
        _MODELS[name] = _Entry(builder, family, paper, year, num_params, notes, input_size, min_side, max_side,
                               torchvision_layout, d2l, plan)
        return builder

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a glob pattern (``"resnet*"``, ``"*_bn"``), sorted."""
    return sorted(name for name in _MODELS if fnmatch.fnmatchcase(name, pattern))


def d2l_models() -> list[str]:
    """The models of d2l's Fashion-MNIST table (registered with a ``d2l`` entry), in the table's order."""
    rows = sorted((entry.d2l.table_row, name) for name, entry in _MODELS.items() if entry.d2l is not None)
    return [name for _, name in rows]


def _entry(name: str) -> _Entry:
    if name not in _MODELS:
        # compared in lower case: ``LENET`` or ``ResNet18`` suggest the name they spell (names are lower case)
        close = difflib.get_close_matches(str(name).lower(), list(_MODELS), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"unknown model {name!r}{hint} (`convzoo models` lists all {len(_MODELS)})")
    return _MODELS[name]


def create_model(name: str, *, pretrained: bool | str = False, **kwargs: Any) -> ConvNet:
    """Build a registered model; keyword arguments go to its builder (``num_classes``, ``in_channels``, ...).

    ``pretrained``: ``True`` loads the weights convzoo ships for the model (its default data set), a data
    set's name the weights for that one (``"imagenet"``: torchvision's, from torch.hub's cache); the model is
    then built with the weights' classes and input channels unless ``num_classes`` or ``in_channels`` say
    otherwise, which adapts the weights (``convzoo.models.weights``).
    """
    entry = _entry(name)
    accepted = inspect.signature(entry.builder).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ModelError(
            f"{name}: unknown argument(s) {', '.join(unknown)}; it takes {', '.join(accepted)}"
        )
    load: Callable[[ConvNet], None] | None = None
    if pretrained is not False:
        if _WEIGHTS_LOADER is None:  # convzoo.models (which imports the loader) was not imported: a bug
            raise RuntimeError("no weights loader registered: import convzoo.models, not its modules alone")
        trained_with, load = _WEIGHTS_LOADER(name, pretrained)
        kwargs = {**trained_with, **kwargs}
    net = entry.builder(**kwargs)
    if set(kwargs) <= _RANGE_FREE:  # the architecture as registered: its pinned range holds, no probe needed
        net.set_input_range(InputRange(entry.min_side, entry.max_side))
    if load is not None:
        load(net)
    return net


# what ``create_model(name, pretrained=...)`` calls: (name, pretrained) -> (the builder arguments the weights
# were trained with, a function loading them into the built model). ``convzoo.models.weights`` registers it
# when the zoo package is imported; it reads the registry, so the registry cannot import it.
WeightsLoader = Callable[[str, "bool | str"], tuple[dict[str, Any], Callable[[ConvNet], None]]]
_WEIGHTS_LOADER: WeightsLoader | None = None


def register_weights_loader(loader: WeightsLoader) -> None:
    """Set the function ``create_model(..., pretrained=...)`` resolves and loads weights with (once)."""
    global _WEIGHTS_LOADER
    if _WEIGHTS_LOADER is not None:
        raise ValueError(f"a weights loader is already registered ({_WEIGHTS_LOADER.__module__})")
    _WEIGHTS_LOADER = loader


# builder arguments that leave the accepted spatial sizes alone: they change the first convolution's input
# channels and the last layer's outputs only (tests/test_models.py probes both to check it)
_RANGE_FREE = frozenset({"num_classes", "in_channels"})


def default_kwargs(name: str) -> dict[str, Any]:
    """The builder's keyword arguments with their defaults."""
    return {
        key: param.default
        for key, param in inspect.signature(_entry(name).builder).parameters.items()
        if param.default is not inspect.Parameter.empty
    }


def model_info(name: str) -> ModelInfo:
    """Paper, year, input sizes, parameter count, notes section and recipes of a model; builds nothing."""
    entry = _entry(name)
    channels = entry.input_size[0]
    return ModelInfo(
        name=name,
        family=entry.family,
        paper=entry.paper,
        year=entry.year,
        default_input_size=entry.input_size,
        num_params=entry.num_params,
        notes=entry.notes,
        default_kwargs=default_kwargs(name),
        min_input_size=(channels, entry.min_side, entry.min_side),
        max_input_size=None if entry.max_side is None else (channels, entry.max_side, entry.max_side),
        torchvision_layout=entry.torchvision_layout,
        d2l=entry.d2l,
        report=entry.report,
    )
