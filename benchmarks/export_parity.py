"""The export parity table: every zoo model exported to ONNX and as a ``torch.export`` program, each checked
against the PyTorch model on a batch of 2 at its default input size (``convzoo.export.export_model``, as
``convzoo export`` does), with the shipped weights where the model has some.

    python benchmarks/export_parity.py [--max-params 30e6] [--models a,b] [--out DIR]

Prints one Markdown row per model and format: the largest absolute difference of the logits and the time
taken. A model that cannot be exported prints the reason instead.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-params", type=float, default=30e6, help="skip larger models (AlexNet, VGG: slow)")
    parser.add_argument("--models", default="", help="comma-separated (default: the registry)")
    parser.add_argument("--out", default=None, help="keep the exported files here (default: a temporary folder)")
    args = parser.parse_args(argv)

    import convzoo
    from convzoo.errors import ConvzooError
    from convzoo.export import export_model

    shipped = {w.model for w in convzoo.list_weights()}
    names = [n for n in args.models.split(",") if n] or [
        n for n in convzoo.list_models() if convzoo.model_info(n).num_params <= args.max_params]
    with tempfile.TemporaryDirectory(prefix="convzoo-export-") as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        print("| model | weights | format | max abs diff | seconds |")
        print("|---|---|---|---|---|")
        for name in names:
            net = convzoo.create_model(name, pretrained=name in shipped).eval()
            for fmt, suffix in (("onnx", "onnx"), ("exported-program", "pt2")):
                start = time.perf_counter()
                try:
                    result = export_model(net, out / f"{name}.{suffix}", fmt)
                except ConvzooError as err:
                    print(f"| {name} | | {fmt} | not exported: {err} | |")
                    continue
                print(f"| {name} | {'shipped' if name in shipped else 'random'} | {fmt} | "
                      f"{result.max_abs_diff:.2e} | {time.perf_counter() - start:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
