"""The site in a real browser: Debian's headless Chromium driven by Selenium through its chromedriver (nothing
downloads a browser), the site served by ``http.server`` on 127.0.0.1. Every page loads with no console error and
no request leaving the folder; the tree opens on a click; a model page's numbers are ``convzoo.summary``'s; the
in-browser top-5 is PyTorch's to 1e-4; the convolution page's every window is ``explain``'s arithmetic; and a
screenshot of each page type is saved (``$CONVZOO_SITE_SCREENSHOTS``, else the test's temporary folder).

The Try it test needs onnxruntime-web in the user's site cache (``make site`` installs it from npm once); the
tests never run npm themselves.
"""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import convzoo
from convzoo.scratch import explain
from convzoo.site import build_site
from convzoo.site.tryit import ORT_VERSION
from site_fixtures import build, toy_run

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or ""
MODEL = "lenet_relu"  # MNIST weights at 32 x 32: the panel's preprocessing resizes the 28-pixel images
RUNTIME = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "convzoo" / "site" / "npm"
           / f"onnxruntime-web-{ORT_VERSION}")


def _selenium():
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip("selenium is not installed: pip install 'convzoo[site]'")
    if not (Path(CHROMIUM).is_file() and CHROMEDRIVER):
        pytest.skip("Chromium is absent: apt-get install -y chromium chromium-driver")
    return webdriver


class _Quiet(http.server.SimpleHTTPRequestHandler):
    served: list[tuple[str, int]] = []

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.served.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site-browser")
    data, run_dir = toy_run(root)
    cache = root / "cache"
    if RUNTIME.is_dir():  # the user's runtime, copied: the build writes its ONNX files into its cache
        shutil.copytree(RUNTIME, cache / "npm" / RUNTIME.name)
    build(root / "out", MODEL, run_dir, data, cache)
    return root / "out"


def _serve(folder: Path) -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    yield from _serve(site)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    webdriver = _selenium()
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1300,1000", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("CONVZOO_SITE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _open(browser, url: str) -> None:
    browser.get_log("browser"), browser.get_log("performance")  # drop what earlier pages left
    browser.get(url)
    time.sleep(0.5)


def _screenshot(browser, path: Path, max_height: int = 5000) -> None:
    """The whole page (up to ``max_height`` CSS pixels), not just the window: Chrome's DevTools capture."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height), "scale": 1}
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                              "clip": clip})
    path.write_bytes(base64.b64decode(shot["data"]))


def _requests(browser) -> list[str]:
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _wait(browser, script: str, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = browser.execute_script(script)
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {script}")


PAGES = {"index": "index.html", "model": f"models/{MODEL}.html", "convolution": "convolution.html",
         "run": "runs/toy.html"}


@pytest.mark.parametrize("kind", list(PAGES))
def test_every_page_loads_with_no_console_error_and_no_request_leaving_the_folder(browser, server, site, shots,
                                                                                   kind):
    _Quiet.served.clear()
    _open(browser, server + PAGES[kind])
    _wait(browser, "return document.getElementById('main').children.length > 1")
    if kind == "model":  # scroll through the lazy feature maps so that every picture is fetched too
        browser.execute_script("document.querySelectorAll('img').forEach((i) => i.loading = 'eager')")
        _wait(browser, "return [...document.images].every((i) => i.complete && i.naturalWidth > 0)")
    time.sleep(0.5)
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    urls = _requests(browser)
    assert urls and all(u.startswith(server) or u.startswith(("data:", "blob:")) for u in urls), urls
    assert [p for p, code in _Quiet.served if code not in (200, 304)] == []  # (304: from the cache)
    assert all((site / p.split("?")[0].lstrip("/")).is_file() for p, _ in _Quiet.served)
    _screenshot(browser, shots / f"{kind}.png")


def test_the_pages_open_from_disk_too(browser, site):
    for page in PAGES.values():
        _open(browser, (site / page).as_uri())
        _wait(browser, "return document.getElementById('main').children.length > 1")
        assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == [], page
    _open(browser, (site / PAGES["model"]).as_uri())
    main = browser.find_element("id", "main").text
    if RUNTIME.is_dir():  # the panel is there, and says why it cannot run from file://
        assert "needs the site served over HTTP" in browser.find_element("css selector", ".tryit").text
    else:  # built without the runtime (no `make site` yet on this machine): the page says the panel is left out
        assert "Left out here:" in main and "onnxruntime-web" in main, main[:2000]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory, site: Path) -> Iterator[str]:
    """The whole zoo's site without the in-browser panels (and the weights' pictures only where the data is
    found), served like the other."""
    root = tmp_path_factory.mktemp("zoo")
    build_site(root / "out", data_dir=root, cache_dir=root / "cache", npm=None, try_it=False)
    yield from _serve(root / "out")


def test_every_model_page_of_the_zoo_loads_with_no_console_error(browser, zoo):
    for name in convzoo.list_models():
        _Quiet.served.clear()
        _open(browser, f"{zoo}models/{name}.html")
        _wait(browser, "return document.querySelectorAll('#tree tbody tr').length > 0")
        assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == [], name
        assert all(u.startswith(zoo) or u.startswith("data:") for u in _requests(browser)), name
        assert [p for p, code in _Quiet.served if code not in (200, 304)] == [], name


def test_the_index_sorts_and_filters(browser, zoo):
    _open(browser, zoo + "index.html")

    def shown() -> list[str]:
        return browser.execute_script("return [...document.querySelectorAll('#zoo tbody tr')].map((r) => "
                                      "r.dataset.model)")

    names = convzoo.list_models()
    assert shown() == names  # sorted by name at first
    params = {name: convzoo.model_info(name).num_params for name in names}
    browser.find_element("css selector", "#zoo th[data-key=params]").click()
    assert [params[n] for n in shown()] == sorted(params.values())
    browser.find_element("css selector", "#zoo th[data-key=params]").click()
    assert [params[n] for n in shown()] == sorted(params.values(), reverse=True)
    browser.find_element("css selector", "#families button[data-family=vgg]").click()
    assert sorted(shown()) == convzoo.list_models("vgg*")
    browser.find_element("css selector", "#families button[data-family='']").click()
    assert len(shown()) == len(names)
    cell = browser.find_element("css selector", f"#zoo tr[data-model={MODEL}] td[data-key=params]").text
    assert cell == f"{params[MODEL]:,}"


def test_the_tree_opens_on_a_click_and_its_numbers_are_convzoo_summary_s(browser, server):
    _open(browser, server + PAGES["model"])
    visible = "return [...document.querySelectorAll('#tree tbody tr')].filter((r) => !r.classList.contains('hidden'))" \
              ".map((r) => r.dataset.name)"
    before = browser.execute_script(visible)
    assert before == ["", "features", "head"]
    browser.find_element("css selector", "#tree tr[data-name=features] .toggle").click()
    after = browser.execute_script(visible)
    net = convzoo.create_model(MODEL)
    assert after == ["", "features", *[f"features.{n}" for n, _ in net.features.named_children()], "head"]
    browser.find_element("css selector", "#expand-all").click()
    rows = browser.execute_script(
        "return [...document.querySelectorAll('#tree tbody tr')].filter((r) => !r.classList.contains('hidden'))"
        ".map((r) => [...r.querySelectorAll('td')].slice(1, 4).map((td) => td.textContent))")
    result = convzoo.summary(net, convzoo.model_info(MODEL).default_input_size)
    assert rows == [[str(list(r.output_shape)), f"{r.num_params:,}" if r.num_params else "--",
                     f"{r.macs:,}" if r.macs else "--"] for r in result.layers]
    whole = browser.find_element("css selector", "#tree tr[data-name=features] td.inside").text
    assert whole == f"{sum(r.num_params for r in result.layers if r.name.startswith('features.')):,} / " \
                    f"{sum(r.macs for r in result.layers if r.name.startswith('features.')):,}"
    assert browser.find_element("css selector", "#total-params").text == f"{result.total_params:,}"
    assert browser.find_element("css selector", "#total-macs").text == f"{result.total_macs / 1e6:,.2f}"
    assert len(browser.find_elements("css selector", "#diagram svg g.block")) == 1 + len(
        list(net.features.named_children())) + len(list(net.head.named_children()))


def _torch_top5(image: torch.Tensor) -> list[tuple[str, float]]:
    """PyTorch's top-5 for a uint8 C x H x W image, preprocessed as convzoo predict does."""
    from convzoo.train.inference import load_pretrained

    checkpoint = load_pretrained(MODEL, "mnist")
    with torch.no_grad():
        p = checkpoint.model(checkpoint.preprocess(image[None])).softmax(dim=1)[0]
    top = p.topk(5)
    return [(checkpoint.classes[int(k)], float(v)) for v, k in zip(top.values, top.indices, strict=True)]


def _panel_top5(browser) -> list[tuple[str, float]]:
    return browser.execute_script("return [...document.querySelectorAll('.tryit .result tr')].map((r) => "
                                  "[r.cells[0].textContent, Number(r.cells[1].dataset.prob)])")


def test_the_in_browser_top5_is_pytorch_s_to_1e4(browser, server, site, shots):
    if not (site / "vendor" / "onnxruntime-web").is_dir():
        pytest.skip(f"onnxruntime-web {ORT_VERSION} is not in {RUNTIME}: run `make site` once (it installs it from "
                    "npm into the cache)")
    from PIL import Image

    from convzoo.data.images import decode_image

    _open(browser, server + PAGES["model"])
    image = browser.find_element("css selector", ".tryit .picks img")
    png = site / image.get_attribute("src").split(server, 1)[1]  # (the property: an absolute URL)
    image.click()
    _wait(browser, "return document.querySelector('.tryit').dataset.done || document.querySelector('.tryit')"
                   ".dataset.failed")
    assert browser.execute_script("return document.querySelector('.tryit').dataset.failed") is None
    got, expected = _panel_top5(browser), _torch_top5(decode_image(png))
    assert [name for name, _ in got] == [name for name, _ in expected]
    assert [p for _, p in got] == pytest.approx([p for _, p in expected], abs=1e-4)
    _screenshot(browser, shots / "tryit.png", max_height=900)

    # a drawn digit: 280 x 280 shrunk to the weights' 32 x 32 (antialiased, as F.interpolate does)
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = browser.find_element("css selector", ".tryit canvas.draw")
    chain = ActionChains(browser).move_to_element_with_offset(canvas, -10, -90).click_and_hold()
    for dx, dy in ((10, 0), (20, 10), (10, 40), (-10, 60), (-20, 80), (-25, 100), (-25, 120)):
        chain = chain.move_to_element_with_offset(canvas, dx - 10, dy - 90)
    chain.release().perform()
    _wait(browser, "return document.querySelector('.tryit').dataset.done === 'your drawing'")
    drawn = browser.execute_script("return document.querySelector('.tryit canvas.draw').toDataURL('image/png')")
    rgb = Image.open(io.BytesIO(base64.b64decode(drawn.split(",", 1)[1]))).convert("L")
    pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(1, 280, 280)
    assert pixels.float().mean() > 5  # something was drawn
    got, expected = _panel_top5(browser), _torch_top5(pixels)
    assert [name for name, _ in got] == [name for name, _ in expected]
    assert [p for _, p in got] == pytest.approx([p for _, p in expected], abs=1e-4)


def test_the_convolution_page_steps_through_explain_s_numbers(browser, server):
    _open(browser, server + PAGES["convolution"])
    for topic in ("conv", "pad", "stride"):
        result = explain(topic)
        n = result.numbers
        section = f"#{topic}"
        shown = browser.execute_script(
            f"return [...document.querySelectorAll('{section} table.output tr')].map((r) => [...r.cells].map((c) => "
            "Number(c.textContent)))")
        assert shown == n["output"]
        first = browser.find_element("css selector", f"{section} .products").text
        assert first.strip() in result.text  # explain prints the first window's arithmetic: the same line
        steps = len(n["output"]) * len(n["output"][0])
        for step in range(steps):
            line = browser.find_element("css selector", f"{section} .products").text.strip()
            r, c = divmod(step, len(n["output"][0]))
            assert line.rsplit("= ", 1)[1] == f"{n['output'][r][c]:g}", (topic, step, line)
            products = line.split(" = ")[0].split(" + ")
            k = len(n["kernel"])
            window = [row[c * n["stride"]: c * n["stride"] + k] for row in n["padded"][r * n["stride"]: r * n["stride"]
                                                                                          + k]]
            assert products == [f"{x:g}*{w:g}" for xr, kr in zip(window, n["kernel"], strict=True)
                                for x, w in zip(xr, kr, strict=True)]
            if step + 1 < steps:
                browser.find_element("css selector", f"{section} button.next").click()
    for mode in ("max", "avg"):
        result = explain("pool", mode=mode)
        line = browser.find_element("css selector", f"#pool-{mode} .products").text
        assert line in result.text
    channels = explain("channels").text
    line = browser.find_element("css selector", "#channels .products").text
    assert line.endswith("sum over the channels: 19 + 37 = 56") and _lines_in(line, channels)
    one = explain("1x1")
    outputs = one.numbers["output"]  # O x H x W
    pixels = len(outputs[0]) * len(outputs[0][0])
    for step in range(len(outputs) * pixels):  # every pixel of every output channel
        line = browser.find_element("css selector", "[id='1x1'] .products").text.strip()
        o, rest = divmod(step, pixels)
        assert line.rsplit("= ", 1)[1] == f"{outputs[o][rest // len(outputs[0][0])][rest % len(outputs[0][0])]:g}"
        if rest == 0:  # explain prints the first pixel of each output channel: the same line
            assert _lines_in(line, one.text), line
        if step + 1 < len(outputs) * pixels:
            browser.find_element("css selector", "[id='1x1'] button.next").click()


def _lines_in(block: str, text: str) -> bool:
    """Whether ``block``'s lines appear in ``text`` one after another (each compared without its indent)."""
    want = [line.strip() for line in block.splitlines()]
    have = [line.strip() for line in text.splitlines()]
    return any(have[i: i + len(want)] == want for i in range(len(have) - len(want) + 1))


@pytest.mark.parametrize(("source", "target", "mean", "std"), [
    ((3, 37, 23), (1, 32, 32), (0.1307,), (0.3081,)),  # RGB to gray; height shrunk (antialiased), width enlarged
    ((1, 20, 20), (3, 32, 32), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)),  # gray repeated; enlarged
    ((3, 64, 50), (3, 32, 32), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)),  # both sides shrunk
    ((1, 28, 28), (1, 28, 28), None, None),  # as it is, scaled to [0, 1]
])
def test_the_panel_preprocesses_as_convzoo_does(browser, server, source, target, mean, std):
    """The page's preprocessing (channels, bilinear resize antialiased when shrinking, mean and std) is
    Preprocess's, the object predict uses, to float32 rounding."""
    from convzoo.train.pipeline import Preprocess

    _open(browser, server + PAGES["model"])
    X = torch.randint(0, 256, source, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    spec = {"input_size": list(target), "mean": None if mean is None else list(mean),
            "std": None if std is None else list(std)}
    got = browser.execute_script("return Array.from(convzooTry.preprocess(Uint8Array.from(arguments[0]), "
                                 "arguments[1], arguments[2], arguments[3], arguments[4]))",
                                 X.flatten().tolist(), *source, spec)
    expected = Preprocess(target[0], target[1:], mean, std)(X[None])[0]  # C x H x W
    difference = (torch.tensor(got, dtype=torch.float64).view(target) - expected.double()).abs().max()
    assert difference < 1e-4, f"largest difference {difference:.3g}"
