"""What every stage of a run can see: the recipe, the run directory, models and the constitution."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cai.constitution import Constitution
from cai.pipeline._models import ModelPool
from cai.pipeline._recipe import Recipe

OUTPUTS: dict[str, list[str]] = {
    "prompts": ["data/prompts.jsonl", "data/pair_prompts.jsonl", "data/lookalike_prompts.jsonl"],
    "respond": ["data/responses.jsonl", "data/helpful_sft.jsonl", "data/lookalike_sft.jsonl"],
    "train_critic": ["models/critic", "data/critic_demonstrations.jsonl"],
    "train_feedback": ["models/feedback", "data/feedback_demonstrations.jsonl"],
    "critique": ["data/sl_cai.jsonl", "data/sft.jsonl", "data/critique_summary.json"],
    "pretrain": ["models/pretrain", "data/pretrain_corpus.jsonl"],
    "sft": ["models/sft"],
    "pairs": ["data/pairs.jsonl", "data/pairs_summary.json"],
    "calibrate": ["calibration.json", "calibration"],
    "feedback": [
        "data/preferences.jsonl",
        "data/judgements.jsonl",
        "data/ties.jsonl",
        "data/feedback_summary.json",
    ],
    "dpo": ["models/dpo", "data/dpo_preferences.jsonl"],
    "redteam": ["redteam", "data/redteam_failures.jsonl"],
    "evaluate": ["metrics.json", "report.html", "responses.jsonl", "judgments.jsonl"],
}
"""Files and folders each stage writes under the run directory (``--from`` archives them)."""

STAGES = tuple(OUTPUTS)
"""Stage order of ``cai run``."""


class StageSkipped(Exception):
    """A stage had nothing to do; the message says why (recorded, shown in the report)."""


@dataclass
class RunContext:
    """Shared state of one ``cai run``."""

    recipe: Recipe
    run_dir: Path
    constitution: Constitution
    pool: ModelPool
    limit: int | None = None

    def path(self, rel: str) -> Path:
        """A path under the run directory."""
        return self.run_dir / rel

    def cap(self, n: int) -> int:
        """A recipe size, capped by ``--limit``."""
        return n if self.limit is None else min(n, self.limit)

    def run_spec(self, name: str) -> str:
        """The model spec of a model this run trains (critic, feedback, pretrain, sft or dpo)."""
        return f"run:{self.path(f'models/{name}')}"

    def trained_spec(self, name: str) -> str | None:
        """``run_spec(name)`` once that model has been trained, else None."""
        meta = self.path(f"models/{name}") / "train_meta.json"
        if not meta.exists():
            return None
        if json.loads(meta.read_text(encoding="utf-8")).get("saved") == "probe":
            return f"probe:{self.path(f'models/{name}')}"  # a reward probe, not a chat model
        return self.run_spec(name)
