"""The CIFAR-sized zoo on the lossless CIFAR-10: each model trained with its recipe in a stated budget, its
accuracy on the official test split beside the published figure where there is one (issue 31).

    python benchmarks/cifar_zoo.py [--models a,b] [--budget-minutes 15] [--runs-dir runs/cifar-zoo] \
        [--out docs/cifar_zoo.md] [--device auto]

Every model trains on all 50,000 training images and is evaluated once per epoch on the 10,000 test images
(the figure reported is the accuracy after the last epoch: nothing is chosen on the test split). Recipes:
the airbench networks take ``--recipe airbench`` with the epochs that fit; the others ``--recipe fast`` with
random crops (4 pixels, reflected) and flips, as kuangliu/pytorch-cifar trains them. Before training, timed
training steps and inference batches on random data estimate an epoch; the model gets as many epochs as fit
its budget (at most ``--max-epochs``). Each result is written to ``RUNS/<model>/result.json`` when it is
done, so an interrupted report resumes with the models still missing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

# model -> (recipe, published test accuracy or None, where it was published)
MODELS: dict[str, tuple[str, float | None, str]] = {
    "lenet5_cifar": ("fast", None, ""),
    "resnet_mini_cifar": ("fast", None, ""),
    "resnet18_cifar": ("fast", 0.9302, "kuangliu/pytorch-cifar, 350 epochs"),
    "preact_resnet18": ("fast", 0.9511, "kuangliu/pytorch-cifar, 350 epochs"),
    "fastcnn_cifar_small": ("fast", None, ""),
    "fastcnn_cifar": ("fast", None, ""),
    "airbench_cifar_small": ("airbench", None, ""),
    "airbench_cifar": ("airbench", 0.9401, "Jordan 2024 (airbench94), 9.9 epochs, mean of many seeds"),
}
AUGMENT = {"augment": "crop-flip", "crop_padding": 4, "crop_mode": "reflect"}


def epoch_seconds(model: str, batch_size: int, device: str, images: int = 50_000) -> float:
    """One epoch of ``images`` training images and the 10,000-image evaluation, at measured speeds."""
    from convzoo.bench import benchmark_model

    train = benchmark_model(model, input_size=(3, 32, 32), batch_size=batch_size, mode="train", seconds=5.0,
                            device=device, peak=1.0, channels_last=True)
    infer = benchmark_model(model, input_size=(3, 32, 32), batch_size=512, mode="infer", seconds=2.0,
                            device=device, peak=1.0, channels_last=True)
    return images / train.images_per_s + 10_000 / infer.images_per_s


def run_model(model: str, args: argparse.Namespace) -> dict[str, Any]:
    from convzoo.train.config import RECIPES, resolve_config
    from convzoo.train.loop import fit

    recipe, published, source = MODELS[model]
    values = RECIPES[recipe](model) | ({} if recipe == "airbench" else AUGMENT)
    estimate = epoch_seconds(model, values["batch_size"], args.device, args.train_limit or 50_000)
    epochs = min(args.max_epochs, math.floor(args.budget_minutes * 60 / estimate))
    result: dict[str, Any] = {"model": model, "recipe": recipe, "budget_minutes": args.budget_minutes,
                              "epoch_estimate_s": estimate, "published": published, "source": source}
    if epochs < 1:
        return result | {"epochs": 0, "test_acc": None, "note": f"one epoch takes about {estimate / 60:.0f} min"}
    overrides = {**values, "model": model, "dataset": "cifar10", "epochs": epochs, "device": args.device,
                 "data_dir": args.data_dir, "out": str(args.runs_dir / model / "run")}
    if args.train_limit:
        overrides["train_limit"] = args.train_limit
    config = resolve_config(recipe=recipe, overrides=overrides)
    start = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        history = fit(config, progress=False, out=quiet).history
    return result | {"epochs": epochs, "seconds": time.perf_counter() - start, "test_acc": history[-1]["test_acc"],
                     "curve": [row["test_acc"] for row in history]}


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"# The CIFAR-sized zoo on CIFAR-10 (lossless, official test split), {args.budget_minutes:g} minutes "
             "per model", "", f"`python benchmarks/cifar_zoo.py --budget-minutes {args.budget_minutes:g}` on "
             f"{args.device_name}; test accuracy after the last epoch.", "",
             "| model | recipe | epochs | minutes | test accuracy | published |", "|---|---|---|---|---|---|"]
    for r in results:
        acc = f"{r['test_acc']:.4f}" if r.get("test_acc") is not None else r.get("note", "")
        pub = f"{r['published']:.4f} ({r['source']})" if r.get("published") else "-"
        minutes = f"{r['seconds'] / 60:.1f}" if r.get("seconds") else "-"
        lines.append(f"| {r['model']} | {r['recipe']} | {r['epochs']} | {minutes} | {acc} | {pub} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--budget-minutes", type=float, default=15.0)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=str(SHARED))
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/cifar-zoo"))
    parser.add_argument("--out", type=Path, help="write the table here (markdown)")
    parser.add_argument("--train-limit", type=int, help="train on N images (CI smoke runs)")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"not a CIFAR-sized zoo model here: {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    from convzoo.train.env import pick_device

    args.device = str(pick_device(args.device))
    args.device_name = args.device if args.device != "cpu" else f"the CPU ({os.cpu_count()} cores)"
    results = []
    for model in models:
        done = args.runs_dir / model / "result.json"
        if done.exists():
            result = json.loads(done.read_text())
        else:
            result = run_model(model, args)
            done.parent.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps(result, indent=2))
        results.append(result)
        print(f"{model}: {result['epochs']} epochs, test accuracy {result.get('test_acc')}", flush=True)
    text = table(results, args)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
