"""``convzoo bench MODEL...``: images/s, multiply-adds and the fraction of the fp32 matmul peak, per model
(the measuring is :mod:`convzoo.bench`'s)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from convzoo.cli.args import Subcommands, add_device_argument, check_values, positive_float, positive_int
from convzoo.errors import ConvzooError

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("bench", help="images/s, MACs and the fraction of the fp32 matmul peak, per model")
    p.add_argument("models", nargs="+", metavar="MODEL", help="model names or globs (resnet*)")
    p.add_argument("--input-size", nargs=3, type=positive_int, metavar=("C", "H", "W"),
                   help="input size (default: the model's)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="default 64")
    p.add_argument("--mode", choices=("infer", "train", "both"), default="infer", help="default infer")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (20-40 s up front)")
    p.add_argument("--seconds", type=positive_float, default=3.0, help="timing per model and mode (default 3)")
    p.add_argument("--threads", type=positive_int, help="intra-op threads (default: torch's)")
    add_device_argument(p, default="cpu")
    p.add_argument("--csv", metavar="FILE", help="also write the rows to this CSV file")
    p.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    import convzoo
    from convzoo.bench import benchmark_model, format_table, matmul_peak, write_csv
    from convzoo.train.env import pick_device

    names: list[str] = []
    for pattern in args.models:
        matched = convzoo.list_models(pattern) if any(ch in pattern for ch in "*?[") else [pattern]
        if not matched:
            raise ConvzooError(f"no model matches {pattern!r}; see convzoo models")
        names += [n for n in matched if n not in names]
    for name in names:  # unknown names and too-small sizes fail now, before any timing
        info = convzoo.model_info(name)
        C, H, W = args.input_size or info.default_input_size
        check_values((args.batch_size, C, H, W), "--input-size or --batch-size")
        convzoo.create_model(name, in_channels=C).check_input(torch.empty(1, C, H, W, device="meta"))
    cpus = os.cpu_count() or 1
    if args.threads and args.threads > cpus:  # more only slows the timing down (and 100,000 crash torch)
        raise ConvzooError(f"--threads {args.threads}: this machine has {cpus} CPUs; use at most --threads {cpus}")
    if args.csv and not Path(args.csv).resolve().parent.is_dir():  # before the minutes of timing, not after
        raise ConvzooError(f"--csv {args.csv}: the folder {Path(args.csv).resolve().parent} does not exist; "
                           "create it or choose another file")
    device = str(pick_device(args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_peak(device=device)
    print(f"{torch.get_num_threads()} threads; fp32 matmul peak {peak / 1e9:.1f} GFLOP/s ({device})", flush=True)
    modes = ("infer", "train") if args.mode == "both" else (args.mode,)
    results = [benchmark_model(name, input_size=tuple(args.input_size) if args.input_size else None,
                               batch_size=args.batch_size, mode=mode, channels_last=args.channels_last,
                               compile=args.compile, seconds=args.seconds, device=device, peak=peak)
               for name in names for mode in modes]
    print(format_table(results))
    if args.csv:
        write_csv(results, args.csv)
        print(f"wrote {args.csv}")
    return 0
