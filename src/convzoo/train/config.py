"""One typed training configuration, saved with every result (nanoGPT's GPTConfig, airbench's hyp).

Values are resolved in this order, each overriding the last: the defaults below, a recipe
(``--recipe d2l`` or ``--recipe fast``), a TOML file (``--config FILE.toml``), command-line flags.

Every value, wherever it came from, is checked against the field's own type hint
(:meth:`TrainConfig.validate`), then against its range:
- ``bool`` takes ``true`` or ``false`` only (TOML's, unquoted): not ``"false"``, ``"yes"`` or ``0``;
- ``int`` takes a whole number only: ``epochs = 1.0`` is refused, as ``--epochs 1.0`` is, since a count
  written as a float is more often a slip than a count;
- ``float`` takes any number, a whole one too (``lr = 1`` is 1.0);
- ``str`` a string, ``dict`` a TOML table; ``X | None`` also takes None (in TOML: the key left out).
Whole numbers stop at TOML's largest integer (2**63 - 1), so that ``config.toml`` can hold every value.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import tomli_w

from convzoo.errors import ConvzooError
from convzoo.utils.atomic import write_text_atomic

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["RECIPES", "TrainConfig", "config_diff", "load_config_file", "resolve_config", "save_config"]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
INITS = ("default", "xavier", "kaiming", "dirac", "kaiming-identity")
DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENTS = ("none", "flip", "crop", "crop-flip", "alt-flip", "crop-alt-flip")
CROP_MODES = ("zero", "reflect")
TTAS = ("none", "flip", "flip-translate")

# ranges beyond which a value is a mistake rather than a setting
MAX_INT = 2**63 - 1  # TOML's largest integer: config.toml must be able to hold the value
MAX_LR = 100.0  # far above any learning rate that trains; 1e308 overflowed torch's float32 parameters
MAX_SIDE = 4096  # pixels, for --resize and --crop-padding: 16x ImageNet's 256, far beyond any zoo model's input
MAX_WEIGHT_DECAY = 1.0  # an L2 penalty of 1 already outweighs any loss; typical values are 1e-5 to 5e-2

# what each field type takes, as the error message says it
_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
               dict: "a table of values"}


def _opt(default: Any, help: str, choices: tuple[str, ...] | None = None, **meta: Any) -> Any:
    """A config field with its command-line help (and choices) kept beside it."""
    metadata = {"help": help, "choices": choices, **meta}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything that decides a training run. Units are in the help texts."""

    # what to train, on what
    model: str = _opt("lenet", "zoo model name (convzoo models lists them)")
    model_kwargs: dict[str, Any] = _opt({}, "extra keyword arguments for the model builder (TOML table)", cli=False)
    init_from: str | None = _opt(None, "start from trained weights instead of a fresh init (fine-tuning): a run "
                                 "directory (its selected checkpoint), a checkpoint folder, or a .safetensors or "
                                 ".pt weights file of the same model; the classifier is new when the classes "
                                 "differ")
    dataset: str = _opt("fashion-mnist", "mnist, fashion-mnist, cifar10 or imagefolder:PATH")
    data_dir: str | None = _opt(None, "folder holding the data set (else $CONVZOO_DATA, Debian's, the cache)",
                                run=False)
    download: bool = _opt(False, "download through torchvision (checksums verified) if the data is absent",
                          run=False)
    train_limit: int = _opt(0, "train on N images of the training split only, drawn per class in "
                                "proportion from the seed (0: all); for quick experiments and benchmarks")
    # the paths of an image folder (docs/training.md): in memory, held resized, or streamed from disk by loader workers
    stream: bool = _opt(False, "image folders: stream the images from disk (DataLoader workers decode them; "
                               "RandomResizedCrop + flip for training, resize + centre crop for evaluation) even "
                               "when they would fit --cache-memory at one size")
    cache_resized: bool = _opt(False, "image folders of mixed sizes: decode every image once and hold it in memory "
                                      "with its shorter side resized to round(S / 0.875) (aspect ratio kept) even "
                                      "beyond --cache-memory; without it they are held when they fit")
    image_size: int | None = _opt(None, "image folders: the side S in pixels the streaming and held-resized paths "
                                        "crop to (default: the model's default input size); given for images of "
                                        "one size other than S x S, it streams them")
    cache_memory: float | None = _opt(None, "GB an image folder may take decoded in memory (default: a quarter of "
                                            "this machine's memory), at its own size when its images share one, "
                                            "else held resized (--cache-resized); a larger one streams", run=False)
    workers: int | None = _opt(None, "DataLoader worker processes per training process on the streaming and "
                                     "held-resized paths (default: streaming, the cores per process, at most 8; "
                                     "held, 0; 0: decode or crop in the training process); the result does not "
                                     "depend on it", run=False)
    # input pipeline, applied to whole batches on the training device
    resize: int | None = _opt(None, "resize images to this side in pixels (default: the data set's size)")
    normalize: bool = _opt(True, "subtract the training split's channel means, divide by its stds")
    augment: str = _opt("none", "training-batch augmentation: none, flip, crop, crop-flip (random crop with "
                                "padding and/or horizontal flip), alt-flip or crop-alt-flip (each image flipped in "
                                "every other epoch, from a random first epoch per image, instead of at random: "
                                "airbench's alternating flips)", AUGMENTS)
    crop_padding: int = _opt(4, "padding in pixels for the random crop (a shift of up to this many pixels)")
    crop_mode: str = _opt("zero", "what the crop's padding holds: zero (black) or reflect (the image mirrored at "
                                  "its edges, as airbench's translation)", CROP_MODES)
    tta: str = _opt("none", "test-time augmentation of every evaluation: none, flip (average the logits of "
                            "each image and its mirror image) or flip-translate (also the image shifted by one "
                            "pixel up-left and down-right, reflect-padded, and their mirrors: half the weight on "
                            "the unshifted pair, as airbench)", TTAS)
    # optimisation
    epochs: int = _opt(10, "passes over the training split")
    batch_size: int = _opt(256, "images per training step")
    optimizer: str = _opt("sgd", "sgd (plain), momentum, nesterov, adam or adamw", OPTIMIZERS)
    lr: float = _opt(0.1, "peak learning rate")
    momentum: float = _opt(0.9, "momentum for the momentum and nesterov optimizers; beta1 for adam(w)")
    weight_decay: float = _opt(0.0, "L2 penalty (decoupled for adamw)")
    schedule: str = _opt("constant", "learning-rate schedule over all steps", SCHEDULES)
    warmup_epochs: float = _opt(0.0, "linear warm-up from 0 to lr over this many epochs")
    warmup_start: float = _opt(0.0, "fraction of lr the warm-up starts from (airbench: 0.2)")
    final_lr_fraction: float = _opt(0.0, "fraction of lr the cosine or one-cycle schedule ends at, on the last step "
                                         "(airbench: 0.07)")
    label_smoothing: float = _opt(0.0, "cross-entropy label smoothing in [0, 1)")
    init: str = _opt("default", "weight init: the model's own, xavier (d2l: Xavier-uniform conv/linear), kaiming "
                                "(He-normal conv/linear for ReLU, zero biases: deep nets without batch norm), or "
                                "dirac (the model's own, then each 3x3 convolution after the first passes its "
                                "input channels through unchanged: identity filters, airbench's init), or "
                                "kaiming-identity (kaiming, then square 1x1 convolutions start as the identity "
                                "and the head's first convolution with biases of 2, so that no class of a network "
                                "with ReLU logits, such as NiN, starts dead)",
                     INITS)
    # airbench's techniques (docs/benchmarks.md), each usable by any run where it makes sense
    whiten: bool = _opt(False, "before training, set the model's whitening layer (airbench_cifar's first conv) "
                               "from the patch covariance of 5,000 training images drawn from the seed, and freeze "
                               "its kernels")
    whiten_bias_epochs: int = _opt(0, "epochs after which the whitening layer's bias stops training (0: it trains "
                                      "throughout; airbench: 3, the first 3 of 10; needs --whiten)")
    bn_frozen_scale: bool = _opt(False, "batch-norm scales fixed at 1 and not trained (the shifts still are)")
    bias_lr_scale: float = _opt(1.0, "learning-rate multiplier for the batch-norm shifts (biases), their weight "
                                     "decay per step unchanged (airbench: 64)")
    ema: float = _opt(0.0, "decay per step of a moving average of the weights (0: off; airbench: 0.95), which "
                           "is what is evaluated and checkpointed; the decay grows as (step / last step)^3 up "
                           "to this value, so the average forgets the early weights")
    ema_every: int = _opt(1, "steps between updates of the moving average (each decays by --ema to that power)")
    lookahead: bool = _opt(False, "at each update of the moving average, set the training weights to it "
                                  "(airbench's lookahead; needs --ema)")
    # honesty: choices are made on validation data only
    val_split: float = _opt(0.0, "fraction of the training split held out for validation (best checkpoint, "
                                 "early stopping)")
    val_seed: int = _opt(0, "seed of the validation carve-out (fixed, independent of --seed)")
    early_stopping: int = _opt(0, "stop after this many epochs without a better validation accuracy (0: off)")
    # reproducibility and speed
    seed: int = _opt(0, "seed of every random choice: init, shuffling, augmentation, dropout")
    device: str = _opt("auto", "auto, cpu, cuda or mps", DEVICES, run=False)
    channels_last: bool | None = _opt(None, "NHWC memory format for model and batches; unset: auto, on for a CPU "
                                      "unless the model batch-normalises fewer than 16 channels "
                                      "(benchmarks/channels_last.py)")
    compile: bool = _opt(False, "torch.compile the model (costs 15-40 s up front)")
    amp: bool = _opt(False, "bfloat16 autocast (cuda only; slower than float32 on CPUs without bf16)")
    eval_batch_size: int = _opt(1024, "images per evaluation step")
    # several processes (torchrun): the result does not depend on how many computed it
    threads: int | None = _opt(None, "CPU threads per process (default: the machine's cores divided by the "
                                     "processes on it; torchrun alone would set 1)", run=False)
    sync_bn: bool = _opt(False, "SyncBatchNorm across processes (CUDA only; else each process normalises over "
                                "its own shard of the global batch)")
    dist_timeout: float = _opt(60.0, "seconds a process waits for its peers (start-up, every exchange) before "
                                     "the run fails", run=False)
    # output
    out: str | None = _opt(None, "run directory (default runs/MODEL-DATASET-TIMESTAMP)", run=False)
    tensorboard: bool = _opt(False, "also write each epoch's metrics and learning rate as TensorBoard events in "
                                    "RUN_DIR/tensorboard (needs pip install 'convzoo[tensorboard]')", run=False)
    recipe: str | None = _opt(None, "named recipe the values started from (d2l, fast, airbench)", cli=False, run=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ConvzooError`` naming the first bad value and what it must be: first its type, read from
        the field's type hint (the same check for flags, TOML files and Python callers), then its range.
        A whole number given for a ``float`` field becomes a float."""
        for f in fields(self):
            setattr(self, f.name, _typed(f, getattr(self, f.name)))

        def bad(name: str, value: Any, must: str) -> ConvzooError:
            return ConvzooError(f"--{name.replace('_', '-')} must be {must}, got {value!r}")

        def whole(name: str, lo: int, hi: int = MAX_INT) -> None:
            value = getattr(self, name)
            if value is not None and not lo <= value <= hi:
                upper = "2**63 - 1 (TOML's largest integer)" if hi == MAX_INT else str(hi)
                raise bad(name, value, f"a whole number >= {lo}" if value < lo else f"a whole number from {lo} "
                                                                                      f"to {upper}")

        for f in fields(self):
            value, choices = getattr(self, f.name), f.metadata.get("choices")
            if choices and value not in choices:
                raise bad(f.name, value, "one of " + ", ".join(choices))
        for name in ("train_limit", "seed", "val_seed", "early_stopping"):
            whole(name, 0)
        for name in ("epochs", "batch_size", "eval_batch_size"):
            whole(name, 1)
        whole("resize", 1, MAX_SIDE)
        whole("image_size", 1, MAX_SIDE)
        whole("workers", 0, 256)
        if self.stream and self.cache_resized:
            raise ConvzooError("--stream (decode the files every epoch) and --cache-resized (decode them once and hold "
                               "them) contradict each other: give one")
        if self.cache_memory is not None and not 0 <= self.cache_memory <= 1e6:
            raise bad("cache_memory", self.cache_memory, "a number of GB from 0 to 1000000")
        whole("threads", 1, 4096)
        if not 1 <= self.dist_timeout <= 86400:
            raise bad("dist_timeout", self.dist_timeout, "a number of seconds from 1 to 86400")
        whole("crop_padding", 0, MAX_SIDE)
        if not 0 < self.lr <= MAX_LR:  # (NaN fails every comparison)
            raise bad("lr", self.lr, f"a number > 0 and at most {MAX_LR:g}")
        for name, lo, hi in (("momentum", 0.0, 1.0), ("label_smoothing", 0.0, 1.0), ("val_split", 0.0, 1.0)):
            value = getattr(self, name)
            if not lo <= value < hi:
                raise bad(name, value, f"a number in [{lo:g}, {hi:g})")
        if not 0 <= self.weight_decay <= MAX_WEIGHT_DECAY:
            raise bad("weight_decay", self.weight_decay, f"a number in [0, {MAX_WEIGHT_DECAY:g}]")
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise bad("warmup_epochs", self.warmup_epochs, f"a number in [0, epochs={self.epochs}]")
        for name in ("warmup_start", "final_lr_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(name, getattr(self, name), "a fraction of lr in [0, 1]")
        whole("whiten_bias_epochs", 0)
        if self.whiten_bias_epochs and not self.whiten:
            raise ConvzooError("--whiten-bias-epochs stops the training of the whitening layer's bias, which "
                               "--whiten sets up: add --whiten (or drop --whiten-bias-epochs)")
        if not 0 < self.bias_lr_scale <= 1e4:
            raise bad("bias_lr_scale", self.bias_lr_scale, "a number > 0 and at most 10000")
        if not 0 <= self.ema < 1:
            raise bad("ema", self.ema, "a decay in [0, 1) (0: no moving average)")
        whole("ema_every", 1)
        if self.lookahead and not self.ema:
            raise ConvzooError("--lookahead needs a moving average to look ahead to: add --ema 0.95 (airbench's)")
        if self.early_stopping and not self.val_split:
            raise ConvzooError("--early-stopping needs a validation split (--val-split 0.1, say): "
                               "the test split is never used for choices")

    def run_fields(self) -> dict[str, Any]:
        """The fields that decide the run's numbers (a resumed run must agree on all of them)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("run", True)}


@functools.cache
def _field_type(name: str) -> tuple[type, bool]:
    """The type field ``name`` takes (bool, int, float, str or dict) and whether it may be None, read from
    ``TrainConfig``'s type hints (``int | None`` is ``(int, True)``, ``dict[str, Any]`` is ``(dict, False)``)."""
    hint = typing.get_type_hints(TrainConfig)[name]
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = typing.get_args(hint)
        optional = type(None) in args
        (hint,) = (a for a in args if a is not type(None))
    base = typing.get_origin(hint) or hint
    if base not in _TYPE_WORDS:
        raise TypeError(f"TrainConfig.{name}: no check for its type {hint!r}")  # a field added without one
    return base, optional


def _typed(f: dataclasses.Field[Any], value: Any) -> Any:
    """``value`` if it has field ``f``'s type (a whole number for a float field becomes a float), else a
    ``ConvzooError`` naming the field, its type and the value. ``True`` is no whole number here, though
    Python's bool is an int."""
    base, optional = _field_type(f.name)
    if value is None and optional:
        return value
    if base is float and isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_INT:
        return float(value)
    if isinstance(value, base) and (base is bool or not isinstance(value, bool)):
        return value  # (a float may still be inf or NaN: the range checks refuse those)
    flag = "--" + f.name.replace("_", "-")
    fix = ""
    if base is bool:
        fix = f"; in a TOML file write {f.name} = true or {f.name} = false (no quotes)"
        if f.metadata.get("cli", True):
            fix += f", on the command line {flag} or --no-{flag[2:]}"
    elif optional:
        fix = "; to leave it unset, leave the key out (TOML has no null)"
    kind = f"{_TYPE_WORDS[base]} (type {base.__name__}{' or unset' if optional else ''})"
    raise ConvzooError(f"{f.name} must be {kind}, got {value!r} of type {type(value).__name__}{fix}")


def _d2l(model: str) -> dict[str, Any]:
    """d2l's train_ch6 recipe (../shared/reference/d2l_results.md): plain SGD, Xavier init, no normalisation
    or augmentation, 10 epochs, with the model's resize, batch size and lr from its registry entry."""
    from convzoo.models import d2l_models, list_models, model_info  # (torch: only when the recipe is asked for)

    d2l = model_info(model).d2l if model in list_models() else None
    if d2l is None:
        raise ConvzooError(f"d2l has no recipe for {model!r}; it has recipes for {', '.join(d2l_models())}")
    return dict(resize=d2l.resize, batch_size=d2l.batch_size, lr=d2l.lr, epochs=10, optimizer="sgd",
                weight_decay=0.0, schedule="constant", warmup_epochs=0.0, label_smoothing=0.0, init="xavier",
                normalize=False, augment="none")


def _fast(model: str) -> dict[str, Any]:
    """Our best CPU recipe: Nesterov momentum, one-cycle schedule, label smoothing, normalised input."""
    return dict(optimizer="nesterov", lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="onecycle",
                warmup_epochs=0.5, label_smoothing=0.1, normalize=True, batch_size=256)


def _airbench(model: str) -> dict[str, Any]:
    """airbench94's recipe (Jordan 2024) on its network, ``airbench_cifar`` on CIFAR-10, every technique on.

    airbench sums the loss over the batch and states its lr and weight decay per 1024 images, divided by the
    step growth of Nesterov momentum, ``1 + 1 / (1 - momentum)``; for the mean loss used here that is
    ``lr = 11.5 x batch / 1024 / (1 + 1 / (1 - momentum))`` (1.5 at batch 1024) and a weight decay of
    ``0.0153 / 11.5`` (the same decay per step). Its schedule rises from 0.2 x lr over 23% of the steps and
    falls to 0.07 x lr (``warmup_start``, ``final_lr_fraction``); the whitening layer's bias trains for the
    first 3 epochs. 9.9 epochs there, 10 here.
    """
    batch, momentum = 1024, 0.85
    return dict(model="airbench_cifar", dataset="cifar10", batch_size=batch, epochs=10, optimizer="nesterov",
                momentum=momentum, lr=11.5 * batch / 1024 / (1 + 1 / (1 - momentum)), weight_decay=0.0153 / 11.5,
                schedule="onecycle", warmup_epochs=2.3, warmup_start=0.2, final_lr_fraction=0.07,
                whiten_bias_epochs=3, label_smoothing=0.2, normalize=True, init="dirac",
                whiten=True, bn_frozen_scale=True, bias_lr_scale=64.0, ema=0.95, ema_every=5, lookahead=True,
                augment="crop-alt-flip", crop_padding=2, crop_mode="reflect", tta="flip-translate")


RECIPES = {"d2l": _d2l, "fast": _fast, "airbench": _airbench}


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML config; unknown keys are an error naming them."""
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError:
        raise ConvzooError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ConvzooError(f"config file {path} is not valid TOML: {err}") from None
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConvzooError(f"config file {path}: unknown key(s) {', '.join(unknown)}; "
                           f"known: {', '.join(sorted(known))}")
    return values


def resolve_config(*, recipe: str | None = None, file_values: Mapping[str, Any] | None = None,
                   overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the recipe, then the file, then the overrides; validated.

    A recipe that sets both ``epochs`` and ``warmup_epochs`` (airbench's) warms up for that share of the
    epochs: another ``epochs`` given without ``warmup_epochs`` keeps the share (``--epochs 1`` warms up for
    0.23 of an epoch, not 2.3); ``whiten_bias_epochs`` likewise, rounded, at least 1."""
    file_values = dict(file_values or {})
    overrides = dict(overrides or {})
    recipe = overrides.pop("recipe", None) or recipe or file_values.pop("recipe", None)
    model = overrides.get("model") or file_values.get("model") or TrainConfig.model
    values: dict[str, Any] = {}
    if recipe is not None:
        if recipe not in RECIPES:
            raise ConvzooError(f"unknown recipe {recipe!r}; recipes: {', '.join(RECIPES)}")
        values.update(RECIPES[recipe](model))
        values["recipe"] = recipe
        given = {**file_values, **overrides}
        epochs = given.get("epochs")
        if "epochs" in values and isinstance(epochs, int) and not isinstance(epochs, bool):
            recipe_epochs = values["epochs"]  # the recipe's epoch counts keep their share of the run
            if values.get("warmup_epochs") and "warmup_epochs" not in given:
                values["warmup_epochs"] = values["warmup_epochs"] * epochs / recipe_epochs
            if values.get("whiten_bias_epochs") and "whiten_bias_epochs" not in given:
                values["whiten_bias_epochs"] = max(1, round(values["whiten_bias_epochs"] * epochs / recipe_epochs))
    values.update(file_values)
    values.update(overrides)
    return TrainConfig(**values)


def save_config(config: TrainConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as TOML (``None`` values are left out: TOML has no null), atomically."""
    values = {k: v for k, v in dataclasses.asdict(config).items() if v is not None}
    write_text_atomic(path, tomli_w.dumps(values))  # a kill leaves the old file or the new one, never half


def config_diff(a: TrainConfig, b: TrainConfig) -> list[str]:
    """``field: a -> b`` for every run-deciding field that differs."""
    left, right = a.run_fields(), b.run_fields()
    return [f"{k}: {left[k]!r} -> {right[k]!r}" for k in left if left[k] != right[k]]
