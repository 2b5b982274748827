"""What every stage of a run can see: the recipe, the run directory, models and the constitution."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cai.constitution import Constitution
from cai.pipeline._models import ModelPool
from cai.pipeline._recipe import Recipe
from cai.records import SamplingParams

OUTPUTS: dict[str, list[str]] = {
    "prompts": ["data/prompts.jsonl", "data/pair_prompts.jsonl"],
    "respond": ["data/responses.jsonl", "data/helpful_sft.jsonl"],
    "critique": ["data/sl_cai.jsonl", "data/sft.jsonl", "data/critique_summary.json"],
    "sft": ["models/sft"],
    "pairs": ["data/pairs.jsonl", "data/pairs_summary.json"],
    "feedback": [
        "data/preferences.jsonl",
        "data/judgements.jsonl",
        "data/ties.jsonl",
        "data/feedback_summary.json",
    ],
    "dpo": ["models/dpo", "data/dpo_preferences.jsonl"],
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

    @property
    def draft_params(self) -> SamplingParams:
        """Settings of policy drafts; respond and critique share them so drafts are cached once."""
        g = self.recipe.generation
        return SamplingParams(max_new_tokens=g.max_new_tokens, seed=self.recipe.seed)

    @property
    def sft_spec(self) -> str:
        return f"run:{self.path('models/sft')}"

    @property
    def dpo_spec(self) -> str:
        return f"run:{self.path('models/dpo')}"
