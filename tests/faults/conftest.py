"""Fault tests: small by default so `make test` stays fast; full size with CARELINE_SOAK=1."""

from __future__ import annotations

import os

import pytest

SOAK = os.environ.get("CARELINE_SOAK") == "1"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("soak") and not SOAK:
        pytest.skip("full-size fault test: set CARELINE_SOAK=1 (make soak)")
