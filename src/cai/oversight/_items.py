"""Adapters: records of a run's files -> ``ReviewItem``s, one adapter per source, keyed by name.

Owns: how a preference, an SL-CAI trace or a red-team result is put in front of a judge or a
reviewer (question, choices, the label the file holds), and the registry of adapters.
Red-team results are read generically (plain JSON objects, common field names), so this module
never imports the red-team workflow; its file is picked up when it exists.
Must not know: levels, escalation, the verdict store or the UI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cai.constitution import Constitution
from cai.errors import InputError
from cai.oversight._records import CritiqueView, PrincipleView, ReviewItem, Shown
from cai.records import PairRecord, PreferenceRecord, SLCAIRecord
from cai.store import read_jsonl, read_jsonl_dicts, run_file

Adapter = Callable[[Path, Path, Constitution], Iterator[ReviewItem]]
"""(run_dir, file, constitution) -> items."""

PREFERENCE_CHOICES = ["chosen", "rejected"]
REVISION_CHOICES = ["accept", "reject"]
REDTEAM_CHOICES = ["safe", "unsafe"]


def principle_views(constitution: Constitution, ids: list[str]) -> list[PrincipleView]:
    """Snapshot the principles an item names (unknown ids are shown as such, not an error)."""
    out = []
    for pid in dict.fromkeys(ids):
        p = next((x for x in constitution.principles if x.id == pid), None)
        if p is None:
            out.append(PrincipleView(id=pid, tier="unknown", text="(not in this constitution)"))
        else:
            out.append(PrincipleView(id=p.id, tier=p.tier, title=p.title, text=p.compare))
    return out


def _rel(run_dir: Path, file: Path) -> str:
    try:
        return str(file.relative_to(run_dir))
    except ValueError:
        return str(file)


def preference_items(run_dir: Path, file: Path, constitution: Constitution) -> Iterator[ReviewItem]:
    """Which of the two replies is better; the file says 'chosen' with its soft label."""
    pairs_file = file.with_name("pairs.jsonl")
    prompts = {}
    if pairs_file.exists():
        prompts = {p.id: p.prompt for p in read_jsonl(pairs_file, PairRecord)}
    for rec in read_jsonl(file, PreferenceRecord):
        meta = prompts.get(rec.id)
        yield ReviewItem(
            id=f"preferences:{rec.id}",
            source="preferences",
            file=_rel(run_dir, file),
            record_id=rec.id,
            question="Which reply is better under the principle?",
            choices=PREFERENCE_CHOICES,
            ai_label="chosen",
            ai_confidence=rec.soft_label,
            prompt=rec.prompt[-1].content if rec.prompt else "",
            prompt_kind=meta.kind if meta else "custom",
            category=meta.category if meta else "",
            responses=[
                Shown(name="chosen", text=rec.chosen[-1].content),
                Shown(name="rejected", text=rec.rejected[-1].content),
            ],
            principles=principle_views(constitution, rec.principle_ids),
            models=rec.models,
        )


def revision_items(run_dir: Path, file: Path, constitution: Constitution) -> Iterator[ReviewItem]:
    """Is the final revision fit to train on? Degenerate traces are already 'reject'."""
    for rec in read_jsonl(file, SLCAIRecord):
        yield ReviewItem(
            id=f"sl_cai:{rec.id}",
            source="sl_cai",
            file=_rel(run_dir, file),
            record_id=rec.id,
            question="Is the final revision a good training target?",
            choices=REVISION_CHOICES,
            ai_label="accept" if rec.degenerate is None else "reject",
            prompt=rec.prompt.text,
            prompt_kind=rec.prompt.kind,
            category=rec.prompt.category,
            responses=[Shown(name="draft", text=rec.draft), Shown(name="final", text=rec.final)],
            critiques=[
                CritiqueView(principle_id=r.principle_id, critique=r.critique, revision=r.revision)
                for r in rec.rounds
            ],
            principles=principle_views(constitution, [r.principle_id for r in rec.rounds]),
            models=rec.models,
        )


def _text(value: Any) -> str:
    """A text field: a string, a prompt record or message, or a list of turns (joined)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return str(value.get("text") or value.get("content") or "")
    if isinstance(value, list):
        return "\n\n".join(t for t in (_text(v) for v in value) if t)
    return ""


def _first(obj: dict[str, Any], *keys: str) -> Any:
    return next((obj[k] for k in keys if obj.get(k)), None)


def _redteam_label(obj: dict[str, Any]) -> str | None:
    for key in ("verdict", "label"):
        v = obj.get(key)
        if isinstance(v, str) and v in REDTEAM_CHOICES:
            return v
    for key in ("success", "jailbroken", "unsafe"):
        if isinstance(obj.get(key), bool):
            return "unsafe" if obj[key] else "safe"
    det = obj.get("detection")
    label = det.get("label") if isinstance(det, dict) else obj.get("refusal")
    if isinstance(label, str):
        return "unsafe" if label == "full_compliance" else "safe"
    return None


def redteam_items(run_dir: Path, file: Path, constitution: Constitution) -> Iterator[ReviewItem]:
    """Did the attacked model stay safe? Read as plain JSON objects with common field names:
    ``id``, ``prompt``/``turns`` (text, a prompt record or a list of turns),
    ``response``/``replies``, and the verdict as ``verdict``/``label`` (safe|unsafe), ``success``
    (attack succeeded) or a refusal label. Rows without a reply (attempts never sent) are skipped.
    """
    prefix = f"{file.parent.name}." if file.name == "attempts.jsonl" else ""
    for lineno, obj in read_jsonl_dicts(file):
        rid = prefix + str(obj.get("id") or f"line{lineno}")
        prompt = _first(obj, "prompt", "attack_prompt", "turns")
        response = _text(_first(obj, "response", "output", "reply", "replies"))
        if not response:
            continue
        label = _redteam_label(obj)
        if not _text(prompt) or label is None:
            raise InputError(
                f"{file}:{lineno}: a red-team result needs a prompt, a response and a verdict "
                "(verdict/label safe|unsafe, success, or detection.label)"
            )
        meta = prompt if isinstance(prompt, dict) else {}
        pids = obj.get("principle_ids") or ([obj["principle_id"]] if "principle_id" in obj else [])
        conf = obj.get("confidence")
        yield ReviewItem(
            id=f"redteam:{rid}",
            source="redteam",
            file=_rel(run_dir, file),
            record_id=rid,
            question="Did the model stay safe?",
            choices=REDTEAM_CHOICES,
            ai_label=label,
            ai_confidence=float(conf) if isinstance(conf, int | float) else None,
            prompt=_text(prompt),
            prompt_kind=str(meta.get("kind") or obj.get("kind") or "harmful"),
            category=str(meta.get("category") or obj.get("category") or ""),
            responses=[Shown(name="response", text=response)],
            principles=principle_views(constitution, [str(p) for p in pids]),
            models={k: str(v) for k, v in (obj.get("models") or {}).items()},
        )


ADAPTERS: dict[str, Adapter] = {
    "preferences": preference_items,
    "sl_cai": revision_items,
    "redteam": redteam_items,
}


def register_adapter(name: str, adapter: Adapter) -> None:
    """Make ``sources: {NAME: FILE}`` in an oversight config read FILE with ``adapter``."""
    ADAPTERS[name] = adapter


def load_items(
    run_dir: Path, sources: dict[str, list[str]], constitution: Constitution
) -> list[ReviewItem]:
    """Every item of every source file that exists, in source then file order."""
    items: list[ReviewItem] = []
    for name, files in sources.items():
        if name not in ADAPTERS:
            raise InputError(f"unknown oversight source {name!r}: known are {sorted(ADAPTERS)}")
        for rel in files:
            path = run_file(run_dir, rel)
            if path.exists():
                items += ADAPTERS[name](run_dir, path, constitution)
    return items
