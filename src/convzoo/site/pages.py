"""Writing the site's pages: one HTML shell (``assets/page.html``) per page, the page's data inside it as JSON.

    write_page(out, "models/lenet.html", "lenet", "model", data, scripts=["tryit.js", "model.js"])

Each page carries its data in a ``<script type="application/json">`` element and draws itself from it with
the package's JavaScript (``assets/*.js``), so that it opens from disk (``file://``, where ``fetch`` of a local
file is refused) as well as from a server. The same data is written beside it as ``data/PAGE.json`` for
anyone who wants the numbers. Links are relative, so the folder works wherever it is put.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

from convzoo.utils.atomic import atomic_path

__all__ = ["ASSETS", "VENDORED", "copy_assets", "write_page"]

ASSETS = ("site.css", "common.js", "index.js", "model.js", "tryit.js", "convolution.js", "run.js")
VENDORED = ("chart.js/chart.umd.min.js", "chart.js/LICENSE.md")  # Chart.js 4.6.1 from npm, MIT


def _package_file(*parts: str) -> Any:
    return resources.files("convzoo.site").joinpath(*parts)


def copy_assets(out: Path) -> None:
    """The CSS, the pages' scripts and the vendored chart library, into ``out/assets`` and ``out/vendor``."""
    for name in ASSETS:
        target = out / "assets" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with _package_file("assets", name).open("rb") as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink)
    for name in VENDORED:
        target = out / "vendor" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with _package_file("vendor", *name.split("/")).open("rb") as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink)


def _json_for_html(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element early (``</`` written ``<\\/``, as JSON allows)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def write_page(out: Path, path: str, title: str, page: str, data: Any, scripts: Sequence[str] = (),
               vendor: Sequence[str] = (), runs: Sequence[tuple[str, str]] = ()) -> Path:
    """Write ``out/path`` (``index.html``, ``models/NAME.html``, ...) for page type ``page`` with ``data``;
    ``scripts`` are the package's, ``vendor`` the vendored libraries' (paths under ``vendor/``), ``runs`` the
    (name, link) of each run page for the navigation bar. Also ``out/data/<path>.json``."""
    root = "../" * path.count("/")
    shell = Template(_package_file("assets", "page.html").read_text(encoding="utf-8"))
    tags = [f'<script src="{root}vendor/{name}"></script>' for name in vendor]
    tags += [f'<script src="{root}assets/{name}"></script>' for name in ("common.js", *scripts)]
    nav = "".join(f'<a href="{root}{link}">run {name}</a>' for name, link in runs)
    html = shell.substitute(title=title, page=page, root=root, runs_nav=nav, data=_json_for_html(data),
                            scripts="\n".join(tags))
    target = out / path
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, suffix=".html") as tmp:
        tmp.write_text(html, encoding="utf-8")
    data_file = out / "data" / Path(path).with_suffix(".json")
    data_file.parent.mkdir(parents=True, exist_ok=True)
    data_file.write_text(json.dumps(data, allow_nan=False), encoding="utf-8")
    return target
