"""Shared test switches and fixtures.

``pytest --update-golden`` rewrites the golden files under tests/expected/ instead of comparing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

EXPECTED = Path(__file__).parent / "expected"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files in tests/expected/")


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """``golden("name.txt", text)``: compare ``text`` with tests/expected/name.txt (or rewrite it)."""
    update = request.config.getoption("--update-golden")

    def check(name: str, text: str) -> None:
        path = EXPECTED / name
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text + "\n", encoding="utf-8")
            return
        assert path.exists(), f"missing golden file {path}; run pytest --update-golden once and review it"
        assert text + "\n" == path.read_text(encoding="utf-8"), f"output differs from {path}"

    return check


@pytest.fixture(autouse=True, scope="session")
def _private_data_cache(tmp_path_factory: pytest.TempPathFactory):
    """Every test decodes into a cache of its own session, never the user's ~/.cache/convzoo."""
    import os

    old = os.environ.get("CONVZOO_CACHE")
    os.environ["CONVZOO_CACHE"] = str(tmp_path_factory.mktemp("convzoo-cache"))
    yield
    if old is None:
        os.environ.pop("CONVZOO_CACHE", None)
    else:
        os.environ["CONVZOO_CACHE"] = old


def _large_models() -> frozenset[str]:
    """The models the quick tier (``make check``, ``-m "not slow"``) leaves to the whole suite, as timm's CI
    filters its large models: those designed for 224x224 inputs or over 25 M parameters, except that a family
    with no smaller member keeps its first one (``alexnet``, ``nin``, ``vgg11``), so every family stays in the
    quick tier."""
    from convzoo.models import list_models, model_info

    infos = [model_info(n) for n in list_models()]
    big = {i.name for i in infos if i.default_input_size[-1] >= 224 or i.num_params > 25_000_000}
    keep = set()
    for family in {i.family for i in infos}:
        members = [i.name for i in infos if i.family == family]  # sorted by name
        if all(m in big for m in members):
            keep.add(members[0])
    return frozenset(big - keep)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test parametrised over the registry is ``slow`` for the large models (see ``_large_models``)."""
    large = _large_models()
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if any(isinstance(v, str) and v in large for v in params.values()):
            item.add_marker(pytest.mark.slow)
