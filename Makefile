# convzoo: `make demo` sets everything up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision as this machine's local wheel store holds them (a CUDA build that runs on the CPU)
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
DEMO_MODEL ?= lenet_bn
DEMO_EPOCHS ?= 4

.PHONY: install data demo test test-heavy check lint site clean
# Fashion-MNIST comes from Debian's package; MNIST and CIFAR-10 from ../shared/data (see its README)
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH_SPEC)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,export,tensorboard,airbench,fastjpeg,site,shards]'
	touch $(STAMP)

install: $(STAMP)

# best effort: without the package the data tests are skipped with the reason, and the demo says how to get it
data:
	@test -f $(FASHION) || apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
	  || echo "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist needs root); see README"

# the main job: train a zoo model on Fashion-MNIST and print the result
demo: install data
	$(VENV)/bin/convzoo train --model $(DEMO_MODEL) --dataset fashion-mnist --recipe fast --epochs $(DEMO_EPOCHS) \
	  --val-split 0.1 --out runs/demo-$$(date +%Y%m%d-%H%M%S)

# the whole suite (what CI runs, under 12 minutes on two idle cores) but for the `heavy` registry-wide export
# and feature-map checks of the larger 224-pixel models and the airbench recipe on CIFAR-10, which `make
# test-heavy` runs (about 4 minutes more). Two workers, one file each at a time, one torch thread each (and in
# the processes they start): 639 s on two idle cores, where one process with two threads took 1,016 s and two
# workers with two threads each 828 s (2026-12-03)
test: install data
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not heavy" -n 2 --dist loadfile

test-heavy: install data
	$(PY) -m pytest -m heavy

# mypy's cache, shared by every clone on this machine: a cold run checks torch's stubs too (178 s on a busy
# machine, 4 s warm; 2026-12-07), and a fresh clone's .mypy_cache would always be cold
MYPY_CACHE_DIR ?= $(HOME)/.cache/convzoo/mypy
export MYPY_CACHE_DIR

# the linters CI runs after the suite
lint: install
	$(VENV)/bin/ruff check src tests benchmarks hubconf.py
	$(VENV)/bin/mypy src

# the inner loop, under 3 minutes: the linters and every test not marked slow, on both cores as `make test` runs
check: lint data
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow" -n 2 --dist loadfile -q

# the project's own site, built (not committed, like a wheel) from the shipped weights into site/: every model's page,
# the convolution page; the weights' test images from ../shared/data (and Debian's Fashion-MNIST), onnxruntime-web
# from npm into the cache the first time. Open it: python -m http.server -d site 8000
SITE_DIR ?= site
SITE_DATA ?= ../shared/data
site: install data
	$(VENV)/bin/convzoo site $(SITE_DIR) $(if $(wildcard $(SITE_DATA)),--data-dir $(SITE_DATA))

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
