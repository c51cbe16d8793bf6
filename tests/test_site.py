"""``convzoo site``'s generator: the data it writes equals what the library computes, every page is written, the
site and the package stay small. The pages in a real browser: tests/test_site_browser.py (slow tier)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import convzoo
from convzoo.cli import main
from convzoo.features import default_layers
from convzoo.scratch import explain
from convzoo.site.convolution import worked_examples
from convzoo.site.pages import write_page
from convzoo.site.zoo import model_entry
from site_fixtures import build, printed_grid, toy_run

PACKAGE = Path(convzoo.__file__).parent / "site"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, Path]:
    root = tmp_path_factory.mktemp("site")
    data, run_dir = toy_run(root)
    report = build(root / "out", "simple_cnn", run_dir, data, root / "cache")
    return root / "out", report, run_dir


def page_data(out: Path, page: str) -> dict:
    """The JSON a page carries (the element its scripts read), and check that data/PAGE.json holds the same."""
    html = (out / page).read_text(encoding="utf-8")
    start = html.index('<script type="application/json" id="page-data">') + len('<script type="application/json" '
                                                                                 'id="page-data">')
    data = json.loads(html[start: html.index("</script>", start)])
    assert json.loads((out / "data" / Path(page).with_suffix(".json")).read_text(encoding="utf-8")) == data
    return data


@pytest.mark.parametrize("name", ["lenet", "resnet18_cifar", "densenet_d2l", "googlenet"])
def test_model_rows_are_the_numbers_convzoo_summary_prints(name):
    """Each row of a model page is the same row of ``convzoo summary``'s table (shape, params, mult-adds), for
    the model built on the CPU: the site builds on the meta device, which must not change a number."""
    entry = model_entry(name)
    info = convzoo.model_info(name)
    result = convzoo.summary(convzoo.create_model(name), info.default_input_size)
    lines = result.to_table().splitlines()[3: 3 + len(result.layers)]
    assert len(entry["rows"]) == len(result.layers) == len(lines)
    for row, record, line in zip(entry["rows"], result.layers, lines, strict=True):
        assert (row["name"], row["type"], tuple(row["shape"])) == (record.name, record.type_name, record.output_shape)
        assert line.split()[-2:] == [row["params_text"], row["macs_text"]], line
        assert str(row["shape"]) in line
    assert (entry["total_params"], entry["total_macs"]) == (result.total_params, result.total_macs)
    assert entry["total_params"] == info.num_params


def test_the_diagram_blocks_are_the_features_blocks_then_the_head():
    entry = model_entry("lenet")
    net = convzoo.create_model("lenet")
    head = [f"head.{name}" for name, _ in net.head.named_children()]
    assert [b["name"] for b in entry["blocks"]] == default_layers(net) + head
    maps = convzoo.feature_maps(net.eval(), torch.zeros(1, 1, 28, 28))
    assert [b["shape"] for b in entry["blocks"][: len(maps)]] == [list(t.shape) for t in maps.values()]
    assert sum(b["params"] for b in entry["blocks"]) == entry["total_params"]


def test_every_page_is_written_with_its_data(site):
    out, report, _ = site
    assert report.pages == ["index.html", "models/simple_cnn.html", "convolution.html", "runs/toy.html"]
    for page in report.pages:
        assert (out / page).is_file()
    index = page_data(out, "index.html")
    assert [m["name"] for m in index["models"]] == ["simple_cnn"]
    assert index["models"][0]["weights"][0]["accuracy"] == convzoo.list_weights("simple_cnn")[0].accuracy
    model = page_data(out, "models/simple_cnn.html")
    (gallery,) = model["galleries"]
    assert len(gallery["examples"]) == 3 and (out / "img" / "simple_cnn" / "mnist" / "filters.png").is_file()
    classes = list(convzoo.list_weights("simple_cnn")[0].classes)
    assert [pick["label"] for pick in gallery["picks"]] == classes  # the first test image of each class
    assert [ex["label"] for ex in gallery["examples"]] == [classes[0], classes[3], classes[7]]
    for example in gallery["examples"]:
        assert len(example["top5"]) == 5 and sum(p for _, p in example["top5"]) <= 1 + 1e-6
        assert [b["layer"] for b in example["maps"]] == default_layers(convzoo.create_model("simple_cnn"))
        for block in example["maps"]:
            assert (out / block["png"].removeprefix("../")).is_file()
    for asset in ("assets/common.js", "assets/model.js", "vendor/chart.js/chart.umd.min.js",
                  "vendor/chart.js/LICENSE.md"):
        assert (out / asset).is_file(), asset


def test_the_top5_on_a_model_page_is_the_weights_prediction(site):
    out, _, _ = site
    from convzoo.data.images import decode_image
    from convzoo.train.inference import load_pretrained

    example = page_data(out, "models/simple_cnn.html")["galleries"][0]["examples"][0]
    checkpoint = load_pretrained("simple_cnn", "mnist")
    X = decode_image(out / example["png"].removeprefix("../"))  # the picture the page shows
    with torch.no_grad():
        p = checkpoint.model(checkpoint.preprocess(X[None])).softmax(dim=1)[0]
    top = p.topk(5)
    assert [name for name, _ in example["top5"]] == [checkpoint.classes[int(k)] for k in top.indices]
    assert [q for _, q in example["top5"]] == pytest.approx(top.values.tolist(), abs=1e-6)


def test_without_the_runtime_the_pages_say_the_panels_are_left_out(site):
    out, report, _ = site
    assert any("Try it" in why and "onnxruntime-web" in why for why in report.left_out)
    model = page_data(out, "models/simple_cnn.html")
    assert model["tryit"] == [] and any("onnxruntime-web" in why for why in model["left_out"])
    assert not (out / "vendor" / "onnxruntime-web").exists() and not (out / "onnx").exists()


def test_the_run_page_holds_the_runs_files_and_evaluate_s_confusion(site):
    out, _, run_dir = site
    run = page_data(out, "runs/toy.html")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert run["metrics"] == rows and len(rows) == 2
    assert run["config_text"] == (run_dir / "config.toml").read_text()
    assert run["environment"] == json.loads((run_dir / "run.json").read_text())["environment"]
    report = convzoo.train.evaluate(run_dir, "test", device="cpu", tta="none")
    cm = run["confusion"]
    assert cm["matrix"] == report.result.confusion.tolist() and cm["split"] == "test"
    wrong = sum(n for i, row in enumerate(cm["matrix"]) for j, n in enumerate(row) if i != j)
    kept = sum(len(images) for images in cm["misclassified"].values())
    assert kept == sum(min(8, n) for i, row in enumerate(cm["matrix"]) for j, n in enumerate(row) if i != j) <= wrong
    for key, images in cm["misclassified"].items():
        i, j = map(int, key.split("-"))
        assert i != j and cm["matrix"][i][j] >= len(images) > 0
        assert all((out / im["png"].removeprefix("../")).is_file() for im in images)


def test_the_site_and_the_package_stay_small(site):
    out, report, _ = site
    assert report.size == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert report.size < 2_000_000  # no runtime here: pages, Chart.js, a few small PNGs
    package = sum(p.stat().st_size for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert package < 2_000_000, f"src/convzoo/site is {package:,} bytes; the package may grow by 2 MB at most"


def test_the_convolution_examples_are_explain_s_numbers():
    examples = {ex["id"]: ex for ex in worked_examples()}
    assert list(examples) == ["conv", "pad", "stride", "channels", "1x1", "pool-max", "pool-avg"]
    for topic in ("conv", "pad", "stride"):
        result = explain(topic)
        ex = examples[topic]
        assert ex["text"] == result.text
        assert ex["output"][0] == printed_grid(result.text, "output Y")
        assert ex["padded"][0] == (printed_grid(result.text, "padded input") if ex["padding"] else ex["input"][0])
        assert ex["kernel"][0][0] == printed_grid(result.text, "kernel K")
    for mode in ("max", "avg"):
        result = explain("pool", mode=mode)
        assert examples[f"pool-{mode}"]["output"][0] == printed_grid(result.text, "output, ")
    channels = explain("channels")
    assert examples["channels"]["text"] == channels.text
    assert examples["channels"]["output"] == [[[56, 72], [104, 120]]]  # d2l 6.4.1's result
    assert examples["channels"]["output"][0] == printed_grid(channels.text, "output Y")
    assert examples["channels"]["padded"] == [printed_grid(channels.text, f"input X, channel {c}") for c in (0, 1)]
    one, printed = examples["1x1"], explain("1x1").text
    assert one["output"] == [printed_grid(printed, f"output Y, channel {o}") for o in range(3)]
    X, K = torch.tensor(one["input"]), torch.tensor(one["kernel"])
    assert one["output"] == torch.einsum("chw,oc->ohw", X, K[:, :, 0, 0]).tolist()
    assert K[:, :, 0, 0].tolist() == printed_grid(printed, "weights")


def test_page_data_cannot_end_its_script_element(tmp_path):
    write_page(tmp_path, "x.html", "x", "index", {"text": "</script><script>alert(1)</script>"})
    html = (tmp_path / "x.html").read_text()
    assert html.count("</script>") == 2  # the data's element and common.js's: the text did not end one
    assert page_data(tmp_path, "x.html") == {"text": "</script><script>alert(1)</script>"}


def test_the_command_refuses_bad_input_with_exit_2(tmp_path, capsys):
    assert main(["site", str(tmp_path / "a"), "--models", "nothing*", "--no-try-it"]) == 2
    assert "matches no model" in capsys.readouterr().err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    assert main(["site", str(tmp_path / "b"), "--models", "lenet", "--no-try-it"]) == 2
    assert "not a site convzoo built" in capsys.readouterr().err
    assert (tmp_path / "b" / "notes.txt").read_text() == "mine"
    assert main(["site", str(tmp_path / "c"), "--models", "lenet", "--runs", str(tmp_path), "--no-try-it"]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_a_run_whose_data_moved_reads_it_from_the_site_s_data_dir(tmp_path):
    from convzoo.site.runs import run_entry

    data, run_dir = toy_run(tmp_path)
    moved = data.rename(tmp_path / "moved")
    lost = run_entry(run_dir, tmp_path / "img1", "img1")
    assert lost["confusion"] is None and "needs the run's checkpoint and its mnist data" in lost["confusion_missing"]
    assert f"{data / 'mnist'}: no such folder" in lost["confusion_missing"]
    found = run_entry(run_dir, tmp_path / "img2", "img2", data_dir=moved)
    report = convzoo.train.evaluate(run_dir, "test", data_dir=str(moved / "mnist"), device="cpu", tta="none")
    assert found["confusion"]["matrix"] == report.result.confusion.tolist()
    other = tmp_path / "other"  # another data set under the same name: refused by evaluate, said on the page
    from train_fixtures import make_toy_mnist

    make_toy_mnist(other / "mnist", n_train=50, n_test=20)
    wrong = run_entry(run_dir, tmp_path / "img3", "img3", data_dir=other)
    assert wrong["confusion"] is None and "not the data the run was trained on" in wrong["confusion_missing"]


@pytest.fixture
def fake_runtime(tmp_path):
    """A cache holding stand-ins for onnxruntime-web's files (the browser tests run the real one)."""
    from convzoo.site.tryit import ORT_FILES, ORT_VERSION

    package = tmp_path / "cache" / "npm" / f"onnxruntime-web-{ORT_VERSION}" / "node_modules" / "onnxruntime-web"
    for name in ORT_FILES:
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(f"stand-in for {name}")
    return tmp_path / "cache"


def test_the_try_it_panel_gets_the_runtime_and_the_weights_onnx(tmp_path, fake_runtime, monkeypatch):
    import convzoo.site.build as build_module

    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx stand-in")
    monkeypatch.setattr(build_module, "onnx_model", lambda info, cache: onnx)
    report = build_module.build_site(tmp_path / "out", models="simple_cnn", data_dir=tmp_path, cache_dir=fake_runtime,
                                     npm=None)
    out = tmp_path / "out"
    (panel,) = page_data(out, "models/simple_cnn.html")["tryit"]
    weights = convzoo.list_weights("simple_cnn")[0]
    assert panel["onnx"] == "../onnx/simple_cnn-mnist.onnx" and (out / "onnx" / "simple_cnn-mnist.onnx").read_bytes() \
        == b"onnx stand-in"
    assert (panel["mean"], panel["std"], panel["input_size"]) == (list(weights.mean), list(weights.std),
                                                                  list(weights.input_size))
    assert panel["draw"] is True and panel["classes"] == list(weights.classes)
    assert (out / "vendor" / "onnxruntime-web" / "ort-wasm-simd-threaded.wasm").is_file()
    assert '<script src="../vendor/onnxruntime-web/ort.wasm.min.js"></script>' in (
        out / "models" / "simple_cnn.html").read_text()
    assert not any("Try it" in why for why in report.left_out)


def test_a_model_the_exporter_refuses_loses_only_its_panel(tmp_path, fake_runtime, monkeypatch):
    import convzoo.site.build as build_module
    from convzoo.errors import ModelError

    def refuse(info, cache):
        raise ModelError(f"{info.model}: the exporter cannot take it")

    monkeypatch.setattr(build_module, "onnx_model", refuse)
    report = build_module.build_site(tmp_path / "out", models="simple_cnn", data_dir=tmp_path, cache_dir=fake_runtime,
                                     npm=None)
    model = page_data(tmp_path / "out", "models/simple_cnn.html")
    assert model["tryit"] == [] and any("the exporter cannot take it" in why for why in model["left_out"])
    assert any("the exporter cannot take it" in why for why in report.left_out)
    assert "models/simple_cnn.html" in report.pages
