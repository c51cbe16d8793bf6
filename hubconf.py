"""torch.hub entry points: one per zoo model, each taking ``pretrained``, ``num_classes`` and ``in_channels``.

    net = torch.hub.load(PATH, "lenet_bn", source="local", pretrained=True).eval()   # a clone, offline
    import convzoo                                            # (this checkout's: torch.hub.load put src/ on the path)
    preprocess = convzoo.transforms_for(net)                  # the weights' own eval transform (net.pretrained_cfg)
    probs = net(preprocess(image)[None]).softmax(dim=1)       # image: a PIL image or a uint8 C x H x W tensor
    net.pretrained_cfg.classes                                # the name of each logit
    torch.hub.list("OWNER/convzoo:main")                      # the entry points (torch.hub.list and help take
    torch.hub.help("OWNER/convzoo:main", "lenet_bn")          # a GitHub name: the repository in torch.hub's cache)

torch.hub imports this file from the repository's root, so it puts the repository's ``src/`` first on the
import path: the convzoo loaded is the one of this checkout. Each entry point calls
``convzoo.create_model(name, pretrained=..., num_classes=..., in_channels=..., **kwargs)``; ``pretrained`` is
``False``, ``True`` (the weights convzoo ships for the model), a data set's name, or ``"imagenet"`` for the
torchvision-layout models (torchvision's file, read from torch.hub's cache). torch.hub lists every public
callable of this module, so everything else here is private.

A pretrained model carries its preprocessing: ``net.pretrained_cfg`` (data set, classes, input size, mean,
std, resize, accuracy, the command that built the weights) and ``convzoo.transforms_for(net)``, the
``torchvision.transforms.v2`` pipeline that reproduces the recorded accuracy from decoded images; normalising
with another mean and std (ImageNet's, say) silently costs most of it. ``preprocess(batch)`` takes a uint8
``B x C x H x W`` batch as well.
"""

import sys as _sys
from pathlib import Path as _Path

_SRC = str(_Path(__file__).resolve().parent / "src")
if _SRC not in _sys.path:
    _sys.path.insert(0, _SRC)

from convzoo.models import create_model as _create_model  # noqa: E402  (after the path is set)
from convzoo.models import list_models as _list_models  # noqa: E402
from convzoo.models import list_weights as _list_weights  # noqa: E402
from convzoo.models import model_info as _model_info  # noqa: E402
from convzoo.models import torchvision_models as _torchvision_models  # noqa: E402

dependencies = ["torch", "torchvision", "safetensors"]


def _doc(name: str) -> str:
    """The entry point's docstring: the model's paper, its input size and the weights it can load."""
    info = _model_info(name)
    size = "x".join(map(str, info.default_input_size))
    lines = [f"{name}: {info.paper} ({info.year}).", "",
             f"Input: {size} by default (C x H x W), {info.num_params:,} parameters; "
             "pretrained, num_classes, in_channels and the builder's keyword arguments as convzoo.create_model.",
             "", "Weights:"]
    lines += [f"  pretrained={w.dataset!r}{' (or True)' if w.default else ''}: {w.split} accuracy {w.accuracy:.4f} "
              f"({w.dataset}, {'x'.join(map(str, w.input_size))})" for w in _list_weights(name)]
    if name in _torchvision_models():
        lines.append("  pretrained='imagenet': torchvision's ImageNet weights, from torch.hub's cache")
    if len(lines) == 5:
        lines.append("  none shipped (pretrained=False only)")
    else:
        pretrained = "True" if _list_weights(name) else "'imagenet'"
        lines += ["", "Preprocess as the weights were evaluated (mean, std, size, resize: net.pretrained_cfg):",
                  f"  net = torch.hub.load(PATH, {name!r}, source=\"local\", pretrained={pretrained}).eval()",
                  "  import convzoo",
                  "  preprocess = convzoo.transforms_for(net)   # a torchvision.transforms.v2 pipeline",
                  "  probs = net(preprocess(image)[None]).softmax(dim=1)   # a PIL image or uint8 C x H x W"]
    return "\n".join(lines)


def _entry_point(name: str):
    def entry(pretrained=False, num_classes=None, in_channels=None, **kwargs):
        sizes = {key: value for key, value in (("num_classes", num_classes), ("in_channels", in_channels))
                 if value is not None}
        return _create_model(name, pretrained=pretrained, **sizes, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = _doc(name)
    return entry


# one entry point per registered model, named after it (torch.hub.list reads the module's attributes)
globals().update({_name: _entry_point(_name) for _name in _list_models()})
