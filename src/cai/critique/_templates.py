"""Render the SL-CAI chats from the template file and the constitution's worked examples.

Owns: turning (prompt, response, principle, critique) into GenerationRequests, with the
``stop_early`` instruction appended to every critique request when early stopping is on.
Must not know: how models run or where records go.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from cai.constitution import Constitution, CritiqueDemonstration, FewShotExample, Principle
from cai.errors import InputError
from cai.records import GenerationRequest, Message, PromptTemplate
from cai.store import load_template

SL_CAI_TEMPLATES = ("sl_cai", "sl_cai_compact")
"""Bundled SL-CAI templates: ``sl_cai`` for prompted critics (with worked examples),
``sl_cai_compact`` for critics trained on demonstrations (no system prompt, short requests)."""


@lru_cache(maxsize=4)
def sl_cai_template(name: str = "sl_cai") -> PromptTemplate:
    """A bundled SL-CAI template by name (see ``SL_CAI_TEMPLATES``)."""
    if name not in SL_CAI_TEMPLATES:
        raise InputError(f"unknown SL-CAI template {name!r}: one of {', '.join(SL_CAI_TEMPLATES)}")
    return load_template("cai.critique.templates", f"{name}.yaml")


@lru_cache(maxsize=1)
def stop_early_template() -> PromptTemplate:
    """The instruction that gives the critic a fixed way to say it found nothing."""
    return load_template("cai.critique.templates", "stop_early.yaml")


def template_id(name: str = "sl_cai", *, stop_early: bool = False) -> str:
    """The template version a record stores: ``sl_cai/3``, or ``sl_cai/3+stop_early/1``."""
    tid = sl_cai_template(name).id
    return f"{tid}+{stop_early_template().id}" if stop_early else tid


def _few_shot_turns(
    tpl: PromptTemplate,
    constitution: Constitution,
    examples: Sequence[FewShotExample],
    stop_early: bool = False,
) -> list[Message]:
    """Each worked example as four turns: critique request, critique, revision request, revision."""
    turns: list[Message] = []
    for ex in examples:
        p = constitution.principle(ex.principle_id)
        turns += _critique_turns(tpl, ex.prompt, ex.response, p.critique, stop_early)
        turns.append(
            Message(role="assistant", content=f"{tpl.parts['critique_prefill']} {ex.critique}")
        )
        turns.append(_revision_turn(tpl, p.revision))
        turns.append(
            Message(role="assistant", content=f"{tpl.parts['revision_prefill']} {ex.revision}")
        )
    return turns


def _critique_turns(
    tpl: PromptTemplate, prompt: str, response: str, principle: str, stop_early: bool = False
) -> list[Message]:
    user = tpl.render("critique_request", prompt=prompt, response=response, principle=principle)
    if stop_early:
        user += "\n\n" + stop_early_template().render("critique_instruction")
    return [Message(role="user", content=user)]


def _revision_turn(tpl: PromptTemplate, instruction: str) -> Message:
    return Message(
        role="user", content=tpl.render("revision_request", revision_request=instruction)
    )


def _critique_chat(
    constitution: Constitution,
    principle: Principle,
    prompt: str,
    response: str,
    examples: Sequence[FewShotExample],
    template: str = "sl_cai",
    stop_early: bool = False,
) -> list[Message]:
    tpl = sl_cai_template(template)
    msgs = [Message(role="system", content=tpl.parts["system"])] if tpl.parts["system"] else []
    msgs += _few_shot_turns(tpl, constitution, examples, stop_early)
    msgs += _critique_turns(tpl, prompt, response, principle.critique, stop_early)
    return msgs


def critique_request(
    constitution: Constitution,
    principle: Principle,
    prompt: str,
    response: str,
    examples: Sequence[FewShotExample],
    template: str = "sl_cai",
    *,
    stop_early: bool = False,
) -> GenerationRequest:
    """The chat asking the critic to critique ``response`` under ``principle``; with
    ``stop_early`` each critique request also says how to answer that nothing is wrong."""
    msgs = _critique_chat(constitution, principle, prompt, response, examples, template, stop_early)
    return GenerationRequest(
        messages=tuple(msgs), prefill=sl_cai_template(template).parts["critique_prefill"]
    )


def revision_request(
    constitution: Constitution,
    principle: Principle,
    prompt: str,
    response: str,
    critique: str,
    examples: Sequence[FewShotExample],
    template: str = "sl_cai",
    *,
    stop_early: bool = False,
) -> GenerationRequest:
    """The critique chat continued: the critic's critique, then the request to rewrite.

    It starts with exactly the messages of ``critique_request`` for the same arguments.
    """
    tpl = sl_cai_template(template)
    msgs = _critique_chat(constitution, principle, prompt, response, examples, template, stop_early)
    msgs.append(Message(role="assistant", content=f"{tpl.parts['critique_prefill']} {critique}"))
    msgs.append(_revision_turn(tpl, principle.revision))
    return GenerationRequest(messages=tuple(msgs), prefill=tpl.parts["revision_prefill"])


def demonstration_chat(
    constitution: Constitution, demo: CritiqueDemonstration, template: str = "sl_cai_compact"
) -> list[Message]:
    """A demonstration as the whole chat a critic sees and writes, both assistant turns filled
    in (with their prefills): training on its assistant turns teaches exactly the requests the
    stage sends with ``template`` and no worked examples."""
    tpl = sl_cai_template(template)
    p = constitution.principle(demo.principle_id)
    req = revision_request(constitution, p, demo.prompt, demo.draft, demo.critique, (), template)
    return [
        *req.messages,
        Message(role="assistant", content=f"{tpl.parts['revision_prefill']} {demo.revision}"),
    ]
