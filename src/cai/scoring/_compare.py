"""The constitutional comparison: which of two replies better meets a principle (letter logprobs).

Owns: the comparison template (``templates/compare.yaml``), rendering the chat that asks a
principle's ``compare`` question about two replies in slot order (with the constitution's worked
examples as earlier turns), the chain-of-thought and answer-letter requests, and the arithmetic
that turns the two letters' log-probabilities into P(slot A better).
Must not know: which reply is which (callers pass them in slot order), how models run, or what a
caller does with the probabilities. The feedback stage labels training pairs with it and
``cai calibrate`` measures how far the same comparison agrees with people, so both live here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

from cai.constitution import ComparisonDemonstration, Constitution, FewShotExample, Principle
from cai.records import GenerationRequest, Message, PromptTemplate, ScoreRequest
from cai.store import load_template

LETTERS = ("A", "B")
"""The scored candidates: slot A first, slot B second."""


@lru_cache(maxsize=1)
def compare_template() -> PromptTemplate:
    """The bundled comparison template."""
    return load_template("cai.scoring.templates", "compare.yaml")


@lru_cache(maxsize=1)
def reward_probe_template() -> PromptTemplate:
    """The reward probe's user turn (principle question, then the request)."""
    return load_template("cai.scoring.templates", "reward_probe.yaml")


def comparison_pattern() -> str:
    """A regular expression (for ``re.DOTALL``) matching a rendered ``compare_request``, with
    groups ``prompt``, ``response_a``, ``response_b`` and ``question``: how a reward probe finds
    the two replies in the requests this module writes. The request and the replies are quoted
    blocks, so each group holds the text exactly as given, whatever it contains (the template's
    own wording, forged markers of other blocks).
    """
    return compare_template().pattern("compare_request")


def sigmoid(x: float) -> float:
    """1 / (1 + e^-x) without overflow: the two-way softmax of a logprob difference."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def p_slot_a(scores: Sequence[float]) -> float | None:
    """P(slot A better) from the log-probabilities of 'A' and 'B'; None when unusable."""
    if len(scores) != 2 or not all(math.isfinite(s) for s in scores):
        return None
    return sigmoid(scores[0] - scores[1])


def _few_shot_turns(
    tpl: PromptTemplate, constitution: Constitution, examples: Sequence[FewShotExample]
) -> list[Message]:
    """Each example compares its flawed response with its revision (the better one).

    The better reply goes in slot B for even-numbered examples and slot A for odd ones, so
    the examples do not all teach the same letter. Whatever bias is left affects both
    presentation orders of a pair equally and is cancelled by the order averaging.
    """
    turns: list[Message] = []
    for i, ex in enumerate(examples):
        question = constitution.principle(ex.principle_id).compare
        better_first = i % 2 == 1
        first, second = (ex.revision, ex.response) if better_first else (ex.response, ex.revision)
        user = tpl.render(
            "compare_request",
            prompt=ex.prompt,
            response_a=first,
            response_b=second,
            question=question,
        )
        answer = tpl.render("few_shot_answer", letter=LETTERS[0 if better_first else 1])
        turns += [Message(role="user", content=user), Message(role="assistant", content=answer)]
    return turns


def compare_messages(
    constitution: Constitution,
    principle: Principle,
    prompt: str,
    slot_a: str,
    slot_b: str,
    examples: Sequence[FewShotExample] = (),
    template: PromptTemplate | None = None,
) -> tuple[Message, ...]:
    """The chat asking which of ``slot_a`` and ``slot_b`` better meets ``principle``
    (``template``: another revision of the comparison template, for measurements)."""
    tpl = template or compare_template()
    msgs = [Message(role="system", content=tpl.parts["system"])]
    msgs += _few_shot_turns(tpl, constitution, examples)
    user = tpl.render(
        "compare_request",
        prompt=prompt,
        response_a=slot_a,
        response_b=slot_b,
        question=principle.compare,
    )
    msgs.append(Message(role="user", content=user))
    return tuple(msgs)


def reasoning_request(messages: tuple[Message, ...]) -> GenerationRequest:
    """Ask for a short chain of thought before the answer letter."""
    return GenerationRequest(messages=messages, prefill=compare_template().parts["cot_prefill"])


def answer_request(messages: tuple[Message, ...], reasoning: str | None = None) -> ScoreRequest:
    """Score the letters after the answer prefill (after the reasoning, when there is one)."""
    tpl = compare_template()
    if reasoning is None:
        prefill = tpl.parts["answer_prefill"]
    else:
        prefill = tpl.render("cot_answer_prefill", reasoning=reasoning)
    return ScoreRequest(messages=messages, prefill=prefill, candidates=LETTERS)


def comparison_chat(constitution: Constitution, demo: ComparisonDemonstration) -> list[Message]:
    """A comparison demonstration as the chat a feedback model sees, answered: the request the
    feedback stage and calibration send (no worked examples), then the answer with the right
    letter (``few_shot_answer``), whose letter is what they score after ``answer_prefill``."""
    p = constitution.principle(demo.principle_id)
    msgs = compare_messages(constitution, p, demo.prompt, demo.response_a, demo.response_b)
    answer = compare_template().render("few_shot_answer", letter=demo.label.upper())
    return [*msgs, Message(role="assistant", content=answer)]
