"""Every script in benchmarks/ runs on a tiny budget, so none of them rots (issue 5: CI smoke runs).

They run as subprocesses, as a user would run them; real-data ones are skipped with the reason when the
data is absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from train_fixtures import SHARED_DATA, need_fashion, need_mnist

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# whole scripts in fresh processes: in `make test`, not in `make check`
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run(script: str, *args: str, timeout: int = 300) -> str:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_train_step_peak(tmp_path):
    out = run("train_step_peak.py", "--model", "lenet", "--batch-size", "8", "--steps", "1", "--no-compile",
              "--json", str(tmp_path / "p.json"))
    assert "fp32 matmul peak" in out and "channels_last" in out
    rows = json.loads((tmp_path / "p.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["NCHW", "channels_last"] and all(r["fraction"] > 0 for r in rows)


def test_channels_last():
    out = run("channels_last.py", "lenet", "lenet_bn", "--seconds", "0.05", "--repeats", "1")
    assert "lenet_bn" in out and "NCHW (" in out


def test_optimizer_step():
    out = run("optimizer_step.py", "lenet", "--steps", "1", "--repeats", "1")
    assert "loop/fused" in out and "lenet" in out and out.rstrip().endswith("fused")


def test_vgg_head():
    out = run("vgg_head.py", "--models", "vgg11_small", "--sides", "32", "--batch-size", "2", "--steps", "1",
              "--repeats", "1")
    row = out.splitlines()[-1].split()
    assert row[:2] == ["vgg11_small", "32"] and float(row[-1]) < 1e-5


@pytest.mark.data
def test_memory(tmp_path):
    need_fashion()
    out = run("memory.py", "--json", str(tmp_path / "m.json"))
    figures = json.loads((tmp_path / "m.json").read_text())
    assert figures["load"]["dataset_uint8_mib"] == pytest.approx(52.87, abs=0.01)
    assert "MiB" in out


@pytest.mark.data
def test_time_to_accuracy(tmp_path):
    need_mnist()
    out = run("time_to_accuracy.py", "mnist-99", "--runs", "1", "--epochs", "1", "--train-limit", "512",
              "--json", str(tmp_path / "t.json"), "--plot", str(tmp_path / "t.png"))
    assert "mnist-99: " in out and (tmp_path / "t.png").stat().st_size > 0
    first = json.loads((tmp_path / "t.json").read_text())["runs"][0]
    assert first["epochs"] == 1 and first["peak_gflops"] > 0 and "at fp32 matmul peak" in out
    if first["seconds"] is not None:  # (one epoch on 512 images may fall short of 99%)
        assert first["peak_seconds"] == pytest.approx(first["seconds"] * first["peak_gflops"] / 200)
    listed = run("time_to_accuracy.py", "--list")
    # the CIFAR-10 tasks: all 50,000 training images (no --val-split), the clock stopped on the test split
    assert "fashion-93" in listed and "cifar10-94   cifar10 >= 94.0% on test, goal 2100 s: --recipe airbench " \
        "--dataset cifar10\n" in listed


def test_ablation(tmp_path):
    from train_fixtures import make_toy_mnist

    toy = make_toy_mnist(tmp_path / "mnist", n_train=200, n_test=50)
    out = run("ablation.py", "--dataset", "mnist", "--data-dir", str(toy), "--epochs", "1", "--train-limit", "64",
              "--only", "whitening,alt-flip", "--model", "airbench_cifar_small", "--batch-size", "32", "--lr", "0.5",
              "--json", str(tmp_path / "a.json"))
    runs = json.loads((tmp_path / "a.json").read_text())["runs"]
    assert {(r["model"], r["batch_size"], r["lr"]) for r in runs} == {("airbench_cifar_small", 32, 0.5)}
    assert [r["technique"] for r in runs] == ["full recipe", "whitening", "alt-flip"]
    assert [r["left_out_by"] for r in runs] == ["", "--no-whiten --whiten-bias-epochs 0", "--augment crop-flip"]
    assert all(r["epochs"] == 1 and r["seconds"] > 0 and r["peak_gflops"] > 0 for r in runs)
    assert "without whitening  --no-whiten" in out and "delta (pp)" in out


@pytest.mark.data
def test_vs_reference_loop(tmp_path):
    need_fashion()
    out = run("vs_reference_loop.py", "--model", "lenet", "--epochs", "1", "--runs", "1", "--train-limit", "512",
              "--workers", "0", "--json", str(tmp_path / "v.json"))
    assert "ratio" in out and json.loads((tmp_path / "v.json").read_text())["ratio"] > 0


def test_shared_data_path_is_the_one_the_scripts_use():
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("tta", BENCHMARKS / "time_to_accuracy.py")
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    sys.modules["tta"] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["tta"]
    assert module.SHARED == SHARED_DATA


def test_startup(tmp_path):
    mnist = need_mnist()
    out = run("startup.py", "--runs", "1", "--warmup", "0", "--json", str(tmp_path / "s.json"), "--data-dir",
              str(mnist))
    assert 'python -c "import convzoo"' in out and "convzoo models" in out and "x torch" in out
    assert out.count("PASS") + out.count("FAIL") == 3  # one verdict per goal: two ratios, the fixed cost
    saved = json.loads((tmp_path / "s.json").read_text())
    train = saved["train_fixed_cost"]
    assert train["fixed_s"][0] == pytest.approx(train["whole_s"][0] - train["epoch_s"][0])
    assert 0 < train["epoch_s"][0] < train["whole_s"][0] and train["torch_floor_s"][0] > 0
    figures = saved["commands"]
    assert list(figures) == ['python -c "import torch"', 'python -c "import convzoo"', "convzoo --help",
                             "convzoo models"]
    assert figures['python -c "import torch"']["ratio"] == 1.0 and all(f["median_s"] > 0 for f in figures.values())
    assert figures["convzoo models"]["goal_max_ratio"] == 1.5


def test_scaling(tmp_path):
    from train_fixtures import make_toy_mnist

    toy = make_toy_mnist(tmp_path / "mnist", n_train=256, n_test=64)
    out = run("scaling.py", "--model", "simple_cnn", "--dataset", "mnist", "--data-dir", str(toy), "--batch-size",
              "64", "--runs", "1", "--json", str(tmp_path / "s.json"))
    figures = json.loads((tmp_path / "s.json").read_text())
    assert figures["ratio"] > 0 and figures["same_accuracy"] is True
    assert "speed ratio (1 process time / 2 processes time)" in out


@pytest.mark.data
def test_nin_dead_classes():
    need_fashion()
    out = run("nin_dead_classes.py", "--images", "32", "--seeds", "2", "--side", "67")
    counts = {line.split()[1]: line.split(None, 2)[2] for line in out.splitlines() if line.startswith("  --init")}
    assert set(counts) == {"default", "xavier", "kaiming", "kaiming-identity"}
    assert counts["kaiming-identity"] == "0, 0"


def test_export_parity(tmp_path):
    out = run("export_parity.py", "--models", "lenet_bn,simple_cnn", "--out", str(tmp_path))
    rows = [line.split(" | ") for line in out.splitlines()[2:]]
    assert [(r[0].strip("| "), r[1], r[2]) for r in rows] == [
        ("lenet_bn", "shipped", "onnx"), ("lenet_bn", "shipped", "exported-program"),
        ("simple_cnn", "shipped", "onnx"), ("simple_cnn", "shipped", "exported-program")]
    assert all(float(r[3]) <= 1e-4 for r in rows) and (tmp_path / "lenet_bn.onnx").exists()


def test_vs_airbench_smoke(tmp_path):
    pytest.importorskip("airbench", reason="airbench not installed: pip install -e '.[airbench]'")
    from train_fixtures import make_toy_cifar_png

    make_toy_cifar_png(tmp_path / "data" / "cifar10", 16, 2)  # CIFAR-10's lossless layout, 160 + 20 images
    out = run("vs_airbench.py", "--smoke", "--seeds", "2", "--device", "cpu", "--data-dir", str(tmp_path / "data"),
              "--json", str(tmp_path / "v.json"))
    report = json.loads((tmp_path / "v.json").read_text())
    # alternately, airbench's own code first, seed by seed, each side tested on the 20 test images
    assert [(r["side"], r["seed"]) for r in report["runs"]] == [("airbench94", 0), ("convzoo", 0),
                                                                ("airbench94", 1), ("convzoo", 1)]
    assert all(r["final_s"] > 0 and r["peak_gflops"] > 0 and r["final_acc"] * 20 == pytest.approx(
        round(r["final_acc"] * 20)) for r in report["runs"])
    assert report["ratio"] == pytest.approx(report["sides"]["convzoo"]["seconds_median"]
                                            / report["sides"]["airbench94"]["seconds_median"])
    assert "160 used: --smoke" in out and "ratio convzoo / airbench94" in out and "fp32 matmul peak" in out


def test_vs_airbench_moves_airbench_to_the_cpu_only_while_it_runs():
    pytest.importorskip("airbench", reason="airbench not installed: pip install -e '.[airbench]'")
    from importlib.util import module_from_spec, spec_from_file_location

    import torch

    spec = spec_from_file_location("vs_airbench", BENCHMARKS / "vs_airbench.py")
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    from airbench import utils

    before = (torch.Tensor.half, torch.nn.Module.cuda, torch.cuda.Event, torch.cuda.synchronize, utils.CifarLoader)
    with module.airbench_on_cpu():
        assert torch.ones(2).half().dtype == torch.float32
        assert torch.nn.Linear(1, 1).half().cuda().weight.dtype == torch.float32
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        end.record()
        assert 0 <= start.elapsed_time(end) < 1000  # milliseconds, from time.perf_counter
        assert torch.cuda.synchronize() is None and issubclass(utils.CifarLoader, before[-1])
    assert (torch.Tensor.half, torch.nn.Module.cuda, torch.cuda.Event, torch.cuda.synchronize,
            utils.CifarLoader) == before
    assert torch.ones(2).half().dtype == torch.float16


def test_cifar_zoo_smoke(tmp_path):
    from train_fixtures import make_toy_cifar_png

    make_toy_cifar_png(tmp_path / "data" / "cifar10", 16, 2)  # CIFAR-10's lossless layout, 160 + 20 images
    run("cifar_zoo.py", "--models", "lenet5_cifar", "--budget-minutes", "1", "--max-epochs", "1", "--data-dir",
        str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "zoo.md"))
    result = json.loads((tmp_path / "runs" / "lenet5_cifar" / "result.json").read_text())
    assert result["epochs"] == 1 and result["test_acc"] * 20 == pytest.approx(round(result["test_acc"] * 20))
    assert "| lenet5_cifar | fast | 1 |" in (tmp_path / "zoo.md").read_text()
    # a second call resumes: the finished model is read back, not trained again
    again = run("cifar_zoo.py", "--models", "lenet5_cifar", "--data-dir", str(tmp_path / "data"), "--runs-dir",
                str(tmp_path / "runs"))
    assert f"test accuracy {result['test_acc']}" in again


def test_decode(tmp_path):
    out = run("decode.py", "--quick", "--json", str(tmp_path / "d.json"))
    rows = json.loads((tmp_path / "d.json").read_text())["rows"]
    by = {(r["set"], r["decoder"]): r for r in rows}
    assert "synthetic 1000x750: 3 JPEGs; the draft mode reduced 3 of them" in out
    for set_name in ("synthetic 400x300", "synthetic 1000x750"):
        assert by[set_name, "pillow"]["vs_pillow"] == 1.0 and by[set_name, "pillow"]["max_abs_diff"] == 0
        # decode_image keeps Pillow's pixels on both of its paths, whatever is installed
        assert by[set_name, "convzoo.decode_image"]["max_abs_diff"] == 0
        assert by[set_name, "convzoo, Pillow path"]["max_abs_diff"] == 0
    assert all(r["images_per_s"] > 0 for r in rows)
    assert by["synthetic 400x300", "pillow+draft"]["draft_reduced"] == 0  # 300 px < 2 x 256: full scale


def _photo_folder(root: Path, splits: tuple[str, ...] = ("train",), per_class: int = 6) -> Path:
    """A tiny folder of real JPEG files of several sizes and aspect ratios, two classes per split."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for c in ("cat", "dog"):
            for i in range(per_class):
                h, w = int(rng.integers(24, 64)), int(rng.integers(24, 64))
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                if c == "dog":
                    pixels[..., 0] = 255
                path = root / split / c / f"{i:02d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path, quality=90)
    return root


def test_loader(tmp_path):
    data = _photo_folder(tmp_path / "photos")
    out = run("loader.py", "--data", str(data), "--size", "32", "--images", "12", "--batch-size", "4",
              "--workers", "1", "--repeats", "1", "--model", "lenet5_cifar", "--work", str(tmp_path / "work"),
              "--json", str(tmp_path / "l.json"))
    result = json.loads((tmp_path / "l.json").read_text())
    assert result["median"]["convzoo"] > 0 and result["median"]["torchvision"] > 0
    assert result["train_step_images_per_s"] > 0 and "12 files at 32 px, 1 workers" in out


def test_memory_folder(tmp_path):
    run("memory_folder.py", "--counts", "16", "32", "--size", "40x30", "--model", "simple_cnn", "--image-size",
        "28", "--work", str(tmp_path / "work"), "--json", str(tmp_path / "m.json"))
    rows = json.loads((tmp_path / "m.json").read_text())
    assert [r["images"] for r in rows] == [16, 32]
    assert all(r["peak_pss_mib"] > 10 and r["processes"] >= 1 for r in rows)
    assert all("stream" in r["path_line"].lower() for r in rows), rows
    out = run("memory_folder.py", "--counts", "16", "--size", "40x30", "--model", "simple_cnn", "--image-size", "28",
              "--in-memory", "--work", str(tmp_path / "work"), "--json", str(tmp_path / "mem.json"))
    (row,) = json.loads((tmp_path / "mem.json").read_text())
    assert row["path_line"].startswith("data: in memory") and row["uint8_mib"] == 16 * 3 * 40 * 30 / 2**20
    assert "x the 0 MiB of the images decoded to uint8" in out and "at most 2x" in out


def test_vs_reference_photos(tmp_path):
    data = _photo_folder(tmp_path / "photos", ("train", "val"), per_class=4)
    out = run("vs_reference_photos.py", "--data", str(data), "--model", "simple_cnn", "--image-size", "28",
              "--epochs", "1", "--batch-size", "4", "--workers", "0", "--work", str(tmp_path / "work"),
              "--json", str(tmp_path / "v.json"))
    result = json.loads((tmp_path / "v.json").read_text())
    for side in ("reference", "convzoo"):
        (row,) = result["results"][side]
        assert len(row["epochs"]) == 1 and 0 <= row["epochs"][0]["val_acc"] <= 1
    assert result["ratio"] > 0 and "(goal >= 1.5x)" in out


def test_shard_formats(tmp_path):
    pytest.importorskip("litdata")
    out = run("shard_formats.py", "--quick", "--json", str(tmp_path / "f.json"))
    figures = json.loads((tmp_path / "f.json").read_text())
    by = {r["library"]: r for r in figures["rows"]}
    assert figures["images"] == 24 and "random img/s" in out
    # (the script checks that every library gives back the bytes it was given, in order and by index)
    assert by["litdata"]["pack_s"] > 0 and by["litdata"]["sequential_images_per_s"] > 0
    assert by["litdata"]["random_images_per_s"] > 0 and by["convzoo pack (litdata)"]["pack_s"] > 0
    assert by.get("WebDataset", {}).get("random_s") is None  # no index: no random access
    assert len(by) + len(figures["missing"]) == 4


def test_shard_training(tmp_path):
    pytest.importorskip("litdata")
    out = run("shard_training.py", "--quick", "--json", str(tmp_path / "t.json"), timeout=400)
    figures = json.loads((tmp_path / "t.json").read_text())
    assert "shards / folder throughput" in out
    assert all(figures["figures"][s]["img_s"] > 0 for s in ("folder", "shards"))
    assert figures["max_weight_difference"] <= 1e-5  # the same images, crops and order from either source
