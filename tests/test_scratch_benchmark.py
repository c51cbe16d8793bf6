"""benchmarks/scratch_conv.py runs (tiny sizes, one repeat) and prints its table with the ratios."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "scratch_conv.py"


def test_benchmark_script_runs_and_prints_the_ratio(capsys):
    spec = importlib.util.spec_from_file_location("scratch_conv_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    code = module.main(["--batch", "2", "--in-channels", "3", "--size", "8", "--out-channels", "4",
                        "--repeats", "1", "--warmup", "0"])
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"^forward\s+[\d.]+\s+[\d.]+\s+[\d.]+x$", out, re.MULTILINE), out
    assert re.search(r"^forward\+backward\s+[\d.]+\s+[\d.]+\s+[\d.]+x$", out, re.MULTILINE), out
