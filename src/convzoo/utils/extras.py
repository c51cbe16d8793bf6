"""Optional dependencies (pyproject.toml's extras): one check, one error naming the install command.

    require_extra("export", ("onnx", "onnxruntime", "onnxscript"), "ONNX export")

imports each module and, when one is missing, raises a :class:`ConvzooError` saying what needs it and
``pip install 'convzoo[export]'``. The modules are imported, not only looked for, so that a broken install
(or a test blocking one with ``sys.modules[name] = None``) counts as missing too.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from convzoo.errors import ConvzooError

__all__ = ["require_extra"]


def require_extra(extra: str, modules: Sequence[str], purpose: str) -> None:
    """Import ``modules``; raise one ``ConvzooError`` naming the missing ones and the extra that installs them."""
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ConvzooError(f"{purpose} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                           f"not installed; install convzoo's {extra!r} extra: pip install 'convzoo[{extra}]'")
