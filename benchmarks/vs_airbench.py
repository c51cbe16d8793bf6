"""airbench's own ``train94`` beside convzoo's ``--recipe airbench``: same data, same device, alternately.

    python benchmarks/vs_airbench.py [--seeds N] [--device auto|cpu|cuda] [--data-dir DIR] [--json FILE]
    python benchmarks/vs_airbench.py --smoke      # 1 epoch on 160 images at batch 32: plumbing, not figures

The peer is Keller Jordan's airbench (PyPI package ``airbench``, ``pip install -e .[airbench]``), its
``lib_airbench94.train94`` with every setting of its own; convzoo's side is ``convzoo train --recipe airbench``
(``time_to_accuracy.py``'s ``cifar10-94``). Both train on the same 50,000 lossless CIFAR-10 images, decoded by
convzoo and handed to airbench's ``CifarLoader`` as the ``train.pt``/``test.pt`` it caches for itself
(``images`` uint8 ``N x 32 x 32 x 3``, ``labels``, ``classes``; nothing is downloaded), and both are tested on
the official 10,000. Seeds 0..N-1, airbench first, then convzoo, seed by seed.

Clocks: airbench's is its own ``train94`` (training, then its TTA evaluation on the test split), as its
published 2.59 s (A100) are; it trains a fixed number of epochs, so its time to 94% is that time when its final
accuracy reaches 94%. convzoo's is ``fit`` from the first touch of the (cached) data, evaluation included, and
stops at the first epoch whose test accuracy reaches 94% (``time_to_accuracy.py``'s rule); the run goes on to
its last epoch for the final accuracy. A side that does not reach 94% reports its final time instead.

Devices: on CUDA both run as published (airbench in fp16). On the CPU, airbench is moved there by patching
device and dtype only, for the length of its run: ``Tensor.half`` gives ``float``, ``Module.half`` and
``Module.cuda`` are the identity, ``torch.cuda.Event`` is timed by ``time.perf_counter``,
``torch.cuda.synchronize`` does nothing, and its ``CifarLoader`` loads onto the CPU; nothing of its recipe
changes. Before each seed the fp32 matmul peak of the device is measured (``convzoo.bench.matmul_peak``) and the
times are also given in peak-seconds (``time_to_accuracy.py``: seconds x GFLOP/s / 200).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGET = 0.94
PEAK_REFERENCE = 200e9  # FLOP/s, as time_to_accuracy.py
SMOKE = dict(train_images=160, epochs=1, batch_size=32)  # a few steps each side: checks the plumbing only


def write_airbench_data(data: Any, folder: Path, train_images: int = 0) -> None:
    """convzoo's decoded CIFAR-10 as airbench's cached tensors: ``folder/{train,test}.pt``, each
    ``{"images": uint8 N x 32 x 32 x 3, "labels": int64 N, "classes": [...]}`` (torchvision's ``data`` layout).
    ``train_images`` > 0 keeps that many training images, drawn per class as ``--train-limit`` draws them."""
    from convzoo.data.datasets import stratified_subset

    folder.mkdir(parents=True, exist_ok=True)
    train = stratified_subset(data.train, train_images, 0) if train_images else data.train
    for name, split in (("train", train), ("test", data.test)):
        torch.save({"images": split.images.permute(0, 2, 3, 1).contiguous(), "labels": split.labels.clone(),
                    "classes": list(data.classes)}, folder / f"{name}.pt")


class _PerfCounterEvent:
    """``torch.cuda.Event`` on the CPU: ``record`` reads ``time.perf_counter``, ``elapsed_time`` is in ms."""

    def __init__(self, enable_timing: bool = False, **_: Any) -> None:
        self.t = 0.0

    def record(self, stream: Any = None) -> None:
        self.t = time.perf_counter()

    def elapsed_time(self, end: _PerfCounterEvent) -> float:
        return 1e3 * (end.t - self.t)


@contextmanager
def airbench_on_cpu() -> Iterator[None]:
    """airbench's code on the CPU in fp32: device and dtype patched, its recipe untouched; undone on exit."""
    from airbench import lib_airbench94, utils

    class CpuCifarLoader(utils.CifarLoader):  # its loader, its data on the CPU
        def __init__(self, *args: Any, gpu: Any = "cpu", **kwargs: Any) -> None:
            super().__init__(*args, gpu="cpu", **kwargs)

    saved = [(torch.Tensor, "half", torch.Tensor.half), (torch.nn.Module, "half", torch.nn.Module.half),
             (torch.nn.Module, "cuda", torch.nn.Module.cuda), (torch.cuda, "Event", torch.cuda.Event),
             (torch.cuda, "synchronize", torch.cuda.synchronize), (utils, "CifarLoader", utils.CifarLoader),
             (lib_airbench94, "CifarLoader", lib_airbench94.CifarLoader)]
    replacements = [lambda self, *a, **k: self.float(), lambda self: self, lambda self, device=None: self,
                    _PerfCounterEvent, lambda device=None: None, CpuCifarLoader, CpuCifarLoader]
    for (owner, name, _), new in zip(saved, replacements, strict=True):
        setattr(owner, name, new)
    try:
        yield
    finally:
        for owner, name, old in saved:
            setattr(owner, name, old)


@contextmanager
def _inside(folder: Path) -> Iterator[None]:
    """airbench's ``train`` opens its test loader at the relative path ``cifar10``."""
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def run_airbench(work: Path, seed: int, device: str, smoke: bool) -> dict[str, Any]:
    """One ``train94`` with airbench's settings (``--smoke``: fewer epochs and steps), then its TTA evaluation."""
    from airbench import lib_airbench94, utils

    hyp = lib_airbench94.hyp
    torch.manual_seed(seed)
    cpu = device == "cpu"
    with _inside(work), airbench_on_cpu() if cpu else _nothing():
        batch_size = SMOKE["batch_size"] if smoke else hyp["opt"]["batch_size"]
        loader = utils.CifarLoader("cifar10", train=True, batch_size=batch_size, aug=hyp["aug"], altflip=True)
        test_loader = utils.CifarLoader("cifar10", train=False, batch_size=2000)
        sync = (lambda: None) if cpu else torch.cuda.synchronize
        sync()
        start = time.perf_counter()
        net = lib_airbench94.train94(loader, epochs=SMOKE["epochs"] if smoke else hyp["opt"]["train_epochs"],
                                     verbose=False)
        accuracy = utils.evaluate(net, test_loader, tta_level=hyp["net"]["tta_level"])
        sync()
        seconds = time.perf_counter() - start
    return {"side": "airbench94", "seed": seed, "final_acc": accuracy, "final_s": seconds,
            "seconds": seconds if accuracy >= TARGET else None}


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def run_convzoo(work: Path, seed: int, device: str, data_dir: str, smoke: bool) -> dict[str, Any]:
    """One ``convzoo train --recipe airbench`` on all training images, tested on the test split every epoch."""
    from convzoo.train.config import resolve_config
    from convzoo.train.loop import fit

    overrides: dict[str, Any] = {"dataset": "cifar10", "seed": seed, "data_dir": data_dir, "device": device,
                                 "out": str(work / f"convzoo-{seed}")}
    if smoke:
        overrides |= {"epochs": SMOKE["epochs"], "batch_size": SMOKE["batch_size"],
                      "train_limit": SMOKE["train_images"]}
    config = resolve_config(recipe="airbench", overrides=overrides)
    curve: list[tuple[float, float]] = []

    def on_epoch(row: dict[str, Any]) -> bool:
        curve.append((time.perf_counter() - start, row["test_acc"]))
        return False  # on to the last epoch: the final accuracy is reported too

    start = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        fit(config, progress=False, out=quiet, on_epoch=on_epoch)
    reached = [t for t, acc in curve if acc >= TARGET]
    return {"side": "convzoo", "seed": seed, "final_acc": curve[-1][1], "final_s": curve[-1][0],
            "seconds": reached[0] if reached else None, "curve": curve}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    accs = [r["final_acc"] for r in runs]
    times = [r["seconds"] if r["seconds"] is not None else r["final_s"] for r in runs]
    return {"reached": sum(r["seconds"] is not None for r in runs), "runs": len(runs),
            "acc_mean": statistics.mean(accs), "acc_sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "seconds_median": statistics.median(times),
            "peak_seconds_median": statistics.median(t * r["peak_gflops"] * 1e9 / PEAK_REFERENCE
                                                     for t, r in zip(times, runs, strict=True))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 for each side (default 3)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("--data-dir", help=f"where convzoo finds cifar10 (default {SHARED})")
    parser.add_argument("--smoke", action="store_true", help="1 epoch on 160 training images at batch 32, each side")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    try:
        import airbench  # noqa: F401
    except ImportError:
        print("vs_airbench.py needs airbench: pip install -e '.[airbench]'", file=sys.stderr)
        return 2
    from convzoo.bench import matmul_peak
    from convzoo.data import load_dataset
    from convzoo.train.env import pick_device

    device = pick_device(args.device).type
    data_dir = args.data_dir or str(SHARED)
    data = load_dataset("cifar10", data_dir=data_dir)  # decoded (once) outside both clocks
    if data.test is None:
        raise SystemExit(f"{data.source}: CIFAR-10 without its test split; the comparison is on the official one")
    import torch._dynamo  # noqa: F401  (imports outside the clocks, as time_to_accuracy.py does)

    used = f" ({SMOKE['train_images']} used: --smoke)" if args.smoke else ""
    precision = " (airbench in fp16, as published)" if device == "cuda" else " (fp32, both sides)"
    print(f"CIFAR-10 from {data.source}: {len(data.train):,} training images{used}, {len(data.test):,} test; "
          f"device {device}{precision}", flush=True)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="convzoo-vs-airbench-") as tmp:
        work = Path(tmp)
        write_airbench_data(data, work / "cifar10", SMOKE["train_images"] if args.smoke else 0)
        for seed in range(args.seeds):
            peak = matmul_peak(device=device)  # outside the clocks, just before the pair
            for side in ("airbench94", "convzoo"):
                run = (run_airbench(work, seed, device, args.smoke) if side == "airbench94" else
                       run_convzoo(work, seed, device, data_dir, args.smoke)) | {"peak_gflops": peak / 1e9}
                runs.append(run)
                got = f"{run['seconds']:.1f} s to {TARGET:.0%}" if run["seconds"] is not None else \
                    f"{TARGET:.0%} not reached, {run['final_s']:.1f} s in all"
                print(f"{run['side']:<10} seed {seed}: {got}; final test accuracy {run['final_acc']:.4f} "
                      f"(fp32 matmul peak {peak / 1e9:.1f} GFLOP/s)", flush=True)
    sides = {side: _summary([r for r in runs if r["side"] == side]) for side in ("airbench94", "convzoo")}
    print(f"\n{'side':<10} {'reached':>7} {'s to 94% (else final), median':>30} {'peak-s':>8} {'final test acc':>20}")
    for side, s in sides.items():
        print(f"{side:<10} {s['reached']:>3}/{s['runs']:<3} {s['seconds_median']:>30.1f} "
              f"{s['peak_seconds_median']:>8.1f} {s['acc_mean']:>12.4f} +- {s['acc_sd']:.4f}")
    ratio = sides["convzoo"]["seconds_median"] / sides["airbench94"]["seconds_median"]
    peaks = [r["peak_gflops"] for r in runs]
    print(f"ratio convzoo / airbench94: {ratio:.2f}x (goal <= 0.9x); fp32 matmul peak median "
          f"{statistics.median(peaks):.1f} GFLOP/s on {device}")
    if args.json:
        args.json.write_text(json.dumps({"device": device, "target": TARGET, "smoke": args.smoke, "sides": sides,
                                         "ratio": ratio, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
