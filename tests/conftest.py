"""Shared test setup: make the helper modules in tests/ and its folders importable, and a few generic fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
# tests/ mirrors the package (tests/model, tests/methods...); the shared helpers (onnx_builders...) live here and
# a few test modules import each other's fixtures and builders, so every test folder is importable.
for folder in [TESTS, *sorted(p for p in TESTS.iterdir() if p.is_dir() and p.name not in ("data", "__pycache__"))]:
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator, fresh for each test."""
    return np.random.default_rng(12345)
