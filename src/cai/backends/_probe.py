"""A reward probe: a frozen causal LM with a linear reward head on its hidden states, served as
a comparison backend (``probe:DIR``).

Owns: ``ProbeFile`` (``reward_probe.json``: the base model, the layer read, the head's weights,
the layout of the comparison requests it answers and how it was fitted), the response features
(mean of one layer's hidden states over the reply's tokens, principle and request in the user
turn), and ``RewardProbeBackend``, whose ``score`` answers a two-letter comparison request with
``log sigmoid(r_A - r_B)`` and ``log sigmoid(r_B - r_A)``.
Must not know: how the head is fitted (``cai.train.probe``), which template wrote the requests
(the file carries their layout as a regular expression) or what the scores are used for.

A probe scores each reply on its own, so it has no position bias by construction: the two
presentation orders of a pair get mirrored probabilities. It cannot generate; a chain-of-thought
feedback recipe needs a generative feedback model.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cai.backends._hf import _FALLBACK_TEMPLATE, resolve_spec
from cai.errors import BackendError, InputError, missing
from cai.records import Generation, GenerationRequest, SamplingParams, ScoreRequest

PROBE_FILE = "reward_probe.json"
"""The probe's file inside its directory."""


class ProbeFile(BaseModel):
    """A fitted reward probe (``reward_probe.json``)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    """Schema version."""
    base_model: str
    """The frozen model's spec as given (``embedded``, ``hf:...``, ``run:...``)."""
    layer: int = Field(ge=0)
    """Hidden-state layer read (0: the embeddings; the model's layer count: the last)."""
    pooling: Literal["mean_response"] = "mean_response"
    """Mean over the reply's tokens (its end-of-turn token included)."""
    user_turn: str
    """The user turn the reply answers: ``{question}`` (the principle's comparison question)
    and ``{prompt}`` are filled in."""
    request_pattern: str
    """A regular expression with groups ``prompt``, ``response_a``, ``response_b`` and
    ``question`` matching the last user message of the comparison requests it answers."""
    weights: list[float]
    """The reward head: reward = weights . features (features as read, no centring)."""
    max_length: int = Field(512, ge=16)
    """Tokens read per reply (user turn included); longer inputs are cut at the end."""
    fit: dict[str, Any] = Field(default_factory=dict)
    """How the head was fitted (pairs, layers and L2 strengths tried, cross-validated accuracy)."""

    @classmethod
    def read(cls, directory: str | Path) -> ProbeFile:
        path = Path(directory) / PROBE_FILE
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except OSError:
            raise InputError(f"{path}: no such file (not a reward probe directory)") from None
        except ValueError as exc:
            raise InputError(f"{path}: not a valid reward probe: {exc}") from None


def is_probe_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a reward probe."""
    return (Path(path) / PROBE_FILE).is_file()


class FeatureReader:
    """The frozen model that turns (question, prompt, reply) into per-layer mean hidden states.

    ``dtype`` float32 unless told: bf16 is slow on CPUs without AVX-512 and rounds the features.
    """

    def __init__(
        self, base_model: str, *, batch_size: int = 8, max_length: int = 512, device: str = "cpu"
    ) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise missing(exc.name or "torch", "hf") from None
        self._torch = torch
        src = resolve_spec(base_model)
        self.tokenizer = AutoTokenizer.from_pretrained(src.tokenizer or src.model)
        if self.tokenizer.chat_template is None:
            self.tokenizer.chat_template = _FALLBACK_TEMPLATE
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(src.model, dtype=torch.float32)
        if src.adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(src.adapter)).merge_and_unload()
        self.model: Any = model.to(device).eval()  # type: ignore[arg-type]
        self.device = device
        self.layers = int(model.config.num_hidden_layers)
        self.batch_size = batch_size
        self.max_length = max_length
        self.last_norms: list[list[float]] = []

    def keep_layers(self, deepest: int) -> None:
        """Drop the decoder layers above ``deepest + 1`` when the model's layer stack can be
        cut (Llama-style ``model.model.layers``): nothing above the layer read is computed.
        One layer more is kept because transformers applies the final norm to the last
        hidden state it returns."""
        stack = getattr(getattr(self.model, "model", None), "layers", None)
        if stack is None or deepest + 1 >= len(stack):
            return
        self.model.model.layers = stack[: deepest + 1]
        self.layers = deepest

    def features(
        self, rows: Sequence[tuple[str, str]], layers: Sequence[int]
    ) -> list[list[list[float]]]:
        """Per row (user turn, reply): for each of ``layers``, the mean hidden state over the
        reply's tokens. Rows are batched by length (little padding) and returned in order.
        ``last_norms`` then holds, per row and layer, the median L2 norm of a reply token's state
        (the scale steering vectors are measured in)."""
        for layer in layers:
            if not 0 <= layer <= self.layers:
                raise InputError(f"layer {layer} out of range: the model has {self.layers}")
        torch = self._torch
        tok = self.tokenizer
        encoded: list[tuple[list[int], int]] = []
        for user, reply in rows:
            head = tok.apply_chat_template(
                [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
            )
            full = tok.apply_chat_template(
                [{"role": "user", "content": user}, {"role": "assistant", "content": reply}],
                tokenize=False,
            )
            head_ids = tok(head, add_special_tokens=False)["input_ids"]
            ids = tok(full, add_special_tokens=False)["input_ids"][: self.max_length]
            encoded.append((ids, min(len(head_ids), len(ids) - 1)))
        out: list[list[list[float]]] = [[] for _ in rows]
        norms: list[list[float]] = [[] for _ in rows]
        order = sorted(range(len(rows)), key=lambda i: len(encoded[i][0]))
        pad = tok.pad_token_id
        for at in range(0, len(order), self.batch_size):
            batch = order[at : at + self.batch_size]
            width = max(len(encoded[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for b, i in enumerate(batch):
                row = encoded[i][0]
                ids[b, : len(row)] = torch.tensor(row)
                mask[b, : len(row)] = 1
            # The decoder stack without the LM head: logits over the vocabulary for every
            # position would cost more than the layers themselves on a small model.
            body = getattr(self.model, "model", self.model)
            with torch.no_grad():
                hidden = body(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    output_hidden_states=True,
                ).hidden_states
            for b, i in enumerate(batch):
                ids_i, start = encoded[i]
                states = [hidden[layer][b, start : len(ids_i)].float() for layer in layers]
                out[i] = [h.mean(0).cpu().tolist() for h in states]  # [layers][hidden]
                norms[i] = [float(h.norm(dim=-1).median()) for h in states]
        self.last_norms = norms
        return out

    def close(self) -> None:
        self.model = None


class RewardProbeBackend:
    """``probe:DIR``: answers two-letter comparison requests with a reward probe.

    Only ``score`` works, and only on requests whose last user message matches the probe's
    ``request_pattern`` with two candidates (slot A's letter, then slot B's).
    """

    def __init__(self, spec: str, *, batch_size: int = 8, device: str = "cpu") -> None:
        prefix, _, arg = spec.partition(":")
        if prefix != "probe" or not arg:
            raise InputError(f"model spec {spec!r}: expected probe:DIR")
        self.spec = spec
        self.probe = ProbeFile.read(Path(arg).expanduser())
        self._pattern = re.compile(self.probe.request_pattern, re.DOTALL)
        self._reader: FeatureReader | None = None
        self._seen: dict[tuple[str, str, str], float] = {}  # both orders read each reply once
        self._batch_size = batch_size
        self._device = device

    def _features(self) -> FeatureReader:
        if self._reader is None:
            self._reader = FeatureReader(
                self.probe.base_model,
                batch_size=self._batch_size,
                max_length=self.probe.max_length,
                device=self._device,
            )
            self._reader.keep_layers(self.probe.layer)
        return self._reader

    def rewards(self, items: Sequence[tuple[str, str, str]]) -> list[float]:
        """The reward of each (question, prompt, reply)."""
        todo = list(dict.fromkeys(i for i in items if i not in self._seen))
        rows = [(self.probe.user_turn.format(question=q, prompt=p), r) for q, p, r in todo]
        feats = self._features().features(rows, [self.probe.layer]) if rows else []
        w = self.probe.weights
        if feats and len(feats[0][0]) != len(w):
            raise InputError(
                f"{self.spec}: the head has {len(w)} weights but {self.probe.base_model} has "
                f"{len(feats[0][0])} hidden units"
            )
        for item, f in zip(todo, feats, strict=True):
            self._seen[item] = sum(a * b for a, b in zip(f[0], w, strict=True))
        return [self._seen[i] for i in items]

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        """Per request ``[log P(A better), log P(B better)]`` from the two replies' rewards."""
        items: list[tuple[str, str, str]] = []
        for n, request in enumerate(requests):
            users = [m for m in request.messages if m.role == "user"]
            found = self._pattern.fullmatch(users[-1].content.strip()) if users else None
            if found is None or len(request.candidates) != 2:
                raise InputError(
                    f"{self.spec}: request {n} is not a two-reply comparison this probe answers "
                    "(a reward probe scores the feedback stage's comparison requests only)"
                )
            q, p = found["question"], found["prompt"]
            items += [(q, p, found["response_a"]), (q, p, found["response_b"])]
        try:
            r = self.rewards(items)
        except InputError:
            raise
        except Exception as exc:
            raise BackendError(f"{self.spec}: scoring failed: {exc}") from exc
        out = []
        for i in range(len(requests)):
            d = r[2 * i] - r[2 * i + 1]
            out.append([_log_sigmoid(d), _log_sigmoid(-d)])
        return out

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[Generation]:
        raise InputError(
            f"{self.spec}: a reward probe cannot generate (turn chain-of-thought feedback off, "
            "or use a generative feedback model)"
        )

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def write_probe(probe: ProbeFile, directory: str | Path) -> Path:
    """Write ``reward_probe.json`` into ``directory``."""
    path = Path(directory) / PROBE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(probe.model_dump(), indent=1) + "\n", encoding="utf-8")
    return path
