"""Constitutional steering vectors: the vector file, the ``+steer:`` spec suffix and the hooks.

Owns: ``SteerMeta`` (what a vector file records: model, layers, data, counts, method, the typical
residual norm per layer), reading and writing ``vectors.safetensors`` (the metadata inside the
file under ``cai_steer`` and a sidecar ``vectors.json`` copy for people), parsing
``SPEC+steer:PATH[#DIGEST]@ALPHAS`` into a canonical spec string, and ``Steering``: forward hooks
that add the scaled directions to a transformers model's residual stream.
Must not know: how directions are fitted (``cai.train.steer``), constitutions, or workflows.

Scale: at a recorded layer L the hook adds ``sum_p alpha_p * STEER_UNIT * norm_L * u_{p,L}`` to
the output of decoder block L (``hidden_states[L]`` in transformers' numbering, 1-based), where
``u_{p,L}`` is principle p's unit direction and ``norm_L`` the median L2 norm of a reply token's
residual state at L over the fit data. So ``alpha = 1`` moves each token by a tenth of a typical
residual state at every recorded layer; ``alpha = 10`` by a whole one. Positive alpha pushes
toward replies that satisfy the principle, negative toward violating ones.

Where: every position, prompt and generated alike. A token's key/values are then a function of
the tokens before it only (as without steering), so the shared-prefix cache, cascade attention
and the key/value store stay exact; the same vector is added to every row, so batching and
padding change nothing. The steer settings (file digest and alphas) are part of the backend's
spec string, hence of every record's model name and of the response-cache key.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from cai.errors import InputError, missing
from cai.records import Strict

STEER_MARK = "+steer:"
"""What separates the base model spec from the steer settings."""
STEER_UNIT = 0.1
"""alpha = 1 adds this fraction of the layer's typical residual norm (see the module docstring)."""
META_KEY = "cai_steer"
"""The safetensors metadata key holding ``SteerMeta`` as JSON."""
NORM_TENSOR = "__residual_norm__"
"""The tensor (one value per recorded layer) holding the typical residual norm."""
STEERABLE = ("embedded", "hf", "run")
"""Spec prefixes a steer suffix may follow (transformers models)."""


class DirectionMeta(Strict):
    """One direction in a vector file."""

    id: str = Field(min_length=1)
    """The principle id, or a tier name for a direction pooled over the tier's principles."""
    kind: Literal["principle", "tier"]
    """Whether ``id`` names one principle or a tier."""
    principles: list[str]
    """Principles whose contrast pairs went into the direction."""
    pairs: int = Field(ge=1)
    """Contrast pairs (satisfying reply, violating reply) it was fitted on."""
    by_source: dict[str, int]
    """Pairs per data source."""
    train_auc: list[float]
    """Per recorded layer: AUC of the projection separating satisfying from violating replies
    on the fit pairs (in-sample; held-out figures come from ``cai steer auc``)."""


class SteerMeta(Strict):
    """What a vector file records (inside the file and in its sidecar JSON)."""

    version: Literal[1] = 1
    """Schema version."""
    model: str
    """The model spec the activations were read from."""
    model_name: str
    """The model's own name (``config._name_or_path``)."""
    hidden_size: int = Field(ge=1)
    """Width of the residual stream."""
    num_layers: int = Field(ge=1)
    """Decoder blocks of the model."""
    layers: list[int] = Field(min_length=1)
    """Recorded layers: the output of decoder block L (``hidden_states[L]``), 1-based."""
    method: Literal["mean_difference", "probe"]
    """mean_difference: mean satisfying minus mean violating reply state; probe: the weight
    vector of a logistic regression on paired differences (standardised, L2)."""
    residual_norm: list[float]
    """Per recorded layer: median L2 norm of a reply token's residual state (the scale unit)."""
    directions: list[DirectionMeta] = Field(min_length=1)
    """The directions, one tensor each (shape [len(layers), hidden_size], unit rows)."""
    data: list[str]
    """The data sources read (bundled sets with their split, run files)."""
    data_sha256: str
    """SHA-256 of the contrast pairs as canonical JSON lines."""
    constitution: str
    """Constitution name and content digest."""
    created: str
    """UTC time of the fit."""
    versions: dict[str, str] = Field(default_factory=dict)
    """Library versions (cai, torch, transformers)."""


def sidecar_path(path: str | Path) -> Path:
    """``vectors.safetensors`` -> ``vectors.json``."""
    return Path(path).with_suffix(".json")


def file_digest(path: str | Path) -> str:
    """First 12 hex digits of the file's SHA-256."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def write_vectors(path: str | Path, meta: SteerMeta, tensors: dict[str, Any]) -> Path:
    """Write ``tensors`` (id -> [layers, hidden] float32) with ``meta``, and the sidecar."""
    try:
        import torch
        from safetensors.torch import save_file
    except ImportError:
        raise missing("safetensors", "hf") from None
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    blob = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    blob[NORM_TENSOR] = torch.tensor(meta.residual_norm, dtype=torch.float32)
    text = meta.model_dump_json()
    save_file(blob, str(out), metadata={META_KEY: text})
    sidecar_path(out).write_text(json.dumps(json.loads(text), indent=1) + "\n", encoding="utf-8")
    return out


def read_vectors(path: str | Path) -> tuple[SteerMeta, dict[str, Any]]:
    """The metadata and direction tensors of a vector file; InputError naming the file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"{p}: no such steering vector file")
    try:
        from safetensors import safe_open
    except ImportError:
        raise missing("safetensors", "hf") from None
    try:
        with safe_open(str(p), framework="pt") as f:
            header = (f.metadata() or {}).get(META_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    except Exception as exc:  # safetensors raises its own error types for a broken file
        raise InputError(f"{p}: not a safetensors file ({type(exc).__name__})") from None
    if header is None:
        raise InputError(f"{p}: no '{META_KEY}' metadata (not written by cai steer fit)")
    try:
        meta = SteerMeta.model_validate_json(header)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise InputError(f"{p}: bad steering metadata at {where}: {first['msg']}") from None
    want = (len(meta.layers), meta.hidden_size)
    for d in meta.directions:
        t = tensors.get(d.id)
        if t is None or tuple(t.shape) != want:
            raise InputError(f"{p}: direction {d.id!r} missing or not of shape {want}")
    return meta, {d.id: tensors[d.id] for d in meta.directions}


def split_steer(spec: str) -> tuple[str, str | None]:
    """``BASE+steer:ARG`` -> (BASE, ARG); a spec without the suffix -> (spec, None)."""
    base, mark, arg = spec.rpartition(STEER_MARK)
    if not mark:
        return spec, None
    if base.partition(":")[0] not in STEERABLE:
        raise InputError(
            f"model spec {spec!r}: steering needs a transformers model "
            f"({', '.join(STEERABLE)}), not {base!r}"
        )
    return base, arg


@dataclass(frozen=True)
class SteerSettings:
    """A parsed ``PATH[#DIGEST]@ALPHAS`` (alphas not yet checked against the file)."""

    path: Path
    digest: str | None
    default: float | None
    """The alpha for every direction not named (a bare number), None when none was given."""
    alphas: dict[str, float]
    """Per-direction alphas (``ID=NUMBER``)."""


def parse_steer(arg: str, spec: str) -> SteerSettings:
    """Parse the part after ``+steer:``; InputError for a bad alpha (naming the file)."""
    where, at, alpha_text = arg.rpartition("@")
    if not at or not where:
        raise InputError(f"model spec {spec!r}: expected +steer:PATH@ALPHA")
    path_text, _, digest = where.partition("#")
    path = Path(path_text).expanduser()
    default: float | None = None
    alphas: dict[str, float] = {}
    for item in alpha_text.split(","):
        name, eq, value = item.strip().rpartition("=")
        number = _number(value if eq else item.strip(), path)
        if eq:
            if not name:
                raise InputError(f"{path}: steer alpha {item!r}: expected ID=NUMBER")
            alphas[name] = number
        else:
            default = number
    return SteerSettings(path, digest or None, default, alphas)


def _number(text: str, path: Path) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{path}: steer alpha {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{path}: steer alpha {text!r} is not a finite number")
    return value


def _fmt(x: float) -> str:
    return f"{x:g}"


class Steering:
    """Directions read from a vector file, with alphas, ready to hook into a model."""

    def __init__(self, settings: SteerSettings) -> None:
        self.settings = settings
        self.meta, self.tensors = read_vectors(settings.path)
        self.digest = file_digest(settings.path)
        if settings.digest is not None and settings.digest != self.digest:
            raise InputError(
                f"{settings.path}: file digest {self.digest} differs from {settings.digest} "
                "named in the spec (the file changed since)"
            )
        ids = [d.id for d in self.meta.directions]
        unknown = sorted(set(settings.alphas) - set(ids))
        if unknown:
            raise InputError(
                f"{settings.path}: unknown principle {unknown[0]!r} in the steer alphas "
                f"(the file holds {', '.join(ids)})"
            )
        base = settings.default if settings.default is not None else 0.0
        self.alphas = {i: settings.alphas.get(i, base) for i in ids}
        self._handles: list[Any] = []

    def arg(self) -> str:
        """The canonical ``PATH#DIGEST@ALPHAS``: equal settings give equal strings."""
        values = set(self.alphas.values())
        if len(values) == 1:
            alpha = _fmt(values.pop())
        else:
            alpha = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.alphas.items()))
        return f"{self.settings.path}#{self.digest}@{alpha}"

    def deltas(self, torch: Any) -> dict[int, Any]:
        """Recorded layer -> the vector added there ([hidden], float32)."""
        norms = self.meta.residual_norm
        out: dict[int, Any] = {}
        for row, layer in enumerate(self.meta.layers):
            total = torch.zeros(self.meta.hidden_size, dtype=torch.float32)
            for d, alpha in self.alphas.items():
                if alpha:
                    u = self.tensors[d][row].to(torch.float32)
                    total += alpha * STEER_UNIT * norms[row] * u / u.norm().clamp(min=1e-12)
            out[layer] = total
        return out

    def install(self, model: Any) -> None:
        """Check the file fits ``model`` and hook the decoder blocks; InputError if it does not."""
        config = model.config
        hidden = int(getattr(config, "hidden_size", -1))
        n_layers = int(getattr(config, "num_hidden_layers", -1))
        path = self.settings.path
        if hidden != self.meta.hidden_size or n_layers != self.meta.num_layers:
            raise InputError(
                f"{path}: vectors for a model with hidden size {self.meta.hidden_size} and "
                f"{self.meta.num_layers} layers ({self.meta.model_name}), but this model has "
                f"{hidden} and {n_layers}"
            )
        blocks = getattr(getattr(model, "model", None), "layers", None)
        if blocks is None or len(blocks) != n_layers:
            raise InputError(f"{path}: cannot find the decoder layers of {type(model).__name__}")
        import torch

        param = next(model.parameters())
        for layer, delta in self.deltas(torch).items():
            if not bool(delta.any()):
                continue  # alpha 0 everywhere: no hook, the unsteered model exactly
            vec = delta.to(device=param.device, dtype=param.dtype)
            self._handles.append(blocks[layer - 1].register_forward_hook(_adder(vec)))

    def remove(self) -> None:
        """Take the hooks out again."""
        for h in self._handles:
            h.remove()
        self._handles.clear()


def _adder(vec: Any) -> Any:
    def hook(_module: Any, _args: Any, output: Any) -> Any:
        if isinstance(output, tuple):  # older transformers: (hidden_states, ...)
            return (output[0] + vec, *output[1:])
        return output + vec  # [B, T, H] + [H]: every row, every position

    return hook


def load_steering(spec: str) -> tuple[str, Steering | None]:
    """(base spec, Steering) for ``spec``; (spec, None) when it has no steer suffix."""
    base, arg = split_steer(spec)
    if arg is None:
        return spec, None
    return base, Steering(parse_steer(arg, spec))
