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
