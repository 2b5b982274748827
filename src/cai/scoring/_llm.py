"""The LLM refusal detector: a written rubric sent to any backend, its answer parsed to a label.

Owns: rendering the rubric (``templates/refusal_judge.yaml``) for each (prompt, reply), sending
the requests in batches (``generate`` and parse the class word, or ``score`` the three class
words after the prefill and take the most likely), and turning unparseable answers and backend
failures into 'undetermined' with a reason, counted in ``counts``.
Must not know: which workflow asks, or which model the backend is.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from cai.backends import Backend, load_backend
from cai.errors import BackendError, InputError
from cai.records import (
    Generation,
    GenerationRequest,
    Message,
    PromptTemplate,
    SamplingParams,
    ScoreRequest,
)
from cai.scoring._detector import Detection, RefusalLabel
from cai.scoring._judge import score_each
from cai.store import load_template

Method = Literal["generate", "score"]

_CLASSES: tuple[RefusalLabel, ...] = ("full_compliance", "full_refusal", "partial_refusal")
_SHOWN_CHARS = 80
_MAX_REPLY_CHARS = 6000  # a reply longer than this is cut (the judge sees its start and end)


@lru_cache(maxsize=1)
def refusal_template() -> PromptTemplate:
    """The bundled refusal-judge rubric."""
    return load_template("cai.scoring.templates", "refusal_judge.yaml")


def _clip(text: str) -> str:
    if len(text) <= _MAX_REPLY_CHARS:
        return text
    half = _MAX_REPLY_CHARS // 2
    return text[:half] + "\n[...]\n" + text[-half:]


class LLMDetector:
    """Asks a model to classify each reply with the rubric. Registered as ``llm``.

    ``judge`` is a model spec (``embedded``, ``hf:PATH``, ``openai:MODEL@URL``, ``mock:SCRIPT``)
    or an open ``Backend``. With ``method="generate"`` the judge writes its answer and the first
    class word in it decides; with ``method="score"`` the three class words are scored after the
    prefill and the most likely wins (never unparseable; needs a backend with ``score``).
    """

    name = "llm"

    def __init__(
        self,
        judge: str | Backend = "embedded",
        *,
        method: Method = "generate",
        template: PromptTemplate | None = None,
        batch_size: int = 16,
        max_new_tokens: int = 8,
    ) -> None:
        if method not in ("generate", "score"):
            raise InputError(f"unknown llm detector method {method!r} (generate or score)")
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        self.template = template or refusal_template()
        self._owned = isinstance(judge, str)
        self.backend: Backend = load_backend(judge) if isinstance(judge, str) else judge
        self.method: Method = method
        self.batch_size = batch_size
        self.params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
        self.words = {lab: self.template.parts[f"label_{lab}"] for lab in _CLASSES}
        alternatives = "|".join(re.escape(w) for w in self.words.values())
        self._word = re.compile(rf"\b({alternatives})\b", re.IGNORECASE)
        self.version = f"{self.template.id}/{method}@{self.backend.spec}"
        self.counts: Counter[str] = Counter()
        """Cumulative outcomes: judged, unparseable, errors."""

    def close(self) -> None:
        """Release the judge model if this detector loaded it."""
        if self._owned:
            self.backend.close()

    def detect(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Detection]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        pairs = list(zip(prompts, responses, strict=True))
        out: list[Detection] = []
        for start in range(0, len(pairs), self.batch_size):
            out += self._batch(pairs[start : start + self.batch_size])
        return out

    def _messages(self, prompt: str, response: str) -> tuple[Message, ...]:
        user = self.template.render("classify", prompt=prompt, response=_clip(response))
        return (
            Message(role="system", content=self.template.parts["system"]),
            Message(role="user", content=user),
        )

    def _batch(self, pairs: list[tuple[str, str]]) -> list[Detection]:
        live = [i for i, (_, r) in enumerate(pairs) if r.strip()]
        out = [_undetermined("empty reply", 1.0) for _ in pairs]
        if self.method == "score":
            found = self._score([self._messages(*pairs[i]) for i in live])
        else:
            found = self._generate([self._messages(*pairs[i]) for i in live])
        for i, det in zip(live, found, strict=True):
            out[i] = det
        return out

    def _generate(self, chats: list[tuple[Message, ...]]) -> list[Detection]:
        prefill = self.template.parts["prefill"]
        reqs = [GenerationRequest(messages=m, prefill=prefill) for m in chats]
        if not reqs:
            return []
        try:
            gens = list(self.backend.generate(reqs, self.params))
        except BackendError:
            gens = []
            for r in reqs:  # one bad request costs only its own verdict
                try:
                    gens.append(self.backend.generate([r], self.params)[0])
                except BackendError as exc:
                    gens.append(Generation(text="", finish_reason="error", error=str(exc)))
        return [self._parse(g) for g in gens]

    def _parse(self, gen: Generation) -> Detection:
        if gen.finish_reason == "error":
            self.counts["errors"] += 1
            return _undetermined(f"judge failed: {gen.error or 'unknown error'}", 1.0)
        m = self._word.search(gen.text)
        if m is None:
            self.counts["unparseable"] += 1
            shown = " ".join(gen.text.split())[:_SHOWN_CHARS]
            return _undetermined(f"unparseable judge answer: {shown!r}", 0.5)
        word = m.group(1).upper()
        label = next(lab for lab, w in self.words.items() if w.upper() == word)
        self.counts["judged"] += 1
        return Detection(label=label, confidence=0.7, reason=f"judge answered {word}")

    def _score(self, chats: list[tuple[Message, ...]]) -> list[Detection]:
        prefill = self.template.parts["prefill"]
        cands = tuple(" " + self.words[lab] for lab in _CLASSES)
        reqs = [ScoreRequest(messages=m, prefill=prefill, candidates=cands) for m in chats]
        if not reqs:
            return []
        scored = score_each(self.backend, reqs)
        out = []
        for s in scored:
            if isinstance(s, str) or len(s) != len(_CLASSES):
                self.counts["errors"] += 1
                why = s if isinstance(s, str) else "judge returned unusable scores"
                out.append(_undetermined(f"judge failed: {why}", 1.0))
                continue
            best = max(range(len(_CLASSES)), key=lambda k: s[k])
            self.counts["judged"] += 1
            out.append(
                Detection(
                    label=_CLASSES[best],
                    confidence=_softmax(s)[best],
                    reason=f"judge scored {self.words[_CLASSES[best]]} highest",
                )
            )
        return out


def _softmax(scores: Sequence[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(s - top) if math.isfinite(s) else 0.0 for s in scores]
    total = sum(exps) or 1.0
    return [min(1.0, max(0.0, e / total)) for e in exps]


def _undetermined(reason: str, confidence: float) -> Detection:
    return Detection(label="undetermined", confidence=confidence, reason=reason)
