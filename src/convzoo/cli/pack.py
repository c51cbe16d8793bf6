"""``convzoo pack DIR OUT``: an image folder written as shards (litdata's format, :mod:`convzoo.data.shards`) that
``convzoo train --dataset shards:OUT`` reads, from this disk or from an object store they are copied to."""

from __future__ import annotations

import argparse
from pathlib import Path

from convzoo.cli.args import Subcommands, positive_int

__all__ = ["register", "run"]


def register(sub: Subcommands) -> None:
    p = sub.add_parser("pack", help="write an image folder as shards for --dataset shards:OUT (litdata's format)",
                       description="Write an image folder (DIR/train/ with DIR/val/ or DIR/test/, or DIR/<class>/) "
                                   "as litdata shards in OUT: each image's file bytes and label, and a manifest "
                                   "(classes, splits, per-image hashes and sizes). Train on them with --dataset "
                                   "shards:OUT, or copy OUT to an object store and use shards:s3://... .")
    p.add_argument("dir", metavar="DIR", help="the image folder (or a .tar/.tar.gz of one)")
    p.add_argument("out", metavar="OUT", help="the folder to write (refused if it exists, unless --force)")
    p.add_argument("--max-side", type=positive_int, metavar="N",
                   help="re-encode images whose longer side is above N at longer side N, aspect ratio kept "
                        "(JPEGs as JPEG quality 95, others as PNG); default: every file's bytes as they are")
    p.add_argument("--force", action="store_true", help="replace OUT if it holds earlier shards (or nothing)")
    p.add_argument("--threads", type=positive_int, metavar="N", help="threads reading the files (default: the cores, "
                   "at most 8)")
    p.add_argument("--chunk-mb", type=positive_int, default=64, metavar="MB",
                   help="size of each litdata chunk, what a remote read downloads at a time (default 64)")
    p.set_defaults(_run=run)


def run(args: argparse.Namespace) -> int:
    from convzoo.data import default_cache_dir
    from convzoo.data.shards import pack_folder

    report = pack_folder(Path(args.dir).expanduser(), Path(args.out).expanduser(), cache_dir=default_cache_dir(),
                         max_side=args.max_side, force=args.force, threads=args.threads,
                         chunk_bytes=args.chunk_mb << 20)
    splits = ", ".join(f"{n:,} {name}" for name, n in report.images.items())
    resized = f", {report.resized:,} re-encoded at longer side {args.max_side}" if args.max_side else ""
    print(f"packed {sum(report.images.values()):,} images ({splits}{resized}) into {report.out}: "
          f"{report.stored_bytes / 1e6:.1f} MB of images in {report.seconds:.1f} s; train on them with "
          f"--dataset shards:{report.out}")
    return 0
