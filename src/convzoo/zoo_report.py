"""``convzoo report``: train the d2l table's models on Fashion-MNIST and set them beside d2l's results.

For each model, a recipe: ``fast`` (convzoo's CPU recipe: Nesterov momentum, one-cycle schedule, label
smoothing, normalised input) or ``d2l`` (d2l's own hyperparameters: plain SGD, Xavier init, no
normalisation); by default the one that does better for that model on the CPU (its registry entry's
``ReportPlan.recipe``). On a GPU the models train at d2l's input size; on the CPU at the smaller
``ReportPlan.cpu_side`` where d2l's (224 or 96) would not fit the budget. The report's models are those
registered with a ``d2l`` entry (``convzoo.models.d2l_models()``), d2l's settings and published accuracy
included. Before training, a few timed training steps and a few timed inference batches estimate an
epoch with its evaluation of the test split; the run gets as many of d2l's 10 epochs as fit the per-model
budget (none: the model is reported as not fitting, with the estimate). The reported accuracy is the test
accuracy after the last epoch, as d2l reports it (nothing is chosen on the test split). Each model's result is written
to ``RUNS/<recipe>/<model>/result.json`` as soon as it is done, so an interrupted report resumes with the
models still missing. Writes ``OUT/zoo.md`` and ``OUT/zoo.png``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from convzoo.errors import ConvzooError
from convzoo.models import D2LRecipe, ReportPlan, d2l_models, model_info
from convzoo.train.config import RECIPES, TrainConfig, resolve_config
from convzoo.utils.atomic import atomic_path, write_text_atomic

__all__ = ["run_report"]

# The measured choices (d2l's settings and accuracy, the CPU input sides, the recipe per model and the fast
# recipe's overrides) live beside each model's builder: convzoo/models/<family>.py's @register_model(d2l=...,
# report=...).


def _table_entry(model: str) -> tuple[D2LRecipe, ReportPlan]:
    """``model``'s d2l entry and report plan; a model outside d2l's table is an error naming those in it."""
    info = model_info(model)
    if info.d2l is None or info.report is None:
        raise ConvzooError(f"no d2l recipe for {model}; report models: {', '.join(d2l_models())}")
    return info.d2l, info.report


def _estimate_epoch_seconds(model: str, resize: int, batch_size: int, device: str, images: int,
                            evaluated: int = 10_000) -> float:
    """Seconds of one epoch: ``images`` training images at the measured training-step speed, plus the
    ``evaluated`` test images every epoch ends with, at the measured inference speed (both on random data)."""
    from convzoo.bench import benchmark_model

    train = benchmark_model(model, input_size=(1, resize, resize), batch_size=batch_size, mode="train",
                            seconds=5.0, device=device, peak=1.0)
    infer = benchmark_model(model, input_size=(1, resize, resize), batch_size=256, mode="infer", seconds=2.0,
                            device=device, peak=1.0)
    return images / train.images_per_s + evaluated / infer.images_per_s


def recipe_values(model: str, recipe: str) -> dict[str, Any]:
    """The config values ``recipe`` gives ``model`` in the report: the recipe's, then (fast) its plan's
    ``fast_overrides``."""
    values = {"init": TrainConfig.init, **RECIPES[recipe](model)}
    return values | (dict(_table_entry(model)[1].fast_overrides) if recipe == "fast" else {})


def planned(model: str, recipe: str, device: str, full_size: bool) -> dict[str, Any]:
    """What decides ``model``'s row besides the budget: input side, batch size, lr, init, device."""
    d2l, plan = _table_entry(model)
    values = recipe_values(model, recipe)
    return {"resize": d2l.resize if full_size else plan.cpu_side or d2l.resize, "batch_size": values["batch_size"],
            "lr": values["lr"], "init": values["init"], "device": device}


def run_model(model: str, *, budget_s: float, device: str, runs: Path, data_dir: str | None,
              full_size: bool, recipe: str = "fast") -> dict[str, Any]:
    from convzoo.train.loop import fit

    plan = planned(model, recipe, device, full_size)
    resize = plan["resize"]
    estimate = _estimate_epoch_seconds(model, resize, plan["batch_size"], device, 60_000)
    epochs = min(10, math.floor(budget_s / estimate))
    result: dict[str, Any] = {"model": model, "recipe": recipe, **plan, "epoch_estimate_s": estimate,
                              "d2l_median": _table_entry(model)[0].test_acc, "budget_minutes": budget_s / 60}
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


REPORT_FILES = ("zoo.md", "zoo.png")


def default_report_dir() -> Path:
    """A new folder for a report, named as a run directory is: ``runs/report-YYYYmmdd-HHMMSS``."""
    return Path("runs") / f"report-{time.strftime('%Y%m%d-%H%M%S')}"


def check_report_dir(out: str | os.PathLike[str], *, force: bool = False) -> Path:
    """``out`` as a folder a report may be written into: refused when it is a file, or when it already holds a
    report and ``force`` is not set (a report kept in a repository is never replaced by accident)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConvzooError(f"--out {out} is a file; --out names the folder for zoo.md and zoo.png")
    held = [name for name in REPORT_FILES if (out / name).exists()]
    if held and not force:
        raise ConvzooError(f"--out {out} already holds a report ({', '.join(held)}); choose another --out, or "
                           "add --force to replace it")
    return out


def run_report(models: list[str], *, budget_minutes: float = 15.0, device: str = "cpu",
               runs: str | os.PathLike[str] = "runs/report", out: str | os.PathLike[str] | None = None,
               data_dir: str | None = None, full_size: bool = False, recipe: str | None = None,
               force: bool = False, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train each model (skipping those with a result already in ``runs``) and write zoo.md and zoo.png into
    ``out`` (default: a new ``runs/report-YYYYmmdd-HHMMSS``; a folder already holding a report is refused,
    before any training, unless ``force``).

    ``recipe`` None gives each model the recipe of its ``ReportPlan`` (``fast`` unless it says otherwise).
    """
    top, out = Path(runs), check_report_dir(default_report_dir() if out is None else out, force=force)
    results = []
    for model in models:
        model_recipe = recipe or _table_entry(model)[1].recipe
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
        write_text_atomic(done, json.dumps(result, indent=2))
        results.append(result)
        got = f"{result['test_acc']:.4f} after {result['epochs']} epochs" if result["test_acc"] is not None else \
            result["note"]
        log(f"{model}: {got} (d2l {result['d2l_median']:.3f})")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "zoo.md", markdown(results, budget_minutes))
    plot(results, out / "zoo.png")
    log(f"report: {out / 'zoo.md'} and {out / 'zoo.png'}")
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
    with atomic_path(path, suffix=".png") as tmp:  # a kill leaves the old figure or the new one, never half
        fig.savefig(tmp, dpi=100)
    plt.close(fig)

