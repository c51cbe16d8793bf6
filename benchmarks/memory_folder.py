"""Peak memory of one training epoch from a folder of synthetic photos, against the folder's size (issue 29:
memory must not grow with the folder).

    python benchmarks/memory_folder.py --counts 2000 20000 [--size 400x300] [--model lenet5_cifar]
        [--image-size 64] [--stream | --in-memory] [--json FILE]

``--in-memory`` lets convzoo choose (the folder's images share one size, so it takes the in-memory path where
they fit ``--cache-memory``) and resizes batches to ``--image-size`` with ``--resize``; its goal is a peak of at
most 2x the images decoded to uint8. Each row also gives the peak less that of a process that has only imported
torch and convzoo (measured beside it): the part of the peak that is the data's and the training's.

For each count N, writes (once, cached under --work) N random-content JPEGs of --size in 10 class folders,
then runs ``convzoo train`` for one epoch on ``imagefolder:`` that folder in a child process, with its own
empty data cache, and samples the memory of the whole process tree (the trainer and its loader workers)
every 0.1 s: the sum of the processes' proportional set sizes (PSS, from /proc/PID/smaps_rollup, so pages a
worker shares with its parent after fork are counted once), and each process's own peak RSS (VmHWM). Prints
one row per count and the ratio of the largest to the smallest peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CLASSES = 10


def write_folder(root: Path, n: int, width: int, height: int, seed: int = 0) -> Path:
    """``root/photos-N-WxH/train/cK/i.jpg``: N JPEGs of smooth random colour (compressible as photos are)."""
    import numpy as np
    from PIL import Image

    folder = root / f"photos-{n}-{width}x{height}"
    done = folder / ".complete"
    if done.exists():
        return folder
    rng = np.random.default_rng(seed)
    for i in range(n):
        label = i % CLASSES
        target = folder / "train" / f"c{label}" / f"{i:06d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
        image.save(target, quality=90)
    done.write_text(str(n))
    return folder


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc/*/stat's parent field."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


class TreeSampler(threading.Thread):
    """The peak over time of the summed PSS of a process tree, and the largest VmHWM of its processes."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak_pss_kib = 0
        self.hwm_kib: dict[int, int] = {}
        self.processes = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            pids = _tree(self.pid)
            self.processes = max(self.processes, len(pids))
            self.peak_pss_kib = max(self.peak_pss_kib, sum(_pss_kib(p) for p in pids))
            for p in pids:
                self.hwm_kib[p] = max(self.hwm_kib.get(p, 0), _hwm_kib(p))
            time.sleep(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()


BASELINE = ("import torch, convzoo.train, convzoo.models\n"
            "print([int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0])")


def baseline_mib() -> float:
    """Peak RSS of a process that has only imported what ``convzoo train`` imports (torch and convzoo): the part
    of every peak that is not the data's."""
    done = subprocess.run([sys.executable, "-c", BASELINE], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1]) / 1024


def measure(folder: Path, args: argparse.Namespace, work: Path) -> dict:
    out = Path(tempfile.mkdtemp(dir=work, prefix="run-"))
    cmd = [sys.executable, "-m", "convzoo", "train", "--model", args.model, "--dataset", f"imagefolder:{folder}",
           "--epochs", "1", "--val-split", "0.1", "--out", str(out / "run")]
    if args.path == "stream":
        cmd += ["--stream", "--image-size", str(args.image_size)]
    else:  # the in-memory path holds the images at their own size (one size here) and resizes each batch
        cmd += ["--resize", str(args.image_size)]
    env = dict(os.environ, CONVZOO_CACHE=str(out / "cache"))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    output, _ = proc.communicate()
    sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"convzoo train failed ({proc.returncode}):\n{output}")
    path_line = next((line for line in output.splitlines() if line.startswith("data: ")), "")  # which path, why
    return {"seconds": time.perf_counter() - start, "peak_pss_mib": sampler.peak_pss_kib / 1024,
            "max_process_hwm_mib": max(sampler.hwm_kib.values()) / 1024, "processes": sampler.processes,
            "path_line": path_line.strip()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--size", default="400x300", help="WIDTHxHEIGHT of each synthetic JPEG")
    parser.add_argument("--model", default="lenet5_cifar")
    parser.add_argument("--image-size", type=int, default=32)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--stream", dest="path", action="store_const", const="stream",
                       help="force the streaming path (--stream)")
    group.add_argument("--in-memory", dest="path", action="store_const", const="auto",
                       help="let convzoo choose (the in-memory path where the folder fits --cache-memory)")
    parser.set_defaults(path="stream")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "convzoo-memory-folder")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.counts:
        t = time.perf_counter()
        folder = write_folder(args.work, n, width, height)
        written = time.perf_counter() - t
        row = {"images": n, "size": args.size, "path": args.path, "write_seconds": written,
               **measure(folder, args, args.work)}
        row["uint8_mib"] = n * 3 * width * height / 2**20  # the folder decoded, as the in-memory path holds it
        row["baseline_mib"] = baseline_mib()
        own = row["peak_pss_mib"] - row["baseline_mib"]
        rows.append(row)
        print(f"{n:>7,} images {args.size}: peak PSS of the process tree {row['peak_pss_mib']:,.0f} MiB "
              f"(largest single-process peak RSS {row['max_process_hwm_mib']:,.0f} MiB, {row['processes']} "
              f"processes), {row['peak_pss_mib'] / row['uint8_mib']:.2f}x the {row['uint8_mib']:,.0f} MiB of the "
              f"images decoded to uint8; less the {row['baseline_mib']:,.0f} MiB of a process that has imported "
              f"torch and convzoo, {own:,.0f} MiB, {own / row['uint8_mib']:.2f}x; epoch run {row['seconds']:.0f} s; "
              f"{row['path_line']}", flush=True)
    peaks = [r["peak_pss_mib"] for r in rows]
    if len(peaks) > 1:
        print(f"largest / smallest peak: {max(peaks) / min(peaks):.3f}x (goal for the streaming path <= 1.10x, each "
              "under 2,048 MiB)")
    if args.path == "auto":
        print("goal for the in-memory path: peak at most 2x the images decoded to uint8")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
