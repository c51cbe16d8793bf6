"""convzoo bench: the measurements are sane and the command behaves."""

from __future__ import annotations

import csv

import pytest

from convzoo.bench import benchmark_model, matmul_peak
from convzoo.cli import main


@pytest.fixture(scope="module")
def peak() -> float:
    return matmul_peak(seconds=0.2, sizes=(512,))


def test_matmul_peak_is_the_best_median_over_sizes(monkeypatch):
    """2 n^3 FLOPs over the median time of each size, the best size winning (times made up, so exact)."""
    import convzoo.bench as bench

    fake = {256: [0.004, 0.001, 0.002], 512: [0.010, 0.020, 0.030]}  # medians 2 ms and 20 ms

    def timed(fn, seconds, min_runs=3):
        n = fn.__defaults__[0].shape[0]  # the a of run(a, b, sync)
        return fake[n]

    monkeypatch.setattr(bench, "_timed", timed)
    assert bench.matmul_peak(sizes=(256, 512)) == max(2 * 256**3 / 0.002, 2 * 512**3 / 0.020)


def test_matmul_peak_agrees_with_a_matmul_timed_here(peak):
    import statistics
    import time

    import torch

    a, b = torch.randn(512, 512), torch.randn(512, 512)
    times = []
    for _ in range(7):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    direct = 2 * 512**3 / statistics.median(times)
    assert direct / 4 < peak < direct * 4  # the same measurement, within this machine's noise


@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_benchmark_model(peak, mode, channels_last):
    r = benchmark_model("lenet", batch_size=8, mode=mode, channels_last=channels_last, seconds=0.05, peak=peak)
    assert r.input_size == (1, 28, 28) and r.num_params == 61_706 and r.macs_per_image == 416_520
    assert 0 < r.images_per_s_min <= r.images_per_s <= r.images_per_s_max
    assert r.flops_per_s == pytest.approx(r.images_per_s * 416_520 * 2 * (3 if mode == "train" else 1))
    assert r.fraction_of_peak == pytest.approx(r.flops_per_s / peak)


def test_bad_arguments_are_refused(peak):
    with pytest.raises(ValueError, match="mode must be infer or train"):
        benchmark_model("lenet", mode="fast", peak=peak)
    with pytest.raises(ValueError, match="smaller than the minimum"):
        benchmark_model("alexnet", input_size=(1, 28, 28), peak=peak)


def test_cli_table_csv_and_globs(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    assert main(["bench", "lenet*", "--batch-size", "4", "--seconds", "0.05", "--mode", "both", "--csv",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "fp32 matmul peak" in text and "of peak" in text
    rows = list(csv.DictReader(out.open()))
    models = {r["model"] for r in rows}
    assert {"lenet", "lenet_bn", "lenet_relu"} <= models and {r["mode"] for r in rows} == {"infer", "train"}
    assert all(float(r["images_per_s"]) > 0 for r in rows)


@pytest.mark.parametrize("argv, message", [
    (["bench", "nope"], "unknown model 'nope'"),
    (["bench", "zz*"], "no model matches 'zz*'"),
    (["bench", "lenet", "--batch-size", "0"], "expected a whole number >= 1"),
    (["bench", "lenet", "--seconds", "-1"], "must be > 0"),
    (["bench", "alexnet", "--input-size", "1", "28", "28"], "smaller than the minimum"),
])
def test_cli_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
