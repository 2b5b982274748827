"""Shared fixtures. Tests use the mock backend, a tiny random model for training paths, and a
few ``slow`` tests on the embedded model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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


@pytest.fixture
def interrupt_sft(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], Callable[[], None]]:
    """``arm(step)`` makes every TRL SFTTrainer raise KeyboardInterrupt when it saves checkpoint
    ``step`` (a crash between checkpoints); it returns the function that disarms it."""
    import trl
    from transformers import TrainerCallback

    original = trl.SFTTrainer.__init__

    def arm(step: int) -> Callable[[], None]:
        class Interrupt(TrainerCallback):  # type: ignore[misc]
            def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                if state.global_step == step:
                    raise KeyboardInterrupt

        def with_interrupt(self: Any, *a: Any, **kw: Any) -> None:
            original(self, *a, **kw)
            self.add_callback(Interrupt())

        monkeypatch.setattr(trl.SFTTrainer, "__init__", with_interrupt)
        return lambda: monkeypatch.setattr(trl.SFTTrainer, "__init__", original)

    return arm
