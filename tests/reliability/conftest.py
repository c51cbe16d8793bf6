"""The reliability suite counts what it tried and what was survived, handled or refused, and prints the
totals at the end of the session: the figures of tests/reliability/README.md.

Each case calls ``record_counts(category, case, tried, ok, lost=0)`` once its checks have run (a failing
case records nothing: its assertion fails first, except where it counts what was lost before asserting).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest

CATEGORIES = {"faults": ("faults injected", "survived"), "bad": ("bad inputs tried", "handled"),
              "hostile": ("hostile files tried", "refused")}
_CASES: dict[str, dict[str, list[int]]] = {category: {} for category in CATEGORIES}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The whole reliability suite (kill trials, fuzzing, hostile files: a few minutes) is ``slow``: it runs in
    ``make test`` and CI, and ``make check`` leaves it out."""
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def record_counts() -> Callable[..., None]:
    """``record_counts("faults", "kill -9", tried, survived, lost=0)``."""

    def record(category: str, case: str, tried: int, ok: int, lost: int = 0) -> None:
        assert category in CATEGORIES
        totals = _CASES[category].setdefault(case, [0, 0, 0])
        totals[0] += tried
        totals[1] += ok
        totals[2] += lost

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not any(_CASES.values()):
        return
    terminalreporter.section("reliability figures")
    lost = 0
    for category, (tried_label, ok_label) in CATEGORIES.items():
        cases = _CASES[category]
        tried, ok = sum(c[0] for c in cases.values()), sum(c[1] for c in cases.values())
        lost += sum(c[2] for c in cases.values())
        terminalreporter.write_line(f"{tried_label}: {tried}, {ok_label}: {ok} ({len(cases)} cases)")
    terminalreporter.write_line(f"data lost: {lost}")
    if os.environ.get("CONVZOO_RELIABILITY_JSON"):
        with open(os.environ["CONVZOO_RELIABILITY_JSON"], "w") as f:
            json.dump(_CASES, f, indent=1)
