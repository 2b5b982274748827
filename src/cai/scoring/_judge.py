"""Pairwise judging: which of two replies to the same request is better, asked in both orders.

Owns: rendering the judge prompt from a template file, scoring the two labels after a prefill in
one batched ``score`` call, turning log-probabilities into P(x better) averaged over the two
presentation orders (which cancels a judge's position bias), and isolating failed requests.
Must not know: which models wrote the replies, or how the verdicts are aggregated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from cai.backends import Backend
from cai.errors import BackendError
from cai.records import Message, PromptTemplate, ScoreRequest, Strict
from cai.store import load_template


class JudgeResult(Strict):
    """One pairwise comparison of reply x against reply y, both orders."""

    version: Literal[1] = 1
    """Schema version."""
    p_x: float | None
    """P(x better), averaged over both orders; None when unassessed (a reply or the judge
    failed). 0.5 is a tie."""
    p_x_first: float | None
    """P(x better) when x is shown as (A)."""
    p_x_second: float | None
    """P(x better) when x is shown as (B)."""
    error: str | None = None
    """Why the comparison is unassessed."""

    @property
    def decision(self) -> bool | None:
        """True when both orders prefer x, False when both prefer y, None when the orders
        disagree or either is a dead heat (the judge decided nothing on this item)."""
        a, b = self.p_x_first, self.p_x_second
        if a is None or b is None:
            return None
        if a > 0.5 and b > 0.5:
            return True
        if a < 0.5 and b < 0.5:
            return False
        return None


@lru_cache(maxsize=1)
def helpfulness_template() -> PromptTemplate:
    """The bundled helpfulness judge template."""
    return load_template("cai.scoring.templates", "helpfulness_judge.yaml")


def _request(tpl: PromptTemplate, prompt: str, a: str, b: str) -> ScoreRequest:
    user = tpl.render("compare", prompt=prompt, response_a=a, response_b=b)
    msgs = (Message(role="system", content=tpl.parts["system"]), Message(role="user", content=user))
    labels = (tpl.parts["label_a"], tpl.parts["label_b"])
    return ScoreRequest(messages=msgs, prefill=tpl.parts["prefill"], candidates=labels)


def _p_first(scores: Sequence[float]) -> float | None:
    """P(candidate 0) from two log-probabilities (softmax over the pair)."""
    if len(scores) != 2 or not all(math.isfinite(s) for s in scores):
        return None
    return 1.0 / (1.0 + math.exp(scores[1] - scores[0]))


def score_each(backend: Backend, reqs: Sequence[ScoreRequest]) -> list[list[float] | str]:
    """Scores per request, or the error text of a request that failed.

    The batch goes in one call; when that raises ``BackendError``, each request is asked alone,
    so one bad request costs only its own item (every judge, feedback and red-team caller uses
    this; a failure is never turned into a score).
    """
    if not reqs:
        return []
    try:
        return list(backend.score(reqs))
    except BackendError:
        out: list[list[float] | str] = []
        for r in reqs:
            try:
                out.append(backend.score([r])[0])
            except BackendError as exc:
                out.append(str(exc) or "judge failed")
        return out


def judge_pairs(
    backend: Backend,
    prompts: Sequence[str],
    responses_x: Sequence[str | None],
    responses_y: Sequence[str | None],
    template: PromptTemplate | None = None,
) -> list[JudgeResult]:
    """Compare x against y for each prompt, both orders, in one batched ``score`` call.

    A None reply (its generation failed) makes that comparison unassessed without a request.
    """
    if not len(prompts) == len(responses_x) == len(responses_y):
        raise ValueError("prompts, responses_x and responses_y must have the same length")
    tpl = template or helpfulness_template()
    pairs = zip(responses_x, responses_y, strict=True)
    live = [i for i, (x, y) in enumerate(pairs) if x is not None and y is not None]
    reqs: list[ScoreRequest] = []
    for i in live:
        x, y = str(responses_x[i]), str(responses_y[i])
        reqs += [_request(tpl, prompts[i], x, y), _request(tpl, prompts[i], y, x)]
    scored = score_each(backend, reqs)
    out = [
        JudgeResult(p_x=None, p_x_first=None, p_x_second=None, error="a reply failed")
        for _ in prompts
    ]
    for j, i in enumerate(live):
        first, second = scored[2 * j], scored[2 * j + 1]
        errors = [s for s in (first, second) if isinstance(s, str)]
        p1 = None if isinstance(first, str) else _p_first(first)
        p2 = None if isinstance(second, str) else _p_first(second)
        p2x = None if p2 is None else 1.0 - p2  # x is candidate B in the second order
        if p1 is None or p2x is None:
            why = errors[0] if errors else "judge returned unusable scores"
            out[i] = JudgeResult(p_x=None, p_x_first=p1, p_x_second=p2x, error=why)
        else:
            out[i] = JudgeResult(p_x=(p1 + p2x) / 2, p_x_first=p1, p_x_second=p2x)
    return out


def pairwise_judge(
    backend: Backend,
    prompts: Sequence[str],
    responses_x: Sequence[str | None],
    responses_y: Sequence[str | None],
    template: PromptTemplate | None = None,
) -> list[float | None]:
    """P(x better than y) per prompt, averaged over both orders; None when unassessed.

    None is never a win or a loss: callers leave it out of n. 0.5 is a tie (counted half).
    """
    return [r.p_x for r in judge_pairs(backend, prompts, responses_x, responses_y, template)]
