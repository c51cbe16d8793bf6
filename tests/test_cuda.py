"""GPU checks (marker ``cuda``): skipped with the reason on machines without CUDA, which CI is; run by
``benchmarks/gpu_check.sh`` on a GPU machine (``pytest -m cuda``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from convzoo.train import TrainConfig, fit
from train_fixtures import make_toy_mnist

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_mnist(tmp_path_factory.mktemp("toy") / "mnist", n_train=600, n_test=201)


def config(toy, out, **kwargs) -> TrainConfig:
    return TrainConfig(model="simple_cnn", dataset="mnist", data_dir=str(toy), epochs=2, batch_size=64,
                       optimizer="momentum", lr=0.03, out=str(out), **kwargs)


def test_cuda_training_matches_the_cpu(toy, tmp_path):
    cpu = fit(config(toy, tmp_path / "cpu", device="cpu"), progress=False)
    gpu = fit(config(toy, tmp_path / "gpu", device="cuda"), progress=False)
    a = load_file(tmp_path / "cpu" / "checkpoints" / "last" / "model.safetensors")
    b = load_file(tmp_path / "gpu" / "checkpoints" / "last" / "model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-3  # TF32 and other kernels: close, not equal
    assert abs(cpu.history[-1]["test_acc"] - gpu.history[-1]["test_acc"]) <= 0.02


def test_cuda_amp_trains(toy, tmp_path):
    result = fit(config(toy, tmp_path / "amp", device="cuda", amp=True), progress=False)
    assert result.history[-1]["test_acc"] > 0.5


def test_ddp_world_size_1_on_nccl(toy, tmp_path):
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
                           "-m", "convzoo", "train", "--model", "simple_cnn", "--dataset", "mnist", "--data-dir",
                           str(toy), "--epochs", "1", "--device", "cuda", "--quiet", "--out", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "4"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "test accuracy" in done.stdout
