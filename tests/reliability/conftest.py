"""Reliability harness fixtures: the figures of the run go to the terminal (and to a JSON file
named by ``WALSHIP_RELIABILITY_FIGURES``)."""

from __future__ import annotations

import json
import os

import pytest

from reliability.support import FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("walship reliability figures")
    for key in sorted(FIGURES):
        terminalreporter.write_line(f"{key}: {FIGURES[key]}")
    path = os.environ.get("WALSHIP_RELIABILITY_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(dict(sorted(FIGURES.items()))) + "\n")
