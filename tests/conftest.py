"""Shared fixtures. Tests use the mock backend, a tiny random model for training paths, and a
few ``slow`` tests on the embedded model."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def repo() -> Path:
    return REPO
