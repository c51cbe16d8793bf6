"""Start-up: ``import convzoo`` loads the zoo, not the training stack (PEP 562 lazy names), and the commands
that only read the registry (``convzoo models``, ``convzoo info``, ``convzoo --help``) build no model.

The first checks run in fresh interpreters, as a user's ``import convzoo`` does: this test process has long
imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import convzoo

HEAVY = ("torch", "convzoo.train", "PIL", "tqdm", "matplotlib", "torchvision")


def fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter and return its stdout (its stderr on failure)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_import_convzoo_leaves_the_training_stack_out():
    out = fresh_python(f"""
        import json, sys
        # torch.hub imports tqdm whenever it is installed, so its presence would prove nothing: blocked, an
        # import of it by convzoo fails this process (torch falls back to a stand-in of its own)
        sys.modules["tqdm"] = None
        import convzoo
        loaded = sorted(m for m in {HEAVY!r} if sys.modules.get(m) is not None)
        names = convzoo.summary.__module__, convzoo.create_model.__module__
        with_zoo = sorted(m for m in {HEAVY!r} if sys.modules.get(m) is not None)
        del sys.modules["tqdm"]
        fit = convzoo.fit  # the first use imports the training stack
        print(json.dumps({{"loaded": loaded, "names": names, "with_zoo": with_zoo, "fit": fit.__module__,
                          "after": sorted(m for m in ("convzoo.train", "tqdm") if m in sys.modules)}}))
    """)
    result = json.loads(out)
    assert result["loaded"] == []
    assert result["names"] == ["convzoo.inspector", "convzoo.models._registry"]
    assert result["with_zoo"] == ["torch"]  # the zoo and the inspector bring torch, and nothing of the trainer
    assert result["fit"] == "convzoo.train.loop" and result["after"] == ["convzoo.train", "tqdm"]


def test_models_info_and_help_build_no_model():
    out = fresh_python("""
        import contextlib, io, json
        from convzoo.models import ConvNet

        built = []
        init = ConvNet.__init__

        def counted(self, **kwargs):
            built.append(kwargs["model_name"])
            init(self, **kwargs)

        ConvNet.__init__ = counted  # every zoo model's constructor goes through ConvNet.__init__
        from convzoo.cli import main

        runs = {}
        for argv in (["models"], ["info", "alexnet"], ["--help"], ["summary", "lenet"]):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                try:
                    code = main(argv)
                except SystemExit as stop:  # argparse's --help
                    code = stop.code
            runs[" ".join(argv)] = {"code": code, "built": built[:], "lines": out.getvalue().splitlines()}
            built.clear()
        print(json.dumps(runs))
    """)
    runs = json.loads(out)
    assert runs["models"]["code"] == 0 and runs["models"]["built"] == []
    assert len(runs["models"]["lines"]) == 1 + len(convzoo.list_models())
    info = runs["info alexnet"]
    assert info["code"] == 0 and info["built"] == []
    assert "min_input_size       (1, 65, 65)" in info["lines"]
    assert runs["--help"]["code"] == 0 and runs["--help"]["built"] == []
    assert "lenet" in runs["summary lenet"]["built"]  # the counter does see a construction


def test_lazy_names_resolve_to_the_objects_they_name():
    import importlib

    from convzoo.train import TrainConfig, evaluate, fit, load

    assert (convzoo.fit, convzoo.load, convzoo.evaluate, convzoo.TrainConfig) == (fit, load, evaluate, TrainConfig)
    module = importlib.import_module("convzoo.inspector")
    assert convzoo.summary is module.summary and convzoo.summary is not module  # the function, not the module
    assert convzoo.train.read_image.__module__.startswith("convzoo.")
    assert set(convzoo.__all__) <= set(dir(convzoo)) and {"train", "data"} <= set(dir(convzoo))
    assert all(getattr(convzoo, name) is not None for name in convzoo.__all__)
    with pytest.raises(AttributeError, match="module 'convzoo' has no attribute 'fitt'"):
        convzoo.fitt  # noqa: B018 (the access is the test)
