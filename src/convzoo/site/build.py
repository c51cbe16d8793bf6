"""``build_site``: the whole static site, from the registry, the inspector, the shipped weights and runs.

    report = build_site("site", models="*", runs=["runs/lenet"])   # site/index.html, models/*.html, ...

Pages: ``index.html`` (the zoo), ``models/NAME.html`` (one per model matching ``models``), ``convolution.html``
(the worked examples) and ``runs/NAME.html`` (one per run directory). A model with shipped weights gets
their pictures (test images, top-5, feature maps, filters) when the weights' data set is found, and, for the
MNIST, Fashion-MNIST and CIFAR-10 weights, a "Try it" panel: the weights' ONNX file and onnxruntime-web copied
into the site (:mod:`convzoo.site.tryit`); whatever is left out is said on the page and in the report.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convzoo.data import Dataset, load_dataset
from convzoo.data.datasets import default_cache_dir
from convzoo.errors import ConvzooError, ModelError, RunError
from convzoo.models import list_models, list_weights
from convzoo.site.convolution import worked_examples
from convzoo.site.pages import copy_assets, write_page
from convzoo.site.pictures import weights_gallery
from convzoo.site.runs import run_entry
from convzoo.site.tryit import ORT_VERSION, copy_runtime, onnx_model, onnxruntime_web
from convzoo.site.zoo import model_entry

__all__ = ["TRY_IT_DATASETS", "SiteReport", "build_site"]

TRY_IT_DATASETS = ("mnist", "fashion-mnist", "cifar10")  # the weights whose pages get a "Try it" panel
GALLERY_IMAGES = 3  # test images per model page with shipped weights
SITE_MARK = ".convzoo-site"  # the file that says a folder is a site this builds (and may rebuild)


@dataclass
class SiteReport:
    """What :func:`build_site` wrote: the pages, the bytes, the seconds, and what was left out and why."""

    out: Path
    pages: list[str] = field(default_factory=list)
    size: int = 0  # bytes of every file under ``out``
    seconds: float = 0.0
    left_out: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"wrote {len(self.pages)} pages to {self.out} ({self.size / 1e6:.1f} MB) in {self.seconds:.1f} s"]
        lines += [f"left out: {why}" for why in self.left_out]
        lines.append(f"open it: python -m http.server -d {self.out} 8000, then http://127.0.0.1:8000/")
        return "\n".join(lines)


def _clean(value: Any) -> Any:
    """``value`` with every non-finite float as ``None`` (JSON has no NaN: a diverged run's loss)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _prepare(out: Path) -> None:
    """An empty ``out``, or one this builder wrote before (emptied); anything else is refused."""
    if out.exists() and not out.is_dir():
        raise ConvzooError(f"{out} is a file; give a folder for the site")
    if out.is_dir() and any(out.iterdir()):
        if not (out / SITE_MARK).is_file():
            raise ConvzooError(f"{out} is not empty and is not a site convzoo built; give an empty or new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / SITE_MARK).write_text("built by convzoo site; rebuilding replaces this folder\n", encoding="utf-8")


def _dataset(name: str, data_dir: Path | None, cache: dict[str, Dataset | str]) -> Dataset | str:
    """The data set ``name`` (or the reason it is not here), loaded once per build."""
    if name not in cache:
        try:
            where = data_dir if data_dir is not None and (data_dir / name).is_dir() else None
            cache[name] = load_dataset(name, data_dir=where)
        except ConvzooError as err:
            cache[name] = str(err)
    return cache[name]


def _run_names(runs: Sequence[Path]) -> list[str]:
    """A page name per run: its folder's name, made unique with its parent's when two share one."""
    names: list[str] = []
    for run in runs:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", run.name) or "run"
        if name in names:
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{run.parent.name}-{run.name}")
        while name in names:
            name += "_"
        names.append(name)
    return names


def build_site(out: str | os.PathLike[str], models: str = "*", runs: Sequence[str | os.PathLike[str]] = (), *,
               data_dir: str | os.PathLike[str] | None = None, cache_dir: str | os.PathLike[str] | None = None,
               npm: str | None = "npm", try_it: bool = True) -> SiteReport:
    """Build the site in ``out`` (a new or empty folder, or a site built before, replaced).

    ``models``: a glob of the registry's names; ``runs``: run directories, one page each; ``data_dir``: a
    folder holding the data sets (``DIR/mnist``, ...), else the places ``load_dataset`` looks; ``cache_dir``:
    where the ONNX files and onnxruntime-web are kept between builds (default ``$CONVZOO_CACHE/site``);
    ``npm``: the npm that installs onnxruntime-web (``None``: never install); ``try_it``: whether to make the
    in-browser panels at all.
    """
    start = time.perf_counter()
    names = list_models(models)
    if not names:
        raise ModelError(f"models {models!r} matches no model; `convzoo models` lists them")
    run_dirs = [Path(run) for run in runs]
    for run in run_dirs:
        if not (run / "metrics.jsonl").is_file():
            raise RunError(f"{run}: not a run directory (no metrics.jsonl); give a folder `convzoo train --out` wrote")
    target = Path(out)
    _prepare(target)
    report = SiteReport(target)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "site"
    data_root = Path(data_dir) if data_dir is not None else None
    copy_assets(target)
    run_names = _run_names(run_dirs)
    nav = [(name, f"runs/{name}.html") for name in run_names]

    runtime_reason = "the in-browser panels were not asked for (--no-try-it)"
    runtime_ok = False
    wanted = [w for w in list_weights() if w.model in names and w.dataset in TRY_IT_DATASETS]
    if try_it and wanted:
        runtime = onnxruntime_web(cache, npm)
        runtime_reason = runtime.reason
        if runtime.folder is not None:
            try:
                import onnx  # noqa: F401  (the export extra: convzoo.export needs it)

                copy_runtime(runtime, target / "vendor" / "onnxruntime-web")
                runtime_ok = True
            except ImportError:
                runtime_reason = "ONNX export needs convzoo's 'export' extra: pip install 'convzoo[export]'"
    if wanted and not runtime_ok:
        report.left_out.append(f"the in-browser Try it panels: {runtime_reason}")

    datasets: dict[str, Dataset | str] = {}
    entries = []
    for name in names:
        entry = model_entry(name)
        entry["galleries"], entry["tryit"], entry["left_out"] = [], [], []
        for weights in (w for w in list_weights() if w.model == name):
            data = _dataset(weights.dataset, data_root, datasets)
            if isinstance(data, str):
                entry["left_out"].append(f"the {weights.dataset} test images and their feature maps: {data}")
                report.left_out.append(f"{name}: the {weights.dataset} test images ({data})")
            gallery = weights_gallery(weights, None if isinstance(data, str) else data,
                                      target / "img" / name / weights.dataset, f"../img/{name}/{weights.dataset}",
                                      GALLERY_IMAGES)
            entry["galleries"].append(gallery)
            if weights.dataset not in TRY_IT_DATASETS:
                continue
            if not runtime_ok:
                entry["left_out"].append(f"the in-browser Try it panel: {runtime_reason}")
                continue
            onnx_file = f"onnx/{name}-{weights.dataset}.onnx"
            try:
                exported = onnx_model(weights, cache)
            except ConvzooError as err:  # the exporter cannot take the model, or its check failed: said, not fatal
                entry["left_out"].append(f"the in-browser Try it panel: the ONNX export failed ({err})")
                report.left_out.append(f"{name}: the Try it panel ({err})")
                continue
            (target / "onnx").mkdir(exist_ok=True)
            shutil.copyfile(exported, target / onnx_file)
            entry["tryit"].append({"dataset": weights.dataset, "onnx": f"../{onnx_file}",
                                   "classes": list(weights.classes), "input_size": list(weights.input_size),
                                   "mean": None if weights.mean is None else list(weights.mean),
                                   "std": None if weights.std is None else list(weights.std),
                                   "draw": weights.dataset == "mnist", "ort": "../vendor/onnxruntime-web/",
                                   "ort_version": ORT_VERSION})
        entries.append(entry)
        write_page(target, f"models/{name}.html", name, "model", _clean(entry),
                   scripts=["tryit.js", "model.js"],
                   vendor=["onnxruntime-web/ort.wasm.min.js"] if entry["tryit"] else [], runs=nav)
        report.pages.append(f"models/{name}.html")

    index = [{k: v for k, v in entry.items() if k not in ("rows", "blocks", "galleries", "tryit")}
             for entry in entries]
    write_page(target, "index.html", "the zoo", "index", _clean({"models": index}), scripts=["index.js"], runs=nav)
    report.pages.insert(0, "index.html")
    write_page(target, "convolution.html", "convolution, step by step", "convolution",
               {"examples": worked_examples()}, scripts=["convolution.js"], runs=nav)
    report.pages.append("convolution.html")
    for run, name in zip(run_dirs, run_names, strict=True):
        entry = run_entry(run, target / "img" / "runs" / name, f"../img/runs/{name}", data_root)
        write_page(target, f"runs/{name}.html", f"run {name}", "run", _clean(entry), scripts=["run.js"],
                   vendor=["chart.js/chart.umd.min.js"], runs=nav)
        report.pages.append(f"runs/{name}.html")
    report.size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    report.seconds = time.perf_counter() - start
    return report
