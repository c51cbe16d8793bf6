"""``convzoo report``: train the d2l table's models on Fashion-MNIST and set them beside d2l's results.

For each model, a recipe: ``fast`` (convzoo's CPU recipe: Nesterov momentum, one-cycle schedule, label
smoothing, normalised input) or ``d2l`` (d2l's own hyperparameters: plain SGD, Xavier init, no
normalisation); by default the one that does better for that model on the CPU (``CPU_RECIPES``). On a
GPU the models train at d2l's input size; on the CPU at the smaller size of ``CPU_SIZES`` where d2l's
(224 or 96) would not fit the budget. Before training, a few timed training
steps estimate an epoch; the run gets as many of d2l's 10 epochs as fit the per-model budget (none: the
model is reported as not fitting, with the estimate). The reported accuracy is the test accuracy after
the last epoch, as d2l reports it (nothing is chosen on the test split). Each model's result is written
to ``RUNS/<recipe>/<model>/result.json`` as soon as it is done, so an interrupted report resumes with the
models still missing. Writes ``OUT/zoo.md`` and ``OUT/zoo.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from convzoo.train.config import D2L_TABLE, RECIPES, TrainConfig, resolve_config

__all__ = ["D2L_MEDIAN", "CPU_SIZES", "register", "run_report"]

# d2l's published test accuracy after 10 epochs (median over 26 builds of the book; NiN: the two builds'
# mean, as 3 of 26 builds were stuck at chance): ../shared/reference/d2l_results.md
D2L_MEDIAN: dict[str, float] = {
    "lenet": 0.804, "alexnet": 0.881, "vgg11_small": 0.919, "nin": 0.7875, "googlenet": 0.888,
    "lenet_bn_scratch": 0.859, "lenet_bn": 0.845, "resnet18": 0.909, "densenet_d2l": 0.887,
}
# input sides on a two-core CPU, where d2l's (224 or 96) would allow one or two epochs in 15 minutes: the
# smallest sides each network takes without losing its shape (AlexNet and NiN need 65 and 67 pixels) and
# that still let it reach about d2l's accuracy (see docs/zoo.md for what each reaches); VGG-11/4 at 32, its
# smallest, as its classifier costs the same at any side (0.900 after 5 epochs, 0.892 after 3 at 48)
CPU_SIZES: dict[str, int] = {"alexnet": 72, "vgg11_small": 32, "nin": 72, "googlenet": 48, "resnet18": 48,
                             "densenet_d2l": 48}
# the recipe each model gets when none is asked for: fast, except where d2l's does better on this CPU
# (measured: d2l's sigmoid LeNet reaches 0.814 after 10 epochs with d2l's recipe, 0.771 with fast's)
CPU_RECIPES: dict[str, str] = {"lenet": "d2l"}
# The fast recipe (peak lr 0.1 with Nesterov momentum 0.9, the model's default init) suits the networks with
# batch norm. The ones without stay at chance with it (AlexNet at 72x72 for a whole epoch; GoogLeNet at 48x48
# with lr 0.02 too): they get He (kaiming) init, which keeps the activations' scale through their depth, and
# a peak lr of 0.01, d2l's plain-SGD step or less once momentum 0.9 multiplies it by 10.
FAST_OVERRIDES: dict[str, dict[str, Any]] = {
    name: {"lr": 0.01, "init": "kaiming"} for name in ("alexnet", "vgg11_small", "nin", "googlenet")}


def _estimate_epoch_seconds(model: str, resize: int, batch_size: int, device: str, images: int) -> float:
    from convzoo.bench import benchmark_model

    r = benchmark_model(model, input_size=(1, resize, resize), batch_size=batch_size, mode="train",
                        seconds=5.0, device=device, peak=1.0)
    eval_share = 1 + 10_000 / images / 3  # evaluating 10,000 test images costs about a third of training them
    return images / r.images_per_s * eval_share


def recipe_values(model: str, recipe: str) -> dict[str, Any]:
    """The config values ``recipe`` gives ``model`` in the report: the recipe's, then ``FAST_OVERRIDES``."""
    values = {"init": TrainConfig.init, **RECIPES[recipe](model)}
    return values | (FAST_OVERRIDES.get(model, {}) if recipe == "fast" else {})


def planned(model: str, recipe: str, device: str, full_size: bool) -> dict[str, Any]:
    """What decides ``model``'s row besides the budget: input side, batch size, lr, init, device."""
    d2l_size = D2L_TABLE[model][0]
    values = recipe_values(model, recipe)
    return {"resize": d2l_size if full_size else CPU_SIZES.get(model, d2l_size), "batch_size": values["batch_size"],
            "lr": values["lr"], "init": values["init"], "device": device}


def run_model(model: str, *, budget_s: float, device: str, runs: Path, data_dir: str | None,
              full_size: bool, recipe: str = "fast") -> dict[str, Any]:
    from convzoo.train.loop import fit

    plan = planned(model, recipe, device, full_size)
    resize = plan["resize"]
    estimate = _estimate_epoch_seconds(model, resize, plan["batch_size"], device, 60_000)
    epochs = min(10, math.floor(budget_s / estimate))
    result: dict[str, Any] = {"model": model, "recipe": recipe, **plan, "epoch_estimate_s": estimate,
                              "d2l_median": D2L_MEDIAN[model], "budget_minutes": budget_s / 60}
    if epochs < 1:
        return result | {"epochs": 0, "test_acc": None, "seconds": None,
                         "note": f"one epoch takes about {estimate / 60:.0f} min here, over the budget"}
    config = resolve_config(recipe=recipe, overrides={**recipe_values(model, recipe), "model": model,
                                                      "resize": resize, "epochs": epochs, "device": device,
                                                      "data_dir": data_dir, "out": str(runs / model / "run")})
    start = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        history = fit(config, progress=False, out=quiet).history
    return result | {"epochs": epochs, "test_acc": history[-1]["test_acc"], "seconds": time.perf_counter() - start,
                     "curve": [row["test_acc"] for row in history]}


def run_report(models: list[str], *, budget_minutes: float = 15.0, device: str = "cpu",
               runs: str | os.PathLike[str] = "runs/report", out: str | os.PathLike[str] = "docs",
               data_dir: str | None = None, full_size: bool = False, recipe: str | None = None,
               log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train each model (skipping those with a result already in ``runs``) and write zoo.md and zoo.png.

    ``recipe`` None gives each model its ``CPU_RECIPES`` entry (``fast`` where there is none).
    """
    top, out = Path(runs), Path(out)
    results = []
    for model in models:
        model_recipe = recipe or CPU_RECIPES.get(model, "fast")
        where = top / model_recipe
        done = where / model / "result.json"
        if done.is_file():
            want = planned(model, model_recipe, device, full_size or device != "cpu")
            # results older than --init were made with the recipe's own init
            saved = {"init": recipe_values(model, model_recipe)["init"], **json.loads(done.read_text())}
            changed = [f"{k} {saved.get(k)} -> {v}" for k, v in want.items() if saved.get(k) != v]
            if not changed:
                results.append(saved)
                log(f"{model}: done before ({done})")
                continue
            keep = where / f"{model}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"  # nothing saved is lost
            os.replace(where / model, keep)
            log(f"{model}: the saved result was made with other settings ({', '.join(changed)}); kept in "
                f"{keep}, training again")
        if (where / model / "run").exists():  # an interrupted training: start this model again
            import shutil

            shutil.rmtree(where / model / "run")
        result = run_model(model, budget_s=budget_minutes * 60, device=device, runs=where, data_dir=data_dir,
                           full_size=full_size or device != "cpu", recipe=model_recipe)
        done.parent.mkdir(parents=True, exist_ok=True)
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2))
        os.replace(tmp, done)
        results.append(result)
        got = f"{result['test_acc']:.4f} after {result['epochs']} epochs" if result["test_acc"] is not None else \
            result["note"]
        log(f"{model}: {got} (d2l {result['d2l_median']:.3f})")
    out.mkdir(parents=True, exist_ok=True)
    (out / "zoo.md").write_text(markdown(results, budget_minutes))
    plot(results, out / "zoo.png")
    return results


RECIPE_WORDS = {"fast": "convzoo's `--recipe fast` (Nesterov momentum, one-cycle schedule with warm-up, label "
                        "smoothing 0.1, normalised input)",
                "d2l": "d2l's hyperparameters (`--recipe d2l`: plain SGD, Xavier init, no normalisation)"}


def markdown(results: list[dict[str, Any]], budget_minutes: float) -> str:
    recipes = sorted({r.get("recipe", "d2l") for r in results})
    lines = ["# The zoo on Fashion-MNIST, beside d2l", "",
             f"`convzoo report` with {' and '.join(RECIPE_WORDS[k] for k in recipes)}, as many of d2l's 10 "
             f"epochs as fit the budget per model (this call: {budget_minutes:g} minutes) on the device named; "
             "test accuracy after the last epoch (nothing is chosen on the test split). d2l: median of 26 builds "
             "on a V100 (../shared/reference/d2l_results.md).", "",
             "| model | recipe | device | input | epochs | test acc | d2l median | gap | time | lr | init | budget |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    short = []
    for r in results:
        acc = f"{r['test_acc']:.4f}" if r["test_acc"] is not None else "-"
        gap = f"{r['test_acc'] - r['d2l_median']:+.3f}" if r["test_acc"] is not None else "-"
        took = f"{r['seconds'] / 60:.1f} min" if r["seconds"] else r.get("note", "-")
        budget = f"{r['budget_minutes']:g} min" if "budget_minutes" in r else "-"
        lines.append(f"| {r['model']} | {r.get('recipe', 'd2l')} | {r['device']} | {r['resize']} | {r['epochs']} "
                     f"| {acc} | {r['d2l_median']:.3f} | {gap} | {took} | {r['lr']:g} | {r['init']} | {budget} |")
        if r["test_acc"] is None:
            short.append(f"{r['model']} does not fit the budget ({r.get('note', '')})")
        elif r["test_acc"] < r["d2l_median"]:
            short.append(f"{r['model']} reaches {r['test_acc']:.4f}, {r['d2l_median'] - r['test_acc']:.3f} short "
                         f"of d2l's {r['d2l_median']:.3f}, at {r['resize']}x{r['resize']} in {r['epochs']} epochs")
    lines.append("")
    if short:
        lines.append("Below d2l's median within the budget: " + "; ".join(short) + ".")
    else:
        lines.append("Every model reaches d2l's median within the budget.")
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["model"] for r in results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.5 * len(names) + 1.5))
    y = range(len(names))
    left.barh([i + 0.2 for i in y], [r["test_acc"] or 0 for r in results], height=0.4, label="convzoo")
    left.barh([i - 0.2 for i in y], [r["d2l_median"] for r in results], height=0.4, label="d2l median")
    left.set(yticks=list(y), yticklabels=names, xlabel="test accuracy", xlim=(0, 1))
    left.legend(loc="lower right")
    right.barh(list(y), [(r["seconds"] or 0) / 60 for r in results])
    right.set(yticks=list(y), yticklabels=[], xlabel="training time (min)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cmd_report(args: argparse.Namespace) -> int:
    models = args.models.split(",") if args.models else list(D2L_TABLE)
    unknown = [m for m in models if m not in D2L_TABLE]
    if unknown:
        raise ValueError(f"no d2l recipe for {', '.join(unknown)}; report models: {', '.join(D2L_TABLE)}")
    if not args.budget_minutes > 0:
        raise ValueError(f"--budget-minutes must be > 0, got {args.budget_minutes}")
    run_report(models, budget_minutes=args.budget_minutes, device=args.device, runs=args.runs, out=args.out,
               data_dir=args.data_dir, full_size=args.full_size, recipe=args.recipe)
    return 0


def register(sub: Any, commands: dict[str, Callable[[argparse.Namespace], int]]) -> None:
    """Add ``convzoo report`` to the CLI's subparsers."""
    p = sub.add_parser("report", help="train the d2l table's models on Fashion-MNIST; write zoo.md and zoo.png")
    p.add_argument("--models", help="comma-separated (default: every model of d2l's table)")
    p.add_argument("--budget-minutes", type=float, default=15.0, help="per model (default 15)")
    p.add_argument("--recipe", choices=sorted(RECIPES),
                   help="fast (convzoo's CPU recipe) or d2l (d2l's hyperparameters) for every model "
                        "(default: per model, the better one on the CPU)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda: d2l's input sizes on a GPU")
    p.add_argument("--full-size", action="store_true", help="d2l's input sizes on the CPU too")
    p.add_argument("--data-dir", help="folder holding Fashion-MNIST")
    p.add_argument("--runs", default="runs/report",
                   help="where each model's run and result go, under RUNS/RECIPE/MODEL (resumable)")
    p.add_argument("--out", default="docs", help="where zoo.md and zoo.png go (default docs)")
    commands["report"] = _cmd_report
