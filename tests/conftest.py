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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer Llama (hidden 64) with the embedded model's tokenizer, saved to disk.

    The first use on a machine converts the embedded GGUF once (~20 s, then cached).
    """
    from cai.backends._embedded import tiny_random_model

    return tiny_random_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def one_torch_thread() -> object:
    """Torch on one thread for the test (tiny models run faster so; restored afterwards)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
