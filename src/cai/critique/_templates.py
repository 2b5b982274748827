"""Render the SL-CAI chats from the template file and the constitution's worked examples.

Owns: turning (prompt, response, principle, critique) into GenerationRequests.
Must not know: how models run or where records go.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from cai.constitution import Constitution, FewShotExample, Principle
from cai.records import GenerationRequest, Message, PromptTemplate
from cai.store import load_template


@lru_cache(maxsize=1)
def sl_cai_template() -> PromptTemplate:
    """The bundled SL-CAI template."""
    return load_template("cai.critique.templates", "sl_cai.yaml")


def _few_shot_turns(
    tpl: PromptTemplate, constitution: Constitution, examples: Sequence[FewShotExample], part: str
) -> list[Message]:
    turns: list[Message] = []
    for ex in examples:
        p = constitution.principle(ex.principle_id)
        if part == "critique":
            user = tpl.render(
                "critique_request", prompt=ex.prompt, response=ex.response, principle=p.critique
            )
            answer = f"{tpl.parts['critique_prefill']} {ex.critique}"
        else:
            user = tpl.render(
                "revision_request",
                prompt=ex.prompt,
                response=ex.response,
                critique=ex.critique,
                revision_request=p.revision,
            )
            answer = f"{tpl.parts['revision_prefill']} {ex.revision}"
        turns += [Message(role="user", content=user), Message(role="assistant", content=answer)]
    return turns


def critique_request(
    constitution: Constitution,
    principle: Principle,
    prompt: str,
    response: str,
    examples: Sequence[FewShotExample],
) -> GenerationRequest:
    """The chat asking the critic to critique ``response`` under ``principle``."""
    tpl = sl_cai_template()
    msgs = [Message(role="system", content=tpl.parts["system"])]
    msgs += _few_shot_turns(tpl, constitution, examples, "critique")
    user = tpl.render(
        "critique_request", prompt=prompt, response=response, principle=principle.critique
    )
    msgs.append(Message(role="user", content=user))
    return GenerationRequest(messages=tuple(msgs), prefill=tpl.parts["critique_prefill"])


def revision_request(
    constitution: Constitution,
    principle: Principle,
    prompt: str,
    response: str,
    critique: str,
    examples: Sequence[FewShotExample],
) -> GenerationRequest:
    """The chat asking the critic to rewrite ``response`` given its critique."""
    tpl = sl_cai_template()
    msgs = [Message(role="system", content=tpl.parts["system"])]
    msgs += _few_shot_turns(tpl, constitution, examples, "revision")
    user = tpl.render(
        "revision_request",
        prompt=prompt,
        response=response,
        critique=critique,
        revision_request=principle.revision,
    )
    msgs.append(Message(role="user", content=user))
    return GenerationRequest(messages=tuple(msgs), prefill=tpl.parts["revision_prefill"])
