"""Human verdicts flow back into the datasets; mandatory human checkpoints gate training.

Owns: writing ``data/preferences.reviewed.jsonl`` (every preference, a human verdict winning
over the AI label and each row saying which it is) and ``data/sft.reviewed.jsonl`` (the SFT
revisions, less those a human rejected, plus degenerate ones a human accepted), reading the data
a trainer should use, and the checkpoint rule (N reviewed items per 1,000 before a training
stage).
Must not know: HTTP, how items were routed, or how training runs.
"""

from __future__ import annotations

import math
from pathlib import Path

from cai.errors import CaiError
from cai.oversight._config import OversightConfig
from cai.oversight._records import ReviewedPreference
from cai.oversight._store import STORE_FILE, VerdictStore
from cai.records import Message, PreferenceRecord, SFTExample, SLCAIRecord
from cai.store import read_jsonl, run_file, write_records

PREFERENCES = "data/preferences.jsonl"
REVIEWED_PREFERENCES = "data/preferences.reviewed.jsonl"
SL_CAI = "data/sl_cai.jsonl"
SFT = "data/sft.jsonl"
REVIEWED_SFT = "data/sft.reviewed.jsonl"


class CheckpointNotMet(CaiError):
    """A training stage needs more human reviews before it may start."""

    exit_code = 1


def export_reviewed(run_dir: str | Path, store: VerdictStore) -> Path | None:
    """Rewrite the reviewed preference file from the current verdicts (None: no preferences)."""
    run = Path(run_dir)
    src = run_file(run, PREFERENCES)
    if not src.exists():
        return None
    human = store.current()
    rows = []
    for rec in read_jsonl(src, PreferenceRecord):
        v = human.get(f"preferences:{rec.id}")
        base = rec.model_dump()
        if v is None:
            rows.append(ReviewedPreference(**base, label_source="ai"))
            continue
        swapped = v.label == "rejected"
        if swapped:
            base |= {"chosen": base["rejected"], "rejected": base["chosen"], "margin": -rec.margin}
        base["soft_label"] = 1.0  # a person decided
        rows.append(
            ReviewedPreference(
                **base,
                label_source="human",
                reviewer=v.reviewer,
                verdict_seq=v.seq,
                swapped=swapped,
            )
        )
    return write_records(src.with_name(Path(REVIEWED_PREFERENCES).name), rows)


def training_preferences(run_dir: str | Path) -> list[PreferenceRecord]:
    """The preferences a trainer should use: the reviewed file when there is one (rewritten
    first from the current verdicts when the run has a verdict store, so it is never stale)."""
    run = Path(run_dir)
    src = run_file(run, PREFERENCES)
    if (run / STORE_FILE).exists() and src.exists():
        with VerdictStore(run / STORE_FILE) as store:
            export_reviewed(run, store)
    reviewed = src.with_name(Path(REVIEWED_PREFERENCES).name)
    if reviewed.exists():
        return [r.training_record() for r in read_jsonl(reviewed, ReviewedPreference)]
    return list(read_jsonl(src, PreferenceRecord))


def export_reviewed_sft(run_dir: str | Path, store: VerdictStore) -> Path | None:
    """Rewrite the reviewed SFT file: a human 'reject' drops a revision, a human 'accept' of a
    trace the AI checks called degenerate adds it; ``label_source`` says who decided."""
    run = Path(run_dir)
    sft, sl_cai = run_file(run, SFT), run_file(run, SL_CAI)
    if not sft.exists() or not sl_cai.exists():
        return None
    human = store.current()
    rows: list[SFTExample] = []
    kept: set[str] = set()
    for ex in read_jsonl(sft, SFTExample):
        v = human.get(f"sl_cai:{ex.id}")
        kept.add(ex.id)
        if v is None:
            rows.append(ex)
        elif v.label == "accept":
            rows.append(ex.model_copy(update={"label_source": "human"}))
    for rec in read_jsonl(sl_cai, SLCAIRecord):
        v = human.get(f"sl_cai:{rec.id}")
        if rec.id in kept or v is None or v.label != "accept" or not rec.final.strip():
            continue
        messages = [
            Message(role="user", content=rec.prompt.text),
            Message(role="assistant", content=rec.final),
        ]
        rows.append(SFTExample(id=rec.id, messages=messages, label_source="human"))
    return write_records(sft.with_name(Path(REVIEWED_SFT).name), rows)


def training_sft(run_dir: str | Path) -> Path:
    """The SFT revision file a trainer should use: the reviewed one when the run has a verdict
    store (rewritten first from the current verdicts), else ``data/sft.jsonl``."""
    run = Path(run_dir)
    if (run / STORE_FILE).exists():
        with VerdictStore(run / STORE_FILE) as store:
            out = export_reviewed_sft(run, store)
        if out is not None:
            return out
    return run_file(run, SFT)


def checkpoint_gap(run_dir: str | Path, cfg: OversightConfig, stage: str) -> str | None:
    """Why ``stage`` may not start yet (None: every checkpoint before it is met)."""
    run = Path(run_dir)
    for cp in cfg.checkpoints:
        if cp.before != stage:
            continue
        what = "/".join(cp.sources)
        if not (run / STORE_FILE).exists():
            return (
                f"checkpoint before {stage}: no human review yet; run `cai oversee {run}`, review "
                f"{what} items with `cai serve {run}`, then rerun"
            )
        with VerdictStore(run / STORE_FILE) as store:
            items = [it.id for src in cp.sources for it in store.items(src)]
            human = store.current()
        need = max(cp.min_reviewed, math.ceil(len(items) * cp.per_1000 / 1000))
        have = sum(1 for i in items if i in human)
        if not items and cp.min_reviewed > 0:
            return (
                f"checkpoint before {stage}: no {what} items in the review store; run "
                f"`cai oversee {run}` first"
            )
        if have < need:
            return (
                f"checkpoint before {stage}: {have} of {need} required human reviews of {what} "
                f"items ({cp.per_1000:g} per 1,000 of {len(items)}, at least {cp.min_reviewed}); "
                f"review {need - have} more with `cai serve {run}`, then rerun"
            )
    return None


def require_checkpoint(run_dir: str | Path, cfg: OversightConfig, stage: str) -> None:
    """Raise ``CheckpointNotMet`` with a clear message when ``stage`` must wait for humans."""
    gap = checkpoint_gap(run_dir, cfg, stage)
    if gap is not None:
        raise CheckpointNotMet(gap)
